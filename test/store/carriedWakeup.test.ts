import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { messageLockKeys } from '../../src/consistency/lockKeys.js';
import { Query } from '../../src/consistency/query.js';
import { createPool } from '../../src/db/pool.js';
import { WrongExpectedVersionError } from '../../src/errors.js';
import { QueueNotifier, queueNotifierFor } from '../../src/queues/queueWakeups.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import { channelFor, Notifier, WakeupCarrier } from '../../src/store/notifications.js';
import { databaseUrl, setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

/*
 * An append on the store's pool carries its wake-up in its own round trip when one is due: BEGIN,
 * the append, COMMIT, then the NOTIFY in a transaction of its own. A reader is woken as the append
 * resolves (not one round trip later), the NOTIFY commits after the append (the reader it wakes sees
 * the message), and the store sends no NOTIFY of its own for it.
 */
let db: TestDb;
beforeAll(async () => {
  db = await setupDb('carried_wakeup');
});
afterAll(async () => db.close());

/** A pool of one connection whose pool.query NOTIFYs are counted (the store's own wake-ups). */
function countingPool(max = 1): { pool: pg.Pool; notifies: () => number } {
  const pool = createPool(databaseUrl(), { max });
  let notifies = 0;
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const first = args[0] as string | { text?: string };
    const text = typeof first === 'string' ? first : (first?.text ?? '');
    if (text.includes('pg_notify')) notifies++;
    return query(...args);
  };
  return { pool, notifies: () => notifies };
}

/** A connection LISTENing on the schema's channel, and the payloads it received. */
async function listenPayloads(): Promise<{ listener: pg.Client; payloads: string[] }> {
  const listener = await db.client();
  const payloads: string[] = [];
  listener.on('notification', (n) => payloads.push(n.payload ?? ''));
  await listener.query(`LISTEN "${channelFor(db.schema)}"`);
  return { listener, payloads };
}

/** Backends waiting for a lock that the backend `pid` holds (other test files run beside this one). */
async function blockedBy(pid: number): Promise<number> {
  const c = await db.client();
  try {
    const { rows } = await c.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))',
      [pid],
    );
    return rows[0]!.n;
  } finally {
    await c.end();
  }
}

