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

Refuses (exit 5) when an applied migration file changed, and (exit 6) when the database has
migrations this version does not know.`,
    )
    .action(async (opts: { status?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { withContext } = await import('../context.js');
      const { migrate, migrationStatus } = await import('../../db/migrate.js');
      await withContext(globals, { poolSize: 2 }, async (ctx) => {
        if (opts.status) {
          const s = await migrationStatus(ctx.pool, ctx.schema);
          for (const a of s.applied)
            print(`applied  ${String(a.version).padStart(4, '0')}_${a.name}  ${a.appliedAt.toISOString()}`);
          for (const p of s.pending) print(`pending  ${String(p.version).padStart(4, '0')}_${p.name}`);
          return;
        }
        const r = await migrate(ctx.pool, ctx.schema);
        if (r.applied.length === 0)
          print(`Schema "${ctx.schema}" is up to date (${r.alreadyApplied} migrations applied).`);
        for (const a of r.applied) print(`applied ${String(a.version).padStart(4, '0')}_${a.name}`);
        if (r.applied.length > 0)
          print(
            `Schema "${ctx.schema}" migrated: ${r.applied.length} applied, ${r.alreadyApplied} already there.`,
          );
      });
    });
}
