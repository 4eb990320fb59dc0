import type pg from 'pg';
import { DatabaseAheadError, MigrationChecksumError, NotMigratedError } from '../errors.js';
import {
  type AppMigration,
  AppMigrationChangedError,
  appMigrationsTable,
  loadAppMigrations,
  recordAppMigrationSql,
} from './appMigrations.js';
import { assertSafeSchemaName, escapeIdentifier } from './identifier.js';
import {
  loadMigrations,
  type Migration,
  recordMigrationSql,
  renderMigration,
  schemaMigrationsDdl,
} from './migrations.js';
import { toBeckettError } from './toBeckettError.js';

export interface MigrateResult {
  applied: { version: number; name: string }[];
  alreadyApplied: number;
  /** The application's migration files applied by this run (with `appFolder`), in order. */
  appApplied: string[];
  /** The application's migration files applied before this run. */
  appAlreadyApplied: number;
}

export interface MigrateOptions {
  /**
   * A folder of the application's own migrations (`NUMBER_name.sql`, applied as written, in
   * order), applied after beckett's in the same advisory lock, each in its own transaction, and
   * recorded with its checksum in `<schema>.app_migrations`. The config's `migrations.folder`.
   */
  appFolder?: string;
}

export interface MigrationStatus {
  applied: { version: number; name: string; appliedAt: Date }[];
  pending: { version: number; name: string }[];
  /** Applied versions this beckett does not know: the schema was migrated by a newer one. */
  unknown: number[];
  /** With `appFolder`: the application's files applied, and those still to apply. */
  app?: { applied: { name: string; appliedAt: Date }[]; pending: string[] };
}

/**
 * Bring `schema` up to date, then apply the application's migrations of `opts.appFolder` the same
 * way. Each file applies in its own transaction with its checksum recorded, under a
 * transaction-scoped advisory lock taken first. Refuses a changed checksum and a database that has
 * migrations this code does not know.
 */
export async function migrate(
  pool: pg.Pool,
  schema: string,
  migrations: Migration[] = loadMigrations(),
  opts: MigrateOptions = {},
): Promise<MigrateResult> {
  assertSafeSchemaName(schema);
  // Read (and refuse a misnamed file) before anything is applied.
  const app = opts.appFolder === undefined ? [] : loadAppMigrations(opts.appFolder);
  // A pool the user gave reports its own driver errors: they leave through the one mapping.
  const client = await pool.connect().catch((err: unknown) => {
    throw toBeckettError(err);
  });
  const lockKey = `beckett.migrate:${schema}`;
  const known = new Map(migrations.map((m) => [m.version, m]));
  const applied: MigrateResult['applied'] = [];
  let alreadyApplied: number | undefined;
  /*
   * One transaction per file, each taking the transaction-scoped advisory lock first and reading
   * what is applied again: concurrent migrators run one at a time and each sees what the others
   * committed. A transaction lock, not a session one: it works through PgBouncer in transaction
   * mode, where a session lock would stay on whichever server connection took it.
   */
  const step = async <T>(body: () => Promise<T>): Promise<T> => {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [lockKey]);
      const result = await body();
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  };
  try {
    for (;;) {
      const next = await step(async () => {
        await client.query(schemaMigrationsDdl(schema));
        const { rows } = await client.query<{ version: number; name: string; checksum: string }>(
          `SELECT version, name, checksum FROM ${escapeIdentifier(schema)}.schema_migrations ORDER BY version`,
        );
        alreadyApplied ??= rows.length;
        const ahead = rows.filter((r) => !known.has(r.version)).map((r) => r.version);
        if (ahead.length > 0) throw new DatabaseAheadError(schema, ahead);
        for (const row of rows) {
          const m = known.get(row.version)!;
          if (m.checksum !== row.checksum) throw new MigrationChecksumError(m.version, m.name);
        }
        const done = new Set(rows.map((r) => r.version));
        const pending = migrations.find((m) => !done.has(m.version));
        if (pending) {
          await client.query(renderMigration(pending.template, schema));
          await client.query(recordMigrationSql(schema), [pending.version, pending.name, pending.checksum]);
        }
        return pending;
      }).catch((err: unknown) => {
        throw toBeckettError(err);
      });
      if (!next) break;
      applied.push({ version: next.version, name: next.name });
    }
    const appDone =
      opts.appFolder === undefined
        ? undefined
        : await applyAppMigrations(step, client, schema, app, opts.appFolder);
    return {
      applied,
      alreadyApplied: alreadyApplied ?? 0,
      appApplied: appDone?.applied ?? [],
      appAlreadyApplied: appDone?.already ?? 0,
    };
  } finally {
    client.release();
  }
}

