import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { message } from '../../src/config/types.js';
import { createPool } from '../../src/db/pool.js';
import { InvalidInputError, MessageValidationError } from '../../src/errors.js';
import { deliverDueMessages } from '../../src/scheduling/deliverScheduled.js';
import {
  cancelScheduledMessage,
  handlerScheduling,
  idFromKey,
  listScheduledMessages,
  scheduleMessage,
} from '../../src/scheduling/scheduleMessage.js';
import { createSchedulerService } from '../../src/scheduling/schedulerService.js';
import { createMessageStore } from '../../src/store/messageStore.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('sched', { poolSize: 20 });
});
afterAll(async () => db.close());

const past = () => new Date(Date.now() - 1000);

async function countMessages(where = 'true', params: unknown[] = []): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM "${db.schema}".messages WHERE ${where}`,
    params,
  );
  return rows[0]!.n;
}

async function pendingCount(streamLike: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM "${db.schema}".scheduled_messages WHERE stream_name LIKE $1`,
    [streamLike],
  );
  return rows[0]!.n;
}

/** Hold a stream's append lock (the advisory lock append_to_stream takes) on a client of its own. */
async function holdStreamLock(stream: string): Promise<pg.Client> {
  const c = await db.client();
  await c.query('BEGIN');
  await c.query(`SELECT pg_advisory_xact_lock(hashtextextended('beckett.stream:' || $1, 0))`, [stream]);
  return c;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('scheduleMessage and delivery', () => {
  it('appends a due message with the scheduled id and leaves future ones pending', async () => {
    const due = await scheduleMessage(
      db.store,
      'order-s1',
      { type: 'payment_timed_out', data: { n: 1 } },
      { at: past() },
    );
    const later = await scheduleMessage(
      db.store,
      'order-s1',
      { type: 'reminder', data: {} },
      { delay: 60_000 },
    );
    const r = await deliverDueMessages(db.store);
    expect(r.delivered).toBeGreaterThanOrEqual(1);
    const msgs = await db.store.readStream('order-s1');
    expect(msgs.map((m) => [m.id, m.type, m.data])).toEqual([[due, 'payment_timed_out', { n: 1 }]]);
    expect(msgs[0]!.metadata.scheduledAt).toBeTypeOf('string');
    const pending = await listScheduledMessages(db.store, { stream: 'order-s1' });
    expect(pending.map((p) => p.id)).toEqual([later]);
    // The delay is counted on the database clock.
    expect(pending[0]!.deliverAt.getTime()).toBeGreaterThan(Date.now() + 50_000);
  });

  it('validates input and data when scheduling, not when delivering', async () => {
    const store = db.makeStore({
      messages: { priced: message(z.object({ price: z.number() })) },
    });
    await expect(scheduleMessage(store, 'bad stream', { type: 'x', data: {} }, { delay: 1 })).rejects.toThrow(
      InvalidInputError,
    );
    await expect(
      scheduleMessage(store, 'p-1', { type: 'priced', data: { price: 'no' } }, { delay: 1 }),
    ).rejects.toThrow(MessageValidationError);
    await expect(scheduleMessage(store, 'p-1', { type: 'x', data: {} }, { delay: -5 })).rejects.toThrow(
      InvalidInputError,
    );
    await expect(
      scheduleMessage(store, 'p-1', { type: 'x', data: {} }, { at: new Date('nope') }),
    ).rejects.toThrow(InvalidInputError);
    expect(await listScheduledMessages(store, { stream: 'p-1' })).toEqual([]);
  });

  it('cancels a pending message (true) and reports false for unknown or delivered ones', async () => {
    const id = await scheduleMessage(db.store, 'order-c1', { type: 't', data: {} }, { at: past() });
    expect(await cancelScheduledMessage(db.store, id)).toBe(true);
    expect(await cancelScheduledMessage(db.store, id)).toBe(false);
    await deliverDueMessages(db.store);
    expect(await db.store.readStream('order-c1')).toEqual([]);

    const delivered = await scheduleMessage(db.store, 'order-c2', { type: 't', data: {} }, { at: past() });
    await deliverDueMessages(db.store);
    expect(await cancelScheduledMessage(db.store, delivered)).toBe(false);
    expect(await cancelScheduledMessage(db.store, idFromKey('never scheduled'))).toBe(false);
    await expect(cancelScheduledMessage(db.store, 'not-a-uuid')).rejects.toThrow(InvalidInputError);
  });

  it('appends a message scheduled again after its delivery only once (its id is the idempotency key)', async () => {
    const id = idFromKey('order-d1:timeout');
    await scheduleMessage(db.store, 'order-d1', { id, type: 't', data: {} }, { at: past() });
    // Scheduling a pending id again is a no-op.
    await scheduleMessage(db.store, 'order-d1', { id, type: 't', data: {} }, { at: past() });
    expect((await listScheduledMessages(db.store, { stream: 'order-d1' })).length).toBe(1);
    await deliverDueMessages(db.store);
    await scheduleMessage(db.store, 'order-d1', { id, type: 't', data: {} }, { at: past() });
    const r = await deliverDueMessages(db.store);
    expect(r.duplicates).toBe(1);
    expect((await db.store.readStream('order-d1')).length).toBe(1);
    expect(await listScheduledMessages(db.store, { stream: 'order-d1' })).toEqual([]);
  });

  it('a handler that is retried schedules its message once, with correlation and causation', async () => {
    await db.store.append('order-h1', { type: 'order_placed', data: {} });
    const [cause] = await db.store.readStream('order-h1');
    const ids = new Set<string>();
    for (let attempt = 1; attempt <= 3; attempt++) {
      const s = handlerScheduling(db.store, cause!, { subscription: 'Payments' });
      ids.add(await s.schedule('order-h1', { type: 'payment_timed_out', data: {} }, { delay: 60_000 }));
    }
    expect(ids.size).toBe(1);
    const [pending] = await listScheduledMessages(db.store, { stream: 'order-h1' });
    expect(pending!.metadata).toMatchObject({ causationId: cause!.id, correlationId: cause!.id });
    const s = handlerScheduling(db.store, cause!, { subscription: 'Payments' });
    expect(await s.cancelScheduled([...ids][0]!)).toBe(true);
  });

  it('a message whose append fails is retried later and does not block the others', async () => {
    const strict = db.makeStore({ messages: { strict_type: message(z.object({ ok: z.literal(true) })) } });
    // Scheduled through a store without the schema: the delivering store refuses the data.
    const bad = await scheduleMessage(
      db.store,
      'order-f1',
      { type: 'strict_type', data: { ok: false } },
      { at: past() },
    );
    const good = await scheduleMessage(db.store, 'order-f2', { type: 'other', data: {} }, { at: past() });
    const r = await deliverDueMessages(strict);
    expect(r.failed).toBe(1);
    expect((await db.store.readStream('order-f2')).map((m) => m.id)).toEqual([good]);
    const [row] = await listScheduledMessages(db.store, { stream: 'order-f1' });
    expect(row!.id).toBe(bad);
    expect(row!.attempts).toBe(1);
    expect(row!.lastError).toMatch(/strict_type/);
    expect(row!.deliverAt.getTime()).toBeGreaterThan(Date.now());
    expect(await cancelScheduledMessage(db.store, bad)).toBe(true);
  });
});

describe('delivery under concurrency and crashes', () => {
  it('delivers every message exactly once with two concurrent loops and a delivery killed mid-transaction', async () => {
    const N = 150;
    const ids: string[] = [];
    for (let i = 0; i < N; i++)
      ids.push(
        await scheduleMessage(
          db.store,
          i === 0 ? 'crash-victim' : `crash-${i % 10}`,
          { type: 'due', data: { i } },
          { at: past() },
        ),
      );

    // The victim claims the 20 oldest rows, then blocks inside its transaction on the lock we hold
    // on the first one's stream (a stream no other row uses).
    const victimPool = createPool(db.url, { max: 2, applicationName: `victim_${db.schema}` });
    const victim = createMessageStore({ pool: victimPool, schema: db.schema });
    const lock = await holdStreamLock('crash-victim');
    const victimRun = deliverDueMessages(victim, { limit: 20 }).then(
      () => 'finished',
      () => 'killed',
    );
    await waitFor('the victim to block on the stream lock', async () => {
      const { rows } = await db.pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
        [`victim_${db.schema}`],
      );
      return rows.length > 0;
    });
    // Two loops run while the victim holds its claimed rows.
    const counts = [0, 0];
    const loop = async (k: number) => {
      for (;;) {
        const r = await deliverDueMessages(db.store, { limit: 5 });
        counts[k]! += r.delivered;
        if (r.claimed === 0) return;
      }
    };
    await Promise.all([loop(0), loop(1)]);
    expect(counts[0]! + counts[1]!).toBe(N - 20);
    expect(counts[0]).toBeGreaterThan(0);
    expect(counts[1]).toBeGreaterThan(0);
    expect(await pendingCount('crash-%')).toBe(20);

    await db.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`,
      [`victim_${db.schema}`],
    );
    expect(await victimRun).toBe('killed');
    await lock.query('ROLLBACK');
    await victimPool.end().catch(() => undefined);

    // Nothing of the killed transaction was appended; its rows are delivered by the survivors.
    expect(await countMessages(`stream_name LIKE 'crash-%'`)).toBe(N - 20);
    await Promise.all([loop(0), loop(1)]);
    expect(await pendingCount('crash-%')).toBe(0);
    const { rows } = await db.pool.query<{ id: string; n: number }>(
      `SELECT id::text, count(*)::int AS n FROM "${db.schema}".messages WHERE stream_name LIKE 'crash-%' GROUP BY id`,
    );
    expect(rows.length).toBe(N);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(ids));
    expect(await countMessages(`stream_name LIKE 'crash-%'`)).toBe(N);
  });

  it('a cancel racing a delivery that holds the row waits for it and returns false', async () => {
    const id = await scheduleMessage(db.store, 'race-1', { type: 't', data: {} }, { at: past() });
    const lock = await holdStreamLock('race-1');
    const delivery = deliverDueMessages(db.store, { limit: 1 });
    await waitFor('the delivery to block', async () => {
      const { rows } = await db.pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '.append_to_stream%'`,
        [`"${db.schema}"`],
      );
      return rows.length > 0;
    });
    const cancel = cancelScheduledMessage(db.store, id);
    await waitFor('the cancel to wait on the row', async () => {
      const { rows } = await db.pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%DELETE FROM ' || $1 || '.scheduled_messages%'`,
        [`"${db.schema}"`],
      );
      return rows.length > 0;
    });
    await lock.query('COMMIT');
    expect((await delivery).delivered).toBe(1);
    expect(await cancel).toBe(false);
    expect((await db.store.readStream('race-1')).map((m) => m.id)).toEqual([id]);
  });

  it('a cancelled message is never delivered, even while a cancel transaction holds it', async () => {
    const id = await scheduleMessage(db.store, 'race-2', { type: 't', data: {} }, { at: past() });
    const c = await db.client();
    await c.query('BEGIN');
    const cancelled = await cancelScheduledMessage(db.store, id, { client: c as unknown as pg.PoolClient });
    expect(cancelled).toBe(true);
    // The delivery skips the row the cancel holds rather than waiting for it.
    const r = await deliverDueMessages(db.store);
    expect(r.claimed).toBe(0);
    await c.query('COMMIT');
    await deliverDueMessages(db.store);
    expect(await db.store.readStream('race-2')).toEqual([]);
  });

  it('cancel vs delivery loops: true exactly for the messages that never appear', async () => {
    const N = 120;
    const ids: string[] = [];
    for (let i = 0; i < N; i++)
      ids.push(await scheduleMessage(db.store, `cx-${i}`, { type: 't', data: { i } }, { delay: 150 }));
    const ac = new AbortController();
    const loops = [1, 2].map(() =>
      createSchedulerService(db.store, { batchSize: 3, maxWaitMs: 30_000 })(ac.signal),
    );
    const shuffled = [...ids].sort(() => Math.random() - 0.5);
    const results = new Map<string, boolean>();
    const start = Date.now();
    await Promise.all(
      [0, 1, 2, 3].map(async (w) => {
        for (let i = w; i < shuffled.length; i += 4) {
          // Spread the cancels across the moment the messages become due.
          if (Date.now() - start < 400) await new Promise((r) => setTimeout(r, 3));
          results.set(shuffled[i]!, await cancelScheduledMessage(db.store, shuffled[i]!));
        }
      }),
    );
    await waitFor('no pending message', async () => (await pendingCount('cx-%')) === 0);
    ac.abort();
    await Promise.all(loops);
    const appended = new Set(
      (
        await db.pool.query<{ id: string }>(
          `SELECT id::text FROM "${db.schema}".messages WHERE stream_name LIKE 'cx-%'`,
        )
      ).rows.map((r) => r.id),
    );
    const cancelledCount = [...results.values()].filter(Boolean).length;
    // The race happened: some were cancelled in time, some were delivered first.
    expect(cancelledCount).toBeGreaterThan(0);
    expect(cancelledCount).toBeLessThan(N);
    for (const id of ids) expect(results.get(id)).toBe(!appended.has(id));
  });
});

