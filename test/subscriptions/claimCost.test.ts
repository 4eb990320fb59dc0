import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escapeIdentifier } from '../../src/db/identifier.js';
import type { Queryable, SqlContext } from '../../src/db/queryable.js';
import { claimCheckpoint } from '../../src/subscriptions/claimCheckpoint.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
let ctx: SqlContext;
const PAUSED = 200_000;

beforeAll(async () => {
  db = await setupDb('claimcost');
  ctx = { schema: db.schema, s: escapeIdentifier(db.schema), prepared: false };
  const s = ctx.s;
  await db.pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('G')`);
  await db.pool.query(
    `INSERT INTO ${s}.subscriptions (group_name, name, status, fingerprint)
     VALUES ('G', 'paused', 'paused', 'f'), ('G', 'gone', 'unknown', 'f'), ('G', 'live', 'active', 'f')`,
  );
  // 200k checkpoints nobody may claim, all lagging: of a paused and an unknown subscription (due long
  // ago: first in claim order), and of the live subscription failed (due long ago) or not due (retry
  // backoff); plus the leases of 64 live consumers (16 processes of 4) on the live subscription.
  await db.pool.query(
    `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, status,
                                   next_attempt_at)
     SELECT 'G', CASE WHEN i % 5 < 2 THEN 'paused' WHEN i % 5 = 2 THEN 'gone' ELSE 'live' END, 'p-' || i, 3,
            CASE WHEN i % 5 = 3 THEN 'failed' ELSE 'active' END,
            CASE WHEN i % 5 = 4 THEN now() + interval '1 day' ELSE now() - interval '1 hour' END
       FROM generate_series(1, ${PAUSED}) i`,
  );
  await db.pool.query(
    `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, next_attempt_at,
                                   leased_by, lease_id, leased_until)
     SELECT 'G', 'live', 'held-' || i, 3, now() - interval '1 hour', 'other', gen_random_uuid(), now() + interval '1 hour'
       FROM generate_series(1, 64) i`,
  );
  await db.pool.query(
    `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version)
     VALUES ('G', 'live', 'l-1', 1)`,
  );
  await db.store.append('l-1', { type: 't', data: {} });
  await db.pool.query(`ANALYZE ${s}.checkpoints`);
  await db.pool.query(`ANALYZE ${s}.subscriptions`);
});
afterAll(async () => {
  await db?.close();
});

interface PlanNode {
  'Shared Hit Blocks': number;
  'Shared Read Blocks': number;
}

/** Runs the real claim under EXPLAIN (ANALYZE, BUFFERS) in a transaction rolled back. */
async function claimBuffers(client: pg.PoolClient): Promise<number> {
  let plan: PlanNode | undefined;
  const explaining: Queryable = {
    query: async (q: pg.QueryConfig) => {
      const r = await client.query({ ...q, text: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${q.text}` });
      plan = (r.rows[0] as { 'QUERY PLAN': { Plan: PlanNode }[] })['QUERY PLAN'][0]!.Plan;
      return { ...r, rows: [] };
    },
  } as unknown as Queryable;
  await claimCheckpoint(explaining, ctx, {
    group: 'G',
    subscriptions: ['paused', 'gone', 'live'],
    batchSizes: [10, 10, 10],
    fingerprints: ['f', 'f', 'f'],
    workerId: 'w',
    leaseMs: 30_000,
  });
  return plan!['Shared Hit Blocks'] + plan!['Shared Read Blocks'];
}

describe('claim cost', () => {
  it('does not grow with checkpoints nobody may claim: paused, unknown, failed, not due (200k), leased (64)', async () => {
    // The claim picks the live checkpoint, whatever waits behind the paused ones.
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const claim = await claimCheckpoint(client, ctx, {
        group: 'G',
        subscriptions: ['paused', 'gone', 'live'],
        batchSizes: [10, 10, 10],
        fingerprints: ['f', 'f', 'f'],
        workerId: 'w',
        leaseMs: 30_000,
      });
      expect(claim?.subscription).toBe('live');
      expect(claim?.messages).toHaveLength(1);
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      const buffers = await claimBuffers(client);
      await client.query('ROLLBACK');
      // A few index and heap pages (subscriptions, the live checkpoint, its message), not the
      // thousands of pages holding the 200k paused checkpoints.
      expect(buffers, `${buffers} buffers`).toBeLessThan(100);
    } finally {
      client.release();
    }
  });
});
