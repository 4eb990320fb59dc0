/**
 * worker.latency: a steady 100 messages/s, then 1,000/s; the time from an append's commit
 * (the moment append() resolves in the writer) to the start of the handler in a worker process,
 * p50 and p99 (all times on the machine's monotonic clock, shared by the processes).
 * Ours: createMessageStore().append from this process (pool of 10) -> a worker child process
 *   (createWorker, concurrency 4), default settings (LISTEN/NOTIFY wake-ups, polling backstop).
 * Baselines: raw INSERT + NOTIFY in one statement -> LISTEN delivery on another connection here;
 *   and the same followed by a gap-safe read of the log (re-read at once until the row is below
 *   the snapshot's xmin): the floor for any reader that never skips a late commit.
 * Peer: graphile-worker addJob (resolved) -> task start in a runner child process, concurrency 4.
 * Ours runs 20 s per rate, the baseline and the peer 10 s (BENCH_SCALE scales the durations);
 * BENCH_RATES=100 runs one rate only.
 */
import { Logger, makeWorkerUtils, runMigrations } from 'graphile-worker';
import pg from 'pg';
import { escapeIdentifier } from '../src/db/identifier.js';
import { createMessageStore } from '../src/store/messageStore.js';
import { uuidv7 } from '../src/store/uuidv7.js';
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
import { now, startLatencyChild } from './lib/workerParent.js';

const STREAMS = 50;
/** The rates to run (messages/s), BENCH_RATES=100,1000 by default: on a saturated machine, one at a time. */
const RATES = (process.env.BENCH_RATES ?? '100,1000').split(',').map(Number);
const quiet = new Logger(() => () => undefined);

interface Result {
  label: string;
  rate: number;
  sent: number;
  received: number;
  latencies: Latencies;
  rss?: number;
  errors?: string[];
  stats?: Record<string, number> | undefined;
}

/**
 * Send `perSecond` writes for `seconds` at a steady pace (a 5 ms tick sends what is due); every
 * write's commit time is recorded by seq. Then wait up to 5 s for the stragglers.
 */
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
      // A write that failed (the writer's pool timed out on a saturated machine) is left out of the
      // latencies rather than ending the run: the table's "sent" and "started" columns show it.
      const p: Promise<void> = write(seq)
        .then(
          () => {
            committedAt.set(seq, now());
          },
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
  return { sent: total, committedAt };
}

