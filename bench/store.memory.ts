/**
 * store.memory: the in-memory store (beckett/testing) against the PostgreSQL store, same workload:
 * 1 writer appending single messages with an expected version over 10 streams, then reading each
 * stream back. The goal is a unit-test store: at least 20x the PostgreSQL store's appends.
 */
import { createMessageStore } from '../src/store/messageStore.js';
import { createInMemoryStore } from '../src/testing/inMemoryStore.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { printMeasurements, ratioLine } from './lib/format.js';
import { type Measurement, medianOf, medianRatio } from './lib/stats.js';
import { type AppendFn, runWriters, type WriterPlan } from './lib/writers.js';

const ROUNDS = 3;
const payload = (i: number) => ({ orderId: `o-${i}`, sku: 'SKU-42', quantity: 3, price: 19.99 });

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`store.memory on ${describeUrl(url)}`);
  const pool = await openPool(url, 1);
  const schema = await migratedSchema(pool, 'bench_memory');
  const plan: WriterPlan = { writers: 1, appends: scaled(5_000, 100), streamsPerWriter: 10 };
  let seq = 0;
  const memRuns: Measurement[] = [];
  const pgRuns: Measurement[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const pgStore = createMessageStore({ pool, schema });
      const pgAppend: AppendFn = async (_w, stream, version) => {
        await pgStore.append(
          stream,
          { type: 'OrderPlaced', data: payload(seq++) },
          { expectedVersion: version },
        );
      };
      await runWriters('warmup', `pgwarm${round}`, { ...plan, appends: 50 }, pgAppend);
      pgRuns.push(await runWriters('PostgreSQL store append', `pg${round}`, plan, pgAppend));
      await pgStore.close();
      const mem = createInMemoryStore();
      const memAppend: AppendFn = async (_w, stream, version) => {
        await mem.append(stream, { type: 'OrderPlaced', data: payload(seq++) }, { expectedVersion: version });
      };
      await runWriters('warmup', `memwarm${round}`, { ...plan, appends: 50 }, memAppend);
      memRuns.push(await runWriters('in-memory store append', `mem${round}`, plan, memAppend));
    }
  } finally {
    await dropSchemas(pool, [schema]);
    await pool.end();
  }
  const memM = medianOf(memRuns);
  const pgM = medianOf(pgRuns);
  printMeasurements(
    `1 writer, ${memM.messages} single-message appends, median of ${ROUNDS} rounds`,
    [pgM, memM],
    pgM,
  );
  console.log('(ratio = median of the per-round ratios in-memory / PostgreSQL; goal >= 20)');
  console.log('');
  console.log(ratioLine('store.memory', memM, pgM, { ratio: medianRatio(memRuns, pgRuns), baseKey: 'pg' }));
}

await main();
