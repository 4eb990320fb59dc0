import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { ES_BIN, es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
let dir: string;
beforeAll(async () => {
  db = await setupDb('worker_once');
  dir = mkdtempSync(join(tmpdir(), 'beckett-once-'));
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  // Handles job-* streams by appending done-*; a job with data.fail keeps throwing.
  writeFileSync(
    join(dir, 'once.config.mjs'),
    `export default {
  database: { schema: '${db.schema}' },
  groups: {
    Jobs: {
      subscriptions: {
        run: {
          category: 'job',
          maxRetries: 0,
          handler: async (m, ctx) => {
            if (m.data.fail) throw new Error('job failed on purpose');
            await ctx.store.append('done-' + m.streamName.slice(4), { type: 'done', data: {} });
          },
        },
        audit: { category: 'job', handler: async () => {} },
      },
    },
  },
};
`,
  );
});
afterAll(async () => db?.close());

const env = () => ({ DATABASE_URL: db.url });

describe('es worker from a folder without a config', () => {
  it('hints at es init; with the example config beside it, uses that and says so', async () => {
    const here = mkdtempSync(join(tmpdir(), 'beckett-noconfig-'));
    writeFileSync(join(here, 'package.json'), '{}');
    const bare = await es(['worker', '--group', 'InventoryAllocation'], { cwd: here, env: env() });
    expect(bare.exitCode).toBe(ExitCode.config);
    expect(bare.stderr).toMatch(/hint: Run npx es init/);
    writeFileSync(join(here, 'beckett.config.example.ts'), 'export default {};\n');
    const r = await es(['worker', '--group', 'InventoryAllocation'], { cwd: here, env: env() });
    expect(r.stderr).toContain('es: no beckett.config.ts here: using beckett.config.example.ts');
    // This example has no such group: the usual unknown-group error, from the example's groups.
    expect(r.exitCode).toBe(ExitCode.notFound);
    expect(r.stderr).toMatch(/InventoryAllocation/);
  });
});

describe('es worker --exit-when-caught-up', () => {
  it('handles every message committed before it started, then drains and exits 0', {
    timeout: 90_000,
  }, async () => {
    for (let i = 1; i <= 5; i++) await db.store.append(`job-${i}`, { type: 'job', data: {} });
    const r = await es(['--config', 'once.config.mjs', 'worker', '--group', 'Jobs', '--migrate', '--once'], {
      cwd: dir,
      env: env(),
      timeout: 80_000,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain('group Jobs caught up');
    for (let i = 1; i <= 5; i++) expect(await db.store.readStream(`done-${i}`)).toHaveLength(1);
  });

  it('exits 1 when what is left is in failed checkpoints', { timeout: 90_000 }, async () => {
    await db.store.append('job-bad', { type: 'job', data: { fail: true } });
    await db.store.append('job-6', { type: 'job', data: {} });
    const r = await es(
      ['--config', 'once.config.mjs', 'worker', '--group', 'Jobs', '--exit-when-caught-up'],
      {
        cwd: dir,
        env: env(),
        timeout: 80_000,
      },
    );
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr).toContain('group Jobs caught up except 1 failed checkpoint(s)');
    expect(await db.store.readStream('done-6')).toHaveLength(1);
  });

  it('refuses --processes above 1', async () => {
    const r = await es(
      ['--config', 'once.config.mjs', 'worker', '--group', 'Jobs', '--once', '--processes', '2'],
      { cwd: dir, env: env() },
    );
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stderr).toContain('--exit-when-caught-up runs one process');
  });
});

describe('es worker --processes 2', () => {
  it('says "draining" once on Ctrl-C, not once per process', { timeout: 90_000 }, async () => {
    const child = execa(
      'node',
      [ES_BIN, '--config', 'once.config.mjs', 'worker', '--group', 'Jobs', '--processes', '2'],
      { cwd: dir, env: { NO_COLOR: '1', ...env() }, reject: false },
    );
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    await until(
      () => (stderr.match(/running group Jobs/g) ?? []).length >= 2,
      'both processes running',
      60_000,
    );
    child.kill('SIGINT');
    const r = await child;
    expect(r.exitCode, stderr).toBe(0);
    expect(stderr.match(/draining/g) ?? []).toHaveLength(1);
  });
});
