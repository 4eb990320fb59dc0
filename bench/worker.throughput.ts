/**
 * worker.throughput: 100k messages over 10k streams (10 each), a no-op handler; one worker
 * process, then two, from "go" to the last checkpoint written; then 100k messages over 100k
 * streams (one each) in one worker process, so that every claim handles one message, like every
 * unbatched graphile-worker job handles one item. Each worker is a child process
 * (bench/lib/workerChild.ts) running createWorker() with concurrency 4 and a pool of 10; its peak
 * RSS is reported.
 * Peer: graphile-worker 0.16 on the same database, same concurrency and pool size, 100k no-op jobs
 *   pre-loaded before timing with graphile's add_jobs() SQL function: unbatched (one job per item)
 *   and batched (10k batch jobs whose payload is an array of 10 items, graphile's batch-job
 *   feature; counted in items).
 * pg-boss 10 (only with BENCH_PGBOSS=1): 4 work() pollers, batchSize 100, jobs inserted before timing.
 * Baseline: raw FOR UPDATE SKIP LOCKED dequeue (DELETE ... RETURNING) of 100k rows, one row per
 *   transaction and 10 rows per transaction, same concurrency.
 */
import { Logger, runMigrations } from 'graphile-worker';
import type pg from 'pg';
import { escapeIdentifier } from '../src/db/identifier.js';
import {
  autovacuumQuiet,
  benchDatabaseUrl,
  describeUrl,
  dropSchemas,
  migratedSchema,
  openPool,
  uniqueName,
} from './lib/db.js';
import { scaled } from './lib/env.js';
import { fmtRate, fmtRatio, printTable } from './lib/format.js';
import { copyMessages } from './lib/load.js';
import type { ChildSpec } from './lib/workerChild.js';
import { type ChildrenResult, runChildren } from './lib/workerParent.js';

const CONCURRENCY = 4;
const POOL_SIZE = 10;
const PER_STREAM = 10;
const PGBOSS_BATCH = 100;
const ONE_PER_STREAM = 'beckett, 1 worker process, 1 message per stream';
const quiet = new Logger(() => () => undefined);

interface Row {
  label: string;
  r: ChildrenResult;
  note?: string;
}
const rateOf = (r: ChildrenResult) => r.processed / r.seconds;

/** Pre-load `jobs` graphile-worker `noop` jobs; with `items` > 1 each job is a batch job (array payload). */
async function addJobs(pool: pg.Pool, schema: string, jobs: number, items: number): Promise<void> {
  const s = escapeIdentifier(schema);
  const payload =
    items > 1
      ? `(SELECT json_agg(json_build_object('i', g * ${items} + j)) FROM generate_series(1, ${items}) j)`
      : `json_build_object('i', g)`;
  for (let from = 0; from < jobs; from += 5000) {
    await pool.query(
      `SELECT count(*) FROM ${s}.add_jobs((
         SELECT array_agg(ROW('noop', ${payload}, NULL, NULL, NULL, NULL, NULL, NULL)::${s}.job_spec)
           FROM generate_series($1::int, $2::int) g))`,
      [from, Math.min(jobs, from + 5000) - 1],
    );
  }
}

/**
 * Updates of the schema's checkpoints table per message and the share of them that were HOT (no new
 * index entries): the statistics of the run just finished, once the server has published them.
 */
