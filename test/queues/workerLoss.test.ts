import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job, JobContext, QueueConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { createPool } from '../../src/db/pool.js';
import { dequeueJobs, releaseStaleWorkerJobs } from '../../src/queues/queueJobsSql.js';
import {
  createQueueWorker,
  type QueueWorker,
  type QueueWorkerOptions,
} from '../../src/queues/queueWorker.js';
import { WorkerLiveness } from '../../src/queues/workerLiveness.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';
import { startTestProxy } from '../subscriptions/testProxy.js';
import { spawnWorker } from '../subscriptions/workerProcess.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('qloss', { poolSize: 20 });
  await db.pool.query(
    `CREATE TABLE "${db.schema}".handled (seq bigserial PRIMARY KEY, job uuid NOT NULL, delivery int NOT NULL,
       pid int NOT NULL, errors jsonb NOT NULL)`,
  );
});
const workers: QueueWorker[] = [];
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await db.close();
});

/** Far longer than any test here: a job handled twice was given back, not expired. */
const VISIBILITY = '60s';

function worker(queues: Record<string, QueueConfig>, opts: Partial<QueueWorkerOptions> = {}): QueueWorker {
  const w = createQueueWorker({
    pool: db.pool,
    config: resolveConfig({ database: { schema: db.schema }, queues }),
    queues: Object.keys(queues),
    heartbeatMs: 100,
    staleWorkerMs: 800,
    drainTimeoutMs: 200,
    ...opts,
  });
  workers.push(w);
  return w;
}

/** A `workers` row for `id` whose heartbeat went stale a minute ago: a dead worker. */
async function insertStaleWorker(id: string): Promise<void> {
  await db.pool.query(
    `INSERT INTO "${db.schema}".workers (id, host, pid, group_name, concurrency, heartbeat_at)
     VALUES ($1, 'h', 1, '', 1, now() - interval '1 minute')`,
    [id],
  );
}

async function jobRow(id: string) {
  const r = await db.pool.query<{ lease_token: string | null; leased_by: string | null; deliveries: number }>(
    `SELECT lease_token, leased_by, deliveries FROM "${db.schema}".queue_jobs WHERE id = $1`,
    [id],
  );
  return r.rows[0];
}

describe('a supervised worker process that dies gives its jobs back at once', () => {
  it('SIGKILL of a child: the supervisor releases its delivery, which another child handles well before the visibility timeout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'beckett-qloss-'));
    const config = join(dir, 'beckett.config.mjs');
    // The first delivery never ends (the test kills its process); the second returns.
    writeFileSync(
      config,
      `export default {
  database: { schema: '${db.schema}' },
  queues: {
    slow: {
      concurrency: 1,
      visibilityTimeout: '${VISIBILITY}',
      handlerTimeout: '10m',
      handler: async (job, ctx) => {
        await ctx.store.pool.query('INSERT INTO "${db.schema}".handled (job, delivery, pid, errors) VALUES ($1, $2, $3, $4)',
          [job.id, job.deliveries, process.pid, JSON.stringify(job.errors)]);
        if (job.deliveries === 1) await new Promise(() => undefined);
      },
    },
  },
};
`,
    );
    const supervisor = spawnWorker(['--config', config, '--queue', 'slow', '--processes', '2'], {
      DATABASE_URL: db.url,
    });
    try {
      const id = await db.store.enqueue('slow', { type: 'x', data: {} });
      const handled = async () =>
        (
          await db.pool.query<{ delivery: number; pid: number; errors: { name: string; message: string }[] }>(
            `SELECT delivery, pid, errors FROM "${db.schema}".handled WHERE job = $1 ORDER BY seq`,
            [id],
          )
        ).rows;
      await until(async () => (await handled()).length === 1, 'the first delivery', 60_000);
      const first = (await handled())[0]!;
      process.kill(first.pid, 'SIGKILL');
      await until(async () => (await handled()).length === 2, 'the job handled again', 45_000);
      const second = (await handled())[1]!;
      expect(second.pid).not.toBe(first.pid);
      expect(second.delivery).toBe(2);
      // Given back by the supervisor, not expired: the history says so.
      expect(second.errors).toEqual([
        expect.objectContaining({ name: 'WorkerLost', message: 'its worker process exited (SIGKILL)' }),
      ]);
      await until(async () => (await jobRow(id)) === undefined, 'the job acked');
    } finally {
      supervisor.kill('SIGTERM');
      await supervisor;
    }
  }, 150_000);
});

