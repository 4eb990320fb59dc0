/**
 * cli.startup: whole-process wall time of the `es` CLI (the built one: run `npm run build` first).
 * - `node bin/es.js --help` to exit (goal <= 100 ms);
 * - `node bin/es.js tail <stream> --from 0` to its first output line (config load, pool, query;
 *   goal <= 150 ms);
 * median of 10 runs each, against the baseline `node -e 0` in the same run. The three commands
 * take turns (node, help, tail, node, ...), so a change in the machine's load hits all three alike.
 * The ratio lines are baseline / ours (1 = as fast as starting node itself; higher is better).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createMessageStore } from '../src/store/messageStore.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { REPO_ROOT } from './lib/env.js';
import { fmtMs, fmtRatio, printTable } from './lib/format.js';
import { median } from './lib/stats.js';

const RUNS = 10;
const ES = join(REPO_ROOT, 'bin', 'es.js');

/** Wall time (ms) from spawn to exit, or to the first stdout line when `firstLine` (then killed). */
function timeProcess(args: string[], env: NodeJS.ProcessEnv, firstLine = false): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let done = false;
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (firstLine && !done && out.includes('\n')) {
        done = true;
        resolve(performance.now() - start);
        child.kill('SIGTERM');
      }
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (done) return;
      done = true;
      if (code !== 0 || (firstLine && !out.includes('\n')))
        reject(new Error(`node ${args.join(' ')} exited with ${code}: ${err.trim().slice(0, 500)}`));
      else resolve(performance.now() - start);
    });
  });
}

interface Timed {
  label: string;
  args: string[];
  firstLine?: boolean;
}

/** RUNS timings of each command, taking turns, after one warm-up run of each (the file cache). */
async function interleaved(commands: Timed[], env: NodeJS.ProcessEnv): Promise<[string, number[]][]> {
  for (const c of commands) await timeProcess(c.args, env, c.firstLine);
  const out = commands.map((c): [string, number[]] => [c.label, []]);
  for (let i = 0; i < RUNS; i++)
    for (const [j, c] of commands.entries()) out[j]![1].push(await timeProcess(c.args, env, c.firstLine));
  return out;
}

async function main(): Promise<void> {
  if (!existsSync(join(REPO_ROOT, 'dist', 'cli', 'main.js'))) {
    console.error('cli.startup needs the built CLI: run npm run build first.');
    process.exitCode = 1;
    return;
  }
  const url = await benchDatabaseUrl();
  console.log(`cli.startup on ${describeUrl(url)}`);
  const env = { ...process.env, DATABASE_URL: url, NO_COLOR: '1' };
  const pool = await openPool(url, 1);
  const schema = await migratedSchema(pool, 'bench_cli');
  const store = createMessageStore({ pool, schema });
  await store.append('bench-1', { type: 'OrderPlaced', data: { orderId: 'o-1' } });
  await store.close();
  let rows: [string, number[]][];
  try {
    rows = await interleaved(
      [
        { label: 'node -e 0', args: ['-e', '0'] },
        { label: 'es --help', args: [ES, '--help'] },
        {
          label: 'es tail bench-1 --from 0 (first line)',
          args: [ES, 'tail', 'bench-1', '--from', '0', '--schema', schema],
          firstLine: true,
        },
      ],
      env,
    );
  } finally {
    await dropSchemas(pool, [schema]);
    await pool.end();
  }
  const base = median(rows[0]![1]);
  printTable(
    `whole-process wall time, median of ${RUNS} runs`,
    ['command', 'median', 'min', 'max', 'node/this'],
    rows.map(([label, xs]) => [
      label,
      fmtMs(median(xs)),
      fmtMs(Math.min(...xs)),
      fmtMs(Math.max(...xs)),
      fmtRatio(base / median(xs)),
    ]),
  );
  console.log('');
  const [, help, tail] = rows as [[string, number[]], [string, number[]], [string, number[]]];
  console.log(
    `cli.startup.help ratio=${fmtRatio(base / median(help[1]))} ours=${fmtMs(median(help[1]))} raw=${fmtMs(base)} goal=100ms`,
  );
  console.log(
    `cli.startup.tail ratio=${fmtRatio(base / median(tail[1]))} ours=${fmtMs(median(tail[1]))} raw=${fmtMs(base)} goal=150ms`,
  );
}

await main();
