import { randomUUID } from 'node:crypto';
import { metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  type DataPoint,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dequeueJobs, failJob } from '../../src/queues/queueJobsSql.js';
import { listQueues } from '../../src/queues/queueOperations.js';
import { BeckettMetrics } from '../../src/telemetry/metrics.js';
import { setupDb, type TestDb } from '../helpers/db.js';

const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
let db: TestDb;

beforeAll(async () => {
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
  db = await setupDb('qmetrics', { poolSize: 5 });
});
afterAll(async () => db.close());

describe('queue gauges', () => {
  it('are exported per queue to OpenTelemetry (depth, in flight, delayed, dead, ages) and to /metrics', async () => {
    const sql = db.store.sqlContext;
    const take = async (queue: string) =>
      dequeueJobs(db.pool, sql, {
        queue,
        limit: 1,
        visibilityMs: 60_000,
        maxDeliveries: 5,
        token: randomUUID(),
        workerId: 'w',
      });
    // mail: 2 ready, 1 delayed, 1 in flight, 1 dead; the oldest job enqueued 2 minutes ago.
    const inFlight = await db.store.enqueue('mail', { type: 'x', data: { n: 0 } });
    expect((await take('mail')).map((r) => r.id)).toEqual([inFlight]);
    const dying = await db.store.enqueue('mail', { type: 'x', data: { n: 1 } });
    const [taken] = await take('mail');
    expect(taken?.id).toBe(dying);
    await db.pool.query(`UPDATE "${db.schema}".queue_jobs SET lease_token = $2 WHERE id = $1`, [
      dying,
      '00000000-0000-4000-8000-000000000001',
    ]);
    await failJob(db.pool, sql, {
      id: dying,
      token: '00000000-0000-4000-8000-000000000001',
      error: null,
      backoffMs: 0,
      dead: true,
    });
    await db.store.enqueue('mail', { type: 'x', data: { n: 2 } });
    await db.store.enqueue('mail', { type: 'x', data: { n: 3 } });
    await db.store.enqueue('mail', { type: 'x', data: { n: 4 } }, { delay: 3_600_000 });
    await db.pool.query(
      `UPDATE "${db.schema}".queue_jobs SET created_at = now() - interval '2 minutes' WHERE id = $1`,
      [inFlight],
    );

    const m = new BeckettMetrics();
    // As the worker wires it (src/host/workerExtras.ts): the config's queues, from listQueues.
    m.setQueueSampler(async () => listQueues(db.pool, sql, { include: ['mail', 'idle'] }));
    m.register();
    exporter.reset();
    await reader.forceFlush();
    const rm = exporter.getMetrics().at(-1)!;
    const value = (name: string, queue: string) =>
      rm.scopeMetrics
        .flatMap((s) => s.metrics.filter((x) => x.descriptor.name === name))
        .flatMap((x) => x.dataPoints as DataPoint<number>[])
        .find((p) => p.attributes['beckett.queue'] === queue)?.value;
    expect(value('beckett.queue.ready', 'mail')).toBe(2);
    expect(value('beckett.queue.in_flight', 'mail')).toBe(1);
    expect(value('beckett.queue.delayed', 'mail')).toBe(1);
    expect(value('beckett.queue.dead_letters', 'mail')).toBe(1);
    expect(value('beckett.queue.waiting_on_key', 'mail')).toBe(0);
    expect(value('beckett.queue.oldest_age', 'mail')).toBeGreaterThanOrEqual(120);
    expect(value('beckett.queue.ready_age', 'mail')).toBeGreaterThanOrEqual(0);
    // A configured queue without jobs is observed too (at 0), so an alert on it has a series.
    expect(value('beckett.queue.ready', 'idle')).toBe(0);
    expect(value('beckett.queue.oldest_age', 'idle')).toBe(0);

    const text = await m.prometheus();
    expect(text).toContain('beckett_queue_ready{queue="mail"} 2');
    expect(text).toContain('beckett_queue_in_flight{queue="mail"} 1');
    expect(text).toContain('beckett_queue_dead_letters{queue="mail"} 1');
  });
});
