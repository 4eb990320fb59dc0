import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedMessage } from '../../src/store/types.js';
import { pauseSubscription, resumeSubscription } from '../../src/subscriptions/registerSubscriptions.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { configWith, delay, startWorker, until } from './helpers.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('wrk');
});
afterAll(async () => {
  await db?.close();
});

/** Records every call per stream and every time two calls of one stream overlapped. */
function recorder() {
  const calls = new Map<string, number[]>();
  const active = new Set<string>();
  const overlaps: string[] = [];
  return {
    calls,
    overlaps,
    async record(m: RecordedMessage, work?: () => Promise<void>) {
      if (active.has(m.streamName)) overlaps.push(`${m.streamName}@${m.streamPosition}`);
      active.add(m.streamName);
      try {
        if (work) await work();
        const list = calls.get(m.streamName) ?? [];
        list.push(m.streamPosition);
        calls.set(m.streamName, list);
      } finally {
        active.delete(m.streamName);
      }
    },
    total: () => [...calls.values()].reduce((n, l) => n + l.length, 0),
  };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe('worker runtime (in process)', () => {
  it('the reader hands idle consumers the claims it made in the round that dispatched, in stream order', async () => {
    const rec = recorder();
    const config = configWith(db.schema, { s: { category: 'hand', handler: (m) => rec.record(m) } });
    // Consumers that do not poll: between wake-ups they wait, and only the reader's round finds work.
    const w = startWorker(db, config, { concurrency: 3, maxPollMs: 60_000 });
    await w.start();
    try {
      for (let i = 1; i <= 6; i++) {
        await db.store.append('hand-1', { type: 't', data: { i } });
        await until(() => rec.total() >= i, `message ${i} handled`);
      }
      expect(rec.calls.get('hand-1')).toEqual(range(6));
      expect(rec.overlaps).toEqual([]);
      expect(w.stats().handedOver).toBeGreaterThanOrEqual(1);
      expect(w.errors).toEqual([]);
    } finally {
      await w.stop();
    }
  });

  it('handles every message of many streams once, in stream order, with consumers racing', async () => {
    const rec = recorder();
    const config = configWith(db.schema, { s: { category: 'ord', handler: (m) => rec.record(m) } });
    const w = startWorker(db, config, { concurrency: 6 });
    await w.start();
    const streams = 40;
    const per = 15;
    // Interleaved appends while the worker runs, so new messages arrive for streams being processed.
    for (let i = 1; i <= per; i++) {
      await Promise.all(range(streams).map((s) => db.store.append(`ord-${s}`, { type: 't', data: { i } })));
    }
    await db.store.append('other-1', { type: 't', data: {} });
    await until(() => rec.total() >= streams * per, 'all messages handled');
    await delay(300);
    await w.stop();
    expect(rec.overlaps).toEqual([]);
    expect(rec.total()).toBe(streams * per);
    for (let s = 1; s <= streams; s++) expect(rec.calls.get(`ord-${s}`)).toEqual(range(per));
    expect(rec.calls.has('other-1')).toBe(false);
    expect(w.errors).toEqual([]);
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM ${db.schema}.checkpoints WHERE stream_position <> stream_version OR leased_by IS NOT NULL`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('stopped amid a backlog, hands back every lease (the claims asked for with completions too), and a new worker finishes in order', async () => {
    const rec = recorder();
    const config = configWith(db.schema, {
      b: {
        category: 'drain',
        batchSize: 1,
        handler: (m) => rec.record(m, () => new Promise((r) => setImmediate(r))),
      },
    });
    const streams = 20;
    const per = 10;
    for (let s = 1; s <= streams; s++)
      await db.store.append(
        `drain-${s}`,
        range(per).map((i) => ({ type: 't', data: { i } })),
      );
    for (let round = 0; round < 3; round++) {
      const w = startWorker(db, config, { concurrency: 4 });
      await w.start();
      const target = Math.min(streams * per, rec.total() + 40);
      await until(() => rec.total() >= target, 'some handled');
      await w.stop();
      expect(w.errors).toEqual([]);
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS n FROM ${db.schema}.checkpoints WHERE leased_by IS NOT NULL OR lease_id IS NOT NULL`,
      );
      expect(rows[0].n).toBe(0);
    }
    const w = startWorker(db, config, { concurrency: 4 });
    await w.start();
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS n FROM ${db.schema}.checkpoints
          WHERE stream_name LIKE 'drain-%' AND stream_position < stream_version`,
      );
      return rows[0].n === 0 && rec.total() >= streams * per;
    }, 'the rest handled');
    await w.stop();
    expect(rec.overlaps).toEqual([]);
    // Each stream's messages in order; a message handled when its worker stopped is not handled again.
    for (let s = 1; s <= streams; s++) expect(rec.calls.get(`drain-${s}`)).toEqual(range(per));
  });

  it('never lets a second consumer take a stream while its handler runs, even as new messages arrive (peer bug 1)', async () => {
    const rec = recorder();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let entered = false;
    const config = configWith(db.schema, {
      q: {
        category: 'gate',
        handler: (m) =>
          rec.record(m, async () => {
            if (m.streamPosition === 1) {
              entered = true;
              await gate;
            }
          }),
      },
    });
    const w = startWorker(db, config, { concurrency: 4 });
    await w.start();
    await db.store.append('gate-1', { type: 't', data: {} });
    await until(() => entered, 'the first handler to start');
    // New messages for the stream being processed: the reader raises stream_version meanwhile.
    for (let i = 0; i < 5; i++) await db.store.append('gate-1', { type: 't', data: {} });
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT stream_version, leased_by FROM ${db.schema}.checkpoints WHERE subscription_name = 'q'`,
      );
      return rows[0]?.stream_version === 6;
    }, 'the reader to raise stream_version');
    const { rows } = await db.pool.query(
      `SELECT stream_position, leased_by FROM ${db.schema}.checkpoints WHERE subscription_name = 'q'`,
    );
    expect(rows[0].leased_by).toBe(w.id);
    expect(rows[0].stream_position).toBe(0);
    // Idle consumers poll and are woken by the notifications; give them time to try.
    await delay(600);
    expect(rec.overlaps).toEqual([]);
    expect(rec.calls.get('gate-1')).toBeUndefined();
    release();
    await until(() => (rec.calls.get('gate-1')?.length ?? 0) >= 6, 'the rest of the stream');
    await w.stop();
    expect(rec.calls.get('gate-1')).toEqual(range(6));
    expect(rec.overlaps).toEqual([]);
  });

  it('re-claims a stream longer than one batch until it is caught up (peer bug 2)', async () => {
    const rec = recorder();
    const config = configWith(db.schema, {
      long: { category: 'long', batchSize: 7, handler: (m) => rec.record(m) },
    });
    const w = startWorker(db, config, { concurrency: 2 });
    await db.store.append(
      'long-1',
      range(52).map((i) => ({ type: 't', data: { i } })),
    );
    await w.start();
    await until(() => (rec.calls.get('long-1')?.length ?? 0) >= 52, 'the whole long stream');
    await w.stop();
    expect(rec.calls.get('long-1')).toEqual(range(52));
    expect(w.stats().claims).toBeGreaterThanOrEqual(8);
  });

  it('extends the lease of a long handler so no other consumer takes the stream', async () => {
    const rec = recorder();
    const config = configWith(db.schema, {
      slow: {
        category: 'slow',
        handler: (m) =>
          rec.record(m, () => new Promise((r) => setTimeout(r, m.streamPosition === 1 ? 1500 : 1))),
      },
    });
    // Lease 300 ms, handler 1500 ms: without renewal the lease would expire five times over.
    const w1 = startWorker(db, config, { concurrency: 2, leaseMs: 300 });
    const w2 = startWorker(db, config, { concurrency: 2, leaseMs: 300 });
    await Promise.all([w1.start(), w2.start()]);
    await db.store.append('slow-1', [
      { type: 't', data: {} },
      { type: 't', data: {} },
      { type: 't', data: {} },
    ]);
    await until(() => (rec.calls.get('slow-1')?.length ?? 0) >= 3, 'the slow stream');
    await delay(200);
    await Promise.all([w1.stop(), w2.stop()]);
    expect(rec.overlaps).toEqual([]);
    expect(rec.calls.get('slow-1')).toEqual([1, 2, 3]);
  });

  it('retries a poison message with backoff, then marks it failed, while other streams flow', async () => {
    const attempts: { at: number; attempt: number }[] = [];
    const rec = recorder();
    const config = configWith(db.schema, {
      poison: {
        category: 'psn',
        maxRetries: 3,
        backoff: { initialMs: 100, maxMs: 400 },
        handler: (m, ctx) =>
          rec.record(m, async () => {
            if (m.streamName === 'psn-bad' && m.streamPosition === 2) {
              attempts.push({ at: Date.now(), attempt: ctx.attempt });
              throw new TypeError('cannot allocate');
            }
          }),
      },
    });
    const w = startWorker(db, config, { concurrency: 3 });
    await w.start();
    await db.store.append(
      'psn-bad',
      [1, 2, 3].map((i) => ({ type: 't', data: { i } })),
    );
    for (let s = 0; s < 20; s++)
      await db.store.append(
        `psn-ok${s}`,
        [1, 2, 3].map((i) => ({ type: 't', data: { i } })),
      );
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT status FROM ${db.schema}.checkpoints WHERE subscription_name = 'poison' AND stream_name = 'psn-bad'`,
      );
      return rows[0]?.status === 'failed';
    }, 'the poison checkpoint to fail');
    await until(() => rec.total() >= 20 * 3 + 1, 'the other streams');
    await w.stop();
    for (let s = 0; s < 20; s++) expect(rec.calls.get(`psn-ok${s}`)).toEqual([1, 2, 3]);
    expect(rec.calls.get('psn-bad')).toEqual([1]);
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4]);
    // Backoff grows: each wait at least half the nominal delay (100, 200, 400 ms).
    const gaps = attempts.slice(1).map((a, i) => a.at - attempts[i]!.at);
    expect(gaps[0]).toBeGreaterThanOrEqual(50);
    expect(gaps[1]).toBeGreaterThanOrEqual(100);
    expect(gaps[2]).toBeGreaterThanOrEqual(200);
    const { rows } = await db.pool.query(
      `SELECT status, attempts, stream_position, last_error FROM ${db.schema}.checkpoints
        WHERE subscription_name = 'poison' AND stream_name = 'psn-bad'`,
    );
    expect(rows[0]).toMatchObject({ status: 'failed', attempts: 4, stream_position: 1 });
    expect(rows[0].last_error).toMatchObject({ type: 'TypeError', message: 'cannot allocate', attempt: 4 });
    expect(rows[0].last_error.stack).toContain('cannot allocate');
  });

  it('starts a new subscription from the beginning while its sibling is at the head; "end" skips the past', async () => {
    const a: string[] = [];
    const b: string[] = [];
    const c: string[] = [];
    await db.store.append('cu-1', [
      { type: 't', data: {} },
      { type: 't', data: {} },
    ]);
    const w1 = startWorker(
      db,
      configWith(db.schema, {
        first: { category: 'cu', handler: (m) => void a.push(`${m.streamName}@${m.streamPosition}`) },
      }),
    );
    await w1.start();
    await until(() => a.length >= 2, 'the first subscription');
    await w1.stop();
    await db.store.append('cu-2', { type: 't', data: {} });
    const config = configWith(db.schema, {
      first: { category: 'cu', handler: (m) => void a.push(`${m.streamName}@${m.streamPosition}`) },
      second: { category: 'cu', handler: (m) => void b.push(`${m.streamName}@${m.streamPosition}`) },
      third: {
        category: 'cu',
        startFrom: 'end',
        handler: (m) => void c.push(`${m.streamName}@${m.streamPosition}`),
      },
    });
    const w2 = startWorker(db, config);
    await w2.start();
    await db.store.append('cu-1', { type: 't', data: {} });
    await until(() => a.length >= 4 && b.length >= 4 && c.length >= 1, 'all three subscriptions');
    await delay(200);
    await w2.stop();
    expect(a.sort()).toEqual(['cu-1@1', 'cu-1@2', 'cu-1@3', 'cu-2@1']);
    expect(b.sort()).toEqual(['cu-1@1', 'cu-1@2', 'cu-1@3', 'cu-2@1']);
    // 'end' starts at the gap-safe end of the log: cu-2@1 may still be behind a transaction open
    // elsewhere on a shared server when "third" registers (then it is delivered, never lost).
    expect(c.filter((x) => x !== 'cu-2@1')).toEqual(['cu-1@3']);
    // A subscription no longer in the config is kept, marked unknown.
    const w3 = startWorker(
      db,
      configWith(db.schema, { first: { category: 'cu', handler: () => undefined } }),
    );
    await w3.start();
    await w3.stop();
    const { rows } = await db.pool.query(
      `SELECT name, status FROM ${db.schema}.subscriptions WHERE group_name = 'G' AND name IN ('second', 'third') ORDER BY name`,
    );
    expect(rows).toEqual([
      { name: 'second', status: 'unknown' },
      { name: 'third', status: 'unknown' },
    ]);
  });

  it('does not claim a paused subscription, and resumes where it was', async () => {
    const seen: number[] = [];
    const config = configWith(db.schema, {
      pz: { category: 'pz', handler: (m) => void seen.push(m.streamPosition) },
    });
    const w = startWorker(db, config);
    await w.start();
    expect(await pauseSubscription(db.pool, db.schema, 'G', 'pz')).toBe(true);
    await db.store.append('pz-1', [
      { type: 't', data: {} },
      { type: 't', data: {} },
    ]);
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT stream_version FROM ${db.schema}.checkpoints WHERE subscription_name = 'pz'`,
      );
      return rows[0]?.stream_version === 2;
    }, 'the reader to record the paused stream');
    await delay(400);
    expect(seen).toEqual([]);
    expect(await resumeSubscription(db.pool, db.schema, 'G', 'pz')).toBe(true);
    await until(() => seen.length >= 2, 'the resumed subscription');
    await w.stop();
    expect(seen).toEqual([1, 2]);
    await expect(pauseSubscription(db.pool, db.schema, 'G', 'nope')).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });
});

