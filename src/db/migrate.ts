import type pg from 'pg';
import { DatabaseAheadError, MigrationChecksumError } from '../errors.js';
import { escapeIdentifier } from './identifier.js';
import {
  loadMigrations,
  type Migration,
  recordMigrationSql,
  renderMigration,
  schemaMigrationsDdl,
} from './migrations.js';

export interface MigrateResult {
  applied: { version: number; name: string }[];
  alreadyApplied: number;
}

export interface MigrationStatus {
  applied: { version: number; name: string; appliedAt: Date }[];
  pending: { version: number; name: string }[];
}

/**
 * Bring `schema` up to date. Holds a session advisory lock so concurrent migrators run one at a
 * time; each file applies in its own transaction with its checksum recorded. Refuses a changed
 * checksum and a database that has migrations this code does not know.
 */
export async function migrate(
  pool: pg.Pool,
  schema: string,
  migrations: Migration[] = loadMigrations(),
): Promise<MigrateResult> {
  const client = await pool.connect();
  const lockKey = `beckett.migrate:${schema}`;
  try {
    await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [lockKey]);
    try {
      await client.query(schemaMigrationsDdl(schema));
      const { rows } = await client.query<{ version: number; name: string; checksum: string }>(
        `SELECT version, name, checksum FROM ${escapeIdentifier(schema)}.schema_migrations ORDER BY version`,
      );
      const known = new Map(migrations.map((m) => [m.version, m]));
      const ahead = rows.filter((r) => !known.has(r.version)).map((r) => r.version);
      if (ahead.length > 0) throw new DatabaseAheadError(schema, ahead);
      for (const row of rows) {
        const m = known.get(row.version)!;
        if (m.checksum !== row.checksum) throw new MigrationChecksumError(m.version, m.name);
      }
      const done = new Set(rows.map((r) => r.version));
      const applied: MigrateResult['applied'] = [];
      for (const m of migrations) {
        if (done.has(m.version)) continue;
        await client.query('BEGIN');
        try {
          await client.query(renderMigration(m.template, schema));
          await client.query(recordMigrationSql(schema), [m.version, m.name, m.checksum]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
        applied.push({ version: m.version, name: m.name });
      }
      return { applied, alreadyApplied: rows.length };
    } finally {
      await client
        .query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockKey])
        .catch(() => undefined);
    }
  } finally {
    client.release();
  }
}

/** Which migrations are applied and which are pending, without changing anything. */
export async function migrationStatus(
  pool: pg.Pool,
  schema: string,
  migrations: Migration[] = loadMigrations(),
): Promise<MigrationStatus> {
  const exists = await pool.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [
    `${escapeIdentifier(schema)}.schema_migrations`,
  ]);
  const rows = exists.rows[0]?.ok
    ? (
        await pool.query<{ version: number; name: string; applied_at: Date }>(
          `SELECT version, name, applied_at FROM ${escapeIdentifier(schema)}.schema_migrations ORDER BY version`,
        )
      ).rows
    : [];
  const done = new Set(rows.map((r) => r.version));
  return {
    applied: rows.map((r) => ({ version: r.version, name: r.name, appliedAt: r.applied_at })),
    pending: migrations
      .filter((m) => !done.has(m.version))
      .map((m) => ({ version: m.version, name: m.name })),
  };
}
