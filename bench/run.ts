/**
 * Run every benchmark scenario (bench/<scenario>.ts), or the ones named on the command line, one
 * after the other as child processes; then repeat every scenario's summary lines together.
 *
 *   npm run bench                                  all scenarios
 *   npm run bench -- append.single notify.cost     some
 *   BENCH_SCALE=0.1 npm run bench                  a quick run
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { benchDir } from './lib/env.js';

/** Scenario lines look like `append.single.1w ratio=0.91 ours=1432/s raw=1573/s ...`. */
const SUMMARY = /^[a-z][\w.-]* ratio=/;

function scenarios(): string[] {
  return readdirSync(benchDir())
    .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
    .map((f) => f.slice(0, -3))
    .sort();
}

function runScenario(name: string): Promise<{ code: number; summary: string[]; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'jiti/register', join(benchDir(), `${name}.ts`)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: process.env,
    });
    const summary: string[] = [];
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk);
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (SUMMARY.test(line)) summary.push(line);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (SUMMARY.test(buffered)) summary.push(buffered);
      resolve({ code: code ?? 1, summary, seconds: (performance.now() - started) / 1000 });
    });
  });
}

async function main(): Promise<void> {
  const known = scenarios();
  const wanted = process.argv.slice(2).map((a) => a.replace(/\.ts$/, '').replace(/^bench\//, ''));
  const unknown = wanted.filter((w) => !known.includes(w));
  if (unknown.length > 0) {
    console.error(`Unknown scenario(s): ${unknown.join(', ')}. Known: ${known.join(', ')}`);
    process.exitCode = 2;
    return;
  }
  const chosen = wanted.length > 0 ? wanted : known;
  const lines: string[] = [];
  const failed: string[] = [];
  for (const name of chosen) {
    console.log(`\n=== ${name} ===`);
    const r = await runScenario(name);
    console.log(
      `=== ${name}: ${r.code === 0 ? 'done' : `FAILED (exit ${r.code})`} in ${r.seconds.toFixed(1)} s ===`,
    );
    if (r.code !== 0) failed.push(name);
    lines.push(...r.summary);
  }
  console.log('\n=== summary ===');
  for (const l of lines) console.log(l);
  if (failed.length > 0) {
    console.log(`failed: ${failed.join(', ')}`);
    process.exitCode = 1;
  }
}

await main();