describe('batch and transactional handlers', () => {
  it('gives a batch handler the messages of one stream in order', async () => {
    const batches: { stream: string; positions: number[] }[] = [];
    const config = configWith(db.schema, {
      bt: {
        category: 'bt',
        batchSize: 4,
        batchHandler: (ms) => {
          batches.push({ stream: ms[0]!.streamName, positions: ms.map((m) => m.streamPosition) });
        },
      },
    });
    await db.store.append(
      'bt-1',
      range(10).map((i) => ({ type: 't', data: { i } })),
    );
    const w = startWorker(db, config);
    await w.start();
    await until(() => batches.flatMap((b) => b.positions).length >= 10, 'all batches');
    await w.stop();
    expect(batches.every((b) => b.stream === 'bt-1' && b.positions.length <= 4)).toBe(true);
    expect(batches.flatMap((b) => b.positions)).toEqual(range(10));
  });

  it('runs a transactional handler in the checkpoint transaction: a failed attempt leaves no writes', async () => {
    let calls = 0;
    const config = configWith(db.schema, {
      tx: {
        category: 'txn',
        transactional: true,
        backoff: { initialMs: 20, maxMs: 50 },
        handler: async (m, ctx) => {
          calls++;
          expect(ctx.client).toBeDefined();
          await ctx.store.append(`echo-${m.streamName}`, { type: 'echoed', data: { attempt: ctx.attempt } });
          if (ctx.attempt === 1) throw new Error('first attempt fails after writing');
        },
      },
    });
    const w = startWorker(db, config);
    await w.start();
    const cause = await db.store.append('txn-1', {
      type: 't',
      data: {},
      metadata: { correlationId: 'corr-1' },
    });
    expect(cause.streamVersion).toBe(1);
    await until(async () => (await db.store.readStream('echo-txn-1')).length >= 1, 'the echo');
    await delay(200);
    await w.stop();
    const echoes = await db.store.readStream('echo-txn-1');
    expect(calls).toBe(2);
    expect(echoes.map((e) => e.data)).toEqual([{ attempt: 2 }]);
    const [original] = await db.store.readStream('txn-1');
    expect(echoes[0]!.metadata).toMatchObject({ correlationId: 'corr-1', causationId: original!.id });
  });
});
