import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, migrationStatus } from '../../src/db/migrate.js';
import { dumpMigrationsSql, loadMigrations } from '../../src/db/migrations.js';
import { createPool } from '../../src/db/pool.js';
import { DatabaseAheadError, MigrationChecksumError } from '../../src/errors.js';
import { databaseUrl, uniqueSchema } from '../helpers/db.js';

let pool: pg.Pool;
beforeAll(() => {
  pool = createPool(databaseUrl(), { max: 10 });
});
afterAll(async () => pool.end());

/** Everything about a schema that migrations create, with the schema name taken out. */
async function catalog(p: pg.Pool | pg.Client, schema: string): Promise<Record<string, string[]>> {
  const q = async (sql: string) =>
    (await p.query<{ x: string }>(sql, [schema])).rows
      .map((r) => r.x.replaceAll(`"${schema}"`, 'S').replaceAll(`${schema}.`, 'S.'))
      .sort();
  return {
    columns: await q(
      `SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') || ' ' || is_identity AS x
         FROM information_schema.columns WHERE table_schema = $1`,
    ),
    indexes: await q(`SELECT indexdef AS x FROM pg_indexes WHERE schemaname = $1`),
    constraints: await q(
      `SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(c.oid) AS x
         FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1`,
    ),
    functions: await q(
      `SELECT pg_get_functiondef(p.oid) AS x FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1`,
    ),
    migrations: await q(
      `SELECT version || ' ' || name || ' ' || checksum AS x FROM ${pg.escapeIdentifier(schema)}.schema_migrations WHERE $1 = $1`,
    ),
  };
}

describe('migrate', () => {
  it('applies every migration once; a second run is a no-op', async () => {
    const schema = uniqueSchema('mig');
    const first = await migrate(pool, schema);
    expect(first.applied.map((a) => a.version)).toEqual(loadMigrations().map((m) => m.version));
    const before = await catalog(pool, schema);
    const second = await migrate(pool, schema);
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toBe(loadMigrations().length);
    expect(await catalog(pool, schema)).toEqual(before);
    const status = await migrationStatus(pool, schema);
    expect(status.pending).toEqual([]);
  });

  it('runs concurrent migrators one at a time, applying each file once', async () => {
    const schema = uniqueSchema('migc');
    const results = await Promise.all(Array.from({ length: 5 }, () => migrate(pool, schema)));
    // The lock is per file (a transaction lock, so it also works through PgBouncer in transaction
    // mode): migrators may take turns, but every file is applied by exactly one of them, in order.
    const versions = results.flatMap((r) => r.applied.map((a) => a.version)).sort((a, b) => a - b);
    expect(versions).toEqual(loadMigrations().map((m) => m.version));
    for (const r of results) {
      const own = r.applied.map((a) => a.version);
      expect(own).toEqual([...own].sort((a, b) => a - b));
    }
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM ${pg.escapeIdentifier(schema)}.schema_migrations`,
    );
    expect(rows[0].n).toBe(loadMigrations().length);
  });

  it('refuses a migration whose file changed after it was applied', async () => {
    const schema = uniqueSchema('migk');
    await migrate(pool, schema);
    const changed = loadMigrations().map((m, i) => (i === 0 ? { ...m, checksum: 'f'.repeat(64) } : m));
    await expect(migrate(pool, schema, changed)).rejects.toBeInstanceOf(MigrationChecksumError);
  });

  it('refuses a database that has migrations the code does not know', async () => {
    const schema = uniqueSchema('miga');
    await migrate(pool, schema);
    await pool.query(
      `INSERT INTO ${schema}.schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')`,
    );
    const err = await migrate(pool, schema).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseAheadError);
    expect((err as Error).message).toContain('9999');
  });

  it('applies each file in its own transaction: a failing file leaves the earlier ones applied and nothing of itself', async () => {
    const schema = uniqueSchema('migf');
    const good = loadMigrations();
    const bad = [
      ...good,
      {
        version: 9000,
        name: 'broken',
        template: 'CREATE TABLE __SCHEMA__.half (id int); SELECT 1/0;',
        checksum: 'b',
      },
    ];
    await expect(migrate(pool, schema, bad)).rejects.toThrow(/division by zero/);
    const status = await migrationStatus(pool, schema, bad);
    expect(status.applied.map((a) => a.version)).toEqual(good.map((m) => m.version));
    const half = await pool.query('SELECT to_regclass($1) AS t', [`${schema}.half`]);
    expect(half.rows[0].t).toBeNull();
  });
});

describe('dump-migrations', () => {
  it('produces a script that psql applies to an empty database with the same schema as es migrate', async () => {
    const schema = 'beckett_dump';
    const dbName = `beckett_dump_${randomBytes(4).toString('hex')}`;
    const migrated = uniqueSchema('migd');
    await migrate(pool, migrated);
    await pool.query(`CREATE DATABASE ${dbName}`);
    const url = new URL(databaseUrl());
    url.pathname = `/${dbName}`;
    try {
      const sql = dumpMigrationsSql(schema);
      let applied = false;
      try {
        execFileSync('psql', [url.toString(), '-v', 'ON_ERROR_STOP=1', '-q', '-f', '-'], {
          input: sql,
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        applied = true;
      } catch (err) {
        // Only a missing psql binary falls back to sending the script over the wire; a psql error fails.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      try {
        if (!applied) await client.query(sql);
        const dumped = await catalog(client, schema);
        const viaMigrate = await catalog(pool, migrated);
        expect(dumped).toEqual(viaMigrate);
        expect(dumped.functions?.length).toBeGreaterThan(0);
        expect(dumped.indexes?.length).toBeGreaterThan(3);
        // es migrate after the dump has nothing to do.
        const p = createPool(url.toString(), { max: 2 });
        try {
          expect((await migrate(p, schema)).applied).toEqual([]);
        } finally {
          await p.end();
        }
      } finally {
        await client.end();
      }
    } finally {
      await pool.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    }
  });

  it('escapes the schema once: a name needing quotes would be refused before reaching SQL', () => {
    const sql = dumpMigrationsSql('billing');
    expect(sql).toContain('CREATE TABLE "billing".messages');
    expect(sql).not.toContain('__SCHEMA__');
  });
});
