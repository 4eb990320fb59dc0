/*
 * Admin API reads on a loaded schema: 1M messages (10k streams in 50 categories), 100k checkpoints
 * (1% failed, 2% lagging). Prints p50 and p95 server-side time per read, over 21 calls each.
 * Run: DATABASE_URL=postgres://... node --import jiti/register bench/adminPages.ts
 * (creates and drops a schema of its own; loading takes a minute or two).
 */
import pg from 'pg';
import { createBeckett } from '../src/admin/createBeckett.ts';
import { migrate } from '../src/db/migrate.ts';
import { createPool } from '../src/db/pool.ts';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
// BENCH_SCHEMA reuses a schema this script loaded before (kept), instead of loading a new one.
const reuse = process.env.BENCH_SCHEMA;
const schema = reuse ?? `admin_bench_${Date.now().toString(36)}`;
const pool = createPool(url, { max: 4 });
const s = pg.escapeIdentifier(schema);
const t0 = Date.now();
if (!reuse) await load();
async function load() {
  await migrate(pool, schema);
  // 1M messages: 10k streams of 100 in 50 categories.
  await pool.query(`INSERT INTO ${s}.messages (id, stream_name, stream_position, type, data, metadata)
  SELECT gen_random_uuid(), 'cat' || (i % 50) || '-' || (i % 10000), (i / 10000) + 1, 'T' || (i % 7),
         jsonb_build_object('i', i), jsonb_build_object('correlationId', 'c' || (i % 100000))
    FROM generate_series(0, 999999) i`);
  await pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('G')`);
  await pool.query(`INSERT INTO ${s}.subscriptions (group_name, name, status) VALUES ('G', 'S', 'active')`);
  // 100k checkpoints, 1% failed, 2% lagging.
  await pool.query(`INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position, status, last_error)
  SELECT 'G', 'S', 'cp-' || i, 10, CASE WHEN i % 50 = 0 THEN 5 ELSE 10 END,
         CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'active' END,
         CASE WHEN i % 100 = 0 THEN '{"message":"boom"}'::jsonb END
    FROM generate_series(1, 100000) i`);
  // The subscription is caught up with the log (its reader at the head), as in a healthy system.
  await pool.query(`UPDATE ${s}.subscriptions SET log_transaction_id = m.transaction_id, log_position = m.global_position
  FROM (SELECT transaction_id, global_position FROM ${s}.messages ORDER BY global_position DESC LIMIT 1) m`);
  await pool.query(`VACUUM ANALYZE ${s}.messages`);
  await pool.query(`VACUUM ANALYZE ${s}.checkpoints`);
  console.log(`loaded in ${Date.now() - t0} ms`);
}
const b = createBeckett({ pool, schema });
const a = b.admin;
const anyId = (await pool.query(`SELECT id FROM ${s}.messages WHERE global_position = 500000`)).rows[0].id;
const pages: [string, () => Promise<unknown>][] = [
  ['summary', () => a.summary()],
  ['categories', () => a.categories()],
  ['categories?search=cat4', () => a.categories({ search: 'cat4' })],
  ['streams of cat7', () => a.streams('cat7')],
  ['stream messages', () => a.streamMessages('cat7-1007')],
  ['message by id', () => a.message(anyId)],
  ['log page (middle)', () => a.log({ after: '0:0', limit: 50 })],
  ['checkpoints failed', () => a.checkpoints({ status: 'failed' })],
  ['checkpoints lagging', () => a.checkpoints({ status: 'lagging' })],
  ['checkpoints all attention', () => a.checkpoints()],
  ['subscriptions (lag)', () => a.subscriptions()],
  ['workers', () => a.workers()],
  ['audit', () => a.audit()],
];
for (const [name, fn] of pages) {
  const times: number[] = [];
  let failed: string | undefined;
  for (let i = 0; i < 21 && !failed; i++) {
    const t = performance.now();
    await fn().catch((err: unknown) => {
      failed = err instanceof Error ? err.message : String(err);
    });
    times.push(performance.now() - t);
  }
  times.sort((x, y) => x - y);
  if (failed) console.log(`${name.padEnd(28)} FAILED: ${failed}`);
  else console.log(`${name.padEnd(28)} p50 ${times[10]!.toFixed(1)} ms  p95 ${times[19]!.toFixed(1)} ms`);
}
await b.close();
if (!reuse) await pool.query(`DROP SCHEMA ${s} CASCADE`);
await pool.end();
