import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool } from '../../src/db/pool.js';
import { HandlerTimeoutError } from '../../src/subscriptions/boundHandlerCall.js';
import { LeaseLostError } from '../../src/subscriptions/holdLease.js';
import type { ProcessedEvent } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { configWith, startWorker, until } from './helpers.js';
import { startTestProxy } from './testProxy.js';
import { spawnWorker } from './workerProcess.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('lease');
  await db.pool.query(
    `CREATE TABLE "${db.schema}".starts (seq bigserial PRIMARY KEY, stream text NOT NULL, pos int NOT NULL, who text NOT NULL);
     CREATE TABLE "${db.schema}".proj (stream text NOT NULL, pos int NOT NULL);
     CREATE TABLE "${db.schema}".seen (what text NOT NULL);`,
  );
});
afterAll(async () => {
  await db?.close();
});

async function checkpoint(subscription: string) {
  const { rows } = await db.pool.query(
    `SELECT stream_position, status, attempts, last_error, leased_by, lease_id
       FROM "${db.schema}".checkpoints WHERE subscription_name = $1`,
    [subscription],
  );
  return rows[0];
}

const never = () => new Promise<void>(() => undefined);

describe('leases and bounded handlers (issue 12)', () => {
  it('a holder whose handler blocked its event loop past the lease starts no further message once another took the stream (item 3)', async () => {
    // Worker A, a process of its own: its handler busy-waits 6 s on message 1 with a 1 s lease, so its
    // lease extender cannot run. Worker B (this process) takes the stream over when the lease expires.
    const dir = mkdtempSync(join(tmpdir(), 'beckett-lease-'));
    const file = join(dir, 'beckett.config.mjs');
    const unblocked = join(dir, 'unblocked');
    // The blocked call returns without yielding: a file written synchronously says it is back.
    writeFileSync(
      file,
      `import { writeFileSync } from 'node:fs';
export default {
  database: { schema: '${db.schema}' },
  groups: { G: { subscriptions: { blk: { category: 'blk', handler: async (m, ctx) => {
    await ctx.store.pool.query('INSERT INTO "${db.schema}".starts (stream, pos, who) VALUES ($1, $2, $3)', [m.streamName, m.streamPosition, 'A']);
    if (m.streamPosition === 1) {
      const { rows } = await ctx.store.pool.query('SHOW idle_in_transaction_session_timeout');
      await ctx.store.pool.query('INSERT INTO "${db.schema}".seen (what) VALUES ($1)', [rows[0].idle_in_transaction_session_timeout]);
      const end = Date.now() + 6000;
      while (Date.now() < end) {}
      writeFileSync(${JSON.stringify(unblocked)}, 'back');
    }
  } } } } },
};
`,
    );
    const a = spawnWorker(['--config', file, '--group', 'G', '--lease-ms', '1000', '--concurrency', '1'], {
      DATABASE_URL: db.url,
    });
    const starts = async () =>
      (
        await db.pool.query<{ pos: number; who: string }>(
          `SELECT pos, who FROM "${db.schema}".starts WHERE stream = 'blk-1' ORDER BY seq`,
        )
      ).rows.map((r) => `${r.who}:${r.pos}`);
    await until(
      async () => (await db.pool.query(`SELECT 1 FROM "${db.schema}".workers`)).rowCount === 1,
      'worker A to start',
      60_000,
    ).catch((err) => {
      throw new Error(`${err.message}; its stderr: ${a.stderrText()}`);
    });
    await db.store.append('blk-1', [
      { type: 't', data: {} },
      { type: 't', data: {} },
      { type: 't', data: {} },
    ]);
    await until(async () => (await starts()).includes('A:1'), 'A to start message 1');
    const config = configWith(db.schema, {
      blk: {
        category: 'blk',
        handler: async (m) => {
          await db.pool.query(`INSERT INTO "${db.schema}".starts (stream, pos, who) VALUES ($1, $2, 'B')`, [
            m.streamName,
            m.streamPosition,
          ]);
        },
      },
    });
    const b = startWorker(db, config, { concurrency: 1, leaseMs: 1000 });
    await b.start();
    await until(async () => (await starts()).includes('B:3'), 'B to take the stream over and handle it');
    // A finishes its blocked call; whatever it does next is under way before it drains on SIGTERM.
    await until(() => existsSync(unblocked), 'A to come back', 20_000);
    a.kill('SIGTERM');
    const exited = await a;
    await b.stop();
    // A handled message 1 while B had it again (A's loop was blocked: nothing could stop that call),
    // but once its deadline had passed A started nothing more: no message 2 or 3 after B's.
    expect(await starts()).toEqual(['A:1', 'B:1', 'B:2', 'B:3']);
    expect(exited.exitCode, a.stderrText()).toBe(0);
    // es worker sessions end a transaction left idle longer than the longest handler timeout (30 s).
    expect((await db.pool.query(`SELECT what FROM "${db.schema}".seen`)).rows).toEqual([{ what: '31s' }]);
    const cp = await checkpoint('blk');
    expect(cp.stream_position).toBe(3);
    expect(cp.leased_by).toBeNull();
  }, 90_000);

  it('a holder cut off from the database for longer than the lease aborts its handler at its deadline and starts nothing more (item 3)', async () => {
    const proxy = await startTestProxy(db.url);
    const pool = createPool(proxy.url, { max: 6 });
    const started: number[] = [];
    let stalledAt = 0;
    let abortedAfter: number | undefined;
    let reason: unknown;
    const config = configWith(db.schema, {
      cut: {
        category: 'cut',
        handler: async (m, ctx) => {
          started.push(m.streamPosition);
          if (m.streamPosition !== 1) return;
          proxy.stall();
          stalledAt = Date.now();
          await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
          abortedAfter = Date.now() - stalledAt;
          reason = ctx.signal.reason;
        },
      },
    });
    const w = startWorker(db, config, { pool, concurrency: 1, leaseMs: 1000 });
    try {
      await w.start();
      await db.store.append('cut-1', [
        { type: 't', data: {} },
        { type: 't', data: {} },
      ]);
      // The handler starts once the append is readable (another file's open transaction may hold
      // gap-safe reads back a while); then extensions get no reply: the lease may have passed to
      // another worker at its deadline.
      await until(() => stalledAt > 0, 'the first handler to start');
      await until(() => abortedAfter !== undefined, 'the handler signal to abort', 5000);
      expect(reason).toBeInstanceOf(LeaseLostError);
      expect(abortedAfter).toBeLessThan(1000 + 500);
      expect(started).toEqual([1]);
      proxy.resume();
      // Nobody took the stream meanwhile: the conditional write lands, and the stream goes on.
      await until(() => started.includes(2), 'the stream to go on once the database is back');
      await until(async () => (await checkpoint('cut')).stream_position === 2, 'progress recorded');
      expect(started).toEqual([1, 2]);
    } finally {
      proxy.resume();
      await w.stop();
      await pool.end();
      await proxy.close();
    }
  });

  it('a handler that never returns times out: its signal aborts, the attempt is retried with backoff, its late completion records nothing (item 4)', async () => {
    const events: ProcessedEvent[] = [];
    let calls = 0;
    let firstSignal: AbortSignal | undefined;
    let finishFirst!: () => void;
    let releaseRetry!: () => void;
    const retryHeld = new Promise<void>((r) => {
      releaseRetry = r;
    });
    let retryStarted = false;
    const config = configWith(db.schema, {
      hung: {
        category: 'hung',
        // Long enough that the retry, which holds the stream through the checks below, is not
        // timed out itself on a loaded machine (its lease would then change under the check).
        handlerTimeout: 1500,
        backoff: { initialMs: 50, maxMs: 100 },
        handler: async (_m, ctx) => {
          calls++;
          if (calls === 1) {
            firstSignal = ctx.signal;
            return new Promise<void>((r) => {
              finishFirst = r;
            });
          }
          retryStarted = true;
          await retryHeld;
        },
      },
    });
    const w = startWorker(db, config, { concurrency: 2, onProcessed: (e) => events.push(e) });
    await w.start();
    await db.store.append('hung-1', { type: 't', data: {} });
    await until(() => retryStarted, 'the retry after the timeout', 10_000);
    expect(firstSignal?.aborted).toBe(true);
    expect(firstSignal?.reason).toBeInstanceOf(HandlerTimeoutError);
    const timedOut = events.find((e) => e.subscription === 'hung');
    expect(timedOut?.status).toBe('retry');
    expect(timedOut?.error).toBeInstanceOf(HandlerTimeoutError);
    const during = await checkpoint('hung');
    expect(during.stream_position).toBe(0);
    expect(during.attempts).toBe(1);
    expect(during.last_error.type).toBe('HandlerTimeoutError');
    expect(during.leased_by).toBe(w.id);
    // The abandoned call completes late, while the retry holds the stream: nothing is recorded for it.
    finishFirst();
    await new Promise((r) => setTimeout(r, 200));
    const after = await checkpoint('hung');
    expect(after.stream_position).toBe(0);
    expect(after.lease_id).toBe(during.lease_id);
    releaseRetry();
    await until(async () => (await checkpoint('hung')).stream_position === 1, 'the retry to complete');
    await w.stop();
    expect(calls).toBe(2);
    expect(w.stats().timeouts).toBe(1);
    const done = await checkpoint('hung');
    expect(done.attempts).toBe(0);
    expect(done.leased_by).toBeNull();
  });

  it('stop() resolves within the drain timeout while a handler ignores its signal, and releases the lease (item 4)', async () => {
    let entered = false;
    let signal: AbortSignal | undefined;
    const config = configWith(db.schema, {
      stuck: {
        category: 'stuck',
        handlerTimeout: '10m',
        handler: (_m, ctx) => {
          entered = true;
          signal = ctx.signal;
          return never();
        },
      },
    });
    const w = startWorker(db, config, { concurrency: 2, drainTimeoutMs: 500 });
    await w.start();
    await db.store.append('stuck-1', { type: 't', data: {} });
    await until(() => entered, 'the handler to start');
    const began = Date.now();
    const stopped = await Promise.race([
      w.stop().then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
    ]);
    expect(stopped).toBe(true);
    expect(Date.now() - began).toBeLessThan(500 + 1500);
    expect(signal?.aborted).toBe(true);
    expect(w.stats().abandoned).toBe(1);
    // Abandoned at shutdown is not a failed attempt; the stream is free for the next worker.
    const cp = await checkpoint('stuck');
    expect(cp.stream_position).toBe(0);
    expect(cp.attempts).toBe(0);
    expect(cp.leased_by).toBeNull();
  });

  it('es worker abandons a handler that ignores its signal at --drain-timeout, releases its lease and exits 1 (item 4)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'beckett-drain-'));
    const file = join(dir, 'beckett.config.mjs');
    writeFileSync(
      file,
      `export default {
  database: { schema: '${db.schema}' },
  groups: { G: { subscriptions: { deaf: { category: 'deaf', handlerTimeout: '10m', handler: async (m, ctx) => {
    await ctx.store.pool.query('INSERT INTO "${db.schema}".starts (stream, pos, who) VALUES ($1, $2, $3)', [m.streamName, m.streamPosition, 'deaf']);
    await new Promise(() => undefined);
  } } } } },
};
`,
    );
    const worker = spawnWorker(['--config', file, '--group', 'G', '--drain-timeout', '500'], {
      DATABASE_URL: db.url,
    });
    await db.store.append('deaf-1', { type: 't', data: {} });
    await until(
      async () =>
        (await db.pool.query(`SELECT 1 FROM "${db.schema}".starts WHERE who = 'deaf'`)).rowCount === 1,
      'the handler to start',
      60_000,
    );
    const began = Date.now();
    worker.kill('SIGTERM');
    const result = await worker;
    expect(Date.now() - began).toBeLessThan(500 + 3000);
    expect(result.exitCode).toBe(1);
    expect(worker.stderrText()).toContain('1 handler(s) abandoned');
    // The lease was handed back: the next worker need not wait for it to expire.
    const cp = await checkpoint('deaf');
    expect(cp.leased_by).toBeNull();
    expect(cp.stream_position).toBe(0);
  }, 90_000);

  it('a claim whose reply was lost after it committed is released at once, not after the lease (item 5)', async () => {
    const proxy = await startTestProxy(db.url);
    const pool = createPool(proxy.url, { max: 6 });
    const handled: number[] = [];
    const config = configWith(db.schema, {
      lost: { category: 'lost', handler: (m) => void handled.push(m.streamPosition) },
    });
    // A 30 s lease: waiting for it to expire would fail the 8 s wait below.
    const w = startWorker(db, config, { pool, concurrency: 1, leaseMs: 30_000 });
    try {
      proxy.arm('claim_checkpoint');
      await w.start();
      await db.store.append('lost-1', { type: 't', data: {} });
      await until(() => proxy.droppedAt !== undefined, 'the claim reply to be dropped');
      // The proxy held the reply up to ReadyForQuery: the claim had committed, and nobody works under it.
      await until(() => handled.length > 0, 'the stream to be handled again', 8000);
      expect(Date.now() - proxy.droppedAt!).toBeLessThan(8000);
      await until(async () => (await checkpoint('lost')).stream_position === 1, 'progress recorded');
      expect(handled).toEqual([1]);
    } finally {
      await w.stop();
      await pool.end();
      await proxy.close();
    }
  });

  it('a stuck transactional handler has its transaction ended on the server and is retried (item 8)', async () => {
    const events: ProcessedEvent[] = [];
    const pids: number[] = [];
    const settings: string[] = [];
    const config = configWith(db.schema, {
      txs: {
        category: 'txs',
        transactional: true,
        handlerTimeout: 500,
        backoff: { initialMs: 50, maxMs: 100 },
        handler: async (m, ctx) => {
          const client = ctx.client!;
          const { rows } = await client.query('SELECT pg_backend_pid() AS pid');
          if (ctx.attempt === 1) pids.push(rows[0].pid);
          await client.query(`INSERT INTO "${db.schema}".proj (stream, pos) VALUES ($1, $2)`, [
            m.streamName,
            m.streamPosition,
          ]);
          if (ctx.attempt === 1 && m.streamName === 'txs-sleep') await client.query('SELECT pg_sleep(60)');
          if (ctx.attempt === 1 && m.streamName === 'txs-idle') {
            settings.push(
              (await client.query('SHOW idle_in_transaction_session_timeout')).rows[0]
                .idle_in_transaction_session_timeout,
            );
            await never();
          }
        },
      },
    });
    const w = startWorker(db, config, { concurrency: 2, onProcessed: (e) => events.push(e) });
    await w.start();
    await db.store.append('txs-sleep', { type: 't', data: {} });
    await db.store.append('txs-idle', { type: 't', data: {} });
    await until(
      async () =>
        (
          await db.pool.query(
            `SELECT 1 FROM "${db.schema}".checkpoints WHERE subscription_name = 'txs' AND stream_position = 1`,
          )
        ).rowCount === 2,
      'both streams handled on a retry',
      15_000,
    );
    await w.stop();
    // Each stream's first attempt timed out, its transaction was ended (its insert rolled back), and
    // the retry's insert is the only one kept.
    const timeouts = events.filter((e) => e.error instanceof HandlerTimeoutError).map((e) => e.stream);
    expect(timeouts.sort()).toEqual(['txs-idle', 'txs-sleep']);
    const { rows } = await db.pool.query(`SELECT stream, pos FROM "${db.schema}".proj ORDER BY stream`);
    expect(rows).toEqual([
      { stream: 'txs-idle', pos: 1 },
      { stream: 'txs-sleep', pos: 1 },
    ]);
    expect(settings).toEqual(['1500ms']);
    // The sessions of the abandoned attempts are gone: no transaction of theirs stalls readers.
    expect(pids).toHaveLength(2);
    await until(
      async () =>
        (
          await db.pool.query(
            'SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[]) AND xact_start IS NOT NULL',
            [pids],
          )
        ).rowCount === 0,
      'no transaction of the handler sessions left open',
      5000,
    );
  });

  it("the server ends a transactional handler's transaction left idle while the worker's event loop is blocked; the attempt is retried (item 8)", async () => {
    const events: ProcessedEvent[] = [];
    const config = configWith(db.schema, {
      txb: {
        category: 'txb',
        transactional: true,
        handlerTimeout: 300,
        backoff: { initialMs: 50, maxMs: 100 },
        handler: async (m, ctx) => {
          await ctx.client!.query(`INSERT INTO "${db.schema}".proj (stream, pos) VALUES ($1, $2)`, [
            m.streamName,
            m.streamPosition,
          ]);
          // No timer of this process can fire: only the server's idle timeout (1.3 s) ends the transaction.
          if (ctx.attempt === 1) {
            const end = Date.now() + 2500;
            while (Date.now() < end) {}
          }
        },
      },
    });
    const w = startWorker(db, config, { concurrency: 1, onProcessed: (e) => events.push(e) });
    await w.start();
    await db.store.append('txb-1', { type: 't', data: {} });
    await until(async () => (await checkpoint('txb'))?.stream_position === 1, 'the retry to commit', 15_000);
    await w.stop();
    expect(events.map((e) => `${e.status}:${e.attempt}`)).toEqual(['retry:1', 'done:2']);
    // Not this process's timeout (its timer could not run): the server's, seen at the next statement.
    expect(events[0]?.error).not.toBeInstanceOf(HandlerTimeoutError);
    expect((await checkpoint('txb')).attempts).toBe(0);
    const { rows } = await db.pool.query(
      `SELECT stream, pos FROM "${db.schema}".proj WHERE stream = 'txb-1'`,
    );
    expect(rows).toEqual([{ stream: 'txb-1', pos: 1 }]);
  });
});
