import {
  type Counter,
  type Histogram,
  type Meter,
  type MeterProvider,
  metrics,
  type ObservableGauge,
} from '@opentelemetry/api';
import { INSTRUMENTATION_NAME } from './tracing.js';

/** One subscription's state, read from the database when metrics are collected. */
export interface SubscriptionSample {
  group: string;
  subscription: string;
  /** Messages known to the subscription and not yet processed, summed over its streams. */
  lag: number;
  /** Checkpoints in status `failed`. */
  failedCheckpoints: number;
  /** Checkpoints waiting for a retry. */
  retryingCheckpoints?: number;
}

/** Where lag and failed checkpoints come from (the worker passes a query over its tables). */
export type SubscriptionSampler = () => Promise<SubscriptionSample[]>;

/** The transaction holding every gap-safe reader back (store/readLog.ts oldestOpenTransaction). */
export interface BlockingSample {
  pid: number;
  ageSeconds: number;
  applicationName: string;
  database: string | null;
  query: string;
  /** beckett's own transaction, or a foreign one. */
  own: boolean;
}

/** One queue's gauges (src/queues/queueOperations.ts listQueues). */
export interface QueueSample {
  queue: string;
  ready: number;
  inFlight: number;
  delayed: number;
  waitingOnKey: number;
  dead: number;
  oldestAgeSeconds: number;
  readyAgeSeconds: number;
}
export type QueueSampler = () => Promise<QueueSample[]>;

export type BlockingSampler = () => Promise<BlockingSample | undefined>;

export const MetricName = {
  processed: 'beckett.messages.processed',
  handlerDuration: 'beckett.handler.duration',
  retries: 'beckett.handler.retries',
  handlerErrors: 'beckett.handler.errors',
  lag: 'beckett.subscription.lag',
  failedCheckpoints: 'beckett.checkpoints.failed',
  blockingTransactionAge: 'beckett.blocking_transaction.age',
  scheduledDelivered: 'beckett.scheduled.delivered',
  recurringDelivered: 'beckett.recurring.delivered',
  queueReady: 'beckett.queue.ready',
  queueInFlight: 'beckett.queue.in_flight',
  queueDelayed: 'beckett.queue.delayed',
  queueWaitingOnKey: 'beckett.queue.waiting_on_key',
  queueDead: 'beckett.queue.dead_letters',
  queueOldestAge: 'beckett.queue.oldest_age',
  queueReadyAge: 'beckett.queue.ready_age',
} as const;

/** The queue gauges: OpenTelemetry name, Prometheus name, help, unit, and the sample's value. */
const QUEUE_GAUGES: {
  name: string;
  prom: string;
  help: string;
  unit: string;
  value: (q: QueueSample) => number;
}[] = [
  {
    name: MetricName.queueReady,
    prom: 'beckett_queue_ready',
    help: 'Jobs a worker may take now',
    unit: '{job}',
    value: (q) => q.ready,
  },
  {
    name: MetricName.queueInFlight,
    prom: 'beckett_queue_in_flight',
    help: 'Jobs delivered and not acked',
    unit: '{job}',
    value: (q) => q.inFlight,
  },
  {
    name: MetricName.queueDelayed,
    prom: 'beckett_queue_delayed',
    help: 'Jobs waiting for their time or a retry',
    unit: '{job}',
    value: (q) => q.delayed,
  },
  {
    name: MetricName.queueWaitingOnKey,
    prom: 'beckett_queue_waiting_on_key',
    help: 'Jobs waiting behind an earlier job of their key',
    unit: '{job}',
    value: (q) => q.waitingOnKey,
  },
  {
    name: MetricName.queueDead,
    prom: 'beckett_queue_dead_letters',
    help: 'Jobs in the dead letters',
    unit: '{job}',
    value: (q) => q.dead,
  },
  {
    name: MetricName.queueOldestAge,
    prom: 'beckett_queue_oldest_age_seconds',
    help: 'Age of the oldest job not done',
    unit: 's',
    value: (q) => q.oldestAgeSeconds,
  },
  {
    name: MetricName.queueReadyAge,
    prom: 'beckett_queue_ready_age_seconds',
    help: 'How long the oldest ready job has waited for a worker',
    unit: 's',
    value: (q) => q.readyAgeSeconds,
  },
];

