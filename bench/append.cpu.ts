/**
 * append.cpu: what one single-message append costs in CPU and statements, not in wall time, so
 * that it can be read on a loaded machine (where wall-time ratios at 1 writer are set by the WAL
 * flush and by other processes). Per append: the server backends' CPU (utime + stime of their
 * processes, read from /proc: only when the server runs on this machine, else "n/a"), this
 * process's CPU (process.cpuUsage), statements sent (pg Client.query calls: appends, batches,
 * wake-up NOTIFYs) and wall time. Variants: raw 1-row INSERT (as append.single), store.append
 * untagged (append.single's), store.append with one tag (append.conditional's plain), and the
 * conditional append of append.conditional's disjoint variant; at 1 writer then 16, pool size =
 * writers, rounds interleaved, medians shown.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { appendWithCondition } from '../src/consistency/conditionalAppend.js';
import { Query } from '../src/consistency/query.js';
import { escapeIdentifier } from '../src/db/identifier.js';
import { createMessageStore } from '../src/store/messageStore.js';
import type { LogPosition } from '../src/store/types.js';
import { uuidv7 } from '../src/store/uuidv7.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { printTable } from './lib/format.js';
import { median } from './lib/stats.js';
import { streamName } from './lib/writers.js';

const ROUNDS = 3;
const STREAMS_PER_WRITER = 10;
/** Linux reports process CPU in clock ticks of 10 ms. */
const TICK_US = 10_000;
const payload = (i: number) => ({ orderId: `o-${i}`, sku: 'SKU-42', quantity: 3, price: 19.99 });

type Append = (stream: string, version: number, i: number) => Promise<unknown>;
interface Variant {
  label: string;
  setup(pool: pg.Pool, schema: string): { append: Append; close(): Promise<void> };
}

let statements = 0;
const clientQuery = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  statements++;
  return (clientQuery as (...a: unknown[]) => unknown).apply(this, args);
} as typeof clientQuery;

function backendTicks(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/** The backend pids of every connection of `pool` (all opened and held at once). */
async function backendPids(pool: pg.Pool, size: number): Promise<number[]> {
  const rows = await Promise.all(
    Array.from({ length: size }, () =>
      pool.query<{ p: number }>('SELECT pg_backend_pid() AS p, pg_sleep(0.05)'),
    ),
  );
  return [...new Set(rows.map((r) => r.rows[0]!.p))];
}

const storeVariant = (label: string, tagged: boolean): Variant => ({
  label,
  setup(pool, schema) {
    const store = createMessageStore({ pool, schema });
    return {
      append: (stream, version, i) =>
        store.append(
          stream,
          { type: 'OrderPlaced', data: payload(i), ...(tagged ? { tags: [`stream:${stream}`] } : {}) },
          { expectedVersion: version },
        ),
      close: () => store.close(),
    };
  },
});

const variants: Variant[] = [
  {
    label: 'raw 1-row INSERT',
    setup(pool, schema) {
      const text = `INSERT INTO ${escapeIdentifier(schema)}.messages (id, stream_name, stream_position, type, data, metadata, tags)
        VALUES ($1, $2, $3, $4, $5, $6, $7)`;
      const append: Append = (stream, version, i) => {
        const id = uuidv7();
        return pool.query({
          name: `raw_insert_${schema}`,
          text,
          values: [
            id,
            stream,
            version + 1,
            'OrderPlaced',
            JSON.stringify(payload(i)),
            JSON.stringify({ correlationId: id }),
            [],
          ],
        });
      };
      return { append, close: async () => undefined };
    },
  },
  storeVariant('store.append', false),
  storeVariant('store.append, 1 tag', true),
  {
    label: 'conditional (disjoint)',
    setup(pool, schema) {
      const store = createMessageStore({ pool, schema });
      const last = new Map<string, LogPosition>();
      const append: Append = async (stream, version, i) => {
        const tag = `stream:${stream}`;
        const after = last.get(stream);
        const r = await appendWithCondition(
          store,
          [
            {
              stream,
              messages: { type: 'OrderPlaced', data: payload(i), tags: [tag] },
              expectedVersion: version,
            },
          ],
          {
            failIfEventsMatch: Query.of({ types: ['OrderPlaced'], tags: [tag] }),
            ...(after ? { after } : {}),
          },
        );
        last.set(stream, r.position);
      };
      return { append, close: () => store.close() };
    },
  },
];

interface Sample {
  serverUs: number | undefined;
  clientUs: number;
  statements: number;
  wallUs: number;
}

async function measure(
  url: string,
  v: Variant,
  writers: number,
  appends: number,
  tag: string,
  schemas: string[],
) {
  const pool = await openPool(url, writers);
  try {
    const schema = await migratedSchema(pool, 'bench_cpu');
    schemas.push(schema);
    const { append, close } = v.setup(pool, schema);
    const pids = await backendPids(pool, writers);
    const ticks = () => {
      let sum = 0;
      for (const p of pids) {
        const t = backendTicks(p);
        if (t === undefined) return undefined;
        sum += t;
      }
      return sum;
    };
    const run = (prefix: string, total: number) =>
      Promise.all(
        Array.from({ length: writers }, async (_, w) => {
          for (let i = 0; i < total / writers; i++)
            await append(
              streamName(prefix, w, i % STREAMS_PER_WRITER),
              Math.floor(i / STREAMS_PER_WRITER),
              i,
            );
        }),
      );
    await run(`warm${tag}`, Math.min(appends, 50 * writers));
    const [t0, q0, c0, w0] = [ticks(), statements, process.cpuUsage(), performance.now()];
    await run(tag, appends);
    const [t1, c1, w1] = [ticks(), process.cpuUsage(c0), performance.now()];
    await close();
    return {
      serverUs: t0 === undefined || t1 === undefined ? undefined : ((t1 - t0) * TICK_US) / appends,
      clientUs: (c1.user + c1.system) / appends,
      statements: (statements - q0) / appends,
      wallUs: ((w1 - w0) * 1000) / appends,
    } satisfies Sample;
  } finally {
    await pool.end();
  }
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`append.cpu on ${describeUrl(url)}`);
  const admin = await openPool(url, 1);
  const schemas: string[] = [];
  try {
    for (const [writers, appends] of [
      [1, scaled(3_000, 200)],
      [16, scaled(16_000, 320)],
    ] as const) {
      const samples: Sample[][] = variants.map(() => []);
      for (let round = 0; round < ROUNDS; round++)
        for (const [i, v] of variants.entries())
          samples[i]!.push(await measure(url, v, writers, appends, `r${round}v${i}w${writers}`, schemas));
      const us = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(0));
      printTable(
        `${writers} writer(s), ${appends} appends, median of ${ROUNDS} rounds (per append)`,
        ['variant', 'server CPU us', 'client CPU us', 'statements', 'wall us', 'server CPU per round'],
        variants.map((v, i) => {
          const s = samples[i]!;
          const server = s.map((x) => x.serverUs);
          const known = server.every((x) => x !== undefined);
          return [
            v.label,
            known ? us(median(server as number[])) : 'n/a',
            us(median(s.map((x) => x.clientUs))),
            median(s.map((x) => x.statements)).toFixed(2),
            us(median(s.map((x) => x.wallUs))),
            server.map(us).join(', '),
          ];
        }),
      );
    }
  } finally {
    await dropSchemas(admin, schemas);
    await admin.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
