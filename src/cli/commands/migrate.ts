import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';
import { print } from '../output.js';

export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('create or upgrade beckett tables in the schema (safe to run concurrently and repeatedly)')
    .option('--status', 'show applied and pending migrations without changing anything')
    .addHelpText(
      'after',
      `
Examples:
  $ es migrate
  $ es migrate --schema billing --database-url postgres://app@db/app
  $ es migrate --status

Your own migrations: name a folder in the config, migrations: { folder: './migrations' }, and
es migrate applies its NUMBER_name.sql files after beckett's, in order, in the same lock, each in
its own transaction, recorded with its checksum in <schema>.app_migrations.

Refuses (exit 5) when an applied migration file (beckett's or yours) changed, and (exit 6) when
the database has migrations this version does not know.`,
    )
    .action(async (opts: { status?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { withContext } = await import('../context.js');
      const { migrate, migrationStatus } = await import('../../db/migrate.js');
      await withContext(globals, { poolSize: 2 }, async (ctx) => {
        const appFolder = ctx.config.migrations?.folder;
        const options = appFolder ? { appFolder } : {};
        if (opts.status) {
          const s = await migrationStatus(ctx.pool, ctx.schema, undefined, options);
          for (const a of s.applied)
            print(`applied  ${String(a.version).padStart(4, '0')}_${a.name}  ${a.appliedAt.toISOString()}`);
          for (const p of s.pending) print(`pending  ${String(p.version).padStart(4, '0')}_${p.name}`);
          for (const a of s.app?.applied ?? [])
            print(`applied  ${a.name} (yours)  ${a.appliedAt.toISOString()}`);
          for (const p of s.app?.pending ?? []) print(`pending  ${p} (yours)`);
          return;
        }
        const r = await migrate(ctx.pool, ctx.schema, undefined, options);
        if (r.applied.length === 0)
          print(`Schema "${ctx.schema}" is up to date (${r.alreadyApplied} migrations applied).`);
        for (const a of r.applied) print(`applied ${String(a.version).padStart(4, '0')}_${a.name}`);
        if (r.applied.length > 0)
          print(
            `Schema "${ctx.schema}" migrated: ${r.applied.length} applied, ${r.alreadyApplied} already there.`,
          );
        if (appFolder) {
          for (const name of r.appApplied) print(`applied ${name} (yours)`);
          print(
            r.appApplied.length === 0
              ? `Your migrations (${appFolder}) are up to date (${r.appAlreadyApplied} applied).`
              : `Your migrations (${appFolder}): ${r.appApplied.length} applied, ${r.appAlreadyApplied} already there.`,
          );
        }
      });
    });
}
