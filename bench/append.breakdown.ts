/**
 * append.breakdown: where the time of one single-message append goes, one connection, one writer.
 * Each step adds one piece of what createMessageStore().append does on top of a raw 1-row INSERT:
 *   raw INSERT -> + advisory lock -> + max(stream_position) check -> the same as one plain SQL
 *   statement with the function's unnest/jsonb[] insert -> append_to_stream() (plpgsql) ->
 *   store.append without NOTIFY (store bound to an autocommit client) -> store.append on a pool of
 *   1 (NOTIFY after each commit shares the connection) -> on a pool of 2. One alternative is timed
 *   too: an exact expected version checked by "position N exists" plus the unique constraint on
 *   (stream_name, stream_position) for the race, with no advisory lock and no max().
 * Every variant runs once per round, rounds interleaved; the table shows the best round (the least
 * disturbed by other load) and the median, in microseconds per append.
 */
import type pg from 'pg';
import { escapeIdentifier } from '../src/db/identifier.js';
import { appendToStream } from '../src/store/appendToStream.js';
import { createMessageStore } from '../src/store/messageStore.js';
import { uuidv7 } from '../src/store/uuidv7.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { fmtRatio, printTable } from './lib/format.js';
import { median } from './lib/stats.js';

const ROUNDS = 7;
const STREAMS = 10;
const payload = (i: number) => ({ orderId: `o-${i}`, sku: 'SKU-42', quantity: 3, price: 19.99 });

type Append = (stream: string, version: number, i: number) => Promise<unknown>;
interface Step {
  label: string;
  append: Append;
  close(): Promise<void>;
}

