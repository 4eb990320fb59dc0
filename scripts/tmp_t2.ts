import { resolveConfig } from '../src/config/validate.js';
import { migrate } from '../src/db/migrate.js';
import { createPool } from '../src/db/pool.js';
import { readerRound } from '../src/subscriptions/globalReader.js';
import { registerSubscriptions } from '../src/subscriptions/registerSubscriptions.js';

const schema = 'exp_tp';
const pool = createPool('postgres://postgres@127.0.0.1:5432/test', { max: 3 });
await pool.query(`drop schema if exists ${schema} cascade`);
await migrate(pool, schema);
await pool.query(
  `INSERT INTO ${schema}.messages (id, stream_name, stream_position, type, data) SELECT gen_random_uuid(), 'bench-' || i, 1, 'OrderPlaced', '{}' FROM generate_series(1, 5000) i`,
);
const config = resolveConfig({
  database: { schema },
  messages: { OrderPlaced: {} },
  groups: { bench: { concurrency: 4, subscriptions: { noop: { category: 'bench', handler: () => {} } } } },
});
const group = config.groups.get('bench')!;
const ctx = { schema, s: schema, prepared: true };
await registerSubscriptions(pool, ctx, group);
const client = await pool.connect();
await client.query("LOAD 'auto_explain'");
await client.query('SET auto_explain.log_min_duration = 100');
await client.query('SET auto_explain.log_analyze = on');
await client.query('SET auto_explain.log_nested_statements = on');
for (let i = 0; i < 6; i++) {
  const s = performance.now();
  const r = await readerRound(client, ctx, group, 'w', 1000);
  console.log('round', r.read, r.dispatched, (performance.now() - s).toFixed(1), 'ms');
}
client.release();
await pool.end();
