import { context, metrics, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  type DataPoint,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SubscriptionConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';
import { processMetrics } from '../../src/telemetry/metrics.js';
import { contextFromTraceparent, currentTraceparent } from '../../src/telemetry/tracing.js';
import { setupDb, type TestDb } from '../helpers/db.js';

const spans = new InMemorySpanExporter();
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({
  exporter: metricExporter,
  exportIntervalMillis: 3_600_000,
});
let db: TestDb;

beforeAll(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }),
  );
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
  db = await setupDb('otel', { poolSize: 20 });
});
afterAll(async () => db.close());

async function until(check: () => Promise<boolean> | boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function runWorker(subscriptions: Record<string, SubscriptionConfig>, body: () => Promise<void>) {
  const config = resolveConfig({ database: { schema: db.schema }, groups: { T: { subscriptions } } });
  const errors: Error[] = [];
  const worker = createWorker({
    pool: db.pool,
    config,
    group: 'T',
    maxPollMs: 100,
    onError: (e) => errors.push(e),
  });
  await worker.start();
  try {
    await body();
  } finally {
    await worker.stop();
  }
  return errors;
}

async function collect(): Promise<ResourceMetrics> {
  metricExporter.reset();
  await reader.forceFlush();
  const all = metricExporter.getMetrics();
  return all[all.length - 1]!;
}

function points(rm: ResourceMetrics, name: string): DataPoint<unknown>[] {
  return rm.scopeMetrics.flatMap((s) =>
    s.metrics.filter((m) => m.descriptor.name === name).flatMap((m) => m.dataPoints as DataPoint<unknown>[]),
  );
}

describe('traceparent helpers', () => {
  it('round-trips the active span through a traceparent and ignores malformed values', async () => {
    const tracer = trace.getTracer('test');
    await tracer.startActiveSpan('outer', async (span) => {
      const tp = currentTraceparent()!;
      expect(tp).toBe(`00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`);
      expect(trace.getSpanContext(contextFromTraceparent(tp))).toMatchObject({
        traceId: span.spanContext().traceId,
        spanId: span.spanContext().spanId,
        isRemote: true,
      });
      span.end();
    });
    expect(currentTraceparent()).toBeUndefined();
    expect(trace.getSpanContext(contextFromTraceparent('00-zz-1-01'))).toBeUndefined();
    expect(
      trace.getSpanContext(contextFromTraceparent(`00-${'0'.repeat(32)}-${'1'.repeat(16)}-01`)),
    ).toBeUndefined();
  });
});

describe('spans', () => {
  it('append -> handler -> append forms one trace tree, carried by traceparent metadata', async () => {
    spans.reset();
    const tracer = trace.getTracer('test');
    const errors = await runWorker(
      {
        Relay: {
          category: 'order',
          handler: async (m, ctx) => {
            await ctx.store.append(`shipment-${(m.data as { id: string }).id}`, {
              type: 'shipment_requested',
              data: {},
            });
          },
        },
      },
      async () => {
        await tracer.startActiveSpan('http request', async (root) => {
          await db.store.append('order-t1', { type: 'order_placed', data: { id: 't1' } });
          root.end();
        });
        await until(
          async () => (await db.store.readStream('shipment-t1')).length === 1,
          'the relayed message',
        );
      },
    );
    expect(errors).toEqual([]);
    const finished = spans.getFinishedSpans();
    const root = finished.find((s) => s.name === 'http request')!;
    const firstAppend = finished.find((s) => s.name === 'order-t1 append')!;
    const handler = finished.find((s) => s.name === 'Relay process')!;
    const secondAppend = finished.find((s) => s.name === 'shipment-t1 append')!;
    expect([root, firstAppend, handler, secondAppend].every(Boolean)).toBe(true);
    const traceId = root.spanContext().traceId;
    for (const s of [firstAppend, handler, secondAppend]) expect(s.spanContext().traceId).toBe(traceId);
    expect(firstAppend.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    expect(handler.parentSpanContext?.spanId).toBe(firstAppend.spanContext().spanId);
    expect(secondAppend.parentSpanContext?.spanId).toBe(handler.spanContext().spanId);
    expect(firstAppend.kind).toBe(SpanKind.PRODUCER);
    expect(handler.kind).toBe(SpanKind.CONSUMER);
    expect(handler.attributes).toMatchObject({
      'beckett.group': 'T',
      'beckett.subscription': 'Relay',
      'messaging.destination.name': 'order-t1',
      'beckett.message.type': 'order_placed',
      'beckett.attempt': 1,
    });
    const [order] = await db.store.readStream('order-t1');
    const [shipment] = await db.store.readStream('shipment-t1');
    expect(order!.metadata.traceparent).toBe(`00-${traceId}-${firstAppend.spanContext().spanId}-01`);
    expect(shipment!.metadata.traceparent).toBe(`00-${traceId}-${secondAppend.spanContext().spanId}-01`);
    expect(shipment!.metadata.causationId).toBe(order!.id);
  });

  it('reads are spanned, and a failed append records the error on its span', async () => {
    spans.reset();
    await db.store.readStream('order-t1');
    await db.store.readAll({ limit: 1 });
    await expect(
      db.store.append('order-t1', { type: 'x', data: {} }, { expectedVersion: 'no_stream' }),
    ).rejects.toThrow();
    const names = spans.getFinishedSpans().map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(['order-t1 read', 'log read', 'order-t1 append']));
    const failed = spans.getFinishedSpans().find((s) => s.name === 'order-t1 append')!;
    expect(failed.status.code).toBe(2); // ERROR
    expect(failed.events.some((e) => e.name === 'exception')).toBe(true);
  });
});

describe('metrics', () => {
  it('counts processed messages, handler durations and retries, and observes lag and failed checkpoints', async () => {
    let calls = 0;
    const errors = await runWorker(
      {
        Flaky: {
          stream: 'flaky-1',
          backoff: { initialMs: 1, maxMs: 5 },
          handler: async () => {
            calls += 1;
            if (calls === 1) throw new Error('first try fails');
          },
        },
      },
      async () => {
        await db.store.append('flaky-1', [
          { type: 'a', data: {} },
          { type: 'b', data: {} },
        ]);
        await until(() => calls >= 3, 'the retried handler');
      },
    );
    expect(errors).toEqual([]);
    processMetrics().setSubscriptionSampler(async () => [
      { group: 'T', subscription: 'Flaky', lag: 7, failedCheckpoints: 2 },
    ]);
    const rm = await collect();
    const processed = points(rm, 'beckett.messages.processed').find(
      (p) => p.attributes['beckett.subscription'] === 'Flaky',
    );
    expect(processed?.value).toBe(2);
    const retries = points(rm, 'beckett.handler.retries').find(
      (p) => p.attributes['beckett.subscription'] === 'Flaky',
    );
    expect(retries?.value).toBe(1);
    const durations = points(rm, 'beckett.handler.duration').filter(
      (p) => p.attributes['beckett.subscription'] === 'Flaky',
    );
    const count = durations.reduce((n, p) => n + (p.value as { count: number }).count, 0);
    expect(count).toBe(3);
    expect(points(rm, 'beckett.subscription.lag')).toEqual([
      expect.objectContaining({
        value: 7,
        attributes: { 'beckett.group': 'T', 'beckett.subscription': 'Flaky' },
      }),
    ]);
    expect(points(rm, 'beckett.checkpoints.failed')[0]?.value).toBe(2);
    const text = await processMetrics().prometheus();
    expect(text).toContain('beckett_messages_processed_total{group="T",subscription="Flaky"} 2');
    expect(text).toContain('beckett_handler_retries_total{group="T",subscription="Flaky"} 1');
    expect(text).toContain('beckett_handler_duration_seconds_count{group="T",subscription="Flaky"} 3');
    expect(text).toContain('beckett_subscription_lag{group="T",subscription="Flaky"} 7');
    processMetrics().setSubscriptionSampler(undefined);
  });
});
