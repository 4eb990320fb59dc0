/*
 * The payment saga end to end, in one process:
 *   node --import jiti/register examples/saga/run.ts
 * Uses DATABASE_URL, or the embedded PostgreSQL when it is unset. Writes to the schema
 * "example_saga_run" (recreated on every run). Exits 1 if the outcome is not the expected one.
 * The payment timeout is 2 s here (PAYMENT_TIMEOUT_MS to change it).
 */
import pg from 'pg';
import { ensureEmbedded } from '../../src/db/embedded.js';
import {
  createMessageStore,
  createSchedulerService,
  createWorker,
  listScheduledMessages,
  migrate,
  resolveConfig,
} from '../../src/index.js';

process.env.PAYMENT_TIMEOUT_MS ??= '2000';
// Loaded after the line above, which sets the saga's timeout.
const { default: config } = await import('./beckett.config.js');
const { orderStream, PAYMENT_TIMEOUT_MS } = await import('./paymentSaga.js');

const SCHEMA = 'example_saga_run';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL ?? (await ensureEmbedded(process.cwd())).url;
  const pool = new pg.Pool({ connectionString: url, max: 12 });
  await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  await migrate(pool, SCHEMA);
  const resolved = resolveConfig({ ...config, database: { schema: SCHEMA } });
  const store = createMessageStore({ pool, schema: SCHEMA, messages: resolved.messages });
  // es worker runs the scheduler by itself; a worker made in code gets it as a service.
  const worker = createWorker({
    pool,
    config: resolved,
    group: 'Payments',
    maxPollMs: 200,
    services: [createSchedulerService(store)],
    onError: (e, where) => console.error(`worker ${where}: ${e.message}`),
  });
  await worker.start();

  const started = Date.now();
  await store.append(orderStream('paid'), { type: 'order_placed', data: { orderId: 'paid', amount: 30 } });
  await store.append(orderStream('unpaid'), {
    type: 'order_placed',
    data: { orderId: 'unpaid', amount: 12 },
  });
  await sleep(Math.min(500, PAYMENT_TIMEOUT_MS / 2));
  console.log(
    `scheduled: ${(await listScheduledMessages(store)).map((s) => `${s.stream} ${s.type}`).join(', ')}`,
  );
  await store.append(orderStream('paid'), {
    type: 'payment_received',
    data: { orderId: 'paid', amount: 30 },
  });

  // Wait for the unpaid order's cancellation, then a little past the paid order's timeout.
  while (!(await store.readStream(orderStream('unpaid'))).some((m) => m.type === 'order_cancelled')) {
    if (Date.now() - started > PAYMENT_TIMEOUT_MS + 10_000) throw new Error('the timeout never fired');
    await sleep(50);
  }
  await sleep(Math.max(0, started + PAYMENT_TIMEOUT_MS + 500 - Date.now()));
  await worker.stop();

  let ok = true;
  for (const id of ['paid', 'unpaid']) {
    const types = (await store.readStream(orderStream(id))).map((m) => m.type);
    console.log(`${orderStream(id)}: ${types.join(' -> ')}`);
    const expected =
      id === 'paid'
        ? ['order_placed', 'payment_received']
        : ['order_placed', 'payment_timed_out', 'order_cancelled'];
    if (JSON.stringify(types) !== JSON.stringify(expected)) ok = false;
  }
  console.log(ok ? 'ok: the paid order stands, the unpaid one was cancelled' : 'unexpected outcome');
  await store.close();
  await pool.end();
  process.exitCode = ok ? 0 : 1;
}

await main();