describe('a worker whose heartbeat goes stale', () => {
  it('has its delivery released to another worker; its late ack is refused (one holder acks)', async () => {
    let releaseFirst!: () => void;
    const firstMayFinish = new Promise<void>((r) => {
      releaseFirst = r;
    });
    let releaseSecond!: () => void;
    const secondMayFinish = new Promise<void>((r) => {
      releaseSecond = r;
    });
    const calls: { delivery: number; errors: Job['errors']; signal: AbortSignal }[] = [];
    const queues: Record<string, QueueConfig> = {
      stale: {
        visibilityTimeout: VISIBILITY,
        handler: async (job: Job, ctx: JobContext) => {
          calls.push({ delivery: job.deliveries, errors: job.errors, signal: ctx.signal });
          await (job.deliveries === 1 ? firstMayFinish : secondMayFinish);
        },
      },
    };
    // A reaches the database through a proxy that stalls: to the others it looks like a process whose
    // event loop is blocked (no heartbeat), while its handler is still running.
    const proxy = await startTestProxy(db.url);
    const aPool = createPool(proxy.url, { max: 4 });
    const aEvents: string[] = [];
    const a = worker(queues, {
      pool: aPool,
      workerId: `A-${randomUUID()}`,
      onProcessed: (e) => aEvents.push(e.outcome),
    });
    await a.start();
    const id = await db.store.enqueue('stale', { type: 'x', data: {} });
    await until(() => calls.length === 1, 'A holds the job');
    proxy.stall();
    const b = worker(queues, { workerId: `B-${randomUUID()}` });
    await b.start();
    await until(() => calls.length === 2, 'B handled the job A held');
    expect(calls[1]!.delivery).toBe(2);
    expect(calls[1]!.errors).toEqual([
      expect.objectContaining({
        name: 'WorkerLost',
        worker: a.id,
        message: expect.stringMatching(/no heartbeat/),
      }),
    ]);
    expect(b.stats().released).toBe(1);
    // A could not heartbeat for staleWorkerMs: its handler was told to stop.
    await until(() => calls[0]!.signal.aborted, 'A’s handler aborted');
    // A comes back and its handler returns while B still holds the job: A's ack is refused.
    proxy.resume();
    releaseFirst();
    await until(() => aEvents.length === 1, 'A’s ack settled');
    expect(aEvents).toEqual(['lost']);
    expect(a.stats()).toMatchObject({ completed: 0, lost: 1 });
    expect(await jobRow(id)).toMatchObject({ leased_by: b.id, deliveries: 2 });
    releaseSecond();
    await until(() => b.stats().completed === 1, 'B acked');
    expect(await jobRow(id)).toBeUndefined();
    await a.stop();
    await aPool.end();
    await proxy.close();
  });

  it('a live worker’s delivery is never released, however long its handler runs', async () => {
    let releaseFirst!: () => void;
    const firstMayFinish = new Promise<void>((r) => {
      releaseFirst = r;
    });
    const calls: { id: string; delivery: number }[] = [];
    const queues: Record<string, QueueConfig> = {
      live: {
        visibilityTimeout: VISIBILITY,
        handler: async (job: Job) => {
          calls.push({ id: job.id, delivery: job.deliveries });
          if (job.data && (job.data as { hold?: boolean }).hold) await firstMayFinish;
        },
      },
    };
    // A wider margin than the other tests: on a loaded machine a heartbeat may come late, and a
    // late heartbeat past staleWorkerMs is (rightly) a dead worker.
    const live = { staleWorkerMs: 2000 };
    const a = worker(queues, { ...live, workerId: `A-${randomUUID()}` });
    await a.start();
    const id = await db.store.enqueue('live', { type: 'x', data: { hold: true } });
    await until(() => calls.length === 1, 'A holds the job');
    // A's handler starts before its dequeue's commit is confirmed (rows before commit): wait for it.
    await until(async () => (await jobRow(id))?.lease_token != null, 'A’s dequeue committed');
    const token = (await jobRow(id))!.lease_token;
    await worker(queues, { ...live, workerId: `B-${randomUUID()}` }).start();
    // Long past staleWorkerMs (2 s), by the database's clock.
    await until(
      async () =>
        (
          await db.pool.query(
            `SELECT 1 FROM "${db.schema}".queue_jobs WHERE id = $1 AND leased_at < now() - interval '6 seconds'`,
            [id],
          )
        ).rowCount === 1,
      'the delivery held for 6 s',
    );
    const released = () => workers.reduce((n, w) => n + w.stats().released, 0);
    const releasedBefore = released();
    // B sweeps meanwhile: a dead worker's job planted now is released by B and handled.
    const ghost = `ghost-${randomUUID()}`;
    await insertStaleWorker(ghost);
    const planted = await db.store.enqueue('live', { type: 'x', data: {} }, { delay: 3_600_000 });
    await db.pool.query(
      `UPDATE "${db.schema}".queue_jobs SET lease_token = gen_random_uuid(), leased_by = $2, leased_at = now(),
          deliveries = 1 WHERE id = $1`,
      [planted, ghost],
    );
    await until(() => calls.some((c) => c.id === planted), 'the dead worker’s job released and handled');
    // Released (by B, or the previous test's worker, still running): the ghost's job, nothing else.
    expect(released() - releasedBefore).toBe(1);
    // A's delivery: still A's, never handed to B.
    expect(calls.filter((c) => c.id === id)).toEqual([{ id, delivery: 1 }]);
    expect(await jobRow(id)).toMatchObject({ lease_token: token, leased_by: a.id, deliveries: 1 });
    releaseFirst();
    await until(async () => (await jobRow(id)) === undefined, 'A acked');
    expect(calls.filter((c) => c.id === id)).toHaveLength(1);
  });
});

