import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBeckett } from '../../src/admin/createBeckett.js';
import { checkHealth } from '../../src/host/checkHealth.js';
import { lagSnapshot, UNDISPATCHED_COUNT_CAP } from '../../src/operations/lagSnapshot.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { opsConfig, startWorker, until } from './helpers.js';

let db: TestDb;
let s: string;

beforeAll(async () => {
  db = await setupDb('cp_progress');
  s = `"${db.schema}"`;
  await db.pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('P')`);
  await db.pool.query(
    `INSERT INTO ${s}.subscriptions (group_name, name, status) VALUES ('P', 'a', 'active'), ('P', 'b', 'active')`,
  );
  await db.pool.query(
    `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position)
     SELECT 'P', sub, 'x-' || i, 1000, i % 7 FROM generate_series(1, 100) i, unnest(ARRAY['a', 'b']) sub`,
  );
});

afterAll(async () => {
  await db?.close();
});

/** Per subscription: the counter's sum and the real sum of positions. */
async function sums(): Promise<{ sub: string; counted: number; real: number }[]> {
  const { rows } = await db.pool.query(
    `SELECT c.subscription_name AS sub, sum(c.stream_position)::int AS real,
            (SELECT coalesce(sum(p.processed), 0)::int FROM ${s}.subscription_progress p
              WHERE p.group_name = 'P' AND p.subscription_name = c.subscription_name) AS counted
       FROM ${s}.checkpoints c WHERE c.group_name = 'P' GROUP BY 1 ORDER BY 1`,
  );
  return rows;
}

/** Two connections of their own whose backend pids are equal modulo 16 (they start on the same counter row). */
async function collidingClients(): Promise<[pg.Client, pg.Client]> {
  const byShard = new Map<number, pg.Client>();
  for (;;) {
    const c = await db.client();
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const other = byShard.get(pid % 16);
    if (other) return [other, c];
    byShard.set(pid % 16, c);
  }
}

describe('subscription_progress (the sum of positions kept by triggers)', () => {
  it('starts from the sums of the checkpoints', async () => {
    for (const r of await sums()) expect(r.counted).toBe(r.real);
  });

  it('stays exact when two transactions move checkpoints of two subscriptions in opposite orders, neither waiting', async () => {
    // Both start on the same counter row of each subscription: with one row per pid shard, T1
    // holds a's row and wants b's while T2 holds b's and wants a's (a deadlock). Each must take a
    // free row instead, without waiting (lock_timeout fails the test if either waits).
    const [t1, t2] = await collidingClients();
    for (const t of [t1, t2]) await t.query("BEGIN; SET LOCAL lock_timeout = '3s'");
    const move = (t: pg.Client, sub: string, stream: string, by: number) =>
      t.query(
        `UPDATE ${s}.checkpoints SET stream_position = stream_position + $3
          WHERE group_name = 'P' AND subscription_name = $1 AND stream_name = $2`,
        [sub, stream, by],
      );
    await move(t1, 'a', 'x-1', 5);
    await move(t2, 'b', 'x-2', 7);
    await move(t1, 'b', 'x-3', 11);
    await move(t2, 'a', 'x-4', 13);
    await t1.query('COMMIT');
    await t2.query('COMMIT');
    for (const r of await sums()) expect(r.counted).toBe(r.real);
  });

  it('stays exact under concurrent writers that advance, rewind, delete, insert and roll back', async () => {
    const writers = await Promise.all(Array.from({ length: 8 }, () => db.client()));
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    await Promise.all(
      writers.map(async (w, wi) => {
        for (let round = 0; round < 30; round++) {
          await w.query("BEGIN; SET LOCAL lock_timeout = '10s'");
          for (let k = 0; k < 4; k++) {
            const sub = random(2) === 0 ? 'a' : 'b';
            // Each writer its own checkpoints (else they deadlock on the checkpoint rows): only
            // the counter rows of the two subscriptions are shared.
            const mine = () => `x-${1 + wi * 12 + random(12)}`;
            const stream = mine();
            const op = random(10);
            if (op < 6)
              // A completion (several checkpoints at once, as the batched completion does).
              await w.query(
                `UPDATE ${s}.checkpoints SET stream_position = stream_position + 1
                  WHERE group_name = 'P' AND subscription_name = $1 AND stream_name = ANY ($2)`,
                [sub, [stream, mine()]],
              );
            else if (op < 8)
              // A replay or reset moving positions back.
              await w.query(
                `UPDATE ${s}.checkpoints SET stream_position = 0
                  WHERE group_name = 'P' AND subscription_name = $1 AND stream_name = $2`,
                [sub, stream],
              );
            else if (op < 9)
              await w.query(
                `DELETE FROM ${s}.checkpoints WHERE group_name = 'P' AND subscription_name = $1 AND stream_name = $2`,
                [sub, stream],
              );
            else
              await w.query(
                `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position)
                 VALUES ('P', $1, $2, 1000, 3)
                 ON CONFLICT (group_name, subscription_name, stream_name)
                 DO UPDATE SET stream_position = ${s}.checkpoints.stream_position + 2`,
                [sub, `y-${wi}-${random(20)}`],
              );
          }
          await w.query(random(5) === 0 ? 'ROLLBACK' : 'COMMIT').catch(async (err) => {
            await w.query('ROLLBACK');
            throw err;
          });
        }
      }),
    );
    const after = await sums();
    for (const r of after) expect(r.counted).toBe(r.real);
    expect(after.map((r) => r.sub)).toEqual(['a', 'b']);
  });

  it('is what the lag snapshot reports as processed', async () => {
    const snap = await lagSnapshot(db.pool, { schema: db.schema, s, prepared: false }, { group: 'P' });
    const real = await sums();
    expect(snap.groups[0]?.subscriptions.map((x) => [x.name, x.processed])).toEqual(
      real.map((r) => [r.sub, r.real]),
    );
  });
});

describe('attempt history', () => {
  it('records each failed attempt, newest first, shown by the admin API', async () => {
    const config = opsConfig(db.schema, {
      flaky: {
        category: 'order',
        maxRetries: 2,
        backoff: { initialMs: 1, maxMs: 2 },
        handler: (m) => {
          if ((m.data as { fail?: boolean }).fail) throw new Error(`cannot handle ${m.streamName}`);
        },
      },
    });
    await db.store.append('order-7', [
      { type: 'placed', data: {} },
      { type: 'paid', data: { fail: true } },
    ]);
    const worker = startWorker(db, config);
    const beckett = createBeckett({ pool: db.pool, schema: db.schema, config });
    try {
      await worker.start();
      await until(
        async () =>
          (await beckett.admin.checkpoint('G/flaky/order-7').catch(() => null))?.status === 'failed',
        'order-7 to fail',
      );
      const c = await beckett.admin.checkpoint('G/flaky/order-7');
      expect(c.attemptHistory.map((a) => a.attempt)).toEqual([3, 2, 1]);
      expect(c.attemptHistory.map((a) => a.position)).toEqual([2, 2, 2]);
      expect(c.attemptHistory[0]).toMatchObject({ type: 'Error', message: 'cannot handle order-7' });
      expect(c.attemptHistory[0]?.stack).toContain('cannot handle order-7');
    } finally {
      await worker.stop();
      await beckett.close();
    }
  });

  it('keeps the last 10 attempts', async () => {
    const { rows } = await db.pool.query(
      `WITH RECURSIVE h(n, history) AS (
         SELECT 0, '[]'::jsonb
         UNION ALL
         SELECT n + 1, ${s}.push_error_history(history,
                  jsonb_build_object('attempt', n + 1, 'message', repeat('x', 5000)), 4)
           FROM h WHERE n < 12)
       SELECT history FROM h WHERE n = 12`,
    );
    const history = rows[0].history as { attempt: number; message: string; position: number }[];
    expect(history.map((e) => e.attempt)).toEqual([12, 11, 10, 9, 8, 7, 6, 5, 4, 3]);
    expect(history[0]?.message).toHaveLength(2000);
    expect(history[0]?.position).toBe(4);
  });
});

describe('bounded lag', () => {
  it('counts undispatched messages over a bounded window, and exactly when health compares against maxLag', async () => {
    const ctx = { schema: db.schema, s, prepared: false };
    await db.pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('Q')`);
    await db.pool.query(
      `INSERT INTO ${s}.subscriptions (group_name, name, status) VALUES ('Q', 'far', 'active')`,
    );
    await db.pool.query(
      `INSERT INTO ${s}.messages (id, stream_name, stream_position, type, data, metadata)
       SELECT gen_random_uuid(), 'far-' || (i % 100), i / 100 + 1, 't', '{}', '{}' FROM generate_series(0, $1::int - 1) i`,
      [UNDISPATCHED_COUNT_CAP + 1000],
    );
    const total = Number((await db.pool.query(`SELECT count(*) AS n FROM ${s}.messages`)).rows[0].n);
    const bounded = (await lagSnapshot(db.pool, ctx, { group: 'Q' })).groups[0]!.subscriptions[0]!;
    expect(bounded).toMatchObject({ undispatched: UNDISPATCHED_COUNT_CAP, undispatchedCapped: true });
    const exact = (await lagSnapshot(db.pool, ctx, { group: 'Q', exactLagUpTo: 100_000 })).groups[0]!
      .subscriptions[0]!;
    expect(exact).toMatchObject({ undispatched: total, undispatchedCapped: false, lag: total });
    // Health must see a lag above maxLag that the bounded count stops short of.
    const health = await checkHealth(db.pool, ctx, { group: 'Q', maxLag: UNDISPATCHED_COUNT_CAP + 500 });
    expect(health.groups[0]!.problems).toContain(`far: lag ${total} > ${UNDISPATCHED_COUNT_CAP + 500}`);
  });
});
