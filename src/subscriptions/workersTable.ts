import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';

export interface WorkerRecord {
  id: string;
  host: string;
  pid: number;
  group: string;
  concurrency: number;
}

/**
 * A worker row whose heartbeat is older than this is deleted by any live worker's heartbeat: a killed
 * process (SIGKILL, a lost host) never removes its own row. Long past the 30 s after which es lag and
 * es health stop counting it as live, so a dead worker stays visible for a while first.
 */
export const WORKER_EXPIRY_SECONDS = 300;

// An upsert, so the heartbeat also brings back a row lost to an operator's cleanup (or expired while
// this process was stalled). The runner rows of killed workers (what definitions they ran) go the
// same way: a dead runner counts for nothing once its alive_until passed, and each new worker id
// added rows that nothing removed.
const heartbeatSql = (ctx: SqlContext) =>
  `WITH expired AS (
     DELETE FROM ${ctx.s}.workers
      WHERE heartbeat_at < now() - make_interval(secs => $6::float8) AND id <> $1),
   expired_runners AS (
     DELETE FROM ${ctx.s}.subscription_runners
      WHERE alive_until < now() - make_interval(secs => $6::float8) AND worker_id <> $1)
   INSERT INTO ${ctx.s}.workers (id, host, pid, group_name, concurrency) VALUES ($1, $2, $3, $4, $5)
   ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()`;

/**
 * Record that the worker is alive, and delete the rows (workers, subscription runners) of workers
 * dead for `expireAfterSeconds`.
 */
export async function heartbeat(
  db: Queryable,
  ctx: SqlContext,
  w: WorkerRecord,
  expireAfterSeconds = WORKER_EXPIRY_SECONDS,
): Promise<void> {
  await db.query(
    statement(ctx, 'worker_heartbeat', heartbeatSql(ctx), [
      w.id,
      w.host,
      w.pid,
      w.group,
      w.concurrency,
      expireAfterSeconds,
    ]),
  );
}

export async function removeWorker(db: Queryable, ctx: SqlContext, id: string): Promise<void> {
  await db.query(`DELETE FROM ${ctx.s}.workers WHERE id = $1`, [id]);
}
