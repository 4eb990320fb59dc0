import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import { createPool } from '../../src/db/pool.js';
import { createQueueWorker } from '../../src/queues/queueWorker.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';

/*
 * A listen URL (a direct connection for LISTEN behind PgBouncer) that reaches another database
 * than the database URL: its LISTEN succeeds and never hears a notification. Workers refuse it at
 * start instead of losing every wake-up in silence.
 */
let db: TestDb;
const other = `beckett_listen_${randomBytes(4).toString('hex')}`;
beforeAll(async () => {
  db = await setupDb('lurl');
  await db.pool.query(`CREATE DATABASE ${other}`);
});
afterAll(async () => {
  await db?.pool.query(`DROP DATABASE IF EXISTS ${other}`).catch(() => undefined);
  await db?.close();
});

describe('a listen URL', () => {
  it('that names another database is refused by the subscription and queue workers; the right one is taken', async () => {
    const config = resolveConfig({
      database: { schema: db.schema },
      groups: { G: { subscriptions: { s: { category: 'lu', handler: () => undefined } } } },
      queues: { q: { handler: () => undefined } },
    });
    const elsewhere = new URL(db.url);
    elsewhere.pathname = `/${other}`;
    const wrong = createPool(db.url, { max: 4, listenUrl: elsewhere.toString() });
    const right = createPool(db.url, { max: 4, listenUrl: db.url });
    try {
      const refused = {
        code: 'CONFIG_INVALID',
        message: expect.stringMatching(`names the database "${other}"`),
      };
      await expect(createWorker({ pool: wrong, config, group: 'G' }).start()).rejects.toMatchObject(refused);
      await expect(createQueueWorker({ pool: wrong, config, queues: ['q'] }).start()).rejects.toMatchObject(
        refused,
      );
      const w = createWorker({ pool: right, config, group: 'G' });
      const q = createQueueWorker({ pool: right, config, queues: ['q'] });
      await w.start();
      await q.start();
      await q.stop();
      await w.stop();
    } finally {
      await wrong.end();
      await right.end();
    }
  });
});
