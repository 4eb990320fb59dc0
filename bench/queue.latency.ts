/**
 * queue.latency: a steady 100 jobs/s, then 1,000/s; the time from an enqueue's commit (the moment
 * store.enqueue() resolves here) to the start of the handler in a worker process, p50 and p99 (times
 * on the machine's monotonic clock, shared by the processes); peak RSS of the worker process.
 * Ours: store.enqueue from this process (pool of 10) -> a createQueueWorker child (concurrency 4,
 *   pool 10), default settings: NOTIFY after commit, the poll as backstop.
 * Peer: graphile-worker addJob (resolved) -> task start in a runner child, concurrency 4, pool 10.
 * pg-boss 10 (only with BENCH_PGBOSS=1): send() -> handler start, one work() poller at its shortest
 *   polling interval (0.5 s: pg-boss has no LISTEN wake-up).
 * Each runs 10 s per rate (BENCH_SCALE scales the duration); BENCH_RATES=300,500 picks other rates.
 * The summary's offered=ours/graphile is what each producer committed: on a loaded machine
 * graphile-worker's addJob may not reach 1,000/s, and its worker then sees less load than ours.
 */
import { Logger, makeWorkerUtils, runMigrations } from 'graphile-worker';
import { createMessageStore } from '../src/store/messageStore.js';
import {
  benchDatabaseUrl,
  describeUrl,
  dropSchemas,
  migratedSchema,
  openPool,
  uniqueName,
} from './lib/db.js';
import { benchScale } from './lib/env.js';
import { fmtMs, printTable } from './lib/format.js';
import { Latencies } from './lib/stats.js';
import type { ChildSpec } from './lib/workerChild.js';
import { now, startLatencyChild } from './lib/workerParent.js';

const quiet = new Logger(() => () => undefined);

/** Jobs per second to send, one run each: BENCH_RATES=300,500 for others (default 100,1000). */
const RATES = (process.env.BENCH_RATES ?? '100,1000').split(',').map((r) => {
  const n = Number(r);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`BENCH_RATES: expected jobs per second, got ${r}`);
  return n;
});

interface Result {
  label: string;
  rate: number;
  sent: number;
  received: number;
  latencies: Latencies;
  rss: number;
  errors: string[];
}

