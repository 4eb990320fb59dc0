import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppMigrationChangedError } from '../../src/db/appMigrations.js';
import { migrate, migrationStatus } from '../../src/db/migrate.js';
import { dumpMigrationsSql, loadMigrations } from '../../src/db/migrations.js';
import { createPool } from '../../src/db/pool.js';
import { loadAppMigrations } from '../../src/index.js';
import { es } from '../helpers/cli.js';
import { databaseUrl, uniqueSchema } from '../helpers/db.js';

let pool: pg.Pool;
const dirs: string[] = [];
beforeAll(() => {
  pool = createPool(databaseUrl(), { max: 8 });
});
afterAll(async () => {
  await pool.end();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A project folder with a migrations folder holding `files` (SQL may use SCHEMA for the schema). */
function project(schema: string, files: Record<string, string>): { dir: string; folder: string } {
  const dir = mkdtempSync(join(tmpdir(), 'beckett-appmig-'));
  dirs.push(dir);
  const folder = join(dir, 'migrations');
  mkdirSync(folder);
  for (const [name, sql] of Object.entries(files))
    writeFileSync(join(folder, name), sql.replaceAll('SCHEMA', schema));
  return { dir, folder };
}

const stock = 'CREATE TABLE SCHEMA.stock_levels (product_id text PRIMARY KEY, available int NOT NULL);';
const index = 'CREATE INDEX stock_available_idx ON SCHEMA.stock_levels (available);';

describe("the application's migrations", () => {
  it("apply after beckett's, in number order (2 before 10), once; a second run is a no-op", async () => {
    const schema = uniqueSchema('appm');
    const { folder } = project(schema, {
      '10_index.sql': index,
      '2_stock.sql': stock,
      'README.md': 'not a migration',
    });
    const first = await migrate(pool, schema, undefined, { appFolder: folder });
    expect(first.applied.length).toBe(loadMigrations().length);
    expect(first.appApplied).toEqual(['2_stock.sql', '10_index.sql']);
    const second = await migrate(pool, schema, undefined, { appFolder: folder });
    expect(second.applied).toEqual([]);
    expect(second.appApplied).toEqual([]);
    expect(second.appAlreadyApplied).toBe(2);
    const idx = await pool.query('SELECT to_regclass($1) AS t', [`${schema}.stock_available_idx`]);
    expect(idx.rows[0].t).not.toBeNull();
    const status = await migrationStatus(pool, schema, undefined, { appFolder: folder });
    expect(status.app?.pending).toEqual([]);
    expect(status.app?.applied.map((a) => a.name).sort()).toEqual(['10_index.sql', '2_stock.sql']);
  });

  it('run one at a time with concurrent migrators: each file applies once', async () => {
    const schema = uniqueSchema('appmc');
    const { folder } = project(schema, { '0001_stock.sql': stock });
    const results = await Promise.all(
      Array.from({ length: 4 }, () => migrate(pool, schema, undefined, { appFolder: folder })),
    );
    expect(results.map((r) => r.appApplied.length).sort()).toEqual([0, 0, 0, 1]);
  });

  it('refuse an applied file that changed or disappeared (exit 5), and apply nothing new then', async () => {
    const schema = uniqueSchema('appmk');
    const { folder } = project(schema, { '0001_stock.sql': stock });
    await migrate(pool, schema, undefined, { appFolder: folder });
    writeFileSync(join(folder, '0001_stock.sql'), `${stock.replaceAll('SCHEMA', schema)} -- edited`);
    writeFileSync(join(folder, '0002_index.sql'), index.replaceAll('SCHEMA', schema));
    const changed = await migrate(pool, schema, undefined, { appFolder: folder }).catch((e: unknown) => e);
    expect(changed).toBeInstanceOf(AppMigrationChangedError);
    expect((changed as AppMigrationChangedError).exitCode).toBe(5);
    expect((changed as Error).message).toMatch(/0001_stock\.sql .*was changed after it was applied/);
    const idx = await pool.query('SELECT to_regclass($1) AS t', [`${schema}.stock_available_idx`]);
    expect(idx.rows[0].t).toBeNull();
    rmSync(join(folder, '0001_stock.sql'));
    const missing = await migrate(pool, schema, undefined, { appFolder: folder }).catch((e: unknown) => e);
    expect((missing as Error).message).toMatch(/0001_stock\.sql was applied but is no longer in/);
  });

  it('apply each file in its own transaction: a failing one leaves nothing of itself', async () => {
    const schema = uniqueSchema('appmf');
    const { folder } = project(schema, {
      '0001_stock.sql': stock,
      '0002_broken.sql': 'CREATE TABLE SCHEMA.half (id int); SELECT 1/0;',
    });
    const err = await migrate(pool, schema, undefined, { appFolder: folder }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/Your migration 0002_broken\.sql failed: .*division by zero/);
    const status = await migrationStatus(pool, schema, undefined, { appFolder: folder });
    expect(status.app?.applied.map((a) => a.name)).toEqual(['0001_stock.sql']);
    expect(status.app?.pending).toEqual(['0002_broken.sql']);
    const half = await pool.query('SELECT to_regclass($1) AS t', [`${schema}.half`]);
    expect(half.rows[0].t).toBeNull();
  });

  it('refuse a misnamed .sql file and a missing folder before applying anything', async () => {
    const schema = uniqueSchema('appmn');
    const { folder } = project(schema, { 'stock.sql': stock });
    expect(() => loadAppMigrations(folder)).toThrow(/not named NUMBER_name\.sql: stock\.sql/);
    await expect(migrate(pool, schema, undefined, { appFolder: join(folder, 'nope') })).rejects.toThrow(
      /does not exist/,
    );
    const s = await pool.query('SELECT to_regnamespace($1) AS n', [schema]);
    expect(s.rows[0].n).toBeNull();
  });

  it('are in the dump, which applies to an empty database; es migrate afterwards is a no-op', async () => {
    const schema = 'beckett_appdump';
    const dbName = `beckett_appdump_${randomBytes(4).toString('hex')}`;
    const { folder } = project(schema, { '0001_stock.sql': stock, '0002_index.sql': index });
    const sql = dumpMigrationsSql(schema, loadMigrations(), loadAppMigrations(folder));
    expect(sql).toContain('-- your migration 0002_index.sql');
    await pool.query(`CREATE DATABASE ${dbName}`);
    const url = new URL(databaseUrl());
    url.pathname = `/${dbName}`;
    const p = createPool(url.toString(), { max: 2 });
    try {
      try {
        execFileSync('psql', [url.toString(), '-v', 'ON_ERROR_STOP=1', '-q', '-f', '-'], {
          input: sql,
          stdio: ['pipe', 'pipe', 'pipe'],
        });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        await p.query(sql);
      }
      const again = await migrate(p, schema, undefined, { appFolder: folder });
      expect(again.applied).toEqual([]);
      expect(again.appApplied).toEqual([]);
      expect(again.appAlreadyApplied).toBe(2);
    } finally {
      await p.end();
      await pool.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    }
  });
});

describe('es migrate and es dump-migrations with migrations.folder in the config', () => {
  it('applies, reports, refuses a changed file with exit 5, and dumps them', async () => {
    const schema = uniqueSchema('appcli');
    const { dir, folder } = project(schema, { '0001_stock.sql': stock });
    writeFileSync(
      join(dir, 'beckett.config.ts'),
      `export default { database: { schema: '${schema}' }, migrations: { folder: './migrations' } };\n`,
    );
    const env = { DATABASE_URL: databaseUrl() };
    const first = await es(['migrate'], { cwd: dir, env });
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toContain('applied 0001_stock.sql (yours)');
    expect(first.stdout).toMatch(/Your migrations \(.*migrations\): 1 applied, 0 already there/);
    const status = await es(['migrate', '--status'], { cwd: dir, env });
    expect(status.stdout).toMatch(/applied {2}0001_stock\.sql \(yours\)/);
    const dump = await es(['dump-migrations'], { cwd: dir });
    expect(dump.exitCode, dump.stderr).toBe(0);
    expect(dump.stdout).toContain(`CREATE TABLE ${schema}.stock_levels`);
    expect(dump.stdout).toContain(`INSERT INTO "${schema}".app_migrations`);
    writeFileSync(join(folder, '0001_stock.sql'), 'SELECT 1;');
    const changed = await es(['migrate'], { cwd: dir, env });
    expect(changed.exitCode).toBe(5);
    expect(changed.stderr).toMatch(
      /Your migration 0001_stock\.sql \(in .*\) was changed after it was applied/,
    );
    expect(changed.stderr).toMatch(/hint: .*new numbered file/);
  });

  it('refuses a config whose migrations key is not { folder }', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'beckett-appmig-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'beckett.config.ts'), `export default { migrations: './migrations' };\n`);
    const r = await es(['dump-migrations'], { cwd: dir });
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/migrations: expected an object \{ folder: '\.\/migrations' \}/);
  });
});
