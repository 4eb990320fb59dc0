/**
 * queue.throughput: 100k no-op jobs (BENCH_SCALE scales it) already enqueued, one worker process,
 * from "go" to the last ack; peak RSS of the worker process.
 * Ours: createQueueWorker() on one queue, concurrency 4 (batchSize 4: the like-for-like of
 *   graphile-worker's unbatched run), then concurrency 40 (batchSize 40: as many items in flight as
 *   graphile's batch jobs of 10 with concurrency 4); pool of 10; each job counted after its ack.
 *   Jobs are loaded with the queue_enqueue() SQL function (what store.enqueue runs), 5,000 a call.
 * Peer: graphile-worker 0.16, same database, concurrency 4, pool 10: unbatched (100k jobs of one
 *   item) and batched (10k batch jobs of 10 items, counted in items), pre-loaded with add_jobs().
 * pg-boss 10 (only with BENCH_PGBOSS=1): 4 work() pollers, batchSize 100.
 */
import { randomUUID } from 'node:crypto';
import { Logger, runMigrations } from 'graphile-worker';
import type pg from 'pg';
import { escapeIdentifier } from '../src/db/identifier.js';
import {
  benchDatabaseUrl,
  describeUrl,
  dropSchemas,
  migratedSchema,
  openPool,
  uniqueName,
} from './lib/db.js';
import { scaled } from './lib/env.js';
import { fmtRate, fmtRatio, printTable } from './lib/format.js';
import type { ChildSpec } from './lib/workerChild.js';
import { type ChildrenResult, runChildren } from './lib/workerParent.js';

const CONCURRENCY = 4;
const POOL_SIZE = 10;
const BATCH_ITEMS = 10;
const PGBOSS_BATCH = 100;
const quiet = new Logger(() => () => undefined);

interface Row {
  label: string;
  r: ChildrenResult;
}
const rateOf = (r: ChildrenResult) => r.processed / r.seconds;

async function enqueueNoops(pool: pg.Pool, schema: string, total: number): Promise<void> {
  const s = escapeIdentifier(schema);
  for (let from = 0; from < total; from += 5000) {
    const n = Math.min(5000, total - from);
    await pool.query(
      `SELECT count(*) FROM ${s}.queue_enqueue('noop', $1::uuid[], array_fill(NULL::text, ARRAY[$2::int]),
         array_fill('noop'::text, ARRAY[$2::int]),
         (SELECT array_agg(jsonb_build_object('i', g)) FROM generate_series(1, $2::int) g),
         array_fill('{}'::jsonb, ARRAY[$2::int]), array_fill(0::float8, ARRAY[$2::int]))`,
      [Array.from({ length: n }, () => randomUUID()), n],
    );
  }
  await pool.query(`ANALYZE ${s}.queue_jobs`);
}

