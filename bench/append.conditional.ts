/**
 * append.conditional: single-message DCB appends (appendWithCondition), 1 writer then 10 writers,
 * each writer on its own streams, against plain store.append with expected version in the same run.
 * - disjoint: every stream's messages carry their own tag and the condition is "no message of this
 *   type with this stream's tag after the last position I appended": conditions never overlap;
 * - overlapping: every append's condition is on one shared (type, tag) key that no message
 *   matches, so all appends serialise on the same lock (the cost of contention, not of failures).
 */
import type pg from 'pg';
import { appendWithCondition } from '../src/consistency/conditionalAppend.js';
import { Query } from '../src/consistency/query.js';
import { createMessageStore } from '../src/store/messageStore.js';
import type { LogPosition } from '../src/store/types.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { printMeasurements, ratioLine } from './lib/format.js';
import { type Measurement, medianOf, medianRatio, rate } from './lib/stats.js';
import { type AppendFn, runWriters, type WriterPlan, warmJit } from './lib/writers.js';

const STREAMS_PER_WRITER = 10;
const ROUNDS = 3;
const payload = (i: number) => ({ courseId: `c-${i}`, studentId: 's-42', seats: 3 });

interface Variant {
  label: string;
  setup(poolSize: number): Promise<{ append: AppendFn; close(): Promise<void> }>;
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  console.log(`append.conditional on ${describeUrl(url)}`);
  const admin = await openPool(url, 1);
  const schemas: string[] = [];
  let seq = 0;

  const withStore = async (poolSize: number, prefix: string) => {
    const pool: pg.Pool = await openPool(url, poolSize);
    const schema = await migratedSchema(pool, prefix);
    schemas.push(schema);
    const store = createMessageStore({ pool, schema });
    const close = async () => {
      await store.close();
      await pool.end();
    };
    return { store, close };
  };

  const plain: Variant = {
    label: 'store.append',
    async setup(poolSize) {
      const { store, close } = await withStore(poolSize, 'bench_cond_plain');
      return {
        append: async (_w, stream, version) => {
          await store.append(
            stream,
            { type: 'StudentSubscribed', data: payload(seq++), tags: [`stream:${stream}`] },
            { expectedVersion: version },
          );
        },
        close,
      };
    },
  };

  const disjoint: Variant = {
    label: 'conditional disjoint',
    async setup(poolSize) {
      const { store, close } = await withStore(poolSize, 'bench_cond_disjoint');
      const last = new Map<string, LogPosition>();
      return {
        append: async (_w, stream, version) => {
          const tag = `stream:${stream}`;
          const after = last.get(stream);
          const r = await appendWithCondition(
            store,
            [
              {
                stream,
                messages: { type: 'StudentSubscribed', data: payload(seq++), tags: [tag] },
                expectedVersion: version,
              },
            ],
            {
              failIfEventsMatch: Query.of({ types: ['StudentSubscribed'], tags: [tag] }),
              ...(after ? { after } : {}),
            },
          );
          last.set(stream, r.position);
        },
        close,
      };
    },
  };

  const hot = Query.of({ types: ['SeatReleased'], tags: ['course:hot'] });
  const overlapping: Variant = {
    label: 'conditional overlapping',
    async setup(poolSize) {
      const { store, close } = await withStore(poolSize, 'bench_cond_overlap');
      return {
        append: async (_w, stream, version) => {
          await appendWithCondition(
            store,
            [
              {
                stream,
                messages: { type: 'StudentSubscribed', data: payload(seq++), tags: [`stream:${stream}`] },
                expectedVersion: version,
              },
            ],
            { failIfEventsMatch: hot },
          );
        },
        close,
      };
    },
  };

  const variants = [plain, disjoint, overlapping];
  const plans: { name: string; plan: WriterPlan }[] = [
    { name: '1w', plan: { writers: 1, appends: scaled(2_000, 100), streamsPerWriter: STREAMS_PER_WRITER } },
    { name: '10w', plan: { writers: 10, appends: scaled(6_000, 200), streamsPerWriter: STREAMS_PER_WRITER } },
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
            const warm = { ...plan, appends: Math.min(plan.appends, 50 * plan.writers) };
            await runWriters('warmup', `warm${round}${name}`, warm, append);
            runs[i]!.push(await runWriters(v.label, `r${round}${name}`, plan, append));
          } finally {
            await close();
          }
        }
      }
      const [plainRuns, disjointRuns, overlapRuns] = runs as [Measurement[], Measurement[], Measurement[]];
      const [plainM, disjointM, overlapM] = runs.map(medianOf) as [Measurement, Measurement, Measurement];
      printMeasurements(
        `${plan.writers} writer(s), ${plainM.messages} single-message appends, median of ${ROUNDS} rounds`,
        [plainM, disjointM, overlapM],
        plainM,
      );
      for (const [i, v] of variants.entries())
        console.log(`  ${v.label}: ${runs[i]!.map((m) => `${Math.round(rate(m))}/s`).join(', ')}`);
      summary.push(
        ratioLine(`append.conditional.${name}.disjoint`, disjointM, plainM, {
          baseKey: 'plain',
          ratio: medianRatio(disjointRuns, plainRuns),
        }),
        ratioLine(`append.conditional.${name}.overlapping`, overlapM, plainM, {
          baseKey: 'plain',
          ratio: medianRatio(overlapRuns, plainRuns),
        }),
      );
    }
  } finally {
    await dropSchemas(admin, schemas);
    await admin.end();
  }
  console.log(
    `(ratio = median of the ${ROUNDS} per-round ratios against store.append; goal: disjoint >= 0.7)`,
  );
  console.log('');
  for (const line of summary) console.log(line);
}

await main();
