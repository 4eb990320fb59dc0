import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WrongExpectedVersionError } from '../../src/errors.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('group_commit', { poolSize: 10 });
});
afterAll(async () => db.close());

async function count(sql: string, values: unknown[] = []): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(sql.replaceAll('$S', db.schema), values);
  return Number(rows[0]?.n ?? 0);
}

describe('group commit of single appends on the store pool', () => {
  it('shares transactions between concurrent appends, each with its own outcome', async () => {
    const store = db.makeStore();
    for (let i = 0; i < 20; i++) await store.append(`gc-${i}`, { type: 'opened', data: { i } });
    // Forty appends at once: twenty at the right version, ten stale (version 5 of a stream at 1),
    // and ten more for streams the first twenty also append to (only one of each pair can win).
    const right = Array.from({ length: 20 }, (_, i) =>
      store.append(`gc-${i}`, { type: 'moved', data: { i }, tags: [`gc:${i}`] }, { expectedVersion: 1 }),
    );
    const stale = Array.from({ length: 10 }, (_, i) =>
      store.append(`gc-${i}`, { type: 'moved', data: { i } }, { expectedVersion: 5 }),
    );
    const twins = Array.from({ length: 10 }, (_, i) =>
      store.append(`gc-${i + 10}`, { type: 'twin', data: { i } }, { expectedVersion: 1 }),
    );
    const [r, s, t] = await Promise.all([right, stale, twins].map((ps) => Promise.allSettled(ps)));
    for (const x of s!) {
      expect(x.status).toBe('rejected');
      expect((x as PromiseRejectedResult).reason).toBeInstanceOf(WrongExpectedVersionError);
      expect((x as PromiseRejectedResult).reason).toMatchObject({ expected: 5 });
    }
    const won = [...r!, ...t!].filter((x) => x.status === 'fulfilled');
    expect(won).toHaveLength(20); // one per stream
    for (const x of [...r!, ...t!].filter((x) => x.status === 'rejected'))
      expect((x as PromiseRejectedResult).reason).toMatchObject({ expected: 1, actual: 2 });
    expect(await count(`SELECT count(*) AS n FROM "$S".messages WHERE stream_position = 2`)).toBe(20);
    // Batches formed: fewer transactions than appends.
    expect(
      await count(`SELECT count(DISTINCT transaction_id) AS n FROM "$S".messages WHERE stream_position = 2`),
    ).toBeLessThan(20);
    // Tagged ones got their message_tags rows, whichever way they went.
    const taggedWon = await count(
      `SELECT count(*) AS n FROM "$S".messages WHERE stream_position = 2 AND type = 'moved'`,
    );
    expect(await count(`SELECT count(*) AS n FROM "$S".message_tags WHERE tag LIKE 'gc:%'`)).toBe(taggedWon);
  });

  it('a payload PostgreSQL refuses fails only its own append', async () => {
    const store = db.makeStore();
    // jsonb refuses \u0000: the batch statement fails and its appends run again one by one.
    const all = Array.from({ length: 12 }, (_, i) =>
      store.append(`bad-${i}`, { type: 'x', data: { s: i === 6 ? '\u0000' : 'ok' } }, { expectedVersion: 0 }),
    );
    const results = await Promise.allSettled(all);
    expect(results.map((x) => x.status)).toEqual(results.map((_, i) => (i === 6 ? 'rejected' : 'fulfilled')));
    expect(await count(`SELECT count(*) AS n FROM "$S".messages WHERE stream_name LIKE 'bad-%'`)).toBe(11);
  });

  it('announces group-committed appends: a wake-up after the last one, far fewer than appends', async () => {
    const listener = await db.client();
    let count = 0;
    let lastAt = 0;
    listener.on('notification', () => {
      count++;
      lastAt = Date.now();
    });
    await listener.query(`LISTEN beckett_${db.schema}`);
    const store = db.makeStore();
    for (const round of [0, 1]) {
      // Round 0: 200 concurrent appends (batches); round 1: 50 one after another (alone).
      // A wake-up follows the last commit: it may arrive before append() resolves (an append's round
      // trip can carry it), never before the last append was sent.
      let lastSentAt = Date.now();
      if (round === 0)
        await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            store.append(`wake-${i}`, { type: 'n', data: { i } }, { expectedVersion: 'no_stream' }),
          ),
        );
      else
        for (let i = 0; i < 50; i++) {
          lastSentAt = Date.now();
          await store.append(`wake-${i}`, { type: 'n', data: { i } }, { expectedVersion: 1 });
        }
      await until(() => lastAt >= lastSentAt, `a wake-up after the last append of round ${round}`, 2_000);
    }
    expect(count).toBeGreaterThanOrEqual(2);
    expect(count).toBeLessThan(250);
  });

  it('owes no wake-up: an append inside the window of the last one gets one after the window', async () => {
    const store = db.makeStore();
    await new Promise((r) => setTimeout(r, 50)); // earlier tests' trailing wake-ups
    const listener = await db.client();
    let count = 0;
    listener.on('notification', () => count++);
    await listener.query(`LISTEN beckett_${db.schema}`);
    // The first append after a quiet spell is announced at once; the second, right after it, is
    // inside the coalescing window: the notifier must still send one for it when the window ends
    // (or at once, if the machine was slow enough). Either way: two.
    await store.append('owed-1', { type: 'n', data: {} }, { expectedVersion: 'no_stream' });
    await store.append('owed-2', { type: 'n', data: {} }, { expectedVersion: 'no_stream' });
    await until(() => count >= 2, 'a wake-up for each append', 2_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(count).toBe(2);
  });
});