async function addGraphileJobs(pool: pg.Pool, schema: string, jobs: number, items: number): Promise<void> {
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

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`queue.throughput on ${describeUrl(url)}`);
  const total = scaled(100_000, 1_000);
  const admin = await openPool(url, 4);
  const schemas: string[] = [];
  const rows: Row[] = [];
  const spec = (kind: ChildSpec['kind'], schema: string, extra: Partial<ChildSpec> = {}): ChildSpec => ({
    kind,
    url,
    schema,
    concurrency: CONCURRENCY,
    poolSize: POOL_SIZE,
    ...extra,
  });
  const check = (label: string, r: ChildrenResult) => {
    if (r.errors.length) console.log(`  ${label} errors: ${r.errors.join(' | ')}`);
    for (const st of r.stats)
      if (st)
        console.log(
          `  ${label}: ${Object.entries(st)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`,
        );
    // A loaded machine may not finish in the time limit: the rate is then over the part done, and said.
    if (r.processed < total)
      console.log(
        `  ${label}: only ${r.processed} of ${total} processed in the time limit (rate over those)`,
      );
    if (r.processed === 0) throw new Error(`${label}: nothing processed`);
    return r;
  };
  try {
    for (const concurrency of [CONCURRENCY, CONCURRENCY * BATCH_ITEMS]) {
      const schema = await migratedSchema(admin, 'bench_qt');
      schemas.push(schema);
      await enqueueNoops(admin, schema, total);
      const label = `beckett queue, concurrency ${concurrency}`;
      rows.push({
        label,
        r: check(
          label,
          await runChildren([spec('beckett-queue', schema, { concurrency, batchSize: concurrency })], total),
        ),
      });
    }

    const gwUnbatched = uniqueName('bench_qgw');
    schemas.push(gwUnbatched);
    await runMigrations({ pgPool: admin, schema: gwUnbatched, logger: quiet });
    await addGraphileJobs(admin, gwUnbatched, total, 1);
    rows.push({
      label: 'graphile-worker, unbatched jobs',
      r: check('graphile unbatched', await runChildren([spec('graphile', gwUnbatched)], total)),
    });

    const gwBatched = uniqueName('bench_qgwb');
    schemas.push(gwBatched);
    await runMigrations({ pgPool: admin, schema: gwBatched, logger: quiet });
    await addGraphileJobs(admin, gwBatched, Math.ceil(total / BATCH_ITEMS), BATCH_ITEMS);
    rows.push({
      label: `graphile-worker, batch jobs of ${BATCH_ITEMS}`,
      r: check('graphile batched', await runChildren([spec('graphile', gwBatched)], total)),
    });

    if (process.env.BENCH_PGBOSS === '1') {
      // pg-boss 10 waits out its polling interval (>= 0.5 s) after every fetch: only when asked.
      const bossSchema = uniqueName('bench_qpgboss');
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
      });
    }
  } finally {
    await dropSchemas(admin, schemas);
    await admin.end();
  }

  const find = (prefix: string) => rows.find((x) => x.label.startsWith(prefix))!;
  const gw = find('graphile-worker, unbatched');
  const gwb = find('graphile-worker, batch');
  printTable(
    `${total} no-op jobs, 1 worker process, pool ${POOL_SIZE}`,
    ['variant', 'jobs', 'seconds', 'rate', 'from 1st job', 'x graphile', 'x graphile batched', 'peak RSS'],
    rows.map(({ label, r }) => [
      label,
      String(r.processed),
      r.seconds.toFixed(2),
      fmtRate(rateOf(r)),
      fmtRate(r.processed / r.secondsFromFirst),
      fmtRatio(rateOf(r) / rateOf(gw.r)),
      fmtRatio(rateOf(r) / rateOf(gwb.r)),
      r.maxRssMb.map((m) => `${m.toFixed(0)}MiB`).join('+'),
    ]),
  );
  console.log('');
  const ours4 = find(`beckett queue, concurrency ${CONCURRENCY}`);
  const ours40 = find(`beckett queue, concurrency ${CONCURRENCY * BATCH_ITEMS}`);
  const rss = (r: Row) => `rss=${r.r.maxRssMb.map((m) => `${m.toFixed(0)}MiB`).join('+')}`;
  console.log(
    `queue.throughput.unbatched ratio=${fmtRatio(rateOf(ours4.r) / rateOf(gw.r))} ours=${fmtRate(rateOf(ours4.r))} graphile=${fmtRate(rateOf(gw.r))} ${rss(ours4)}`,
  );
  console.log(
    `queue.throughput.vs_batched ratio=${fmtRatio(rateOf(ours40.r) / rateOf(gwb.r))} ours=${fmtRate(rateOf(ours40.r))} graphile_batched=${fmtRate(rateOf(gwb.r))} ${rss(ours40)}`,
  );
  console.log(
    `queue.throughput.c4_vs_batched ratio=${fmtRatio(rateOf(ours4.r) / rateOf(gwb.r))} ours=${fmtRate(rateOf(ours4.r))} graphile_batched=${fmtRate(rateOf(gwb.r))}`,
  );
}

await main();
