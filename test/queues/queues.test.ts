import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Job, JobContext, QueueConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { createPool } from '../../src/db/pool.js';
import { inTransaction } from '../../src/db/queryable.js';
import { createQueueWorker, type QueueWorker } from '../../src/queues/queueWorker.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';
import { startTestProxy } from '../subscriptions/testProxy.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('queues', { poolSize: 30 });
});
afterAll(async () => db.close());

const workers: QueueWorker[] = [];
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
});

function configWith(queues: Record<string, QueueConfig>) {
  return resolveConfig({ database: { schema: db.schema }, queues });
}

async function run(queues: Record<string, QueueConfig>, opts: { names?: string[]; workerId?: string } = {}) {
  const worker = createQueueWorker({
    pool: db.pool,
    config: configWith(queues),
    queues: opts.names ?? Object.keys(queues),
    maxPollMs: 60_000,
    ...(opts.workerId ? { workerId: opts.workerId } : {}),
    onError: (e, where) => console.error(where, e),
  });
  workers.push(worker);
  await worker.start();
  return worker;
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const r = await db.pool.query<{ n: string }>(sql.replaceAll('S.', `"${db.schema}".`), params);
  return Number(r.rows[0]!.n);
}

describe('enqueue', () => {
  it('inside a transaction that rolls back leaves nothing; one that commits leaves the job', async () => {
    await expect(
      inTransaction(db.pool, async (client) => {
        await db.store.withTransaction(client).enqueue('rb', { type: 'x', data: { n: 1 } });
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await count(`SELECT count(*) AS n FROM S.queue_jobs WHERE queue = 'rb'`)).toBe(0);
    await inTransaction(db.pool, async (client) => {
      await db.store.withTransaction(client).enqueue('rb', { type: 'x', data: { n: 2 } });
    });
    expect(await count(`SELECT count(*) AS n FROM S.queue_jobs WHERE queue = 'rb'`)).toBe(1);
  });

  it('is idempotent by id, also while the job is in flight or dead', async () => {
    const id = '01890000-0000-7000-8000-000000000001';
    await db.store.enqueue('idem', { type: 'x', data: { n: 1 } }, { id });
    await db.store.enqueue('idem', { type: 'x', data: { n: 2 } }, { id });
    expect(await count(`SELECT count(*) AS n FROM S.queue_jobs WHERE queue = 'idem'`)).toBe(1);
    const r = await db.pool.query(`SELECT data FROM "${db.schema}".queue_jobs WHERE id = $1`, [id]);
    expect(r.rows[0].data).toEqual({ n: 1 });
  });

  it('refuses bad input with InvalidInputError and validates mapped types', async () => {
    const data = { n: 1 };
    await expect(db.store.enqueue('bad queue', { type: 'x', data })).rejects.toThrow(/Invalid queue name/);
    await expect(db.store.enqueue('q', { type: 'x', data }, { delay: -1 })).rejects.toThrow(/Invalid delay/);
    await expect(db.store.enqueue('q', { type: 'x', data }, { key: '' })).rejects.toThrow(/Invalid key/);
    await expect(db.store.enqueue('q', { type: 'x', data }, { id: 'nope' })).rejects.toThrow(
      /Invalid message id/,
    );
    await expect(db.store.enqueue('q', { type: 'x', data: 1 })).rejects.toThrow(/must be a JSON object/);
    const typed = db.makeStore({
      messages: {
        email: {
          schema: {
            '~standard': {
              version: 1,
              vendor: 'test',
              validate: (v: unknown) =>
                typeof (v as { to?: unknown })?.to === 'string'
                  ? { value: v }
                  : { issues: [{ message: 'to is required', path: ['to'] }] },
            },
          },
        },
      },
    });
    await expect(typed.enqueue('mail', { type: 'email', data: {} })).rejects.toThrow(/to is required/);
    expect(await count(`SELECT count(*) AS n FROM S.queue_jobs WHERE queue = 'mail'`)).toBe(0);
  });
});

describe('consumers', () => {
  it('a committed job wakes the worker (NOTIFY, not the 60 s poll) and is deleted on success', async () => {
    const seen: Job[] = [];
    await run({ wake: { handler: (job) => void seen.push(job) } });
    const id = await db.store.enqueue('wake', { type: 'hello', data: { to: 'a' } });
    await until(() => seen.length === 1, 'the job handled', 20_000);
    expect(seen[0]).toMatchObject({ id, queue: 'wake', type: 'hello', data: { to: 'a' }, deliveries: 1 });
    await until(
      async () => (await count(`SELECT count(*) AS n FROM S.queue_jobs WHERE queue = 'wake'`)) === 0,
      'the job deleted',
    );
  });

  it('a job enqueued in a transaction wakes the worker once the transaction commits', async () => {
    const seen: string[] = [];
    await run({ txwake: { handler: (job) => void seen.push(job.id) } });
    const id = await inTransaction(db.pool, async (client) =>
      db.store.withTransaction(client).enqueue('txwake', { type: 'x', data: {} }),
    );
    await until(() => seen.includes(id), 'the job handled', 20_000);
  });

  it('a delayed job runs on time, woken by a timer rather than the poll', async () => {
    const ran: number[] = [];
    await run({ later: { handler: () => void ran.push(Date.now()) } });
    const t0 = Date.now();
    await db.store.enqueue('later', { type: 'x', data: {} }, { delay: 1500 });
    await until(() => ran.length === 1, 'the delayed job handled', 20_000);
    const waited = ran[0]! - t0;
    expect(waited).toBeGreaterThanOrEqual(1400);
    // The worker polls every 60 s here: only the timer to the next visible job explains this.
    expect(waited).toBeLessThan(15_000);
  });

  it('a failing job retries with backoff and reaches the dead letters after exactly maxDeliveries', async () => {
    const deliveries: number[] = [];
    await run({
      poison: {
        maxDeliveries: 3,
        backoff: { initialMs: 10, maxMs: 20 },
        handler: (job) => {
          deliveries.push(job.deliveries);
          throw new Error(`boom ${job.deliveries}`);
        },
      },
    });
    const id = await db.store.enqueue('poison', { type: 'x', data: {} });
    await until(
      async () => (await count(`SELECT count(*) AS n FROM S.queue_dead_letters WHERE id = $1`, [id])) === 1,
      'the dead letter',
      20_000,
    );
    expect(deliveries).toEqual([1, 2, 3]);
    const dead = await db.pool.query(
      `SELECT deliveries, errors FROM "${db.schema}".queue_dead_letters WHERE id = $1`,
      [id],
    );
    expect(dead.rows[0].deliveries).toBe(3);
    expect(dead.rows[0].errors.map((e: { message: string }) => e.message)).toEqual([
      'boom 1',
      'boom 2',
      'boom 3',
    ]);
    expect(await count(`SELECT count(*) AS n FROM S.queue_jobs WHERE id = $1`, [id])).toBe(0);
  });

  /**
   * Worker A, reaching the database through a proxy that can stall (its extensions and heartbeats
   * stop arriving), holds the first delivery of a job enqueued to `queue` until `releaseFirst`.
   */
  async function holderBehindProxy(
    queue: string,
    opts: { visibilityTimeout: number; heartbeatMs?: number; staleWorkerMs?: number },
  ) {
    let releaseFirst!: () => void;
    const firstMayFinish = new Promise<void>((r) => {
      releaseFirst = r;
    });
    const calls: { delivery: number; aborted: () => boolean }[] = [];
    const handler = async (job: Job, ctx: JobContext) => {
      calls.push({ delivery: job.deliveries, aborted: () => ctx.signal.aborted });
      if (job.deliveries === 1) await firstMayFinish;
    };
    const queues = { [queue]: { handler, visibilityTimeout: opts.visibilityTimeout, maxDeliveries: 5 } };
    const proxy = await startTestProxy(db.url);
    const aPool = createPool(proxy.url, { max: 4 });
    const aEvents: string[] = [];
    const a = createQueueWorker({
      pool: aPool,
      config: configWith(queues),
      queues: [queue],
      workerId: 'A',
      ...(opts.heartbeatMs ? { heartbeatMs: opts.heartbeatMs } : {}),
      ...(opts.staleWorkerMs ? { staleWorkerMs: opts.staleWorkerMs } : {}),
      onProcessed: (e) => aEvents.push(e.outcome),
    });
    await a.start();
    const id = await db.store.enqueue(queue, { type: 'x', data: {} });
    await until(() => calls.length === 1, 'A holds the job');
    return {
      queues,
      calls,
      proxy,
      a,
      aEvents,
      id,
      async close() {
        vi.useRealTimers();
        proxy.resume();
        releaseFirst();
        await a.stop();
        await aPool.end();
        await proxy.close();
      },
      releaseFirst,
    };
  }

  it('an expired visibility taken over while the first holder still runs: only the new holder acks', async () => {
    const h = await holderBehindProxy('takeover', { visibilityTimeout: 600 });
    const { calls, a, aEvents, id } = h;
    h.proxy.stall();
    const b = await run(h.queues, { workerId: 'B' });
    await until(() => calls.length === 2, 'B took the job over once A’s visibility expired');
    expect(calls[1]!.delivery).toBe(2);
    // A's own deadline passed without an extension: its handler is told to stop.
    await until(() => calls[0]!.aborted(), 'A’s handler told its visibility is lost');
    await until(() => b.stats().completed === 1, 'B acked');
    h.proxy.resume();
    h.releaseFirst();
    await until(() => aEvents.length === 1, 'A’s ack settled');
    expect(aEvents).toEqual(['lost']);
    expect(a.stats()).toMatchObject({ completed: 0, lost: 1 });
    expect(await count(`SELECT count(*) AS n FROM S.queue_jobs WHERE id = $1`, [id])).toBe(0);
    await h.close();
  });

  it('a wall clock set back does not keep a holder past its visibility: its deadline is on the monotonic clock', async () => {
    const h = await holderBehindProxy('clock', { visibilityTimeout: 600 });
    try {
      // A's extensions stop arriving, and the machine's wall clock steps back an hour (an NTP
      // correction, a VM resumed): the visibility on the server runs out all the same.
      h.proxy.stall();
      vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
      vi.setSystemTime(Date.now() - 3_600_000);
      const b = await run(h.queues, { workerId: 'B' });
      await until(() => h.calls.length === 2, 'B took the job over once A’s visibility expired');
      // A's own deadline has passed on the monotonic clock: its handler is told to stop.
      await until(() => h.calls[0]!.aborted(), 'A’s handler told its visibility is lost', 5_000);
      await until(() => b.stats().completed === 1, 'B acked');
    } finally {
      await h.close();
    }
  });

  it('a wall clock set back does not keep a worker whose heartbeat went stale running its handlers', async () => {
    // A long visibility: only A's own stale heartbeat (staleWorkerMs, on the monotonic clock) can
    // tell it that the others may have released its job.
    const h = await holderBehindProxy('stale-clock', {
      visibilityTimeout: 60_000,
      heartbeatMs: 100,
      staleWorkerMs: 800,
    });
    try {
      h.proxy.stall();
      vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
      vi.setSystemTime(Date.now() - 3_600_000);
      await until(() => h.calls[0]!.aborted(), 'A’s handler told its heartbeat went stale', 5_000);
    } finally {
      await h.close();
    }
  });

  it("a stale holder's ack or nack, sent while the new holder has the job, changes nothing", async () => {
    const id = await db.store.enqueue('stale', { type: 'x', data: {} });
    const [oldToken, newToken] = [randomUUID(), randomUUID()];
    // The new holder took the job over: the row carries its token; the old holder still has its own.
    await db.pool.query(
      `UPDATE "${db.schema}".queue_jobs SET lease_token = $2, leased_by = 'B', leased_at = now(),
          visible_at = now() + interval '1 minute' WHERE id = $1`,
      [id, newToken],
    );
    const acked = await db.pool.query(`SELECT * FROM "${db.schema}".queue_complete($1, $2)`, [
      [id],
      [oldToken],
    ]);
    expect(acked.rowCount).toBe(0);
    const nacked = await db.pool.query(
      `SELECT "${db.schema}".queue_fail($1, $2, NULL, 0, false) AS outcome`,
      [id, oldToken],
    );
    expect(nacked.rows[0].outcome).toBe('lost');
    const { rows } = await db.pool.query(`SELECT lease_token FROM "${db.schema}".queue_jobs WHERE id = $1`, [
      id,
    ]);
    expect(rows).toEqual([{ lease_token: newToken }]);
  });
});
