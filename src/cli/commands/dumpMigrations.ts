import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

export function registerDumpMigrations(program: Command): void {
  program
    .command('dump-migrations')
    .argument('[file]', 'write the SQL to this file (default: stdout)')
    .description('write every migration as one SQL script, for psql or your own migration tool')
    .option('--force', 'overwrite FILE if it exists')
    .addHelpText(
      'after',
      `
Examples:
  $ es dump-migrations --schema beckett 001_beckett.sql
  $ es dump-migrations | psql "$DATABASE_URL" -v ON_ERROR_STOP=1

The script records what it applies in schema_migrations (and your own migrations, from the
config's migrations.folder, in app_migrations), so es migrate afterwards is a no-op.
Needs no database connection. Refuses (exit 2) to overwrite FILE without --force, and to write
through a symbolic link.`,
    )
    .action(async (file: string | undefined, opts: { force?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { assertSafeSchemaName } = await import('../../db/identifier.js');
      const { dumpMigrationsSql, loadMigrations } = await import('../../db/migrations.js');
      const { loadAppMigrations } = await import('../../db/appMigrations.js');
      const { loadConfig } = await import('../../config/load.js');
      const config = await loadConfig(globals.config ? { path: globals.config } : {});
      const schema = globals.schema ?? config.database.schema;
      const app = config.migrations ? loadAppMigrations(config.migrations.folder) : [];
      const sql = dumpMigrationsSql(assertSafeSchemaName(schema), loadMigrations(), app);
      if (!file) {
        process.stdout.write(sql);
        return;
      }
      const { writeUserFile } = await import('../writeUserFile.js');
      await writeUserFile(file, sql, { overwrite: Boolean(opts.force), flag: '--force' });
      process.stderr.write(
        `es: wrote ${file} (schema "${schema}"${app.length > 0 ? `, with ${app.length} of your migrations` : ''})\n`,
      );
    });
}
