import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job, JobContext, QueueConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { createQueueWorker } from '../../src/queues/queueWorker.js';
import { HandlerTimeoutError } from '../../src/subscriptions/boundHandlerCall.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('qtimeout', { poolSize: 10 });
});
afterAll(async () => db.close());

/** A started worker of the one queue `name`; each delivery's outcome is pushed to `events`. */
async function startQueue(name: string, queue: QueueConfig, events: string[], drainTimeoutMs?: number) {
  const worker = createQueueWorker({
    pool: db.pool,
    config: resolveConfig({ database: { schema: db.schema }, queues: { [name]: queue } }),
    queues: [name],
    ...(drainTimeoutMs === undefined ? {} : { drainTimeoutMs }),
    onProcessed: (e) => events.push(`${e.deliveries}:${e.outcome}:${e.error?.name}`),
  });
  await worker.start();
  return worker;
}

describe('queues.<name>.handlerTimeout', () => {
  it('a handler that never returns: each delivery fails with a timeout, its signal aborts, and the job is dead after maxDeliveries', async () => {
    const calls: { delivery: number; signal: AbortSignal }[] = [];
    const events: string[] = [];
    const worker = await startQueue(
      'stuck',
      {
        handlerTimeout: 150,
        // Far longer than the test: only the timeout can end a delivery.
        visibilityTimeout: '10m',
        maxDeliveries: 3,
        backoff: { initialMs: 10, maxMs: 20 },
        handler: (job: Job, ctx: JobContext) => {
          calls.push({ delivery: job.deliveries, signal: ctx.signal });
          return new Promise<void>(() => undefined);
        },
      },
      events,
      100,
    );
    try {
      const id = await db.store.enqueue('stuck', { type: 'x', data: {} });
      await until(
        async () =>
          (await db.pool.query(`SELECT 1 FROM "${db.schema}".queue_dead_letters WHERE id = $1`, [id]))
            .rowCount === 1,
        'the job in the dead letters',
      );
      expect(calls.map((c) => c.delivery)).toEqual([1, 2, 3]);
      for (const c of calls) {
        expect(c.signal.aborted).toBe(true);
        expect(c.signal.reason).toBeInstanceOf(HandlerTimeoutError);
      }
      expect(events).toEqual([
        '1:retry:HandlerTimeoutError',
        '2:retry:HandlerTimeoutError',
        '3:dead:HandlerTimeoutError',
      ]);
      const dead = await db.pool.query<{ deliveries: number; errors: { name: string; message: string }[] }>(
        `SELECT deliveries, errors FROM "${db.schema}".queue_dead_letters WHERE id = $1`,
        [id],
      );
      expect(dead.rows[0]!.deliveries).toBe(3);
      expect(dead.rows[0]!.errors.map((e) => e.name)).toEqual([
        'HandlerTimeoutError',
        'HandlerTimeoutError',
        'HandlerTimeoutError',
      ]);
      expect(dead.rows[0]!.errors[0]!.message).toMatch(/queue "stuck" did not finish within 150 ms/);
      expect(worker.stats()).toMatchObject({ timeouts: 3, failed: 3, dead: 1, completed: 0 });
    } finally {
      // The abandoned handlers never return: stop() resolves anyway.
      await worker.stop();
    }
  });
  it('a handler that first looks at ctx.signal after its timeout finds it aborted, with the reason', async () => {
    // The worker makes a delivery's AbortController only when the handler asks for its signal:
    // one asked for after the abort must still come aborted.
    const events: string[] = [];
    const seen: { aborted: boolean; reason: unknown }[] = [];
    const worker = await startQueue(
      'late',
      {
        handlerTimeout: 100,
        visibilityTimeout: '10m',
        maxDeliveries: 1,
        handler: async (_job: Job, ctx: JobContext) => {
          await until(() => events.length > 0, 'the delivery timed out');
          seen.push({ aborted: ctx.signal.aborted, reason: ctx.signal.reason });
        },
      },
      events,
    );
    try {
      await db.store.enqueue('late', { type: 'x', data: {} });
      await until(() => seen.length === 1, 'the handler looked at its signal');
      expect(events).toEqual(['1:dead:HandlerTimeoutError']);
      expect(seen[0]!.aborted).toBe(true);
      expect(seen[0]!.reason).toBeInstanceOf(HandlerTimeoutError);
    } finally {
      await worker.stop();
    }
  });
});
