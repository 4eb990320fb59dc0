/**
 * scale.claim: what checkpoints nobody may claim cost a claim. Two schemas with the same claimable
 * work (one active subscription, 1,000 lagging checkpoints): one holds nothing else; the other also
 * holds 200k checkpoints nobody may claim, all lagging and first in claim order (due an hour ago):
 * 80k of a paused subscription, 40k of an unknown one, 40k failed and 40k not due (retry backoff)
 * of the active one, and 1,000 leased by live consumers (BENCH_CLAIM_LEASED). Each claim runs with its batch read (the
 * real claimCheckpoint statement) in a transaction rolled back, so every claim sees the same rows;
 * rounds alternate between the schemas; medians are reported. Ratio = claims/s with the 200k
 * against without: it must stay near 1.
 */
import type pg from 'pg';
import { escapeIdentifier } from '../src/db/identifier.js';
import type { SqlContext } from '../src/db/queryable.js';
import { claimCheckpoint } from '../src/subscriptions/claimCheckpoint.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { printMeasurements, ratioLine } from './lib/format.js';
import { Latencies, type Measurement, median, medianOf } from './lib/stats.js';

const ROUNDS = 5;
/** Checkpoints leased by live consumers (due, so in the claim's index range): BENCH_CLAIM_LEASED. */
const LEASED = Number(process.env.BENCH_CLAIM_LEASED ?? 1000);
const CLAIMS = 300;
const SUBSCRIPTIONS = ['live', 'paused', 'gone'];

async function setup(pool: pg.Pool, schema: string, blocked: number): Promise<SqlContext> {
  const ctx: SqlContext = { schema, s: escapeIdentifier(schema), prepared: true };
  const s = ctx.s;
  await pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('G')`);
  await pool.query(
    `INSERT INTO ${s}.subscriptions (group_name, name, status, fingerprint)
     VALUES ('G', 'live', 'active', 'f'), ('G', 'paused', 'paused', 'f'), ('G', 'gone', 'unknown', 'f')`,
  );
  await pool.query(
    `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version)
     SELECT 'G', 'live', 'l-' || i, 1 FROM generate_series(1, 1000) i`,
  );
  if (blocked > 0) {
    const q = (n: number) => Math.round(blocked * n);
    await pool.query(
      `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, status,
                                     next_attempt_at, leased_by, leased_until)
       SELECT 'G',
              CASE WHEN i <= $1 THEN 'paused' WHEN i <= $2 THEN 'gone' ELSE 'live' END,
              'b-' || i, 3,
              CASE WHEN i > $2 AND i <= $3 THEN 'failed' ELSE 'active' END,
              CASE WHEN i > $3 AND i <= $4 THEN now() + interval '1 day' ELSE now() - interval '1 hour' END,
              CASE WHEN i > $4 THEN 'other-worker' END,
              CASE WHEN i > $4 THEN now() + interval '1 day' END
         FROM generate_series(1, $5::int) i`,
      [q(0.4), q(0.6), q(0.8), q(1), q(1) + LEASED],
    );
  }
  await pool.query(`ANALYZE ${s}.checkpoints`);
  await pool.query(`ANALYZE ${s}.subscriptions`);
  return ctx;
}

async function round(pool: pg.Pool, ctx: SqlContext, label: string): Promise<Measurement> {
  const client = await pool.connect();
  const lat = new Latencies();
  const started = performance.now();
  try {
    for (let i = 0; i < CLAIMS; i++) {
      await client.query('BEGIN');
      const t = performance.now();
      const claim = await claimCheckpoint(client, ctx, {
        group: 'G',
        subscriptions: SUBSCRIPTIONS,
        batchSizes: [10, 10, 10],
        fingerprints: ['f', 'f', 'f'],
        workerId: 'bench',
        leaseMs: 30_000,
      });
      lat.add(performance.now() - t);
      await client.query('ROLLBACK');
      if (claim?.subscription !== 'live') throw new Error(`claimed ${JSON.stringify(claim)}`);
    }
  } finally {
    client.release();
  }
  return {
    label,
    messages: CLAIMS,
    seconds: (performance.now() - started) / 1000,
    latencies: lat,
  };
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`scale.claim on ${describeUrl(url)}`);
  const blocked = scaled(200_000, 2_000);
  const pool = await openPool(url, 2);
  const empty = await migratedSchema(pool, 'bench_claim_empty');
  const loaded = await migratedSchema(pool, 'bench_claim_loaded');
  try {
    const emptyCtx = await setup(pool, empty, 0);
    const loadedCtx = await setup(pool, loaded, blocked);
    const base: Measurement[] = [];
    const ours: Measurement[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      base.push(await round(pool, emptyCtx, 'no unclaimable checkpoints'));
      ours.push(await round(pool, loadedCtx, `${blocked} unclaimable checkpoints`));
    }
    const b = medianOf(base);
    const o = medianOf(ours);
    printMeasurements(`claims (${CLAIMS} a round, median of ${ROUNDS} rounds)`, [b, o], b);
    const p50 = (ms: Measurement[]) => median(ms.map((m) => m.latencies?.p50 ?? Number.NaN));
    console.log(
      ratioLine('scale.claim.200k', o, b, {
        baseKey: 'empty',
        extra: { p50_ms: p50(ours).toFixed(2), empty_p50_ms: p50(base).toFixed(2) },
      }),
    );
  } finally {
    await dropSchemas(pool, [empty, loaded]);
    await pool.end();
  }
}

await main();
