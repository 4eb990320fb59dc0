import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface CheckpointsFlags {
  group?: string;
  subscription?: string;
  status?: string;
  all?: boolean;
  limit?: string;
  json?: boolean;
  watch?: string | boolean;
}

export function registerCheckpoints(program: Command): void {
  program
    .command('checkpoints')
    .description('list checkpoints that fail, wait for a retry or have work waiting')
    .option('--group <name>', 'only this subscription group')
    .option('--subscription <name>', 'only this subscription')
    .option('--status <status>', 'only retry, failed or active checkpoints')
    .option('--all', 'also the healthy checkpoints with nothing to do')
    .option('--limit <n>', 'most checkpoints to list', '100')
    .option('--json', 'one JSON object per line')
    .option('-w, --watch [seconds]', 'show it again every 2 s (or every SECONDS) until Ctrl-C')
    .addHelpText(
      'after',
      `
Examples:
  $ es checkpoints                                        failing first, then lagging
  $ es checkpoints --group InventoryAllocation --status failed
  $ es checkpoints --status failed --json | jq -r .id | xargs es retry
  $ es checkpoints -w                                     again every 2 s, until Ctrl-C

The ID column (group/subscription/stream) is what es retry and es skip take.`,
    )
    .action(async (opts: CheckpointsFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositiveInt } = await import('../parse.js');
      const limit = parsePositiveInt(opts.limit ?? '100', '--limit');
      const status = await parseStatus(opts.status);
      const { watchEvery, watchIntervalMs } = await import('../watch.js');
      const every = watchIntervalMs(opts.watch);
      const { withContext } = await import('../context.js');
      const { listCheckpoints } = await import('../../operations/listCheckpoints.js');
      const { assertSubscription, assertSubscriptionName } = await import(
        '../../operations/subscriptionControl.js'
      );
      const { print, table, warn } = await import('../output.js');
      const { truncate, formatAge } = await import('../ui/format.js');
      await withContext(globals, { poolSize: 2 }, async (ctx) => {
        const sql = ctx.store.sqlContext;
        if (opts.group) await assertSubscription(ctx.pool, sql, opts.group, opts.subscription);
        else if (opts.subscription) await assertSubscriptionName(ctx.pool, sql, opts.subscription);
        if (every !== undefined) await watchEvery(every, show);
        else await show();
        async function show(): Promise<void> {
          const list = await listCheckpoints(
            ctx.pool,
            sql,
            {
              ...(opts.group ? { group: opts.group } : {}),
              ...(opts.subscription ? { subscription: opts.subscription } : {}),
              ...(status ? { status } : {}),
            },
            { all: opts.all ?? false, limit },
          );
          if (opts.json) {
            for (const c of list) print(JSON.stringify(c));
            return;
          }
          if (list.length === 0) {
            // Said on stdout too: "nothing fails" is the answer, not a diagnostic.
            print(
              opts.all || status
                ? 'No checkpoints match.'
                : 'No checkpoint fails, waits for a retry or lags: every subscription is up to date.',
            );
            return;
          }
          const now = Date.now();
          const next = (c: (typeof list)[number]) => {
            if (c.status === 'failed') return 'never (failed)';
            if (c.status === 'active' && c.position >= c.version) return '-';
            const s = (c.nextAttemptAt.getTime() - now) / 1000;
            return s <= 0 ? 'now' : `in ${formatAge(s)}`;
          };
          print(
            table(
              ['ID', 'STREAM', 'POS/VER', 'STATUS', 'ATTEMPTS', 'NEXT ATTEMPT', 'LAST ERROR'],
              list.map((c) => [
                c.id,
                c.stream,
                `${c.position}/${c.version}`,
                c.status,
                String(c.attempts),
                next(c),
                c.lastError
                  ? truncate(`${c.lastError.type ?? 'Error'}: ${c.lastError.message ?? ''}`, 60)
                  : '-',
              ]),
            ),
          );
          if (list.length === limit) warn(`es: showing the first ${limit}; use --limit to see more.`);
        }
      });
    });
}

/** --status: retry, failed or active (shared with es retry). */
export async function parseStatus(
  value: string | undefined,
): Promise<'retry' | 'failed' | 'active' | undefined> {
  if (value === undefined) return undefined;
  if (value === 'retry' || value === 'failed' || value === 'active') return value;
  const { InvalidInputError } = await import('../../errors.js');
  throw new InvalidInputError(`--status must be retry, failed or active, got ${JSON.stringify(value)}.`);
}