async function hotNote(admin: pg.Pool, schema: string, messages: number): Promise<string> {
  await new Promise((r) => setTimeout(r, 1500));
  const { rows } = await admin.query<{ upd: string; hot: string }>(
    `SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables
      WHERE schemaname = $1 AND relname = 'checkpoints'`,
    [schema],
  );
  const upd = Number(rows[0]?.upd ?? 0);
  const hot = Number(rows[0]?.hot ?? 0);
  return `checkpoint updates/msg ${(upd / messages).toFixed(2)}, HOT ${upd ? ((100 * hot) / upd).toFixed(0) : 0}%`;
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`worker.throughput on ${describeUrl(url)}`);
  const total = scaled(100_000, 1_000);
  const streams = Math.max(1, Math.round(total / PER_STREAM));
  const admin = await openPool(url, 4);
  const schemas: string[] = [];
  const rows: Row[] = [];
  /** A finished scenario's tables go at once, and the next one waits for autovacuum to be done. */
  const settle = async (done?: string) => {
    if (done) {
      await dropSchemas(admin, [done]);
      schemas.splice(schemas.indexOf(done), 1);
    }
    await autovacuumQuiet(admin);
  };
  const spec = (kind: ChildSpec['kind'], schema: string, extra: Partial<ChildSpec> = {}): ChildSpec => ({
    kind,
    url,
    schema,
    concurrency: CONCURRENCY,
    poolSize: POOL_SIZE,
    ...extra,
  });
  const check = (label: string, r: ChildrenResult, allowPartial = false) => {
    if (r.errors.length) console.log(`  ${label} errors: ${r.errors.join(' | ')}`);
    for (const st of r.stats)
      if (st)
        console.log(
          `  ${label}: ${Object.entries(st)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`,
        );
    // On a saturated machine a run may not finish in time: its rate is over what it processed.
    if (r.processed < total && !allowPartial)
      console.log(`  ${label}: only ${r.processed} of ${total} processed in time (rate over those)`);
    return r;
  };
  try {
    for (const workers of [1, 2]) {
      const schema = await migratedSchema(admin, 'bench_wt');
      schemas.push(schema);
      await copyMessages(admin, schema, total, streams);
      await settle();
      const label = `beckett, ${workers} worker process${workers > 1 ? 'es' : ''}`;
      const r = check(
        label,
        await runChildren(
          Array.from({ length: workers }, () => spec('beckett', schema)),
          total,
        ),
      );
      rows.push({ label, r, note: await hotNote(admin, schema, r.processed) });
      await settle(schema);
    }
    {
      // The same count with one message per stream: every claim handles a single message, as every
      // graphile-worker job handles a single item in its unbatched run.
      const schema = await migratedSchema(admin, 'bench_wt1');
      schemas.push(schema);
      await copyMessages(admin, schema, total, total);
      await settle();
      const label = ONE_PER_STREAM;
      // Bounded to 60 s: with many finished checkpoints the claim slows down (see the README); the
      // rate is then over the part processed, and the row says so.
      const r = await runChildren([spec('beckett', schema)], total, 60_000);
      const partial = r.processed < total;
      rows.push({
        label,
        r: check(label, r, true),
        note: `${partial ? `stopped after 60 s: ${r.processed} of ${total}; ` : ''}${await hotNote(admin, schema, r.processed)}`,
      });
      await settle(schema);
    }

    const gwUnbatched = uniqueName('bench_gw');
    schemas.push(gwUnbatched);
    await runMigrations({ pgPool: admin, schema: gwUnbatched, logger: quiet });
    // One job per item, the rows addJob() would insert; loaded with add_jobs() (an addJob call per
    // job runs at ~1.5k/s here, over a minute for 100k, and loading is not what is measured).
    await addJobs(admin, gwUnbatched, total, 1);
    await settle();
    {
      // Bounded to 60 s as ours with one message per stream: on a saturated machine the rate is then
      // over the part processed, and the row says so.
      const r = await runChildren([spec('graphile', gwUnbatched)], total, 60_000);
      rows.push({
        label: 'graphile-worker, unbatched jobs',
        r: check('graphile unbatched', r, true),
        ...(r.processed < total ? { note: `stopped after 60 s: ${r.processed} of ${total}` } : {}),
      });
      await settle(gwUnbatched);
    }

    const gwBatched = uniqueName('bench_gwb');
    schemas.push(gwBatched);
    await runMigrations({ pgPool: admin, schema: gwBatched, logger: quiet });
    await addJobs(admin, gwBatched, streams, PER_STREAM);
    await settle();
    rows.push({
      label: `graphile-worker, batch jobs of ${PER_STREAM}`,
      r: check('graphile batched', await runChildren([spec('graphile', gwBatched)], total)),
    });
    await settle(gwBatched);

    if (process.env.BENCH_PGBOSS === '1') {
      // pg-boss 10 waits out its polling interval (>= 0.5 s) after every fetch, found jobs or not,
      // so its rate is about workers x batchSize / 0.5 s: run it only when asked (BENCH_PGBOSS=1).
      const bossSchema = uniqueName('bench_pgboss');
      schemas.push(bossSchema);
      const { default: PgBoss } = await import('pg-boss');
      const boss = new PgBoss({
        connectionString: url,
        schema: bossSchema,
        max: 4,
        supervise: false,
        schedule: false,
      });
      boss.on('error', () => undefined);
      await boss.start();
      await boss.createQueue('noop');
      for (let from = 0; from < total; from += 1000)
        await boss.insert(
          Array.from({ length: Math.min(1000, total - from) }, (_, k) => ({
            name: 'noop',
            data: { i: from + k },
          })),
        );
      await boss.stop({ graceful: false, wait: true, close: true });
      rows.push({
        label: `pg-boss 10, batchSize ${PGBOSS_BATCH}`,
        r: check('pg-boss', await runChildren([spec('pgboss', bossSchema, { batch: PGBOSS_BATCH })], total)),
        note: 'counted at handler start',
      });
    }

    for (const batch of [1, PER_STREAM]) {
      const raw = uniqueName('bench_wt_raw');
      schemas.push(raw);
      await admin.query(`CREATE SCHEMA ${escapeIdentifier(raw)}`);
      await admin.query(
        `CREATE TABLE ${escapeIdentifier(raw)}.queue (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL)`,
      );
      await admin.query(
        `INSERT INTO ${escapeIdentifier(raw)}.queue (payload) SELECT json_build_object('i', g) FROM generate_series(1, $1::int) g`,
        [total],
      );
      await admin.query(`ANALYZE ${escapeIdentifier(raw)}.queue`);
      await settle();
      rows.push({
        label: `raw SKIP LOCKED dequeue, ${batch}/tx`,
        r: check('raw', await runChildren([spec('raw-skip-locked', raw, { batch })], total)),
      });
    }
  } finally {
    // A child's connections can outlive its stop() for a moment on a loaded machine: a failed drop
    // (a deadlock with them) must not lose the results.
    await dropSchemas(admin, schemas).catch((err: Error) =>
      console.error(`dropping ${schemas.join(', ')} failed: ${err.message}`),
    );
    await admin.end();
  }

  const find = (key: string) =>
    rows.find((x) => x.label === key) ?? rows.find((x) => x.label.startsWith(key))!;
  const gw = find('graphile-worker, unbatched');
  printTable(
    `${total} items, concurrency ${CONCURRENCY} per process, pool ${POOL_SIZE}`,
    ['variant', 'items', 'seconds', 'rate', 'from 1st item', 'x graphile', 'peak RSS', 'note'],
    rows.map(({ label, r, note }) => [
      label,
      String(r.processed),
      r.seconds.toFixed(2),
      fmtRate(rateOf(r)),
      fmtRate(r.processed / r.secondsFromFirst),
      fmtRatio(rateOf(r) / rateOf(gw.r)),
      r.maxRssMb.map((m) => `${m.toFixed(0)}MiB`).join('+'),
      note ?? '',
    ]),
  );
  const raw1 = find('raw SKIP LOCKED dequeue, 1/');
  const gwb = find('graphile-worker, batch');
  console.log('');
  for (const w of [1, 2]) {
    const ours = find(`beckett, ${w} worker process${w > 1 ? 'es' : ''}`);
    const line = [
      `worker.throughput.${w}w`,
      `ratio=${fmtRatio(rateOf(ours.r) / rateOf(gw.r))}`,
      `ours=${fmtRate(rateOf(ours.r))}`,
      `graphile=${fmtRate(rateOf(gw.r))}`,
      `graphile_batched=${fmtRate(rateOf(gwb.r))}`,
      `raw=${fmtRate(rateOf(raw1.r))}`,
      `rss=${ours.r.maxRssMb.map((m) => `${m.toFixed(0)}MiB`).join('+')}`,
    ];
    console.log(line.join(' '));
  }
  const ours1 = find('beckett, 1 worker process');
  const single = find(ONE_PER_STREAM);
  const raw10 = find('raw SKIP LOCKED dequeue, 10/');
  const pair = (name: string, a: Row, b: Row, key: string) =>
    console.log(
      `${name} ratio=${fmtRatio(rateOf(a.r) / rateOf(b.r))} ours=${fmtRate(rateOf(a.r))} ${key}=${fmtRate(rateOf(b.r))}`,
    );
  // One message per claim against one item per job: the like-for-like unbatched comparison.
  pair('worker.throughput.1w.1_per_stream', single, gw, 'graphile');
  // Ten messages per claim against batch jobs of ten items and ten rows per dequeue.
  pair('worker.throughput.1w.vs_graphile_batched', ours1, gwb, 'graphile_batched');
  pair('worker.throughput.1w.vs_raw', ours1, raw10, 'raw10');
  pair('worker.throughput.1w.1_per_stream.vs_raw', single, raw1, 'raw1');
}

await main();
