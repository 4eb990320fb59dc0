import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import type { Queryable } from '../../src/db/queryable.js';
import { applyRetention, subscriptionFilters } from '../../src/retention/applyRetention.js';
import { setupDb, type TestDb } from '../helpers/db.js';

/*
 * Retention's cost per batch must not grow with the tables around it. Issue 19: the check "has a
 * subscription processed this message?" was planned as a hashed EXISTS that scanned every
 * checkpoint once per message, so a batch cost (messages x checkpoints) and a run over a log of
 * 100k messages went 5x slower per message than over 10k.
 */

let db: TestDb;
const CHECKPOINTS = 50_000;
const config = resolveConfig({
  retention: { policies: [{ name: 'keep-newest', category: 'order', maxCount: 1 }] },
  groups: { G: { subscriptions: { all: { category: 'order', handler: () => undefined } } } },
});

beforeAll(async () => {
  db = await setupDb('ret_cost');
  const s = `"${db.schema}"`;
  // 20 streams of 10 messages, all processed by G/all; and 50k checkpoints of other streams.
  for (let i = 1; i <= 20; i++)
    await db.store.append(
      `order-${i}`,
      Array.from({ length: 10 }, (_, k) => ({ type: 'placed', data: { k } })),
    );
  await db.pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('G')`);
  await db.pool.query(
    `INSERT INTO ${s}.subscriptions (group_name, name, status, fingerprint, log_transaction_id, log_position)
     SELECT 'G', 'all', 'active', 'f', max(transaction_id), max(global_position) FROM ${s}.messages`,
  );
  await db.pool.query(
    `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position)
     SELECT 'G', 'all', stream_name, max(stream_position), max(stream_position) FROM ${s}.messages GROUP BY stream_name
     UNION ALL
     SELECT 'G', 'all', 'other-' || i, 3, 3 FROM generate_series(1, ${CHECKPOINTS}) i`,
  );
  await db.pool.query(`ANALYZE ${s}.checkpoints`);
  await db.pool.query(`ANALYZE ${s}.messages`);
});
afterAll(async () => db?.close());

interface PlanNode {
  'Shared Hit Blocks': number;
  'Shared Read Blocks': number;
}

describe('retention cost', () => {
  it('reads a few pages per message of a batch, not every checkpoint per message, and compiles nothing', async () => {
    const client = await db.pool.connect();
    const batches: { buffers: number; deleted: number; jit: boolean }[] = [];
    try {
      await client.query('BEGIN');
      // JIT for every statement that is not told otherwise: a batch costs more to compile than to run.
      await client.query('SET LOCAL jit_above_cost = 0');
      // Every DELETE batch runs under EXPLAIN (ANALYZE, BUFFERS), in this transaction (rolled back).
      const explaining: Queryable = {
        query: async (text: string, values?: unknown[]) => {
          if (!text.includes('DELETE FROM')) return client.query(text, values);
          // Explained (which runs it) and undone, then run for real.
          await client.query('SAVEPOINT explained');
          const r = await client.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, values);
          await client.query('ROLLBACK TO SAVEPOINT explained');
          const explained = (r.rows[0] as { 'QUERY PLAN': { Plan: PlanNode; JIT?: unknown }[] })[
            'QUERY PLAN'
          ][0]!;
          const plan = explained.Plan;
          const real = await client.query(text, values);
          batches.push({
            buffers: plan['Shared Hit Blocks'] + plan['Shared Read Blocks'],
            deleted: (real.rows[0] as { n: number }).n,
            jit: explained.JIT !== undefined,
          });
          return real;
        },
      } as unknown as Queryable;
      const r = await applyRetention(explaining, db.store.sqlContext, config.retention.policies, {
        batchSize: 100,
        subscriptions: subscriptionFilters(config),
      });
      expect(r.policies[0]).toMatchObject({ deleted: 180, protected: 0 });
      expect(batches.length).toBeGreaterThan(1);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
    // Each batch of up to 100 messages: a handful of index and heap pages per message (its head,
    // its checkpoint, the delete), not the ~400 pages of 50k checkpoints per message.
    expect(batches.map((b) => b.deleted).reduce((a, b) => a + b, 0)).toBe(180);
    const most = Math.max(...batches.map((b) => b.buffers));
    expect(most, `${most} buffers`).toBeLessThan(100 * 25);
    expect(batches.filter((b) => b.jit)).toEqual([]);
  });
});