/** Handler duration histogram bounds, in seconds. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

interface Instruments {
  provider: MeterProvider;
  processed: Counter;
  duration: Histogram;
  retries: Counter;
  errors: Counter;
  scheduled: Counter;
  recurring: Counter;
  gauges: ObservableGauge[];
}

interface HistogramState {
  counts: number[];
  sum: number;
  count: number;
}

type Labels = Record<string, string>;

/**
 * beckett's metrics, kept twice: as OpenTelemetry instruments (exported by whatever SDK the user
 * registered; no-ops otherwise) and as in-process totals, so `/metrics` answers in Prometheus text
 * without any SDK. Gauges (lag, failed checkpoints) are read from the database on collection.
 */
export class BeckettMetrics {
  #instruments: Instruments | undefined;
  readonly #counters = new Map<string, Map<string, { labels: Labels; value: number }>>();
  readonly #histograms = new Map<string, { labels: Labels; state: HistogramState }>();
  #sampler: SubscriptionSampler | undefined;
  #blockingSampler: BlockingSampler | undefined;
  #queueSampler: QueueSampler | undefined;

  /** Set the source of the queue gauges (depth, in flight, dead, ages; src/queues/). */
  setQueueSampler(sampler: QueueSampler | undefined): void {
    this.#queueSampler = sampler;
  }

  /** Set the source of lag and failed-checkpoint gauges. */
  setSubscriptionSampler(sampler: SubscriptionSampler | undefined): void {
    this.#sampler = sampler;
  }

  /** Set the source of the blocking-transaction gauge. */
  setBlockingSampler(sampler: BlockingSampler | undefined): void {
    this.#blockingSampler = sampler;
  }

  /** The transaction holding readers back now, if any (none without a sampler). */
  async blocking(): Promise<BlockingSample | undefined> {
    return this.#blockingSampler ? this.#blockingSampler() : undefined;
  }

