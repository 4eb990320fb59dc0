import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MessageStore } from '../../src/store/messageStore.js';
import { logEnd, logHead, readableUpTo } from '../../src/store/readLog.js';
import { LOG_START, type LogPosition, type RecordedMessage } from '../../src/store/types.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('gap', { poolSize: 20 });
});
afterAll(async () => db.close());

/** A store bound to a plain client inside an open transaction. */
async function openTransaction(): Promise<{ client: pg.Client; store: MessageStore }> {
  const client = await db.client();
  await client.query('BEGIN');
  return { client, store: db.store.withTransaction(client as unknown as pg.PoolClient) };
}

/**
 * Read from `after` until `count` messages of this test arrived. Other test files share the server,
 * and any transaction they hold open keeps newer commits unreadable for a moment: that delays but
 * must never drop a message, so wait for them (a dropped one fails on the deadline).
 */
async function readUntil(after: LogPosition, count: number, streams: string[]): Promise<RecordedMessage[]> {
  const got: RecordedMessage[] = [];
  let position = after;
  const deadline = Date.now() + 15_000;
  while (got.length < count && Date.now() < deadline) {
    const r = await db.store.readAll({ after: position });
    got.push(...r.messages.filter((m) => streams.includes(m.streamName)));
    position = r.position;
    if (r.messages.length === 0) await new Promise((res) => setTimeout(res, 10));
  }
  return got;
}

async function readEverything(
  after: LogPosition,
): Promise<{ messages: RecordedMessage[]; position: LogPosition }> {
  const all: RecordedMessage[] = [];
  let position = after;
  for (;;) {
    const r = await db.store.readAll({ after: position, limit: 50 });
    all.push(...r.messages);
    position = r.position;
    if (r.messages.length < 50) return { messages: all, position };
  }
}

