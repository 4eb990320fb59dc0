import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job, JobContext, QueueConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { createPool } from '../../src/db/pool.js';
import {
  createQueueWorker,
  type JobProcessedEvent,
  type QueueWorker,
  VisibilityLostError,
} from '../../src/queues/queueWorker.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';
import { startTestProxy } from '../subscriptions/testProxy.js';

/*
 * A worker hands a delivery to its handler as soon as the dequeue has run, while the server
 * commits it (dequeueJobsBeforeCommit): the handler's start does not wait for the WAL flush. The
 * ack, the nack and the outcome wait for the commit; a delivery whose commit fails never happened.
 * Both interleavings are forced with a deferred constraint trigger on queue_jobs, which runs at the
 * dequeue's COMMIT, after its rows were sent: one waits on an advisory lock the test holds, the
 * other raises.
 */

let db: TestDb;
const workers: QueueWorker[] = [];
const LOCK = 4_242_001;

beforeAll(async () => {
  db = await setupDb('qcommit');
  const s = `"${db.schema}"`;
  await db.pool.query(`CREATE SEQUENCE ${s}.commit_failures`);
  await db.pool.query(
    `CREATE FUNCTION ${s}.at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF NEW.type = 'held-commit' THEN PERFORM pg_advisory_xact_lock(${LOCK}); END IF;
       -- The first commit of a 'failing-commit' delivery fails; a sequence is not rolled back.
       IF NEW.type = 'failing-commit' AND nextval('${db.schema}.commit_failures') = 1 THEN
         RAISE EXCEPTION 'commit refused by the test';
       END IF;
       RETURN NULL;
     END $$`,
  );
  await db.pool.query(
    `CREATE CONSTRAINT TRIGGER at_commit AFTER UPDATE ON ${s}.queue_jobs
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
       WHEN (NEW.lease_token IS DISTINCT FROM OLD.lease_token) EXECUTE FUNCTION ${s}.at_commit()`,
  );
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await db.close();
});

function worker(
  handler: QueueConfig['handler'],
  events: JobProcessedEvent[],
  opts: { pool?: pg.Pool; visibilityTimeout?: string } = {},
): QueueWorker {
  const w = createQueueWorker({
    pool: opts.pool ?? db.pool,
    config: resolveConfig({
      database: { schema: db.schema },
      queues: { jobs: { handler, visibilityTimeout: opts.visibilityTimeout ?? '60s' } },
    }),
    queues: ['jobs'],
    drainTimeoutMs: 200,
    onProcessed: (e) => events.push(e),
  });
  workers.push(w);
  return w;
}

/** The held-commit trigger's lock has a waiter: a dequeue's COMMIT is pending. */
async function commitWaiting(): Promise<boolean> {
  const { rows } = await db.pool.query(
    `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1`,
    [LOCK],
  );
  return rows.length > 0;
}

/**
 * Once the job's delivery `deliveries` is leased, wait until the database's clock passes the end of
 * that lease's first visibility and the lease reaches beyond it (a heartbeat extended it).
 */
async function outlivesFirstVisibility(id: string, deliveries: number): Promise<void> {
  const leased = async () =>
    (
      await db.pool.query<{ visible_at: Date }>(
        `SELECT visible_at FROM "${db.schema}".queue_jobs WHERE id = $1 AND deliveries = $2`,
        [id, deliveries],
      )
    ).rows[0]?.visible_at;
  let first: Date | undefined;
  await until(
    async () => {
      first = await leased();
      return first !== undefined;
    },
    `delivery ${deliveries} leased`,
    10_000,
  );
  await until(
    async () =>
      (
        await db.pool.query(
          `SELECT 1 FROM "${db.schema}".queue_jobs
            WHERE id = $1 AND deliveries = $2 AND now() > $3 AND visible_at > $3`,
          [id, deliveries, first],
        )
      ).rows.length > 0,
    `delivery ${deliveries} extended past its first visibility`,
    10_000,
  );
}

async function jobRow(id: string) {
  const r = await db.pool.query<{ deliveries: number; lease_token: string | null }>(
    `SELECT deliveries, lease_token FROM "${db.schema}".queue_jobs WHERE id = $1`,
    [id],
  );
  return r.rows[0];
}

