/**
 * append.single: single-message appends with an expected version, 1 writer then 16 writers, each
 * writer on its own streams. Ours: createMessageStore().append, with ids drawn by the store and with
 * ids given by the caller (the `given_ids` line: idempotent retries cost nothing when nothing is
 * retried). Baseline: raw pg 1-row INSERT per
 * commit into a copy of the messages table (same columns, constraints and indexes), same pool size.
 * Peer: Emmett's appendToStream with expected version, in its own database on the same server.
 */
import type pg from 'pg';
import { escapeIdentifier } from '../src/db/identifier.js';
import { createMessageStore } from '../src/store/messageStore.js';
import { uuidv7 } from '../src/store/uuidv7.js';
import {
  benchDatabaseUrl,
  createDatabase,
  describeUrl,
  dropDatabase,
  dropSchemas,
  migratedSchema,
  openPool,
  withDatabase,
} from './lib/db.js';
import { scaled } from './lib/env.js';
import { printMeasurements, ratioLine } from './lib/format.js';
import { emmettInstallHint, loadEmmett } from './lib/peers.js';
import { type Measurement, medianOf, medianRatio, rate } from './lib/stats.js';
import { type AppendFn, runWriters, type WriterPlan, warmJit } from './lib/writers.js';

const STREAMS_PER_WRITER = 10;
const ROUNDS = 3;
const payload = (i: number) => ({ orderId: `o-${i}`, sku: 'SKU-42', quantity: 3, price: 19.99 });

interface Variant {
  label: string;
  setup(poolSize: number): Promise<{ append: AppendFn; close(): Promise<void> }>;
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`append.single on ${describeUrl(url)}`);
  const admin = await openPool(url, 1);
  const schemas: string[] = [];
  const emmett = await loadEmmett();
  let emmettDb: string | undefined;
  let seq = 0;

  // Ids drawn by the store, or given by the caller (as a retry-safe caller does: appends are
  // idempotent by message id, and the ids are looked up only when an append fails).
  const oursVariant = (givenIds: boolean): Variant => ({
    label: givenIds ? 'beckett append, ids given' : 'beckett append',
    async setup(poolSize) {
      const pool = await openPool(url, poolSize);
      const schema = await migratedSchema(pool, 'bench_single');
      schemas.push(schema);
      const store = createMessageStore({ pool, schema });
      return {
        append: async (_w, stream, version) => {
          await store.append(
            stream,
            givenIds
              ? { id: uuidv7(), type: 'OrderPlaced', data: payload(seq++) }
              : { type: 'OrderPlaced', data: payload(seq++) },
            { expectedVersion: version },
          );
        },
        close: async () => {
          await store.close();
          await pool.end();
        },
      };
    },
  });
  const ours = oursVariant(false);
  const oursGivenIds = oursVariant(true);

  const raw: Variant = {
    label: 'raw 1-row INSERT',
    async setup(poolSize) {
      const pool = await openPool(url, poolSize);
      const schema = await migratedSchema(pool, 'bench_single_raw');
      schemas.push(schema);
      const text = `INSERT INTO ${escapeIdentifier(schema)}.messages (id, stream_name, stream_position, type, data, metadata, tags)
        VALUES ($1, $2, $3, $4, $5, $6, $7)`;
      return {
        append: async (_w, stream, version) => {
          const id = uuidv7();
          await pool.query({
            name: `raw_insert_${schema}`,
            text,
            values: [
              id,
              stream,
              version + 1,
              'OrderPlaced',
              JSON.stringify(payload(seq++)),
              JSON.stringify({ correlationId: id }),
              [],
            ],
          });
        },
        close: () => pool.end(),
      };
    },
  };

  const variants: Variant[] = [raw, ours, oursGivenIds];
  if (emmett) {
    emmettDb = await createDatabase(url, 'bench_emmett');
    const emmettUrl = withDatabase(url, emmettDb);
    variants.push({
      label: 'emmett appendToStream',
      async setup(poolSize) {
        const pool: pg.Pool = await openPool(emmettUrl, poolSize);
        const store = emmett.getPostgreSQLEventStore(emmettUrl, {
          connectionOptions: { pooled: true, pool },
        });
        await store.schema.migrate();
        return {
          append: async (_w, stream, version) => {
            await store.appendToStream(stream, [{ type: 'OrderPlaced', data: payload(seq++) }], {
              expectedStreamVersion: BigInt(version),
            });
          },
          close: async () => {
            await store.close();
            await pool.end().catch(() => undefined);
          },
        };
      },
    });
  } else {
    console.log(`(Emmett not installed: ${emmettInstallHint})`);
  }

  const plans: { name: string; plan: WriterPlan }[] = [
    { name: '1w', plan: { writers: 1, appends: scaled(5_000, 100), streamsPerWriter: STREAMS_PER_WRITER } },
    {
      name: '16w',
      plan: { writers: 16, appends: scaled(20_000, 320), streamsPerWriter: STREAMS_PER_WRITER },
    },
  ];
  const summary: string[] = [];
  try {
    for (const { name, plan } of plans) {
      const runs: Measurement[][] = variants.map(() => []);
      await warmJit(variants, name, plan);
      for (let round = 0; round < ROUNDS; round++) {
        for (const [i, v] of variants.entries()) {
          const { append, close } = await v.setup(plan.writers);
          try {
            // Warm-up on separate streams: prepared statements, caches, JIT.
            const warm = { ...plan, appends: Math.min(plan.appends, 50 * plan.writers) };
            await runWriters('warmup', `warm${round}${name}`, warm, append);
            runs[i]!.push(await runWriters(v.label, `r${round}${name}`, plan, append));
          } finally {
            await close();
          }
        }
      }
      const [rawRuns, oursRuns, givenRuns, emmettRuns] = runs as [
        Measurement[],
        Measurement[],
        Measurement[],
        Measurement[] | undefined,
      ];
      const [rawM, oursM, givenM, emmettM] = runs.map(medianOf) as [
        Measurement,
        Measurement,
        Measurement,
        Measurement | undefined,
      ];
      printMeasurements(
        `${plan.writers} writer(s), ${oursM.messages} single-message appends, median of ${ROUNDS} rounds`,
        emmettM ? [rawM, oursM, givenM, emmettM] : [rawM, oursM, givenM],
        rawM,
      );
      for (const [i, v] of variants.entries())
        console.log(`  ${v.label}: ${runs[i]!.map((m) => `${Math.round(rate(m))}/s`).join(', ')}`);
      summary.push(
        ratioLine(`append.single.${name}`, oursM, rawM, {
          ratio: medianRatio(oursRuns, rawRuns),
          extra: emmettM ? { emmett: `${Math.round(rate(emmettM))}/s` } : {},
        }),
      );
      // Idempotent retries are free when nothing is retried: ids given cost what drawn ones do.
      summary.push(
        ratioLine(`append.single.${name}.given_ids`, givenM, oursM, {
          baseKey: 'drawn',
          ratio: medianRatio(givenRuns, oursRuns),
        }),
      );
      if (emmettM && emmettRuns)
        summary.push(
          ratioLine(`append.single.${name}.vs_emmett`, oursM, emmettM, {
            baseKey: 'emmett',
            ratio: medianRatio(oursRuns, emmettRuns),
          }),
        );
    }
  } finally {
    await dropSchemas(admin, schemas);
    await admin.end();
    if (emmettDb) await dropDatabase(url, emmettDb);
  }
  console.log(`(ratio = median of the ${ROUNDS} per-round ratios; rates are the median round)`);
  console.log('');
  for (const line of summary) console.log(line);
}

await main();