/** The step before `k` that is not an alternative (alternatives are compared with raw). */
function previousStep(steps: Step[], k: number): number {
  let j = k - 1;
  while (j > 0 && steps[j]!.label.startsWith('alt:')) j--;
  return j;
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`append.breakdown on ${describeUrl(url)}`);
  const n = scaled(1_500, 100);
  const admin = await openPool(url, 1);
  const schemas: string[] = [];
  const pools: pg.Pool[] = [];
  const pool = async (size: number) => {
    const p = await openPool(url, size);
    pools.push(p);
    return p;
  };
  const rawValues = (stream: string, version: number, i: number) => {
    const id = uuidv7();
    return [
      id,
      stream,
      version + 1,
      'OrderPlaced',
      JSON.stringify(payload(i)),
      JSON.stringify({ correlationId: id }),
      [],
    ];
  };
  const plainStep = async (label: string, name: string, sql: (s: string) => string): Promise<Step> => {
    const p = await pool(1);
    const schema = await migratedSchema(p, `bench_bd_${name}`);
    schemas.push(schema);
    const text = sql(escapeIdentifier(schema));
    return {
      label,
      append: (stream, version, i) =>
        p.query({ name: `bd_${name}`, text, values: rawValues(stream, version, i) }),
      close: async () => undefined,
    };
  };
  const lock = `pg_advisory_xact_lock(hashtextextended('beckett.stream:' || $2, 0))`;
  const cols = '(id, stream_name, stream_position, type, data, metadata, tags)';
  const steps: Step[] = [
    await plainStep(
      'raw 1-row INSERT',
      'raw',
      (s) => `INSERT INTO ${s}.messages ${cols} VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    ),
    await plainStep(
      '+ advisory lock',
      'lock',
      (s) => `INSERT INTO ${s}.messages ${cols} SELECT $1, $2, $3, $4, $5, $6, $7 FROM (SELECT ${lock}) l`,
    ),
    await plainStep(
      '+ max(stream_position)',
      'max',
      (s) => `WITH l AS (SELECT ${lock}),
        c AS (SELECT coalesce(max(m.stream_position), 0) AS v FROM ${s}.messages m, l WHERE m.stream_name = $2)
        INSERT INTO ${s}.messages ${cols} SELECT $1, $2, c.v + 1, $4, $5, $6, $7 FROM c WHERE c.v + 1 = $3`,
    ),
    await plainStep(
      '+ unnest/jsonb[] insert (1 SQL)',
      'unnest',
      (s) => `WITH l AS (SELECT ${lock}),
        c AS (SELECT coalesce(max(m.stream_position), 0) AS v FROM ${s}.messages m, l WHERE m.stream_name = $2),
        ins AS (INSERT INTO ${s}.messages ${cols}
          SELECT u.id, $2, c.v + u.ord, u.type, u.data, coalesce(u.metadata, '{}'::jsonb),
                 CASE WHEN u.tags IS NULL OR u.tags = '' THEN '{}'::text[] ELSE string_to_array(u.tags, chr(31)) END
            FROM c, unnest(ARRAY[$1::uuid], ARRAY[$4::text], ARRAY[$5::jsonb], ARRAY[$6::jsonb], ARRAY[array_to_string($7::text[], chr(31))])
                 WITH ORDINALITY AS u(id, type, data, metadata, tags, ord)
           WHERE c.v + 1 = $3::bigint
          RETURNING global_position)
        SELECT max(global_position) FROM ins`,
    ),
    await plainStep(
      'alt: exact version, no lock/max',
      'exact',
      (s) => `INSERT INTO ${s}.messages ${cols} SELECT $1, $2, $3, $4, $5, $6, $7
        WHERE $3::bigint = 1 OR EXISTS (SELECT 1 FROM ${s}.messages m WHERE m.stream_name = $2 AND m.stream_position = $3::bigint - 1)`,
    ),
  ];
  {
    const p = await pool(1);
    const schema = await migratedSchema(p, 'bench_bd_fn');
    schemas.push(schema);
    const ctx = createMessageStore({ pool: p, schema }).sqlContext;
    steps.push({
      label: 'append_to_stream() (plpgsql)',
      append: (stream, version, i) => {
        const id = uuidv7();
        const m = { id, type: 'OrderPlaced', data: payload(i), metadata: { correlationId: id }, tags: [] };
        return appendToStream(p, ctx, stream, version, [m]);
      },
      close: async () => undefined,
    });
  }
  {
    const p = await pool(1);
    const schema = await migratedSchema(p, 'bench_bd_nonotify');
    schemas.push(schema);
    const client = await p.connect();
    const store = createMessageStore({ pool: p, schema }).withTransaction(client);
    steps.push({
      label: 'store.append, no NOTIFY',
      append: (stream, version, i) =>
        store.append(stream, { type: 'OrderPlaced', data: payload(i) }, { expectedVersion: version }),
      close: async () => client.release(),
    });
  }
  for (const size of [1, 2]) {
    const p = await pool(size);
    const schema = await migratedSchema(p, `bench_bd_pool${size}`);
    schemas.push(schema);
    const store = createMessageStore({ pool: p, schema });
    steps.push({
      label: `store.append, pool of ${size}`,
      append: (stream, version, i) =>
        store.append(stream, { type: 'OrderPlaced', data: payload(i) }, { expectedVersion: version }),
      close: () => store.close(),
    });
  }

  const micros: number[][] = steps.map(() => []);
  try {
    for (let round = -1; round < ROUNDS; round++) {
      for (const [k, step] of steps.entries()) {
        const versions = new Array<number>(STREAMS).fill(0);
        const count = round < 0 ? 100 : n;
        const start = performance.now();
        for (let i = 0; i < count; i++) {
          const s = i % STREAMS;
          await step.append(`r${round + 1}-${s}`, versions[s]!, i);
          versions[s] = versions[s]! + 1;
        }
        if (round >= 0) micros[k]!.push(((performance.now() - start) * 1000) / count);
      }
    }
  } finally {
    for (const step of steps) await step.close();
    await Promise.all(pools.map((p) => p.end()));
    await dropSchemas(admin, schemas);
    await admin.end();
  }
  const best = micros.map((m) => Math.min(...m));
  const med = micros.map(median);
  const base = best[0]!;
  printTable(
    `${n} single-message appends per round, 1 connection, best and median of ${ROUNDS} rounds (us per append)`,
    ['step', 'best us', '+ over prev', 'median us', 'raw/this'],
    steps.map((s, k) => [
      s.label,
      best[k]!.toFixed(0),
      k === 0
        ? ''
        : s.label.startsWith('alt:')
          ? `${(best[k]! - base).toFixed(0)} over raw`
          : (best[k]! - best[previousStep(steps, k)]!).toFixed(0),
      med[k]!.toFixed(0),
      fmtRatio(base / best[k]!),
    ]),
  );
  const rawRate = 1e6 / base;
  console.log('');
  for (const [k, s] of steps.entries()) {
    if (k === 0) continue;
    const key = s.label
      .replace(/[^a-z0-9]+/gi, '_')
      .replace(/^_|_$/g, '')
      .toLowerCase();
    console.log(
      `append.breakdown.${key} ratio=${fmtRatio(base / best[k]!)} ours=${Math.round(1e6 / best[k]!)}/s raw=${Math.round(rawRate)}/s`,
    );
  }
}

await main();
