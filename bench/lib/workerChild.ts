/**
 * A worker process for the worker benchmarks, driven by its parent over IPC:
 *   child -> {t:'ready'}; parent -> {t:'go'}; child -> {t:'progress', n, first, last} every 25 ms;
 *   parent -> {t:'stop'}; child -> {t:'done', n, maxRssKb}; exit.
 * `first`/`last` are times (ms on the monotonic clock, comparable across processes) of the first
 * and last processed item. With `latency`, the handler also records when it started for each
 * item's `seq`, sent as {t:'lat', pairs: [seq, time][]}. The kind of worker and its settings come in BENCH_CHILD (JSON).
 */
import { EventEmitter } from 'node:events';
import { Logger, run } from 'graphile-worker';
import { resolveConfig } from '../../src/config/validate.js';
import { createPool } from '../../src/db/pool.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';

export type ChildKind = 'beckett' | 'beckett-queue' | 'graphile' | 'pgboss' | 'raw-skip-locked';

export interface ChildSpec {
  kind: ChildKind;
  url: string;
  schema: string;
  concurrency: number;
  poolSize: number;
  /** raw-skip-locked: rows dequeued per transaction; pgboss: the work() batchSize. */
  batch?: number;
  /** beckett: messages read per claim; beckett-queue: jobs per dequeue. */
  batchSize?: number;
  /** beckett: the subscription's category. */
  category?: string;
  /** Record handler start times by the item's `seq` (data.seq, or payload.seq for graphile). */
  latency?: boolean;
}

type ToParent =
  | { t: 'ready' }
  | { t: 'progress'; n: number; first: number; last: number }
  | { t: 'done'; n: number; maxRssKb: number; stats?: Record<string, number> }
  | { t: 'error'; message: string }
  | { t: 'lat'; pairs: [number, number][] };

/** Milliseconds on the system's monotonic clock: comparable across processes on one machine. */
const now = () => Number(process.hrtime.bigint()) / 1e6;
const send = (m: ToParent) => process.send?.(m);

interface Running {
  stop(): Promise<void>;
  /** Counters of the runtime, when it has them (createWorker's stats()). */
  stats?(): Record<string, number>;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.BENCH_CHILD ?? '{}') as ChildSpec;
  let n = 0;
  let first = 0;
  let last = 0;
  const processed = (count: number) => {
    if (count <= 0) return;
    const t = now();
    if (first === 0) first = t;
    last = t;
    n += count;
  };
  let pairs: [number, number][] = [];
  const started = (item: unknown) => {
    if (spec.latency) pairs.push([(item as { seq: number }).seq, now()]);
  };
  const pool = createPool(spec.url, { max: spec.poolSize, applicationName: `bench-${spec.kind}` });
  let start: () => Promise<Running>;
  if (spec.kind === 'beckett') {
    const config = resolveConfig({
      database: { schema: spec.schema },
      messages: { OrderPlaced: {} },
      groups: {
        bench: {
          concurrency: spec.concurrency,
          subscriptions: {
            noop: {
              category: spec.category ?? 'bench',
              batchSize: spec.batchSize ?? 100,
              handler: (m: { data: unknown }) => started(m.data),
            },
          },
        },
      },
    });
    start = async () => {
      const worker = createWorker({
        pool,
        config,
        group: 'bench',
        onProcessed: (e) => processed(e.handled),
        onError: (e) => send({ t: 'error', message: e.message }),
      });
      await worker.start();
      return { stop: () => worker.stop(), stats: () => ({ ...worker.stats() }) };
    };
  } else if (spec.kind === 'beckett-queue') {
    const { createQueueWorker } = await import('../../src/queues/queueWorker.js');
    const config = resolveConfig({
      database: { schema: spec.schema },
      queues: {
        noop: {
          concurrency: spec.concurrency,
          ...(spec.batchSize ? { batchSize: spec.batchSize } : {}),
          handler: (job: { data: unknown }) => started(job.data),
        },
      },
    });
    start = async () => {
      const worker = createQueueWorker({
        pool,
        config,
        queues: ['noop'],
        onProcessed: (e) => {
          if (e.outcome === 'completed') processed(1);
        },
        onError: (e) => send({ t: 'error', message: e.message }),
      });
      await worker.start();
      return { stop: () => worker.stop(), stats: () => ({ ...worker.stats() }) };
    };
  } else if (spec.kind === 'graphile') {
    const events = new EventEmitter();
    events.on('job:complete', ({ job, error }: { job: { payload: unknown }; error: unknown }) => {
      if (!error) processed(Array.isArray(job.payload) ? job.payload.length : 1);
    });
    start = async () => {
      const runner = await run({
        pgPool: pool,
        schema: spec.schema,
        concurrency: spec.concurrency,
        noHandleSignals: true,
        pollInterval: 1000,
        logger: new Logger(() => () => undefined),
        events: events as never,
        taskList: {
          noop: async (payload) => {
            started(payload);
          },
        },
      });
      return { stop: () => runner.stop() };
    };
  } else if (spec.kind === 'pgboss') {
    const { default: PgBoss } = await import('pg-boss');
    const boss = new PgBoss({
      connectionString: spec.url,
      schema: spec.schema,
      max: spec.poolSize,
      supervise: false,
      schedule: false,
      migrate: false,
    });
    boss.on('error', (err: Error) => send({ t: 'error', message: err.message }));
    await boss.start();
    start = async () => {
      // pg-boss 10 has no per-worker concurrency: one work() call is one polling worker.
      for (let i = 0; i < spec.concurrency; i++) {
        await boss.work<{ i: number }>(
          'noop',
          { batchSize: spec.batch ?? 1, pollingIntervalSeconds: 0.5 },
          async (jobs) => {
            processed(jobs.length);
          },
        );
      }
      return { stop: () => boss.stop({ graceful: true, wait: true, close: true }) };
    };
  } else {
    // The physical limit of a Postgres queue: FOR UPDATE SKIP LOCKED, delete on dequeue.
    const sql = `DELETE FROM "${spec.schema}".queue WHERE id IN (
        SELECT id FROM "${spec.schema}".queue ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1) RETURNING id, payload`;
    start = async () => {
      let stopping = false;
      const loops = Array.from({ length: spec.concurrency }, async () => {
        while (!stopping) {
          const { rowCount } = await pool.query({ name: 'dequeue', text: sql, values: [spec.batch ?? 1] });
          if (!rowCount) await new Promise((r) => setTimeout(r, 20));
          else processed(rowCount);
        }
      });
      return {
        stop: async () => {
          stopping = true;
          await Promise.all(loops);
        },
      };
    };
  }
  // Connections opened before timing starts.
  const clients = await Promise.all(Array.from({ length: spec.poolSize }, () => pool.connect()));
  for (const c of clients) c.release();

  let running: Running | undefined;
  const flush = () => {
    if (pairs.length > 0) {
      send({ t: 'lat', pairs });
      pairs = [];
    }
    send({ t: 'progress', n, first, last });
  };
  const timer = setInterval(flush, 25);
  process.on('message', (m: { t: string }) => {
    if (m.t === 'go') {
      void start()
        .then((r) => {
          running = r;
        })
        .catch((err: Error) => send({ t: 'error', message: err.stack ?? err.message }));
    } else if (m.t === 'stop') {
      void (async () => {
        clearInterval(timer);
        await running?.stop();
        await pool.end();
        flush();
        const stats = running?.stats?.();
        send({ t: 'done', n, maxRssKb: process.resourceUsage().maxRSS, ...(stats ? { stats } : {}) });
        process.disconnect?.();
      })();
    }
  });
  send({ t: 'ready' });
}

await main();
