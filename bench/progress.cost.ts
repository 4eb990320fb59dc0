/**
 * progress.cost: what the checkpoint triggers that keep subscription_progress (migration 0024) cost
 * the workers. The same run as worker.throughput's beckett rows (100k messages over 10k streams, and
 * over 100k streams: one completion per message, the triggers' worst case), one worker process,
 * alternately with the triggers and with them dropped, three times each; prints messages/s and the
 * ratio with / without (near 1 means free).
 *
 *   npm run bench -- progress.cost
 */
import type pg from 'pg';
import { escapeIdentifier } from '../src/db/identifier.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { printTable } from './lib/format.js';
import { copyMessages } from './lib/load.js';
import { runChildren } from './lib/workerParent.js';

const ROUNDS = Number(process.env.BENCH_PROGRESS_ROUNDS ?? 3);

async function run(admin: pg.Pool, url: string, total: number, streams: number, triggers: boolean) {
  const schema = await migratedSchema(admin, 'bench_pc');
  try {
    const s = escapeIdentifier(schema);
    if (!triggers)
      for (const t of ['update', 'insert', 'delete', 'truncate'])
        await admin.query(`DROP TRIGGER checkpoints_progress_${t} ON ${s}.checkpoints`);
    await copyMessages(admin, schema, total, streams);
    const r = await runChildren(
      [{ kind: 'beckett', url, schema, concurrency: 4, poolSize: 10 }],
      total,
      90_000,
    );
    return r.processed / r.seconds;
  } finally {
    await dropSchemas(admin, [schema]);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  const total = scaled(100_000, 1_000);
  console.log(`progress.cost on ${describeUrl(url)}: ${total} messages, ${ROUNDS} rounds`);
  const admin = await openPool(url, 4);
  try {
    const rows: string[][] = [];
    const lines: string[] = [];
    for (const [name, streams] of [
      ['10k streams', Math.round(total / 10)],
      ['1 message per stream', total],
    ] as const) {
      const on: number[] = [];
      const off: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        on.push(await run(admin, url, total, streams, true));
        off.push(await run(admin, url, total, streams, false));
      }
      const ratio = median(on) / median(off);
      rows.push([name, `${Math.round(median(on))}/s`, `${Math.round(median(off))}/s`, ratio.toFixed(2)]);
      lines.push(
        `progress.cost.${name.replace(/\s+/g, '_')} ratio=${ratio.toFixed(2)} with=${Math.round(median(on))}/s without=${Math.round(median(off))}/s runs=${on.map(Math.round).join(',')}|${off.map(Math.round).join(',')}`,
      );
    }
    printTable(
      'worker throughput with and without the progress triggers (medians)',
      ['run', 'with', 'without', 'ratio'],
      rows,
    );
    for (const l of lines) console.log(l);
  } finally {
    await admin.end();
  }
}

await main();
