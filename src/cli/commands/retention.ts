import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface ApplyFlags {
  dryRun?: boolean;
  force?: boolean;
  policy?: string[];
  json?: boolean;
}

export function registerRetention(program: Command): void {
  const retention = program
    .command('retention')
    .description('delete old messages by the retention policies in the config')
    .addHelpText(
      'after',
      `
Policies (beckett.config.ts):
  retention: {
    policies: [
      { category: 'greeting', maxAge: '90d' },          older than 90 days
      { stream: 'session-*', maxCount: 100 },           the newest 100 of each stream
    ],
    batchSize: 1000,                                    messages per DELETE
    interval: '1h',                                     workers apply them this often (optional)
  }

Examples:
  $ es retention apply --dry-run
  $ es retention apply
  $ es retention apply --policy greeting --json`,
    );
  retention
    .command('apply')
    .description('apply the policies: delete in bounded batches, print counts per policy')
    .option('--dry-run', 'count what would be deleted, delete nothing')
    .option('--force', 'also delete messages that subscriptions have not processed yet')
    .option('--policy <name>', 'only this policy (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ es retention apply --dry-run
  $ es retention apply --policy greeting
  $ es retention apply --force              also what subscriptions have not processed (careful)

Messages that a subscription (not "unknown") has not processed yet are kept and reported, with
the subscriptions holding them, unless --force. The newest message of every stream is always kept.
Exit 3 when the config has no retention policies (or an unknown --policy is named: exit 8).`,
    )
    .action(async (opts: ApplyFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { withAdmin } = await import('../context.js');
      const { print, table } = await import('../output.js');
      await withAdmin(globals, { poolSize: 2 }, async (admin) => {
        // The rules (policies configured, names known) live in the admin API.
        const result = await admin.applyRetention({
          ...(opts.policy ? { policies: opts.policy } : {}),
          dryRun: opts.dryRun ?? false,
          force: opts.force ?? false,
        });
        if (opts.json) {
          print(JSON.stringify(result));
          return;
        }
        print(
          table(
            ['POLICY', opts.dryRun ? 'WOULD DELETE' : 'DELETED', 'KEPT (UNPROCESSED)', 'HELD BY'],
            result.policies.map((p) => [
              p.policy,
              String(p.deleted),
              String(p.protected),
              p.heldBy.join(', ') || '-',
            ]),
          ),
        );
        const kept = result.policies.reduce((n, p) => n + p.protected, 0);
        if (kept > 0)
          print(
            `\n${kept} message(s) past their policy were kept: subscriptions have not processed them yet. Let the workers catch up, or use --force.`,
          );
        if (opts.dryRun) print('\n(dry run: nothing was deleted)');
      });
    });
}
