/**
 * retention.trim: applyRetention's delete rate at three sizes, 10k, 100k and 1M messages
 * (BENCH_SCALE scales them), 10 per stream, with a policy keeping the newest message of each stream (so 90% of
 * the log goes) and one subscription that has processed everything (every candidate is checked
 * against it, none is held). Linear means the rate stays flat from the small log to the large one:
 * the `linear` summary line's ratio is rate(1M) / rate(10k). Baseline: raw `DELETE ... WHERE
 * global_position IN (keyset batch of 1,000)` of the same rows on a copy of the log.
 */
import type pg from 'pg';
import { resolveConfig } from '../src/config/validate.js';
import { escapeIdentifier } from '../src/db/identifier.js';
import type { SqlContext } from '../src/db/queryable.js';
import { applyRetention, subscriptionFilters } from '../src/retention/applyRetention.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { printMeasurements, ratioLine } from './lib/format.js';
import type { Measurement } from './lib/stats.js';

const PER_STREAM = 10;

const config = resolveConfig({
  retention: { policies: [{ name: 'keep-newest', category: 'bench', maxCount: 1 }] },
  groups: { G: { subscriptions: { all: { category: 'bench', handler: () => undefined } } } },
});

/** A schema holding `total` messages, and a subscription that has processed all of them. */
async function load(pool: pg.Pool, total: number): Promise<SqlContext> {
  const schema = await migratedSchema(pool, 'bench_ret');
  const ctx: SqlContext = { schema, s: escapeIdentifier(schema), prepared: false };
  const { copyMessages } = await import('./lib/load.js');
  await copyMessages(pool, schema, total, total / PER_STREAM);
  const s = ctx.s;
  await pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('G')`);
  await pool.query(
    `INSERT INTO ${s}.subscriptions (group_name, name, status, fingerprint, log_transaction_id, log_position)
     SELECT 'G', 'all', 'active', 'f', max(transaction_id), max(global_position) FROM ${s}.messages`,
  );
  await pool.query(
    `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position)
     SELECT 'G', 'all', stream_name, max(stream_position), max(stream_position) FROM ${s}.messages GROUP BY stream_name`,
  );
  await pool.query(`ANALYZE ${s}.checkpoints`);
  return ctx;
}

async function ours(pool: pg.Pool, total: number): Promise<Measurement & { schema: string }> {
  const ctx = await load(pool, total);
  const started = performance.now();
  const r = await applyRetention(pool, ctx, config.retention.policies, {
    subscriptions: subscriptionFilters(config),
  });
  const seconds = (performance.now() - started) / 1000;
  const deleted = r.policies[0]!.deleted;
  const expected = total - total / PER_STREAM;
  if (deleted !== expected) throw new Error(`deleted ${deleted} of ${expected}`);
  return { label: `applyRetention, ${total} messages`, messages: deleted, seconds, schema: ctx.schema };
}

async function raw(pool: pg.Pool, total: number): Promise<Measurement & { schema: string }> {
  const schema = await migratedSchema(pool, 'bench_ret_raw');
  const { copyMessages } = await import('./lib/load.js');
  await copyMessages(pool, schema, total, total / PER_STREAM);
  const s = escapeIdentifier(schema);
  const started = performance.now();
  let deleted = 0;
  let after = 0;
  for (;;) {
    const { rows } = await pool.query<{ n: number; last: number | null }>(
      `WITH d AS (DELETE FROM ${s}.messages WHERE global_position IN (
          SELECT global_position FROM ${s}.messages
           WHERE global_position > $1 AND stream_position < ${PER_STREAM}
           ORDER BY global_position LIMIT 1000) RETURNING global_position)
       SELECT count(*)::int AS n, max(global_position) AS last FROM d`,
      [after],
    );
    deleted += rows[0]!.n;
    if (rows[0]!.n < 1000 || rows[0]!.last === null) break;
    after = rows[0]!.last;
  }
  const seconds = (performance.now() - started) / 1000;
  return { label: `raw keyset DELETE, ${total} messages`, messages: deleted, seconds, schema };
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`retention.trim on ${describeUrl(url)}`);
  const sizes = [scaled(10_000, 1_000), scaled(100_000, 1_000), scaled(1_000_000, 10_000)];
  const pool = await openPool(url, 2);
  const schemas: string[] = [];
  try {
    const results: Measurement[] = [];
    const pairs: [Measurement, Measurement][] = [];
    for (const total of sizes) {
      const o = await ours(pool, total);
      schemas.push(o.schema);
      await dropSchemas(pool, [o.schema]);
      const b = await raw(pool, total);
      schemas.push(b.schema);
      await dropSchemas(pool, [b.schema]);
      results.push(o, b);
      pairs.push([o, b]);
    }
    printMeasurements('retention: messages deleted per second', results, results[1]);
    const names = ['10k', '100k', '1m'];
    for (const [i, [o, b]] of pairs.entries()) console.log(ratioLine(`retention.trim.${names[i]}`, o, b));
    const rate = (m: Measurement) => m.messages / m.seconds;
    const [first, , last] = pairs as [[Measurement, Measurement], unknown, [Measurement, Measurement]];
    console.log(
      ratioLine('retention.trim.linear', last[0], first[0], {
        baseKey: 'small',
        extra: { raw_linear: (rate(last[1]) / rate(first[1])).toFixed(2) },
      }),
    );
  } finally {
    await dropSchemas(pool, schemas);
    await pool.end();
  }
}

await main();