describe('a delivery reaches its handler before its commit is confirmed', () => {
  it('the handler starts while the dequeue commits; the ack waits for the commit', async () => {
    const lock = await db.pool.connect();
    try {
      await lock.query('SELECT pg_advisory_lock($1)', [LOCK]);
      const started: Job[] = [];
      let returned = false;
      const events: JobProcessedEvent[] = [];
      const w = worker(async (job: Job) => {
        started.push(job);
        returned = true;
      }, events);
      await w.start();
      const id = await db.store.enqueue('jobs', { type: 'held-commit', data: {} });
      // The dequeue's COMMIT waits on the lock: to everyone else the job is not delivered yet.
      await until(() => started.length === 1, 'the handler started before the commit');
      expect(started[0]).toMatchObject({ id, deliveries: 1 });
      expect(await jobRow(id)).toEqual({ deliveries: 0, lease_token: null });
      // The handler returned while the dequeue's COMMIT still waits on the lock: no ack yet.
      await until(() => returned, 'the handler returned');
      await until(commitWaiting, 'the dequeue commit waiting on the lock');
      expect(events).toEqual([]);
      expect(await jobRow(id)).toEqual({ deliveries: 0, lease_token: null });
      await lock.query('SELECT pg_advisory_unlock($1)', [LOCK]);
      await until(() => events.length === 1, 'acked after the commit');
      expect(events[0]).toMatchObject({ id, outcome: 'completed', deliveries: 1 });
      expect(await jobRow(id)).toBeUndefined();
      await w.stop();
    } finally {
      lock.release();
    }
  });

  it('a delivery whose commit fails aborts its handler, counts as lost, and is delivered again', async () => {
    const signals: AbortSignal[] = [];
    const deliveries: number[] = [];
    const events: JobProcessedEvent[] = [];
    const w = worker(async (job: Job, ctx: JobContext) => {
      deliveries.push(job.deliveries);
      signals.push(ctx.signal);
      // The first delivery runs until it is told to stop (its commit failed); the next returns.
      if (deliveries.length === 1)
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    }, events);
    await w.start();
    const id = await db.store.enqueue('jobs', { type: 'failing-commit', data: {} });
    // Well before any heartbeat or visibility deadline (60 s): the failed commit aborts the handler.
    await until(() => signals[0]?.aborted === true, 'the first handler aborted', 5000);
    expect(signals[0]!.reason).toBeInstanceOf(VisibilityLostError);
    await until(() => events.some((e) => e.outcome === 'completed'), 'the job completed');
    expect(events.map((e) => e.outcome)).toEqual(['lost', 'completed']);
    expect(events[0]!.error?.message).toMatch(/commit refused by the test/);
    // The failed delivery was never recorded: the next one is the first.
    expect(deliveries).toEqual([1, 1]);
    expect(w.stats()).toMatchObject({ completed: 1, lost: 1, failed: 0 });
    expect(await jobRow(id)).toBeUndefined();
    await w.stop();
  });

  it('a dequeue whose commit was not confirmed (the connection dropped after its rows): the handler aborts, the job comes back after its visibility', async () => {
    // The proxy forwards the dequeue's rows and drops the connection before its ReadyForQuery: the
    // server committed the delivery, the worker cannot know it.
    const proxy = await startTestProxy(db.url);
    const pool = createPool(proxy.url, { max: 6 });
    try {
      const calls: { deliveries: number; errors: Job['errors']; signal: AbortSignal }[] = [];
      const events: JobProcessedEvent[] = [];
      const w = worker(
        async (job: Job, ctx: JobContext) => {
          calls.push({ deliveries: job.deliveries, errors: job.errors, signal: ctx.signal });
          if (calls.length === 1)
            await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
        },
        events,
        { pool, visibilityTimeout: '1s' },
      );
      proxy.arm('queue_dequeue', { passRows: true });
      await w.start();
      const id = await db.store.enqueue('jobs', { type: 'unconfirmed', data: {} });
      await until(() => calls[0]?.signal.aborted === true, 'the first handler aborted', 10_000);
      expect(proxy.droppedAt).toBeDefined();
      expect(calls[0]!.signal.reason).toBeInstanceOf(VisibilityLostError);
      // The delivery did commit: the job is leased until its visibility runs out, then delivered again.
      await until(() => events.some((e) => e.outcome === 'completed'), 'the job completed', 15_000);
      expect(events.map((e) => e.outcome)).toEqual(['lost', 'completed']);
      expect(calls.map((c) => c.deliveries)).toEqual([1, 2]);
      expect(calls[1]!.errors).toEqual([expect.objectContaining({ delivery: 1, name: 'VisibilityTimeout' })]);
      expect(await jobRow(id)).toBeUndefined();
      await w.stop();
    } finally {
      await pool.end();
      await proxy.close();
    }
  });

  it('a handler that outlives its given-up delivery does not end the next delivery of its job here', async () => {
    const proxy = await startTestProxy(db.url);
    const pool = createPool(proxy.url, { max: 6 });
    try {
      const calls: number[] = [];
      const events: JobProcessedEvent[] = [];
      const w = worker(
        async (job: Job) => {
          calls.push(job.deliveries);
          // The first (given up) handler ignores its signal and returns once the job is delivered
          // here again; the second runs past the visibility timeout, kept by the heartbeat.
          if (calls.length === 1) await until(() => calls.length === 2, 'the second delivery', 15_000);
          else await outlivesFirstVisibility(job.id, 2);
        },
        events,
        { pool, visibilityTimeout: '1s' },
      );
      proxy.arm('queue_dequeue', { passRows: true });
      await w.start();
      const id = await db.store.enqueue('jobs', { type: 'outlived', data: {} });
      await until(() => events.some((e) => e.outcome === 'completed'), 'the job completed', 20_000);
      // The first handler's end did not drop the second delivery's heartbeat: no third delivery.
      expect(calls).toEqual([1, 2]);
      expect(events.map((e) => e.outcome)).toEqual(['lost', 'completed']);
      expect(await jobRow(id)).toBeUndefined();
      await w.stop();
    } finally {
      await pool.end();
      await proxy.close();
    }
  });
});