describe('a draining worker', () => {
  it('keeps heartbeating while its handlers finish, and removes its row once stopped', async () => {
    let finish!: () => void;
    const mayFinish = new Promise<void>((r) => {
      finish = r;
    });
    let started = false;
    const a = worker(
      {
        drain: {
          visibilityTimeout: VISIBILITY,
          handler: async () => {
            started = true;
            await mayFinish;
          },
        },
      },
      { workerId: `D-${randomUUID()}`, drainTimeoutMs: 60_000 },
    );
    await a.start();
    await db.store.enqueue('drain', { type: 'x', data: {} });
    await until(() => started, 'the handler running');
    const stopAt = (await db.pool.query<{ t: string }>('SELECT now()::text AS t')).rows[0]!.t;
    const beatAt = async () =>
      (
        await db.pool.query<{ after: boolean }>(
          `SELECT heartbeat_at > $2::timestamptz + interval '1.5 seconds' AS after FROM "${db.schema}".workers WHERE id = $1`,
          [a.id, stopAt],
        )
      ).rows[0]?.after;
    const stopped = a.stop();
    // Past staleWorkerMs (0.8 s) since the drain began, the row is still fresh.
    await until(async () => (await beatAt()) === true, 'a heartbeat 1.5 s into the drain');
    finish();
    await stopped;
    expect(a.stats().completed).toBe(1);
    expect(await beatAt()).toBeUndefined();
  });
});

describe('releasing a stale worker’s jobs races its heartbeat', () => {
  // The earlier tests' workers still sweep this schema (every 100 ms): one would release the stale
  // holder's job below on its own, whatever the heartbeat being written (seen once in CI).
  beforeAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
  });

  it('a heartbeat being written (row locked) keeps the jobs; so does one that committed since', async () => {
    const sql = db.store.sqlContext;
    const holder = `H-${randomUUID()}`;
    await insertStaleWorker(holder);
    const id = await db.store.enqueue('race', { type: 'x', data: {} });
    const [row] = await dequeueJobs(db.pool, sql, {
      queue: 'race',
      limit: 1,
      visibilityMs: 60_000,
      maxDeliveries: 5,
      token: randomUUID(),
      workerId: holder,
    });
    expect(row?.id).toBe(id);
    // The stale worker's heartbeat is in flight: its row is locked by a transaction not committed yet.
    const beat = await db.pool.connect();
    try {
      await beat.query('BEGIN');
      await beat.query(`UPDATE "${db.schema}".workers SET heartbeat_at = now() WHERE id = $1`, [holder]);
      const during = await releaseStaleWorkerJobs(db.pool, sql, { ids: [holder], staleMs: 30_000 });
      expect(during.size).toBe(0);
      await beat.query('COMMIT');
    } finally {
      beat.release();
    }
    // Committed: fresh now, nothing to release.
    const after = await releaseStaleWorkerJobs(db.pool, sql, { ids: [holder], staleMs: 30_000 });
    expect(after.size).toBe(0);
    expect(await jobRow(id)).toMatchObject({ leased_by: holder, deliveries: 1 });
    // Stale again (no heartbeat): released, the delivery kept in the count.
    await db.pool.query(
      `UPDATE "${db.schema}".workers SET heartbeat_at = now() - interval '1 minute' WHERE id = $1`,
      [holder],
    );
    const released = await releaseStaleWorkerJobs(db.pool, sql, { ids: [holder], staleMs: 30_000 });
    expect([...released]).toEqual([['race', 1]]);
    expect(await jobRow(id)).toMatchObject({ lease_token: null, leased_by: null, deliveries: 1 });
  });

  it('a delivery a swept worker took after its sweep (its dequeue committed late) is released at a later sweep', async () => {
    const sql = db.store.sqlContext;
    const ghost = `G-${randomUUID()}`;
    await insertStaleWorker(ghost);
    const released: [string, number][] = [];
    const staleWorkerMs = 300;
    const sweeper = new WorkerLiveness({
      pool: db.pool,
      ctx: sql,
      id: `S-${randomUUID()}`,
      group: '',
      concurrency: 1,
      heartbeatMs: 100,
      staleWorkerMs,
      onReleased: (r) => released.push(...r),
      onError: (err) => {
        throw err;
      },
    });
    // Swept while it held nothing.
    await sweeper.releaseStale();
    expect(released).toEqual([]);
    // Its dequeue, sent before it died, commits now.
    const id = await db.store.enqueue('late', { type: 'x', data: {} });
    const [row] = await dequeueJobs(db.pool, sql, {
      queue: 'late',
      limit: 1,
      visibilityMs: 60_000,
      maxDeliveries: 5,
      token: randomUUID(),
      workerId: ghost,
    });
    expect(row?.id).toBe(id);
    await until(async () => {
      await sweeper.releaseStale();
      return released.length > 0;
    }, 'the late delivery released');
    expect(released).toEqual([['late', 1]]);
    expect(await jobRow(id)).toMatchObject({ lease_token: null, leased_by: null, deliveries: 1 });
  });
});
