/**
 * notify.cost: what wake-up notifications cost 16 concurrent writers.
 * - on: createMessageStore().append (NOTIFY after commit, coalesced: at most one in flight);
 * - off: the store's append path without its notifier (appendToStream() with a group-commit
 *   batcher of its own, as the store has), on the same pool: the store has no switch to disable
 *   its notifier;
 * - in-tx: append_to_stream() and pg_notify() in one statement, i.e. a NOTIFY inside every write
 *   transaction, which serialises commits on the cluster-wide notify lock: what coalescing saves.
 * One LISTEN connection is open on the channel throughout, as a worker would be. Variants run in
 * interleaved rounds; the medians are reported.
 */
import pg from 'pg';
import { AppendBatcher } from '../src/store/appendBatcher.js';
import { appendToStream, type PreparedMessage } from '../src/store/appendToStream.js';
import { createMessageStore } from '../src/store/messageStore.js';
import { channelFor } from '../src/store/notifications.js';
import { uuidv7 } from '../src/store/uuidv7.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { fmtMs, printMeasurements, ratioLine } from './lib/format.js';
import { type Measurement, median, medianOf, medianRatio, rate } from './lib/stats.js';
import { type AppendFn, runWriters } from './lib/writers.js';

const WRITERS = 16;
const ROUNDS = 5;
const payload = (i: number) => ({ orderId: `o-${i}`, sku: 'SKU-42', quantity: 3, price: 19.99 });

function prepared(i: number): PreparedMessage[] {
  const id = uuidv7();
  return [{ id, type: 'OrderPlaced', data: payload(i), metadata: { correlationId: id }, tags: [] }];
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`notify.cost on ${describeUrl(url)}`);
  const pool = await openPool(url, WRITERS);
  const schema = await migratedSchema(pool, 'bench_notify');
  const store = createMessageStore({ pool, schema });
  const ctx = store.sqlContext;
  const channel = channelFor(schema);

  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  let received = 0;
  listener.on('notification', () => {
    received++;
  });
  await listener.query(`LISTEN "${channel}"`);

  let seq = 0;
  const on: AppendFn = async (_w, stream, version) => {
    await store.append(stream, { type: 'OrderPlaced', data: payload(seq++) }, { expectedVersion: version });
  };
  const batcher = new AppendBatcher(pool, ctx);
  const off: AppendFn = async (_w, stream, version) => {
    await appendToStream(pool, ctx, stream, version, prepared(seq++), batcher);
  };
  const inTxSql = `SELECT a.stream_version, pg_notify($8, '') FROM ${ctx.s}.append_to_stream($1, $2, $3, $4, $5, $6, $7) a`;
  const inTx: AppendFn = async (_w, stream, version) => {
    const m = prepared(seq++)[0]!;
    await pool.query({
      name: `bench_notify_in_tx_${schema}`,
      text: inTxSql,
      values: [
        stream,
        version,
        [m.id],
        [m.type],
        [JSON.stringify(m.data)],
        [JSON.stringify(m.metadata)],
        [''],
        channel,
      ],
    });
  };

  const variants: { label: string; fn: AppendFn; runs: Measurement[] }[] = [
    { label: 'off (store path, no notifier)', fn: off, runs: [] },
    { label: 'on (store.append, coalesced)', fn: on, runs: [] },
    { label: 'NOTIFY inside each write tx', fn: inTx, runs: [] },
  ];
  const appends = scaled(10_000, WRITERS * 20);
  const plan = { writers: WRITERS, appends, streamsPerWriter: 10 };
  const notificationsOn: number[] = [];
  try {
    for (const [i, v] of variants.entries())
      await runWriters('warmup', `warm${i}`, { ...plan, appends: 800 }, v.fn);
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, v] of variants.entries()) {
        const before = received;
        v.runs.push(await runWriters(v.label, `r${round}v${i}`, plan, v.fn));
        if (v.fn === on) notificationsOn.push(received - before);
      }
    }
  } finally {
    await store.close();
    await listener.end();
    await dropSchemas(pool, [schema]);
    await pool.end();
  }
  const [offM, onM, inTxM] = variants.map((v) => medianOf(v.runs)) as [Measurement, Measurement, Measurement];
  onM.note = `~${median(notificationsOn)} NOTIFYs delivered for ${onM.messages} appends`;
  printMeasurements(
    `${WRITERS} writers, ${offM.messages} single-message appends, median of ${ROUNDS} rounds`,
    [offM, onM, inTxM],
    offM,
  );
  for (const v of variants)
    console.log(
      `  ${v.label}: ${v.runs.map((m) => `${Math.round(rate(m))}/s p99=${fmtMs(m.latencies?.p99)}`).join(', ')}`,
    );
  const [offRuns, onRuns, inTxRuns] = variants.map((v) => v.runs) as [
    Measurement[],
    Measurement[],
    Measurement[],
  ];
  console.log(`(ratio = median of the ${ROUNDS} per-round ratios; rates are the median round)`);
  console.log('');
  console.log(ratioLine('notify.cost', onM, offM, { baseKey: 'off', ratio: medianRatio(onRuns, offRuns) }));
  console.log(
    ratioLine('notify.cost.in_tx', inTxM, offM, { baseKey: 'off', ratio: medianRatio(inTxRuns, offRuns) }),
  );
}

await main();
