import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface LagFlags {
  group?: string;
  json?: boolean;
  interval?: string;
}

export function registerLag(program: Command): void {
  program
    .command('lag')
    .description(
      'live view of subscription lag, throughput, retries, workers, blocking transactions and queues',
    )
    .option('--group <name>', 'only this group')
    .option('--json', 'print one snapshot as JSON and exit')
    .option('--interval <ms>', 'refresh period', '1000')
    .addHelpText(
      'after',
      `
Examples:
  $ es lag                         live view (q quits, ↑/↓ select, r retries the selection's failed checkpoints)
  $ es lag --json | jq '.groups[].subscriptions[] | {name, lag}'
  $ watch -n5 'es lag --json | jq .blocking'

Per subscription: lag (messages not handled yet), age of the oldest of them, messages/s, retry and
failed checkpoints; per group: live workers and the global reader's position against the head; a
warning naming the backend (pid, age, query) when a long-open transaction holds readers back; and,
without --group, the queues: jobs ready, in flight, delayed, dead, the age of the oldest job not
done and jobs completed per minute (red with dead letters, yellow when ready jobs wait over 10 s;
see es queue list). The JSON lists the queues too.
Not on a terminal (or with --json) it prints one snapshot as JSON.`,
    )
    .action(async (opts: LagFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositiveInt } = await import('../parse.js');
      const intervalMs = parsePositiveInt(opts.interval ?? '1000', '--interval');
      const { withContext } = await import('../context.js');
      const { lagSnapshot } = await import('../../operations/lagSnapshot.js');
      const { subscriptionFilters } = await import('../../operations/subscriptionFilters.js');
      const { assertSubscription } = await import('../../operations/subscriptionControl.js');
      await withContext(globals, { poolSize: 4, readsLog: true }, async (ctx) => {
        const sql = ctx.store.sqlContext;
        if (opts.group) await assertSubscription(ctx.pool, sql, opts.group);
        const filters = subscriptionFilters(ctx.config);
        const fetch = () =>
          lagSnapshot(ctx.pool, sql, {
            subscriptions: filters,
            ...(opts.group ? { group: opts.group } : {}),
          });
        const { listQueues } = await import('../../queues/queueOperations.js');
        // Queues: depth, in flight, dead and ages (those of the config, and any with jobs).
        const queues = () =>
          opts.group
            ? Promise.resolve([])
            : listQueues(ctx.pool, sql, { include: [...ctx.config.queues.keys()] });
        if (opts.json || !process.stdout.isTTY || !process.stdin.isTTY) {
          const { print } = await import('../output.js');
          print(JSON.stringify({ ...(await fetch()), queues: await queues() }));
          return;
        }
        // Heavy imports only here, so that es --help and the JSON path stay fast.
        const [{ render }, { createElement }, { LagApp }, { retryCheckpoints }] = await Promise.all([
          import('ink'),
          import('react'),
          import('../ui/LagApp.js'),
          import('../../operations/retryCheckpoints.js'),
        ]);
        const app = render(
          createElement(LagApp, {
            fetch: async () => ({ ...(await fetch()), queues: await queues() }),
            intervalMs,
            retryFailed: async (group: string, subscription: string) =>
              (await retryCheckpoints(ctx.pool, sql, { group, subscription, status: 'failed' })).changed
                .length,
          }),
          { exitOnCtrlC: true },
        );
        await app.waitUntilExit();
      });
    });
}