describe('the scheduler service', () => {
  it('wakes on the NOTIFY of a new schedule and sleeps until its due time, not until the poll bound', async () => {
    const ac = new AbortController();
    const errors: unknown[] = [];
    // A bound far beyond the test's wait: only the wake-up and the due-time sleep can deliver in time.
    const run = createSchedulerService(db.store, { maxWaitMs: 60_000, onError: (e) => errors.push(e) })(
      ac.signal,
    );
    await new Promise((r) => setTimeout(r, 200)); // the loop is asleep now
    const scheduledAt = Date.now();
    const id = await scheduleMessage(db.store, 'svc-1', { type: 't', data: {} }, { delay: 300 });
    await waitFor('delivery', async () => (await db.store.readStream('svc-1')).length === 1, 10_000);
    const [m] = await db.store.readStream('svc-1');
    expect(m!.id).toBe(id);
    expect(m!.createdAt.getTime()).toBeGreaterThanOrEqual(scheduledAt + 250);
    ac.abort();
    await run;
    expect(errors).toEqual([]);
  });
});

describe('long schema names', () => {
  it('schedules and wakes the loop when "beckett_<schema>_schedule" would pass 63 bytes', async () => {
    const long = await setupDb('sched_with_a_rather_long_schema_prefix_x', { poolSize: 4 });
    try {
      expect(long.schema.length).toBeGreaterThan(50);
      const ac = new AbortController();
      const run = createSchedulerService(long.store, { maxWaitMs: 60_000 })(ac.signal);
      await new Promise((r) => setTimeout(r, 200));
      await scheduleMessage(long.store, 'long-1', { type: 't', data: {} }, { delay: 100 });
      const until = Date.now() + 10_000;
      while ((await long.store.readStream('long-1')).length === 0 && Date.now() < until)
        await new Promise((r) => setTimeout(r, 20));
      ac.abort();
      await run;
      expect((await long.store.readStream('long-1')).length).toBe(1);
    } finally {
      await long.close();
    }
  });
});