  // The metrics API has no proxy provider: instruments made before the SDK registers stay no-ops,
  // so they are (re)made whenever the global provider changes.
  #otel(): Instruments {
    const provider = metrics.getMeterProvider();
    if (this.#instruments?.provider === provider) return this.#instruments;
    const meter: Meter = provider.getMeter(INSTRUMENTATION_NAME);
    const lag = meter.createObservableGauge(MetricName.lag, {
      description: 'Messages not yet processed by a subscription',
      unit: '{message}',
    });
    const failed = meter.createObservableGauge(MetricName.failedCheckpoints, {
      description: 'Checkpoints in status failed',
      unit: '{checkpoint}',
    });
    const blocking = meter.createObservableGauge(MetricName.blockingTransactionAge, {
      description: 'Age of the transaction holding every gap-safe reader back',
      unit: 's',
    });
    const queueGauges = QUEUE_GAUGES.map((g) => ({
      gauge: meter.createObservableGauge(g.name, { description: g.help, unit: g.unit }),
      value: g.value,
    }));
    meter.addBatchObservableCallback(
      async (result) => {
        for (const s of await this.sample()) {
          const attrs = { 'beckett.group': s.group, 'beckett.subscription': s.subscription };
          result.observe(lag, s.lag, attrs);
          result.observe(failed, s.failedCheckpoints, attrs);
        }
        for (const q of await this.sampleQueues()) {
          const attrs = { 'beckett.queue': q.queue };
          for (const g of queueGauges) result.observe(g.gauge, g.value(q), attrs);
        }
        const b = await this.blocking();
        if (b) result.observe(blocking, b.ageSeconds, blockerAttributes(b, 'beckett.blocking.'));
      },
      [lag, failed, blocking, ...queueGauges.map((g) => g.gauge)],
    );
    this.#instruments = {
      provider,
      processed: meter.createCounter(MetricName.processed, {
        description: 'Messages handled successfully',
        unit: '{message}',
      }),
      duration: meter.createHistogram(MetricName.handlerDuration, {
        description: 'Duration of handler calls',
        unit: 's',
        advice: { explicitBucketBoundaries: [...DURATION_BUCKETS] },
      }),
      retries: meter.createCounter(MetricName.retries, {
        description: 'Handler calls that were retries (attempt > 1)',
        unit: '{call}',
      }),
      errors: meter.createCounter(MetricName.handlerErrors, {
        description: 'Handler calls that threw',
        unit: '{call}',
      }),
      scheduled: meter.createCounter(MetricName.scheduledDelivered, {
        description: 'Scheduled messages appended to their stream',
        unit: '{message}',
      }),
      recurring: meter.createCounter(MetricName.recurringDelivered, {
        description: 'Occurrences of recurring messages appended',
        unit: '{message}',
      }),
      gauges: [lag, failed, blocking, ...queueGauges.map((g) => g.gauge)],
    };
    return this.#instruments;
  }

  /** The queues' depth, in flight, dead letters and ages now (empty without a sampler). */
  async sampleQueues(): Promise<QueueSample[]> {
    return this.#queueSampler ? this.#queueSampler() : [];
  }

  /** The subscriptions' lag and failed checkpoints now (empty without a sampler). */
  async sample(): Promise<SubscriptionSample[]> {
    return this.#sampler ? this.#sampler() : [];
  }

  #add(name: string, labels: Labels, n: number): void {
    let series = this.#counters.get(name);
    if (!series) {
      series = new Map();
      this.#counters.set(name, series);
    }
    // Labels always come in the same key order per metric: their values identify the series.
    const k = Object.values(labels).join('\u0000');
    const cur = series.get(k);
    if (cur) cur.value += n;
    else series.set(k, { labels, value: n });
  }

  /** One handler call (of one message or a batch) finished. */
  recordHandlerCall(info: {
    group: string;
    subscription: string;
    messages: number;
    durationSeconds: number;
    attempt: number;
    ok: boolean;
  }): void {
    const labels = { group: info.group, subscription: info.subscription };
    const attrs = { 'beckett.group': info.group, 'beckett.subscription': info.subscription };
    const o = this.#otel();
    o.duration.record(info.durationSeconds, { ...attrs, 'beckett.outcome': info.ok ? 'ok' : 'error' });
    const k = `${info.group}\u0000${info.subscription}`;
    let h = this.#histograms.get(k);
    if (!h) {
      h = { labels, state: { counts: DURATION_BUCKETS.map(() => 0), sum: 0, count: 0 } };
      this.#histograms.set(k, h);
    }
    DURATION_BUCKETS.forEach((b, i) => {
      if (info.durationSeconds <= b) h.state.counts[i]! += 1;
    });
    h.state.sum += info.durationSeconds;
    h.state.count += 1;
    if (info.ok) {
      o.processed.add(info.messages, attrs);
      this.#add(MetricName.processed, labels, info.messages);
    } else {
      o.errors.add(1, attrs);
      this.#add(MetricName.handlerErrors, labels, 1);
    }
    if (info.attempt > 1) {
      o.retries.add(1, attrs);
      this.#add(MetricName.retries, labels, 1);
    }
  }

  /** Scheduled messages appended by a delivery loop. */
  recordScheduledDelivered(n: number): void {
    if (n <= 0) return;
    this.#otel().scheduled.add(n);
    this.#add(MetricName.scheduledDelivered, {}, n);
  }

  /** Occurrences of a recurring message appended. */
  recordRecurringDelivered(name: string, n: number): void {
    if (n <= 0) return;
    this.#otel().recurring.add(n, { 'beckett.recurring.name': name });
    this.#add(MetricName.recurringDelivered, { name }, n);
  }

  /** Make sure the OpenTelemetry instruments exist (so gauges are observed from the first export). */
  register(): void {
    this.#otel();
  }

  /** The metrics in the Prometheus text format (0.0.4). */
  async prometheus(): Promise<string> {
    const out: string[] = [];
    const counter = (name: string, help: string) => {
      const prom = promName(name, '_total');
      out.push(`# HELP ${prom} ${help}`, `# TYPE ${prom} counter`);
      for (const { labels, value } of this.#counters.get(name)?.values() ?? [])
        out.push(`${prom}${formatLabels(labels)} ${value}`);
    };
    counter(MetricName.processed, 'Messages handled successfully.');
    counter(MetricName.handlerErrors, 'Handler calls that threw.');
    counter(MetricName.retries, 'Handler calls that were retries (attempt > 1).');
    counter(MetricName.scheduledDelivered, 'Scheduled messages appended to their stream.');
    counter(MetricName.recurringDelivered, 'Occurrences of recurring messages appended.');

    const hist = promName(MetricName.handlerDuration, '_seconds');
    out.push(`# HELP ${hist} Duration of handler calls.`, `# TYPE ${hist} histogram`);
    for (const { labels, state } of this.#histograms.values()) {
      DURATION_BUCKETS.forEach((b, i) => {
        out.push(`${hist}_bucket${formatLabels({ ...labels, le: String(b) })} ${state.counts[i]}`);
      });
      out.push(`${hist}_bucket${formatLabels({ ...labels, le: '+Inf' })} ${state.count}`);
      out.push(`${hist}_sum${formatLabels(labels)} ${state.sum}`);
      out.push(`${hist}_count${formatLabels(labels)} ${state.count}`);
    }

    const samples = await this.sample();
    const gauge = (name: string, help: string, value: (s: SubscriptionSample) => number) => {
      const prom = promName(name, '');
      out.push(`# HELP ${prom} ${help}`, `# TYPE ${prom} gauge`);
      for (const s of samples)
        out.push(`${prom}${formatLabels({ group: s.group, subscription: s.subscription })} ${value(s)}`);
    };
    gauge(MetricName.lag, 'Messages not yet processed by a subscription.', (s) => s.lag);
    gauge(MetricName.failedCheckpoints, 'Checkpoints in status failed.', (s) => s.failedCheckpoints);

    const queues = await this.sampleQueues();
    if (queues.length > 0)
      for (const g of QUEUE_GAUGES) {
        out.push(`# HELP ${g.prom} ${g.help}.`, `# TYPE ${g.prom} gauge`);
        for (const q of queues) out.push(`${g.prom}${formatLabels({ queue: q.queue })} ${g.value(q)}`);
      }

    // One series at most: the oldest transaction holding a transaction id, named so that an alert
    // says whose it is (origin="own" is beckett's: a handler, an append in a caller's transaction).
    const blocker = await this.blocking();
    const prom = promName(MetricName.blockingTransactionAge, '_seconds');
    out.push(
      `# HELP ${prom} Age of the oldest transaction holding every gap-safe reader back (absent when none is).`,
      `# TYPE ${prom} gauge`,
    );
    if (blocker) out.push(`${prom}${formatLabels(blockerAttributes(blocker, ''))} ${blocker.ageSeconds}`);
    return `${out.join('\n')}\n`;
  }
}

function blockerAttributes(b: BlockingSample, prefix: string): Labels {
  return {
    [`${prefix}pid`]: String(b.pid),
    [`${prefix}origin`]: b.own ? 'own' : 'foreign',
    [`${prefix}application_name`]: b.applicationName,
    [`${prefix}database`]: b.database ?? '',
    [`${prefix}query`]: b.query.replace(/\s+/g, ' ').slice(0, 200),
  };
}

function promName(name: string, suffix: string): string {
  return name.replace(/[^a-zA-Z0-9_]/g, '_') + suffix;
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  return `{${entries.map(([k, v]) => `${k}="${esc(v)}"`).join(',')}}`;
}

let shared: BeckettMetrics | undefined;

/** The process-wide metrics (what `es worker --http-port` serves and the worker records into). */
export function processMetrics(): BeckettMetrics {
  if (!shared) shared = new BeckettMetrics();
  return shared;
}