/** At each wake-up, how many messages a reader then sees in the streams named like `streams`. */
async function listen(streams = 'carried-1'): Promise<{ seen: number[]; close: () => Promise<void> }> {
  const listener = await db.client();
  const reader = await db.client();
  const seen: number[] = [];
  const reads: Promise<unknown>[] = [];
  // At each wake-up, what a reader then sees of the stream: the append it announces is committed.
  listener.on('notification', () => {
    reads.push(
      reader
        .query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "${db.schema}".messages WHERE stream_name LIKE $1`,
          [streams],
        )
        .then((r) => seen.push(r.rows[0]!.n)),
    );
  });
  await listener.query(`LISTEN "${channelFor(db.schema)}"`);
  return {
    seen,
    close: async () => {
      await listener.end();
      // A read started by a late wake-up finishes before its connection closes.
      await Promise.all(reads);
      await reader.end();
    },
  };
}

describe('a wake-up carried by the append', () => {
  const appends: { name: string; stream: string; append: (store: MessageStore) => Promise<unknown> }[] = [
    {
      name: 'wakes listeners once, after the append committed, with no NOTIFY of the store its own',
      stream: 'carried-1',
      append: (store) => store.append('carried-1', { type: 'x', data: {} }),
    },
    {
      name: 'a conditional append on the pool carries its wake-up the same way',
      stream: 'carried-cond',
      append: (store) =>
        appendWithCondition(
          store,
          [{ stream: 'carried-cond', messages: { type: 'x', data: {}, tags: ['t:1'] }, expectedVersion: 0 }],
          { failIfEventsMatch: Query.of({ types: ['x'], tags: ['t:1'] }) },
        ),
    },
  ];
  for (const c of appends)
    it(c.name, async () => {
      const { pool, notifies } = countingPool();
      const store = createMessageStore({ pool, schema: db.schema });
      const l = await listen(c.stream);
      try {
        await c.append(store);
        await until(() => l.seen.length >= 1, 'a wake-up');
        expect(l.seen[0]).toBe(1);
        // close() sends any wake-up still owed: there is none.
        await store.close();
        expect(notifies()).toBe(0);
        expect(l.seen).toEqual([1]);
      } finally {
        await l.close();
        await pool.end();
      }
    });

  it('conditional appends group-committed together are all announced, the batch carrying the wake-up', async () => {
    // One connection: the first append runs alone, the nine queued behind it run in batches.
    const { pool, notifies } = countingPool();
    const store = createMessageStore({ pool, schema: db.schema });
    const l = await listen('carried-conds-%');
    try {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          appendWithCondition(
            store,
            [
              {
                stream: `carried-conds-${i}`,
                messages: { type: 'x', data: {}, tags: [`c:${i}`] },
                expectedVersion: 0,
              },
            ],
            { failIfEventsMatch: Query.of({ types: ['x'], tags: [`c:${i}`] }) },
          ),
        ),
      );
      // The last wake-up comes after every append committed (close() sends one still owed).
      await store.close();
      await until(() => l.seen.includes(10), 'a wake-up after the last append');
      // The first append carried a wake-up; the batch carried one too, or owed one, sent on its
      // own (announced once per append instead: two or more).
      expect(notifies()).toBeLessThanOrEqual(1);
    } finally {
      await l.close();
      await pool.end();
    }
  });

  it('a writer appending without pause carries its wake-ups: a NOTIFY on its own only at the end', async () => {
    // One writer, one append after the other, each shorter than the window: a wake-up that comes
    // due while an append is in flight goes out with the next append, not in a round trip of its
    // own beside it (which, sent at once, would leave the next append nothing to carry: one NOTIFY
    // of its own per window for as long as the writer writes).
    const { pool, notifies } = countingPool(2);
    const store = createMessageStore({ pool, schema: db.schema });
    const { listener, payloads } = await listenPayloads();
    try {
      for (let batch = 0; batch < 2; batch++) {
        const started = performance.now();
        let version = 0;
        // Singles, then batches of 50 (a batch takes longer than the window: each one carries).
        while (performance.now() - started < 300) {
          const messages = Array.from({ length: batch === 0 ? 1 : 50 }, () => ({ type: 'x', data: {} }));
          const r = await store.append(`steady-${batch}`, messages, { expectedVersion: version });
          version = r.streamVersion;
        }
      }
      await store.close();
      await until(() => payloads.length >= 1, 'a wake-up');
      // A wake-up of its own costs a transaction on the server and a round trip beside the
      // writer's. A few are allowed (an append that outlasts the window sends one).
      // Carried, about one wake-up per window (130 here); on their own, before, one in two (70).
      expect(payloads.length).toBeGreaterThan(20);
      expect(notifies()).toBeLessThan(payloads.length / 5);
    } finally {
      await listener.end();
      await pool.end();
    }
  });

  it('a write that hangs does not hold back the wake-up of another: it goes out within a window', async () => {
    // Writer A's append waits for a lock while writer B appends. A wake-up B owes comes due while
    // A is in flight: it may wait for A to carry it, but only one more window, not for as long as
    // A hangs.
    const { pool } = countingPool(3);
    const store = createMessageStore({ pool, schema: db.schema });
    const { listener, payloads } = await listenPayloads();
    const locker = await db.client();
    const [, typeKey] = messageLockKeys({ type: 'blocked' });
    await locker.query(`SELECT pg_advisory_lock("${db.schema}".lock_id($1))`, [typeKey]);
    const lockerPid = (await locker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    try {
      await store.append('hang-b', { type: 'x', data: {} });
      await until(() => payloads.length === 1, 'the first wake-up');
      const hanging = store.append('hang-a', { type: 'blocked', data: {} });
      await until(async () => (await blockedBy(lockerPid)) === 1, 'writer A waiting for the lock');
      // Two appends of B at once: the first carries a wake-up, the second, inside its window, owes
      // one.
      await Promise.all([
        store.append('hang-b', { type: 'x', data: {} }),
        store.append('hang-c', { type: 'x', data: {} }),
      ]);
      await until(() => payloads.length === 3, 'the wake-up of the third append');
      expect(await blockedBy(lockerPid)).toBe(1);
      await locker.query('SELECT pg_advisory_unlock_all()');
      await hanging;
    } finally {
      await locker.end();
      await listener.end();
      await store.close();
      await pool.end();
    }
  });

  it('flush() sends the wake-up asked for while another was in flight before it returns', async () => {
    // The pool's only connection is held: the first NOTIFY waits for it (in flight), the second
    // is asked for meanwhile, inside the window (long here) of the first. flush(), as the store's
    // close() runs it, must send the second once the first is back, not leave it to the window's
    // timer, which a closed notifier no longer honours.
    const { pool, notifies } = countingPool();
    const notifier = new Notifier(pool, createMessageStore({ pool, schema: db.schema }).sqlContext, 60_000);
    const { listener, payloads } = await listenPayloads();
    const held = await pool.connect();
    try {
      notifier.notify();
      await until(() => notifies() === 1, 'the first NOTIFY sent');
      notifier.notify();
      const flushed = notifier.flush();
      held.release();
      await flushed;
      notifier.close();
      expect(notifies()).toBe(2);
      await until(() => payloads.length === 2, 'both wake-ups');
    } finally {
      await listener.end();
      await pool.end();
    }
  });

  it('a failed append on a carried round trip writes nothing, leaves its connection usable and owes the wake-up', async () => {
    const { pool, notifies } = countingPool();
    const store = createMessageStore({ pool, schema: db.schema });
    try {
      // The first append of a store is due a wake-up: it takes it, and fails.
      await expect(
        store.append('carried-missing', { type: 'x', data: {} }, { expectedVersion: 'stream_exists' }),
      ).rejects.toBeInstanceOf(WrongExpectedVersionError);
      expect(
        (await db.pool.query(`SELECT 1 FROM "${db.schema}".messages WHERE stream_name = 'carried-missing'`))
          .rowCount,
      ).toBe(0);
      // The pool's one connection was handed back outside any transaction.
      const { rows } = await pool.query<{ s: string }>(
        `SELECT pg_current_xact_id_if_assigned() IS NULL AS s`,
      );
      expect(rows[0]!.s).toBe(true);
      await expect(store.append('carried-2', { type: 'x', data: {} })).resolves.toMatchObject({
        streamVersion: 1,
      });
      await store.close();
      // The failed append's wake-up was owed again and sent by the store itself.
      expect(notifies()).toBeGreaterThanOrEqual(1);
    } finally {
      await pool.end();
    }
  });

  it('an enqueue on the pool carries its queue wake-up the same way', async () => {
    const { pool, notifies } = countingPool();
    const store = createMessageStore({ pool, schema: db.schema });
    const { listener, payloads } = await listenPayloads();
    try {
      await store.enqueue('carried', { type: 'job', data: {} });
      await until(() => payloads.includes('queue:carried'), 'the queue wake-up');
      await queueNotifierFor(pool, { schema: db.schema, s: `"${db.schema}"`, prepared: true }).flush();
      await store.close();
      expect(notifies()).toBe(0);
      expect(payloads.filter((p) => p === 'queue:carried')).toHaveLength(1);
    } finally {
      await listener.end();
      await pool.end();
    }
  });

  it('enqueues one after the other each carry their own wake-up: none waits for a window', async () => {
    const { pool, notifies } = countingPool();
    const store = createMessageStore({ pool, schema: db.schema });
    const { listener, payloads } = await listenPayloads();
    try {
      // Back to back, well within any window a wake-up could be held for.
      for (let i = 0; i < 5; i++) await store.enqueue('back-to-back', { type: 'job', data: { i } });
      await until(() => payloads.filter((p) => p === 'queue:back-to-back').length === 5, 'five wake-ups');
      await queueNotifierFor(pool, { schema: db.schema, s: `"${db.schema}"`, prepared: true }).flush();
      await store.close();
      // Every one went out in its enqueue's round trip, none later on its own.
      expect(notifies()).toBe(0);
    } finally {
      await listener.end();
      await pool.end();
    }
  });

  it('a queue wake-up asked for while one is in flight goes out once that one is back', async () => {
    // The pool's only connection is held, so the first NOTIFY stays in flight (waiting for it).
    const pool = createPool(databaseUrl(), { max: 1 });
    const notifier = new QueueNotifier(pool, { schema: db.schema, s: `"${db.schema}"`, prepared: true });
    const { listener, payloads } = await listenPayloads();
    const held = await pool.connect();
    try {
      notifier.notify('first');
      notifier.notify('second');
      held.release();
      // No flush(): the second is sent by the first's return alone.
      await until(() => payloads.includes('queue:second'), 'the wake-up asked for meanwhile');
      expect(payloads.filter((p) => p.startsWith('queue:'))).toEqual(['queue:first', 'queue:second']);
    } finally {
      await listener.end();
      await pool.end();
    }
  });
});

describe('a write carrying its wake-up', () => {
  it('stands when only the NOTIFY after its COMMIT fails, whatever statements set up its transaction', async () => {
    await db.pool.query(`CREATE TABLE "${db.schema}".carried_rows (n int)`);
    let owed = 0;
    // A wake-up whose statement fails: it runs after the write's COMMIT.
    const failing = { claim: () => ({ text: 'SELECT 1 / 0' }), owe: () => void owed++ };
    const carrier = new WakeupCarrier(db.pool, failing);
    const r = await carrier.queryAll<{ n: number }>([
      { text: "SELECT set_config('application_name', 'carried_rows', true)" },
      { text: `INSERT INTO "${db.schema}".carried_rows VALUES (7) RETURNING n` },
    ]);
    expect(r.rows).toEqual([{ n: 7 }]);
    expect(owed).toBe(1);
    const { rows } = await db.pool.query(`SELECT n FROM "${db.schema}".carried_rows`);
    expect(rows).toEqual([{ n: 7 }]);
  });
});
