import { resolveConfig } from '../src/config/validate.js';
import { migrate } from '../src/db/migrate.js';
import { createPool } from '../src/db/pool.js';
import { createWorker } from '../src/subscriptions/workerRuntime.js';

const schema = process.argv[2]!;
const pool = createPool('postgres://postgres@127.0.0.1:5432/test', { max: 12 });
await pool.query(`drop schema if exists ${schema} cascade`);
await migrate(pool, schema);
const N = 4000;
await pool.query(
  `INSERT INTO ${schema}.messages (id, stream_name, stream_position, type, data) SELECT gen_random_uuid(), 'bench-' || i, 1, 'OrderPlaced', '{}' FROM generate_series(1, ${N}) i`,
);
await new Promise((r) => setTimeout(r, 300));
const config = resolveConfig({
  database: { schema },
  messages: { OrderPlaced: {} },
  groups: { bench: { concurrency: 4, subscriptions: { noop: { category: 'bench', handler: () => {} } } } },
});
let done = 0;
const w = createWorker({
  pool,
  config,
  group: 'bench',
  onProcessed: (e) => {
    done += e.handled;
  },
});
const s = performance.now();
await w.start();
while (done < N) await new Promise((r) => setTimeout(r, 10));
const t = performance.now() - s;
console.log(schema, ((N / t) * 1000).toFixed(0), '/s', JSON.stringify(w.stats()));
await w.stop();
await pool.query(`drop schema ${schema} cascade`);
await pool.end();