describe('gap-safe log', () => {
  it('does not move past a position whose transaction commits later, and then reads it in order', async () => {
    const start = (await readEverything(LOG_START)).position;
    // T1 takes the lower position (5 in the words) and stays open...
    const t1 = await openTransaction();
    const r1 = await t1.store.append('gap-a', { type: 'first', data: {} });
    // ...while T2 takes a higher position (6) and commits first.
    const r2 = await db.store.append('gap-b', { type: 'second', data: {} });
    expect(r2.globalPosition).toBeGreaterThan(r1.globalPosition);

    const whileOpen = await readEverything(start);
    // A reader that returned position 6 now would never see 5: it must return neither.
    expect(whileOpen.messages.filter((m) => ['gap-a', 'gap-b'].includes(m.streamName))).toEqual([]);

    await t1.client.query('COMMIT');
    const after = await readUntil(whileOpen.position, 2, ['gap-a', 'gap-b']);
    expect(after.map((m) => m.type)).toEqual(['first', 'second']);
    expect(after.map((m) => m.globalPosition)).toEqual([r1.globalPosition, r2.globalPosition]);
  });

  it('orders by transaction: an older transaction that writes a higher position later is read first, not skipped', async () => {
    const start = (await readEverything(LOG_START)).position;
    const t1 = await openTransaction();
    await t1.client.query('SELECT pg_current_xact_id()'); // T1 gets its transaction id first
    const r2 = await db.store.append('gap-c', { type: 'committed-first', data: {} });
    const seenEarly = await readEverything(start);
    expect(seenEarly.messages.filter((m) => ['gap-c', 'gap-d'].includes(m.streamName))).toEqual([]);
    const r1 = await t1.store.append('gap-d', { type: 'written-later', data: {} });
    expect(r1.globalPosition).toBeGreaterThan(r2.globalPosition);
    await t1.client.query('COMMIT');
    const after = await readUntil(seenEarly.position, 2, ['gap-c', 'gap-d']);
    expect(after.map((m) => m.type)).toEqual(['written-later', 'committed-first']);
  });

  it('a rolled-back transaction leaves a hole that readers pass', async () => {
    const start = (await readEverything(LOG_START)).position;
    const t1 = await openTransaction();
    await t1.store.append('gap-e', { type: 'rolled-back', data: {} });
    await db.store.append('gap-f', { type: 'kept', data: {} });
    await t1.client.query('ROLLBACK');
    await db.store.append('gap-g', { type: 'marker', data: {} });
    const after = await readUntil(start, 2, ['gap-e', 'gap-f', 'gap-g']);
    expect(after.map((m) => m.type)).toEqual(['kept', 'marker']);
  });

  it('a reader tailing during 8 concurrent writers with delayed commits sees every message exactly once', async () => {
    const start = (await readEverything(LOG_START)).position;
    const writers = 8;
    const perWriter = 40;
    let done = false;
    const seen: RecordedMessage[] = [];
    const expected = writers * perWriter;
    const reader = (async () => {
      let position = start;
      // Keep reading until everything arrived: any open transaction on the server (other test
      // files run beside this one) may hold the last messages back for a while, but a skipped
      // message would never arrive and the deadline fails the test.
      let deadline = Number.POSITIVE_INFINITY;
      while (seen.length < expected && Date.now() < deadline) {
        if (done && deadline === Number.POSITIVE_INFINITY) deadline = Date.now() + 15_000;
        const r = await db.store.readAll({ after: position, limit: 37 });
        seen.push(...r.messages);
        position = r.position;
        if (r.messages.length === 0) await new Promise((res) => setTimeout(res, 5));
      }
      // One more read: nothing beyond the expected messages may show up.
      seen.push(
        ...(await db.store.readAll({ after: position })).messages.filter((m) =>
          m.streamName.startsWith('tail-'),
        ),
      );
    })();
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        const client = await db.pool.connect();
        try {
          for (let i = 0; i < perWriter; i++) {
            await client.query('BEGIN');
            await db.store.withTransaction(client).append(`tail-${w}`, { type: 'tick', data: { w, i } });
            // Hold some commits open so later positions commit first.
            if (i % 3 === 0) await new Promise((r) => setTimeout(r, 2 + ((w * 7 + i) % 5)));
            await client.query('COMMIT');
          }
        } finally {
          client.release();
        }
      }),
    );
    done = true;
    await reader;
    const keys = seen.map((m) => `${(m.data as { w: number }).w}:${(m.data as { i: number }).i}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toHaveLength(expected);
    // Within each stream, the log order is the stream order.
    for (let w = 0; w < writers; w++) {
      const positions = seen.filter((m) => m.streamName === `tail-${w}`).map((m) => m.streamPosition);
      expect(positions).toEqual(Array.from({ length: perWriter }, (_, i) => i + 1));
    }
  });
});

describe('wake-up notifications', () => {
  it('NOTIFYs after commit, coalesced, with a wake-up after the last append', async () => {
    const listener = await db.client();
    let count = 0;
    let lastAt = 0;
    listener.on('notification', () => {
      count++;
      lastAt = Date.now();
    });
    await listener.query(`LISTEN beckett_${db.schema}`);
    const appends = 200;
    await Promise.all(
      Array.from({ length: appends }, (_, i) =>
        db.store.append(`notify-${i % 10}`, { type: 'n', data: { i } }),
      ),
    );
    const lastAppendAt = Date.now();
    // Let the coalesced NOTIFY in flight (and the one queued behind it) arrive.
    for (let i = 0; i < 100 && lastAt < lastAppendAt; i++) await new Promise((r) => setTimeout(r, 20));
    expect(count).toBeGreaterThanOrEqual(1);
    expect(lastAt).toBeGreaterThanOrEqual(lastAppendAt - 5);
    expect(count).toBeLessThan(appends);
  });
});

describe('readableUpTo', () => {
  it('reaches the head once everything is final, even when transaction order and position order differ', async () => {
    const t1 = await openTransaction();
    const t1Xid = BigInt(
      (await t1.client.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x,
    ); // older transaction id...
    const early = await db.store.append('upto-a', { type: 'x', data: {} }); // ...lower position, newer transaction
    // While T1 runs, nothing from its transaction id on is final.
    expect(await readableUpTo(db.pool, db.store.sqlContext)).toBeLessThan(early.globalPosition);
    const late = await t1.store.append('upto-b', { type: 'x', data: {} }); // higher position, older transaction
    await t1.client.query('COMMIT');
    expect(late.globalPosition).toBeGreaterThan(early.globalPosition);
    // Other test files may hold a transaction open for a moment: wait until everything is final.
    let readable = 0;
    for (let i = 0; i < 300 && readable < late.globalPosition; i++) {
      readable = await readableUpTo(db.pool, db.store.sqlContext);
      if (readable < late.globalPosition) await new Promise((r) => setTimeout(r, 20));
    }
    expect(readable).toBe(await logHead(db.pool, db.store.sqlContext));
    // The resume cursor is the last message in transaction order: here the lower position (once
    // no other file's transaction holds the snapshot's xmin back).
    let end = await logEnd(db.pool, db.store.sqlContext);
    for (let i = 0; i < 300 && BigInt(end.transactionId) <= t1Xid; i++) {
      await new Promise((r) => setTimeout(r, 20));
      end = await logEnd(db.pool, db.store.sqlContext);
    }
    expect(end.globalPosition).toBe(early.globalPosition);
  });
});
