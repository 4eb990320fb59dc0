/**
 * append.batch: 200k messages appended in batches of 100, then of 1,000 (one writer, one commit per
 * batch, round-robin over a few streams with expected version). Ours: createMessageStore().append
 * with an array. Baselines on a copy of the messages table: raw multi-row
 * `INSERT ... SELECT FROM unnest(...)`, and COPY FROM STDIN (pg-copy-streams), one per batch.
 * Variants run in interleaved rounds, each round on fresh tables; medians are reported.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { escapeIdentifier } from '../src/db/identifier.js';
import { createMessageStore, type MessageStore } from '../src/store/messageStore.js';
import { uuidv7 } from '../src/store/uuidv7.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { printMeasurements, ratioLine } from './lib/format.js';
import { type Measurement, medianOf, medianRatio, rate, timed } from './lib/stats.js';

const STREAMS = 10;
const ROUNDS = 3;
const payload = (i: number) => ({ orderId: `o-${i}`, sku: 'SKU-42', quantity: 3, price: 19.99 });

/** Append one batch of `size` messages to `stream`, whose version is `version`. */
type BatchFn = (stream: string, version: number, size: number, firstSeq: number) => Promise<void>;

async function runBatches(
  label: string,
  tag: string,
  total: number,
  size: number,
  fn: BatchFn,
): Promise<Measurement> {
  const versions = new Array<number>(STREAMS).fill(0);
  const batches = Math.max(1, Math.floor(total / size));
  const { seconds } = await timed(async () => {
    for (let b = 0; b < batches; b++) {
      const k = b % STREAMS;
      await fn(`${tag}-${k}`, versions[k]!, size, b * size);
      versions[k] = versions[k]! + size;
    }
  });
  return { label, messages: batches * size, seconds };
}

function oursBatch(store: MessageStore): BatchFn {
  return async (stream, version, n, first) => {
    const messages = Array.from({ length: n }, (_, i) => ({ type: 'OrderPlaced', data: payload(first + i) }));
    await store.append(stream, messages, { expectedVersion: version });
  };
}

function rawBatch(pool: pg.Pool, schema: string): BatchFn {
  const text = `INSERT INTO ${escapeIdentifier(schema)}.messages (id, stream_name, stream_position, type, data, metadata)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[], $6::jsonb[])`;
  return async (stream, version, n, first) => {
    const ids: string[] = [];
    const streams: string[] = [];
    const positions: number[] = [];
    const types: string[] = [];
    const data: string[] = [];
    const metadata: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = uuidv7();
      ids.push(id);
      streams.push(stream);
      positions.push(version + i + 1);
      types.push('OrderPlaced');
      data.push(JSON.stringify(payload(first + i)));
      metadata.push(JSON.stringify({ correlationId: id }));
    }
    await pool.query({
      name: `raw_unnest_${schema}`,
      text,
      values: [ids, streams, positions, types, data, metadata],
    });
  };
}

/** COPY text format: backslash, tab, newline and carriage return are escaped. */
const copyEscape = (s: string) =>
  s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');

function copyBatch(pool: pg.Pool, schema: string): BatchFn {
  const sql = `COPY ${escapeIdentifier(schema)}.messages (id, stream_name, stream_position, type, data, metadata) FROM STDIN`;
  return async (stream, version, n, first) => {
    let text = '';
    for (let i = 0; i < n; i++) {
      const id = uuidv7();
      text += `${id}\t${copyEscape(stream)}\t${version + i + 1}\tOrderPlaced\t${copyEscape(
        JSON.stringify(payload(first + i)),
      )}\t${copyEscape(JSON.stringify({ correlationId: id }))}\n`;
    }
    const client = await pool.connect();
    try {
      await pipeline(Readable.from([text]), client.query(copyFrom(sql)));
    } finally {
      client.release();
    }
  };
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`append.batch on ${describeUrl(url)}`);
  const pool = await openPool(url, 2);
  const schemas: string[] = [];
  const total = scaled(200_000, 2_000);
  const summary: string[] = [];
  try {
    for (const size of [100, 1_000]) {
      const runs: [Measurement[], Measurement[], Measurement[]] = [[], [], []];
      for (let round = 0; round < ROUNDS; round++) {
        const ours = await migratedSchema(pool, 'bench_batch');
        const rawSchema = await migratedSchema(pool, 'bench_batch_raw');
        const copySchema = await migratedSchema(pool, 'bench_batch_copy');
        schemas.push(ours, rawSchema, copySchema);
        const store = createMessageStore({ pool, schema: ours });
        const fns: [string, BatchFn][] = [
          ['raw unnest INSERT', rawBatch(pool, rawSchema)],
          ['beckett append', oursBatch(store)],
          ['raw COPY', copyBatch(pool, copySchema)],
        ];
        const warm = Math.min(total, 20 * size);
        for (const [, fn] of fns) await runBatches('warmup', 'warm', warm, size, fn);
        for (const [i, [label, fn]] of fns.entries())
          runs[i]!.push(await runBatches(label, 'bench', total, size, fn));
        await store.close();
        await dropSchemas(pool, [ours, rawSchema, copySchema]);
      }
      const [rawM, oursM, copyM] = runs.map(medianOf) as [Measurement, Measurement, Measurement];
      printMeasurements(
        `${total} messages in appends of ${size}, median of ${ROUNDS} rounds`,
        [rawM, oursM, copyM],
        rawM,
      );
      for (const r of runs)
        console.log(`  ${r[0]!.label}: ${r.map((m) => `${Math.round(rate(m))}/s`).join(', ')}`);
      summary.push(
        ratioLine(`append.batch.${size}`, oursM, rawM, {
          ratio: medianRatio(runs[1], runs[0]),
          extra: { copy: `${Math.round(rate(copyM))}/s` },
        }),
      );
      summary.push(
        ratioLine(`append.batch.${size}.vs_copy`, oursM, copyM, {
          baseKey: 'copy',
          ratio: medianRatio(runs[1], runs[2]),
        }),
      );
    }
  } finally {
    await dropSchemas(pool, schemas);
    await pool.end();
  }
  console.log(`(ratio = median of the ${ROUNDS} per-round ratios; rates are the median round)`);
  console.log('');
  for (const line of summary) console.log(line);
}

await main();
