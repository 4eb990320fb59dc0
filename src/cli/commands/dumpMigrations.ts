import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

export function registerDumpMigrations(program: Command): void {
  program
    .command('dump-migrations')
    .argument('[file]', 'write the SQL to this file (default: stdout)')
    .description('write every migration as one SQL script, for psql or your own migration tool')
    .addHelpText(
      'after',
      `
Examples:
  $ es dump-migrations --schema beckett 001_beckett.sql
  $ es dump-migrations | psql "$DATABASE_URL" -v ON_ERROR_STOP=1

The script records what it applies in schema_migrations, so es migrate afterwards is a no-op.
Needs no database connection.`,
    )
    .action(async (file: string | undefined, _opts: unknown, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { assertSafeSchemaName } = await import('../../db/identifier.js');
      const { dumpMigrationsSql } = await import('../../db/migrations.js');
      let schema = globals.schema;
      if (!schema) {
        const { loadConfig } = await import('../../config/load.js');
        schema = (await loadConfig(globals.config ? { path: globals.config } : {})).database.schema;
      }
      const sql = dumpMigrationsSql(assertSafeSchemaName(schema));
      if (!file) {
        process.stdout.write(sql);
        return;
      }
      const { writeFileSync } = await import('node:fs');
      writeFileSync(file, sql);
      process.stderr.write(`es: wrote ${file} (schema "${schema}")\n`);
    });
}
