import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';

export interface WorkerRecord {
  id: string;
  host: string;
  pid: number;
  group: string;
  concurrency: number;
}

// An upsert, so the heartbeat also brings back a row lost to an operator's cleanup.
const heartbeatSql = (ctx: SqlContext) =>
  `INSERT INTO ${ctx.s}.workers (id, host, pid, group_name, concurrency) VALUES ($1, $2, $3, $4, $5)
   ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()`;

export async function heartbeat(db: Queryable, ctx: SqlContext, w: WorkerRecord): Promise<void> {
  await db.query(
    statement(ctx, 'worker_heartbeat', heartbeatSql(ctx), [w.id, w.host, w.pid, w.group, w.concurrency]),
  );
}

export async function removeWorker(db: Queryable, ctx: SqlContext, id: string): Promise<void> {
  await db.query(`DELETE FROM ${ctx.s}.workers WHERE id = $1`, [id]);
}
