import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BeckettError, ConfigError, ExitCode } from '../errors.js';
import { escapeIdentifier } from './identifier.js';

/**
 * One `.sql` file of the application's migrations folder (the config's `migrations.folder`). Applied
 * as written (no placeholder), in file-name order, each in its own transaction, after beckett's own
 * migrations and under the same advisory lock; recorded by name in `<schema>.app_migrations`.
 */
export interface AppMigration {
  /** The file name, e.g. `0001_stock_levels.sql`: its key in `app_migrations`. */
  name: string;
  sql: string;
  /** sha256 of the file: a file changed after it was applied is refused. */
  checksum: string;
}

/** `0001_create_stock.sql`, `20250101_orders.sql`: a number, "_", a name. */
const APP_FILE = /^(\d+)_[A-Za-z0-9_.-]+\.sql$/;

/**
 * The `.sql` files of `folder`, ordered by their leading number (then name). A missing folder or a
 * `.sql` file not named NUMBER_name.sql is refused, so a file is never skipped silently.
 */
export function loadAppMigrations(folder: string): AppMigration[] {
  const dir = resolve(folder);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ConfigError(
      `The migrations folder ${dir} (config key migrations.folder) does not exist.`,
      'Create it and put your numbered .sql files in it (e.g. 0001_stock_levels.sql), or fix migrations.folder.',
    );
  }
  const files = readdirSync(dir).filter((f) => f.endsWith('.sql'));
  const misnamed = files.filter((f) => !APP_FILE.test(f));
  if (misnamed.length > 0) {
    throw new ConfigError(
      `${dir} has migration files not named NUMBER_name.sql: ${misnamed.join(', ')}.`,
      'Rename them with a leading number that gives their order, e.g. 0002_add_index.sql.',
    );
  }
  const numberOf = (f: string) => BigInt(APP_FILE.exec(f)![1]!);
  return files
    .sort((a, b) => {
      const d = numberOf(a) - numberOf(b);
      return d < 0n ? -1 : d > 0n ? 1 : a < b ? -1 : a > b ? 1 : 0;
    })
    .map((name) => {
      const sql = readFileSync(join(dir, name), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

/** An applied application migration whose file changed, or disappeared from the folder. */
export class AppMigrationChangedError extends BeckettError {
  readonly file: string;
  constructor(file: string, folder: string | undefined, why: 'changed' | 'missing') {
    super(
      'MIGRATION_CHECKSUM_MISMATCH',
      why === 'changed'
        ? `Your migration ${file}${folder ? ` (in ${folder})` : ''} was changed after it was applied: its checksum differs from the one recorded.`
        : `Your migration ${file} was applied but is no longer in ${folder ?? 'the migrations folder'}.`,
      {
        exitCode: ExitCode.migrationChecksum,
        hint:
          why === 'changed'
            ? 'Applied migrations must not change: restore the file as it was and put the change in a new numbered file.'
            : 'Restore the file (applied migrations stay in the folder), or point migrations.folder at the right folder.',
      },
    );
    this.file = file;
  }
}

export const appMigrationsTable = (schema: string): string => `${escapeIdentifier(schema)}.app_migrations`;

/** The INSERT recording one applied application migration (parameterised, for the migrator). */
export function recordAppMigrationSql(schema: string): string {
  return `INSERT INTO ${appMigrationsTable(schema)} (name, checksum) VALUES ($1, $2)`;
}