/** Send `perSecond` writes for `seconds` at a steady pace (a 5 ms tick sends what is due). */
async function steady(
  perSecond: number,
  seconds: number,
  write: (seq: number) => Promise<void>,
  startedAt: Map<number, number>,
): Promise<{ sent: number; committedAt: Map<number, number> }> {
  const committedAt = new Map<number, number>();
  const total = Math.max(1, Math.round(perSecond * seconds));
  const begin = now();
  let sent = 0;
  const inFlight = new Set<Promise<void>>();
  while (sent < total) {
    const due = Math.min(total, Math.floor(((now() - begin) / 1000) * perSecond) + 1);
    while (sent < due) {
      const seq = sent++;
      const p: Promise<void> = write(seq)
        .then(
          () => {
            committedAt.set(seq, now());
          },
          // A write that could not get a connection in time (the writer fell behind the rate):
          // counted as not sent.
          () => undefined,
        )
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  await Promise.all(inFlight);
  const deadline = now() + 5000;
  while (startedAt.size < total && now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return { sent: committedAt.size, committedAt };
}

/** Run one variant: start its worker child, send at `rate`, collect commit -> handler start. */
async function measure(
  label: string,
  rate: number,
  seconds: number,
  spec: ChildSpec,
  write: (seq: number) => Promise<void>,
): Promise<Result> {
  const startedAt = new Map<number, number>();
  const child = startLatencyChild(spec, (seq, at) => {
    if (!startedAt.has(seq)) startedAt.set(seq, at);
  });
  await child.ready;
  child.go();
  await new Promise((r) => setTimeout(r, 1000)); // let the worker start and listen
  const run = await steady(rate, seconds, write, startedAt);
  const { rssMb } = await child.stop();
  const latencies = new Latencies();
  for (const [seq, at] of startedAt) {
    const c = run.committedAt.get(seq);
    if (c !== undefined) latencies.add(at - c);
  }
  return {
    label,
    rate,
    sent: run.sent,
    received: startedAt.size,
    latencies,
    rss: rssMb,
    errors: child.errors,
  };
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`queue.latency on ${describeUrl(url)}`);
  const seconds = Math.max(2, 10 * benchScale());
  const pool = await openPool(url, 10);
  const schemas: string[] = [];
  const results: Result[] = [];
  const base = { url, concurrency: 4, poolSize: 10 };
  try {
    for (const rate of RATES) {
      {
        const schema = await migratedSchema(pool, 'bench_qlat');
        schemas.push(schema);
        const store = createMessageStore({ pool, schema });
        results.push(
          await measure(
            'beckett queue',
            rate,
            seconds,
            { kind: 'beckett-queue', schema, ...base },
            async (seq) => {
              await store.enqueue('noop', { type: 'noop', data: { seq } });
            },
          ),
        );
        await store.close();
      }
      {
        const schema = uniqueName('bench_qlat_gw');
        schemas.push(schema);
        await runMigrations({ pgPool: pool, schema, logger: quiet });
        const utils = await makeWorkerUtils({ pgPool: pool, schema, logger: quiet });
        results.push(
          await measure(
            'graphile-worker',
            rate,
            seconds,
            { kind: 'graphile', schema, ...base },
            async (seq) => {
              await utils.addJob('noop', { seq });
            },
          ),
        );
        await utils.release();
      }
      if (process.env.BENCH_PGBOSS === '1') {
        const schema = uniqueName('bench_qlat_boss');
        schemas.push(schema);
        const { default: PgBoss } = await import('pg-boss');
        const boss = new PgBoss({ connectionString: url, schema, max: 4, supervise: false, schedule: false });
        boss.on('error', () => undefined);
        await boss.start();
        await boss.createQueue('noop');
        results.push(
          await measure(
            'pg-boss 10',
            rate,
            seconds,
            { kind: 'pgboss', schema, ...base, concurrency: 1, batch: 100 },
            async (seq) => {
              await boss.send('noop', { seq });
            },
          ),
        );
        await boss.stop({ graceful: false, wait: true, close: true });
      }
    }
  } finally {
    await dropSchemas(pool, schemas);
    await pool.end();
  }
  for (const r of results) if (r.errors.length) console.log(`  ${r.label} errors: ${r.errors.join(' | ')}`);
  printTable(
    'enqueue commit -> handler start',
    ['variant', 'rate', 'committed', 'started', 'p50', 'p99', 'max', 'worker peak RSS'],
    results.map((r) => [
      r.label,
      `${r.rate}/s`,
      String(r.sent),
      String(r.received),
      fmtMs(r.latencies.p50),
      fmtMs(r.latencies.p99),
      fmtMs(r.latencies.max),
      `${r.rss.toFixed(0)}MiB`,
    ]),
  );
  console.log('');
  for (const rate of RATES) {
    const ours = results.find((r) => r.rate === rate && r.label === 'beckett queue')!;
    const gw = results.find((r) => r.rate === rate && r.label === 'graphile-worker')!;
    // Lower latency is better: the ratio is graphile-worker's p50 / ours (above 1: ours starts sooner).
    console.log(
      [
        `queue.latency.${rate}`,
        `ratio=${(gw.latencies.p50 / ours.latencies.p50).toFixed(2)}`,
        `ours_p50=${fmtMs(ours.latencies.p50)}`,
        `ours_p99=${fmtMs(ours.latencies.p99)}`,
        `graphile_p50=${fmtMs(gw.latencies.p50)}`,
        `graphile_p99=${fmtMs(gw.latencies.p99)}`,
        `missed=${ours.sent - ours.received}`,
        // What each producer managed to commit: a peer that cannot offer the rate is measured at less.
        `offered=${ours.sent}/${gw.sent}`,
        `rss=${ours.rss.toFixed(0)}MiB`,
      ].join(' '),
    );
  }
}

await main();
