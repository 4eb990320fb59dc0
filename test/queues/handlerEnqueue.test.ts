import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerContext } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import type { RecordedMessage } from '../../src/store/types.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('qhctx', { poolSize: 20 });
});
afterAll(async () => db.close());

describe('ctx.enqueue in subscription handlers', () => {
  it('a retried handler enqueues once; a transactional handler that throws enqueues nothing', async () => {
    const calls = { direct: 0, tx: 0 };
    const config = resolveConfig({
      database: { schema: db.schema },
      groups: {
        S: {
          subscriptions: {
            direct: {
              category: 'direct',
              backoff: { initialMs: 1, maxMs: 5 },
              handler: async (_m: RecordedMessage, ctx: HandlerContext) => {
                calls.direct += 1;
                await ctx.enqueue('followups', { type: 'notify', data: { attempt: ctx.attempt } });
                if (calls.direct < 3) throw new Error(`attempt ${ctx.attempt} fails after enqueueing`);
              },
            },
            tx: {
              category: 'txn',
              transactional: true,
              backoff: { initialMs: 1, maxMs: 5 },
              handler: async (m: RecordedMessage, ctx: HandlerContext) => {
                calls.tx += 1;
                // The same derived id every attempt: a row surviving a rollback would keep attempt 1's data.
                await ctx.enqueue(
                  'txjobs',
                  { type: 'notify', data: { attempt: ctx.attempt } },
                  { key: m.streamName },
                );
                if (ctx.attempt < 3) throw new Error('rolled back with the checkpoint');
              },
            },
          },
        },
      },
    });
    const errors: Error[] = [];
    const worker = createWorker({
      pool: db.pool,
      config,
      group: 'S',
      maxPollMs: 100,
      onError: (e) => errors.push(e),
    });
    await worker.start();
    try {
      await db.store.append('direct-1', { type: 'go', data: {} });
      await db.store.append('txn-1', { type: 'go', data: {} });
      await until(async () => {
        const { rows } = await db.pool.query(
          `SELECT 1 FROM "${db.schema}".checkpoints WHERE stream_position = 1 AND stream_name IN ('direct-1', 'txn-1')`,
        );
        return rows.length === 2;
      }, 'both checkpoints to advance');
    } finally {
      await worker.stop();
    }
    expect(errors).toEqual([]);
    expect(calls).toEqual({ direct: 3, tx: 3 });
    const jobs = await db.pool.query(
      `SELECT queue, data, metadata, key FROM "${db.schema}".queue_jobs ORDER BY queue`,
    );
    const [cause] = await db.store.readStream('direct-1');
    // Non-transactional: the first attempt's job stays (the later attempts' enqueues were no-ops).
    expect(jobs.rows[0]).toMatchObject({ queue: 'followups', data: { attempt: 1 } });
    expect(jobs.rows[0].metadata).toMatchObject({ causationId: cause!.id, correlationId: cause!.id });
    // Transactional: only the committed attempt's job.
    expect(jobs.rows[1]).toMatchObject({ queue: 'txjobs', data: { attempt: 3 }, key: 'txn-1' });
    expect(jobs.rows).toHaveLength(2);
    const keys = await db.pool.query(`SELECT pending FROM "${db.schema}".queue_keys WHERE queue = 'txjobs'`);
    expect(keys.rows).toEqual([{ pending: 1 }]);
  });
});

describe('queues config', () => {
  it('names every wrong key', () => {
    expect(() =>
      resolveConfig({
        queues: {
          emails: {
            handler: 'no',
            concurrency: 0,
            visibilityTimeout: 'soon',
            maxDeliveries: -1,
            retries: 3,
            handlerTimeout: 'never',
          },
        },
        groups: { G: { queues: ['emails', 'sms'] } },
      }),
    ).toThrow(
      new RegExp(
        [
          'queues\\.emails\\.retries: unknown key',
          'queues\\.emails\\.handler: expected a function',
          'queues\\.emails\\.concurrency: expected an integer >= 1',
          'queues\\.emails\\.maxDeliveries: expected an integer >= 1',
          'queues\\.emails\\.visibilityTimeout: expected milliseconds',
          'queues\\.emails\\.handlerTimeout: expected milliseconds',
        ].join('[\\s\\S]*'),
      ),
    );
    expect(() =>
      resolveConfig({ queues: { emails: { handler: () => undefined } }, groups: { G: { queues: ['sms'] } } }),
    ).toThrow(/groups\.G\.queues: queue "sms" is not declared under queues \(declared: emails\)/);
    const ok = resolveConfig({
      queues: { emails: { handler: () => undefined, visibilityTimeout: '2m' } },
      groups: { G: { queues: ['emails'] } },
    });
    expect(ok.queues.get('emails')).toMatchObject({
      concurrency: 10,
      batchSize: 10,
      maxDeliveries: 5,
      visibilityTimeoutMs: 120_000,
      handlerTimeoutMs: 30_000,
      backoff: { initialMs: 1000, maxMs: 300_000 },
    });
    expect(ok.groups.get('G')).toMatchObject({ queues: ['emails'] });
    expect(ok.groups.get('G')!.subscriptions.size).toBe(0);
  });
});
