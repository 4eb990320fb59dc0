import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escapeIdentifier } from '../../src/db/identifier.js';
import { lagSnapshot } from '../../src/operations/lagSnapshot.js';
import { liveWorkerCount } from '../../src/operations/subscriptionControl.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { configWith, startWorker, until } from './helpers.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('wexp');
});
afterAll(async () => {
  await db?.close();
});

describe('workers table', () => {
  it('expires the rows of killed workers (and their subscription runner rows), which never count as live', async () => {
    const ctx = { schema: db.schema, s: escapeIdentifier(db.schema), prepared: false };
    // Two workers killed without a clean stop: one 10 minutes ago, one 40 s ago.
    await db.pool.query(
      `INSERT INTO ${ctx.s}.workers (id, host, pid, group_name, concurrency, started_at, heartbeat_at)
       VALUES ('killed-long-ago', 'h', 1, 'G', 4, now() - interval '1 hour', now() - interval '10 minutes'),
              ('killed-recently', 'h', 2, 'G', 4, now() - interval '1 hour', now() - interval '40 seconds')`,
    );
    const w = startWorker(db, configWith(db.schema, { s: { category: 'x', handler: () => undefined } }), {
      heartbeatMs: 100,
    });
    await w.start();
    // What they ran: the subscription's runner rows, run out 10 minutes and 40 s ago.
    await db.pool.query(
      `INSERT INTO ${ctx.s}.subscription_runners (worker_id, group_name, subscription_name, fingerprint, alive_until)
       VALUES ('killed-long-ago', 'G', 's', 'f', now() - interval '10 minutes'),
              ('killed-recently', 'G', 's', 'f', now() - interval '40 seconds')`,
    );
    try {
      await until(
        async () => {
          const { rows } = await db.pool.query(`SELECT id FROM ${ctx.s}.workers ORDER BY id`);
          return rows.map((r) => r.id).join(',') === ['killed-recently', w.id].sort().join(',');
        },
        'the long-dead worker row expires',
        5000,
      );
      await until(
        async () => {
          const { rows } = await db.pool.query(
            `SELECT worker_id FROM ${ctx.s}.subscription_runners WHERE worker_id LIKE 'killed%'`,
          );
          return rows.map((r) => r.worker_id).join(',') === 'killed-recently';
        },
        'the long-dead runner row expires',
        5000,
      );
      const snap = await lagSnapshot(db.pool, ctx);
      const g = snap.groups.find((x) => x.name === 'G')!;
      expect(g.liveWorkers).toBe(1);
      expect(g.workers.find((x) => x.id === 'killed-recently')?.live).toBe(false);
      expect(await liveWorkerCount(db.pool, ctx, 'G')).toBe(1);
    } finally {
      await w.stop();
    }
    const { rows } = await db.pool.query(`SELECT id FROM ${ctx.s}.workers`);
    expect(rows.map((r) => r.id)).toEqual(['killed-recently']);
  });
});
