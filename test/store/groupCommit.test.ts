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

  // The batch statement has three shapes (appendBatcher.ts): untagged of one type (its two lock keys
  // as scalars), untagged of several types, tagged. Each must hold every message's lock keys before
  // it draws positions, and keep every append's own outcome.
  for (const shape of ['one type', 'several types', 'tagged'] as const) {
    it(`a batch of ${shape === 'tagged' ? 'tagged messages' : shape} holds its lock keys and keeps each append's outcome`, async () => {
      const store = db.makeStore();
      const prefix = `shape-${shape.replace(' ', '-')}`;
      const type = `${prefix}-T`;
      const make = (i: number) => ({
        type: shape === 'several types' && i % 2 === 1 ? `${prefix}-U` : type,
        data: { i },
        ...(shape === 'tagged' ? { tags: [`${prefix}:${i}`] } : {}),
      });
      for (let i = 0; i < 4; i++) await store.append(`${prefix}-${i}`, { type: 'opened', data: {} });
      // A conditional append on `type` holds its key: every batch with a message of `type` waits.
      const holder = await db.pool.connect();
      let appends: Promise<PromiseSettledResult<unknown>[]>;
      try {
        await holder.query('BEGIN');
        await holder.query(`SELECT pg_advisory_xact_lock("${db.schema}".lock_id($1))`, [`t=${type}\u001f*`]);
        // The first runs alone; the others queue while it waits and go as batches: the second slot's
        // batch must wait too. Two stale appends (version 3 of streams at 1) and two twins (a second
        // append at version 1 of a stream) ride along.
        const all = [
          ...Array.from({ length: 8 }, (_, i) =>
            store.append(`${prefix}-s${i}`, make(i), { expectedVersion: 'no_stream' }),
          ),
          ...[0, 1].map((i) => store.append(`${prefix}-${i}`, make(i), { expectedVersion: 3 })),
          ...[2, 3].map((i) => store.append(`${prefix}-${i}`, make(2 * i), { expectedVersion: 1 })),
          ...[2, 3].map((i) => store.append(`${prefix}-${i}`, make(2 * i + 100), { expectedVersion: 1 })),
        ];
        appends = Promise.allSettled(all);
        await until(
          async () =>
            (await count(
              `SELECT count(*) AS n FROM pg_locks l WHERE l.locktype = 'advisory' AND NOT l.granted
                  AND ((l.classid::bigint << 32) | l.objid::bigint) = "$S".lock_id($1)`,
              [`t=${type}\u001f*`],
            )) === 2,
          'the lone append and a batch waiting for the key',
          10_000,
        );
        expect(
          await count(`SELECT count(*) AS n FROM "$S".messages WHERE stream_name LIKE $1`, [`${prefix}-s%`]),
        ).toBe(0);
        await holder.query('COMMIT');
      } finally {
        await holder.query('ROLLBACK').catch(() => undefined);
        holder.release();
      }
      const results = await appends;
      expect(results.slice(0, 8).map((r) => r.status)).toEqual(Array(8).fill('fulfilled'));
      for (const r of results.slice(8, 10)) {
        expect(r.status).toBe('rejected');
        expect((r as PromiseRejectedResult).reason).toMatchObject({ expected: 3, actual: 1 });
      }
      // Of each pair of twins exactly one won; the other lost to it.
      for (const i of [0, 1]) {
        const pair = [results[10 + i]!, results[12 + i]!];
        expect(pair.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        expect((pair.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(
          WrongExpectedVersionError,
        );
      }
      const written = `SELECT %s FROM "$S".messages WHERE stream_name LIKE $1 AND type <> 'opened'`;
      expect(await count(written.replace('%s', 'count(*) AS n'), [`${prefix}-%`])).toBe(10);
      // Batches formed: fewer transactions than appends.
      expect(
        await count(written.replace('%s', 'count(DISTINCT transaction_id) AS n'), [`${prefix}-%`]),
      ).toBeLessThan(10);
      if (shape === 'tagged')
        expect(
          await count(`SELECT count(*) AS n FROM "$S".message_tags WHERE tag LIKE $1`, [`${prefix}:%`]),
        ).toBe(10);
    });
  }

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