/**
 * The application's migrations, each in its own locked transaction (`step`) after beckett's: refuse
 * an applied file that changed or disappeared, then apply the next, with its checksum.
 */
async function applyAppMigrations(
  step: <T>(body: () => Promise<T>) => Promise<T>,
  client: pg.PoolClient,
  schema: string,
  app: AppMigration[],
  folder: string,
): Promise<{ applied: string[]; already: number }> {
  const byName = new Map(app.map((m) => [m.name, m]));
  const applied: string[] = [];
  let already: number | undefined;
  for (;;) {
    const next = await step(async () => {
      const { rows } = await client.query<{ name: string; checksum: string }>(
        `SELECT name, checksum FROM ${appMigrationsTable(schema)} ORDER BY name`,
      );
      already ??= rows.length;
      for (const row of rows) {
        const m = byName.get(row.name);
        if (!m) throw new AppMigrationChangedError(row.name, folder, 'missing');
        if (m.checksum !== row.checksum) throw new AppMigrationChangedError(row.name, folder, 'changed');
      }
      const done = new Set(rows.map((r) => r.name));
      const pending = app.find((m) => !done.has(m.name));
      if (!pending) return undefined;
      try {
        await client.query(pending.sql);
      } catch (err) {
        const e = toBeckettError(err);
        e.message = `Your migration ${pending.name} failed: ${e.message}`;
        throw e;
      }
      await client.query(recordAppMigrationSql(schema), [pending.name, pending.checksum]);
      return pending;
    }).catch((err: unknown) => {
      throw toBeckettError(err);
    });
    if (!next) return { applied, already: already ?? 0 };
    applied.push(next.name);
  }
}

/** Which migrations are applied and which are pending, without changing anything. */
export async function migrationStatus(
  pool: pg.Pool,
  schema: string,
  migrations: Migration[] = loadMigrations(),
  opts: MigrateOptions = {},
): Promise<MigrationStatus> {
  assertSafeSchemaName(schema);
  const exists = await pool
    .query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [
      `${escapeIdentifier(schema)}.schema_migrations`,
    ])
    .catch((err: unknown) => {
      throw toBeckettError(err);
    });
  const rows = exists.rows[0]?.ok
    ? (
        await pool.query<{ version: number; name: string; applied_at: Date }>(
          `SELECT version, name, applied_at FROM ${escapeIdentifier(schema)}.schema_migrations ORDER BY version`,
        )
      ).rows
    : [];
  const done = new Set(rows.map((r) => r.version));
  const known = new Set(migrations.map((m) => m.version));
  const status: MigrationStatus = {
    applied: rows.map((r) => ({ version: r.version, name: r.name, appliedAt: r.applied_at })),
    pending: migrations
      .filter((m) => !done.has(m.version))
      .map((m) => ({ version: m.version, name: m.name })),
    unknown: rows.filter((r) => !known.has(r.version)).map((r) => r.version),
  };
  if (opts.appFolder !== undefined) {
    const app = loadAppMigrations(opts.appFolder);
    const table = await pool.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [
      appMigrationsTable(schema),
    ]);
    const appRows = table.rows[0]?.ok
      ? (
          await pool.query<{ name: string; applied_at: Date }>(
            `SELECT name, applied_at FROM ${appMigrationsTable(schema)} ORDER BY name`,
          )
        ).rows
      : [];
    const appDone = new Set(appRows.map((r) => r.name));
    status.app = {
      applied: appRows.map((r) => ({ name: r.name, appliedAt: r.applied_at })),
      pending: app.filter((m) => !appDone.has(m.name)).map((m) => m.name),
    };
  }
  return status;
}

/**
 * Refuse to work on a schema this code does not match: DatabaseAheadError when a newer beckett
 * migrated it (its functions and tables may behave differently), NotMigratedError when migrations
 * are pending. Commands that write (append, worker) call it first, as `migrate` refuses.
 */
export async function assertSchemaCurrent(
  pool: pg.Pool,
  schema: string,
  migrations: Migration[] = loadMigrations(),
): Promise<void> {
  const status = await migrationStatus(pool, schema, migrations);
  if (status.unknown.length > 0) throw new DatabaseAheadError(schema, status.unknown);
  if (status.pending.length > 0) throw new NotMigratedError(schema);
}