function collect(
  label: string,
  rate: number,
  run: { sent: number; committedAt: Map<number, number> },
  startedAt: Map<number, number>,
): Result {
  const latencies = new Latencies();
  for (const [seq, at] of startedAt) {
    const c = run.committedAt.get(seq);
    if (c !== undefined) latencies.add(at - c);
  }
  return { label, rate, sent: run.sent, received: startedAt.size, latencies };
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`worker.latency on ${describeUrl(url)}`);
  const oursSeconds = Math.max(2, 20 * benchScale());
  const peerSeconds = Math.max(2, 10 * benchScale());
  const pool = await openPool(url, 10);
  const schemas: string[] = [];
  const results: Result[] = [];
  try {
    for (const rate of RATES) {
      // Ours.
      {
        const schema = await migratedSchema(pool, 'bench_lat');
        schemas.push(schema);
        const store = createMessageStore({ pool, schema });
        const startedAt = new Map<number, number>();
        const child = startLatencyChild(
          { kind: 'beckett', url, schema, concurrency: 4, poolSize: 10, category: 'lat' },
          (seq, at) => {
            if (!startedAt.has(seq)) startedAt.set(seq, at);
          },
        );
        await child.ready;
        child.go();
        await new Promise((r) => setTimeout(r, 1000)); // let the worker register and listen
        const run = await steady(
          rate,
          oursSeconds,
          async (seq) => {
            await store.append(`lat-${seq % STREAMS}`, { type: 'OrderPlaced', data: { seq } });
          },
          startedAt,
        );
        const { rssMb, stats } = await child.stop();
        await store.close();
        results.push({
          ...collect('beckett worker', rate, run, startedAt),
          rss: rssMb,
          stats,
          errors: child.errors,
        });
      }
      // Raw INSERT + NOTIFY -> LISTEN.
      {
        const schema = await migratedSchema(pool, 'bench_lat_raw');
        schemas.push(schema);
        const channel = `bench_${schema}`;
        const startedAt = new Map<number, number>();
        const listener = new pg.Client({ connectionString: url });
        await listener.connect();
        listener.on('notification', (n) => {
          const seq = Number(n.payload);
          if (!startedAt.has(seq)) startedAt.set(seq, now());
        });
        await listener.query(`LISTEN ${escapeIdentifier(channel)}`);
        const sql = `WITH i AS (INSERT INTO ${escapeIdentifier(schema)}.messages (id, stream_name, stream_position, type, data)
            VALUES ($1, $2, $3, 'OrderPlaced', $4) RETURNING global_position)
          SELECT pg_notify($5, $6) FROM i`;
        const run = await steady(
          rate,
          peerSeconds,
          async (seq) => {
            await pool.query({
              name: `lat_raw_${schema}`,
              text: sql,
              values: [uuidv7(), `lat-${seq}`, 1, JSON.stringify({ seq }), channel, String(seq)],
            });
          },
          startedAt,
        );
        await listener.end();
        results.push(collect('raw INSERT+NOTIFY -> LISTEN', rate, run, startedAt));
      }
      // Raw INSERT + NOTIFY -> LISTEN -> gap-safe read: what any gap-safe reader must wait for.
      {
        const schema = await migratedSchema(pool, 'bench_lat_gap');
        schemas.push(schema);
        const s = escapeIdentifier(schema);
        const channel = `bench_${schema}`;
        const startedAt = new Map<number, number>();
        const listener = new pg.Client({ connectionString: url });
        const reader = new pg.Client({ connectionString: url });
        await Promise.all([listener.connect(), reader.connect()]);
        const readSql = `SELECT transaction_id::text AS tx, global_position AS gp, (data->>'seq')::int AS seq FROM ${s}.messages
          WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
            AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY transaction_id, global_position LIMIT 1000`;
        let after = { tx: '0', gp: 0 };
        const notified = new Set<number>();
        let reading = false;
        let stopped = false;
        const read = async () => {
          if (reading) return;
          reading = true;
          try {
            // Re-read at once until every notified message was read: nothing waits on a timer.
            while (notified.size > 0 && !stopped) {
              const { rows } = await reader.query<{ tx: string; gp: number; seq: number }>({
                name: 'gap_read',
                text: readSql,
                values: [after.tx, after.gp],
              });
              const at = now();
              for (const r of rows) {
                if (!startedAt.has(r.seq)) startedAt.set(r.seq, at);
                notified.delete(r.seq);
                after = { tx: r.tx, gp: r.gp };
              }
            }
          } finally {
            reading = false;
          }
        };
        listener.on('notification', (n) => {
          notified.add(Number(n.payload));
          void read();
        });
        await listener.query(`LISTEN ${escapeIdentifier(channel)}`);
        const sql = `WITH i AS (INSERT INTO ${s}.messages (id, stream_name, stream_position, type, data)
            VALUES ($1, $2, $3, 'OrderPlaced', $4) RETURNING global_position)
          SELECT pg_notify($5, $6) FROM i`;
        const run = await steady(
          rate,
          peerSeconds,
          async (seq) => {
            await pool.query({
              name: `lat_gap_${schema}`,
              text: sql,
              values: [uuidv7(), `lat-${seq}`, 1, JSON.stringify({ seq }), channel, String(seq)],
            });
          },
          startedAt,
        );
        stopped = true;
        while (reading) await new Promise((r) => setTimeout(r, 5));
        await listener.end();
        await reader.end();
        results.push(collect('raw ... -> gap-safe read', rate, run, startedAt));
      }
      // graphile-worker.
      {
        const schema = uniqueName('bench_lat_gw');
        schemas.push(schema);
        await runMigrations({ pgPool: pool, schema, logger: quiet });
        const utils = await makeWorkerUtils({ pgPool: pool, schema, logger: quiet });
        const startedAt = new Map<number, number>();
        const child = startLatencyChild(
          { kind: 'graphile', url, schema, concurrency: 4, poolSize: 10 },
          (seq, at) => {
            if (!startedAt.has(seq)) startedAt.set(seq, at);
          },
        );
        await child.ready;
        child.go();
        await new Promise((r) => setTimeout(r, 1000));
        const run = await steady(
          rate,
          peerSeconds,
          async (seq) => {
            await utils.addJob('noop', { seq });
          },
          startedAt,
        );
        const { rssMb } = await child.stop();
        await utils.release();
        results.push({
          ...collect('graphile-worker', rate, run, startedAt),
          rss: rssMb,
          errors: child.errors,
        });
      }
    }
  } finally {
    // A child's connections can outlive its stop() for a moment on a loaded machine: a failed drop
    // (a deadlock with them) must not lose the results.
    await dropSchemas(pool, schemas).catch((err: Error) =>
      console.error(`dropping ${schemas.join(', ')} failed: ${err.message}`),
    );
    await pool.end();
  }
  for (const r of results) {
    if (r.errors?.length) console.log(`  ${r.label} errors: ${r.errors.join(' | ')}`);
    if (r.stats)
      console.log(
        `  ${r.label} at ${r.rate}/s: ${Object.entries(r.stats)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')}`,
      );
  }
  printTable(
    'commit -> handler start',
    ['variant', 'rate', 'sent', 'started', 'p50', 'p99', 'max', 'worker peak RSS'],
    results.map((r) => [
      r.label,
      `${r.rate}/s`,
      String(r.sent),
      String(r.received),
      fmtMs(r.latencies.p50),
      fmtMs(r.latencies.p99),
      fmtMs(r.latencies.max),
      r.rss ? `${r.rss.toFixed(0)}MiB` : '',
    ]),
  );
  console.log('');
  for (const rate of RATES) {
    const [ours, raw, gap, gw] = results.filter((r) => r.rate === rate) as [Result, Result, Result, Result];
    // The ratio: lower latency is better: the ratio is graphile-worker's p50 / ours (above 1: ours starts handlers sooner).
    console.log(
      [
        `worker.latency.${rate}`,
        `ratio=${(gw.latencies.p50 / ours.latencies.p50).toFixed(2)}`,
        `ours_p50=${fmtMs(ours.latencies.p50)}`,
        `ours_p99=${fmtMs(ours.latencies.p99)}`,
        `raw_p50=${fmtMs(raw.latencies.p50)}`,
        `raw_p99=${fmtMs(raw.latencies.p99)}`,
        `gapsafe_p50=${fmtMs(gap.latencies.p50)}`,
        `gapsafe_p99=${fmtMs(gap.latencies.p99)}`,
        `graphile_p50=${fmtMs(gw.latencies.p50)}`,
        `graphile_p99=${fmtMs(gw.latencies.p99)}`,
        `missed=${ours.sent - ours.received}`,
        `rss=${ours.rss?.toFixed(0)}MiB`,
      ].join(' '),
    );
  }
}

await main();
