import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool } from '../../src/db/pool.js';
import { databaseUrl, setupDb, type TestDb } from '../helpers/db.js';
import { configWith, startWorker, until } from './helpers.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('idlec');
});
afterAll(async () => {
  await db?.close();
});

/** A pool for the worker alone that counts the claims sent on their own (not with a completion). */
function countingPool(): { pool: pg.Pool; claims: () => number; quietFor: () => number } {
  const pool = createPool(databaseUrl(), { max: 10 });
  let claims = 0;
  let last = performance.now();
  const query = pool.query.bind(pool) as (...a: unknown[]) => unknown;
  (pool as { query: unknown }).query = (...a: unknown[]) => {
    const config = a[0] as { name?: string } | string;
    if (typeof config === 'object' && config.name?.includes('claim_checkpoints')) {
      claims++;
      last = performance.now();
    }
    return query(...a);
  };
  return { pool, claims: () => claims, quietFor: () => performance.now() - last };
}

describe('consumers of an idle worker', () => {
  /*
   * One message at a time to a worker of eight consumers: the reader claims each stream in the
   * round that dispatches it and hands it over. Each handover used to wake the seven idle siblings
   * to claim (the claim that came with the handover had already taken all there was), and a
   * consumer whose completion's claim had just found nothing asked again at once: eight or more
   * claims sent on their own per message, each finding nothing, competing with the next message's
   * round for the machine.
   */
  it('do not ask the database again for work it just said was not there', async () => {
    const handled: string[] = [];
    const config = configWith(db.schema, {
      s: { category: 'ic', handler: (m) => void handled.push(m.streamName) },
    });
    const { pool, claims, quietFor } = countingPool();
    // Polls rare and far apart: what is counted is what the consumers do when told of work.
    const w = startWorker(db, config, { pool, concurrency: 8, maxPollMs: 60_000 });
    await w.start();
    try {
      // Idle consumers poll 20 ms after they start, then 40, 80, ...: past that ramp first.
      await until(() => quietFor() > 600, 'the idle consumers polling slowly', 10_000);
      const messages = 20;
      const before = claims();
      for (let i = 1; i <= messages; i++) {
        await db.store.append(`ic-${i}`, { type: 't', data: {} });
        await until(() => handled.includes(`ic-${i}`), `ic-${i} handled`);
      }
      const sent = claims() - before;
      // (The last completion is recorded just after its handler returns.)
      await until(() => w.stats().processed === messages, 'every message recorded as processed');
      // What remains is the idle polls of the consumer that just worked (20 ms after, then 40, ...).
      expect(sent, `${sent} claims sent on their own for ${messages} messages`).toBeLessThan(messages * 3);
      expect(w.errors).toEqual([]);
    } finally {
      await w.stop();
      await pool.end();
    }
  });
});
