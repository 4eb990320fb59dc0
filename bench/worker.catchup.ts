/**
 * worker.catchup: 200k messages already in the log (COPY-loaded, 100 per stream over 2k streams;
 * the 1M scaled down to fit the time budget, BENCH_SCALE=5 gives 1M), then a new
 * subscription from the beginning, in one worker process (concurrency 4, pool 10): messages/s
 * from "go" to the last checkpoint, and the worker's peak RSS.
 * Baseline: a raw gap-safe keyset read of the whole log on one connection
 *   ((transaction_id, global_position) > last AND transaction_id < snapshot xmin, 1,000 a page),
 *   and, for reference, the library's readAll() walking the same log (3 alternating passes each,
 *   median kept).
 */
import pg from 'pg';
import { escapeIdentifier } from '../src/db/identifier.js';
import { createMessageStore } from '../src/store/messageStore.js';
import { MESSAGE_COLUMNS } from '../src/store/rowToMessage.js';
import { LOG_START } from '../src/store/types.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { fmtRate, fmtRatio, printTable } from './lib/format.js';
import { copyMessages, waitUntilReadable } from './lib/load.js';
import { timed } from './lib/stats.js';
import { runChildren } from './lib/workerParent.js';

const PER_STREAM = 100;
const PAGE = 1000;
const READ_PASSES = 3;

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`worker.catchup on ${describeUrl(url)}`);
  const total = scaled(200_000, 2_000);
  const streams = Math.max(1, Math.round(total / PER_STREAM));
  const admin = await openPool(url, 2);
  const schema = await migratedSchema(admin, 'bench_catchup');
  const rows: { label: string; n: number; seconds: number; rss?: string }[] = [];
  try {
    const load = await timed(() => copyMessages(admin, schema, total, streams));
    console.log(`loaded ${total} messages over ${streams} streams by COPY in ${load.seconds.toFixed(1)} s`);
    const waited = await waitUntilReadable(admin, schema);
    if (waited > 0.5) console.log(`waited ${waited.toFixed(1)} s for an open transaction elsewhere to end`);

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const sql = `SELECT ${MESSAGE_COLUMNS} FROM ${escapeIdentifier(schema)}.messages
      WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
        AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY transaction_id, global_position LIMIT $3`;
    const rawRead = async () => {
      let tx = '0';
      let gp = 0;
      let n = 0;
      for (;;) {
        const { rows: page } = await client.query<{ transaction_id: string; global_position: number }>({
          name: 'raw_keyset',
          text: sql,
          values: [tx, gp, PAGE],
        });
        if (page.length === 0) return n;
        n += page.length;
        const last = page[page.length - 1]!;
        tx = last.transaction_id;
        gp = last.global_position;
      }
    };
    const store = createMessageStore({ pool: admin, schema });
    const libRead = async () => {
      let after = LOG_START;
      let n = 0;
      for (;;) {
        const r = await store.readAll({ after, limit: PAGE });
        if (r.messages.length === 0) return n;
        n += r.messages.length;
        after = r.position;
      }
    };
    // Alternating passes; the median pass of each is kept.
    const rawPasses: { seconds: number; result: number }[] = [];
    const libPasses: { seconds: number; result: number }[] = [];
    for (let pass = 0; pass < READ_PASSES; pass++) {
      rawPasses.push(await timed(rawRead));
      libPasses.push(await timed(libRead));
    }
    await client.end();
    const mid = (xs: { seconds: number; result: number }[]) =>
      [...xs].sort((x, y) => x.seconds - y.seconds)[xs.length >> 1]!;
    for (const x of [...rawPasses, ...libPasses])
      if (x.result !== total) throw new Error(`a read pass saw ${x.result} of ${total} messages`);
    rows.push({
      label: `raw keyset read, ${PAGE}/page`,
      n: mid(rawPasses).result,
      seconds: mid(rawPasses).seconds,
    });
    rows.push({
      label: `store.readAll(), ${PAGE}/page`,
      n: mid(libPasses).result,
      seconds: mid(libPasses).seconds,
    });

    const r = await runChildren(
      [{ kind: 'beckett', url, schema, concurrency: 4, poolSize: 10, batchSize: 100 }],
      total,
      300_000,
    );
    if (r.errors.length) console.log(`  worker errors: ${r.errors.join(' | ')}`);
    if (r.processed < total) throw new Error(`the worker processed only ${r.processed} of ${total} in time`);
    rows.push({
      label: 'beckett worker, new subscription',
      n: r.processed,
      seconds: r.seconds,
      rss: `${r.maxRssMb[0]!.toFixed(0)}MiB`,
    });
  } finally {
    await dropSchemas(admin, [schema]);
    await admin.end();
  }
  const [rawRow, libRow, ours] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]];
  const rate = (x: (typeof rows)[0]) => x.n / x.seconds;
  printTable(
    `catch-up over ${total} messages in ${streams} streams`,
    ['variant', 'messages', 'seconds', 'rate', 'x raw read', 'peak RSS'],
    rows.map((x) => [
      x.label,
      String(x.n),
      x.seconds.toFixed(2),
      fmtRate(rate(x)),
      fmtRatio(rate(x) / rate(rawRow)),
      x.rss ?? '',
    ]),
  );
  console.log('');
  console.log(
    `worker.catchup ratio=${fmtRatio(rate(ours) / rate(rawRow))} ours=${fmtRate(rate(ours))} raw=${fmtRate(rate(rawRow))} readAll=${fmtRate(rate(libRow))} rss=${ours.rss}`,
  );
}

await main();
