import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

/** The READ column: "caught up", or "1190 of 1234" while log messages wait to be dispatched. */
export function readText(undispatched: number, logPosition: number, head: number): string {
  return undispatched === 0 ? 'caught up' : `${logPosition} of ${head}`;
}

export function registerSubscriptions(program: Command): void {
  const subs = program
    .command('subscriptions')
    .description('list subscriptions with their status and lag; pause, resume, reset or forget one')
    .addHelpText(
      'after',
      `
Examples:
  $ es subscriptions                                   every group and subscription
  $ es subscriptions list --group InventoryAllocation --json
  $ es subscriptions -w                                again every 2 s, until Ctrl-C
  $ es subscriptions pause InventoryAllocation allocate
  $ es subscriptions resume InventoryAllocation allocate
  $ es subscriptions reset InventoryAllocation allocate --yes     start over from the beginning
  $ es subscriptions forget InventoryAllocation oldProjection --yes   delete one no config declares`,
    );

  subs
    .command('list', { isDefault: true })
    .description('every subscription: status, lag, oldest unprocessed message, retry and failed counts')
    .option('--group <name>', 'only this group')
    .option('--json', 'one JSON object per line')
    .option('-w, --watch [seconds]', 'show it again every 2 s (or every SECONDS) until Ctrl-C')
    .action(async (opts: { group?: string; json?: boolean; watch?: string | boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { watchEvery, watchIntervalMs } = await import('../watch.js');
      const every = watchIntervalMs(opts.watch);
      const { withContext } = await import('../context.js');
      const { lagSnapshot } = await import('../../operations/lagSnapshot.js');
      const { subscriptionFilters } = await import('../../operations/subscriptionFilters.js');
      const { assertSubscription } = await import('../../operations/subscriptionControl.js');
      const { print, table, warn } = await import('../output.js');
      const { formatAge } = await import('../ui/format.js');
      await withContext(globals, { poolSize: 4, readsLog: true }, async (ctx) => {
        const sql = ctx.store.sqlContext;
        if (opts.group) await assertSubscription(ctx.pool, sql, opts.group);
        if (every !== undefined) await watchEvery(every, show);
        else await show();
        async function show(): Promise<void> {
          const snap = await lagSnapshot(ctx.pool, sql, {
            subscriptions: subscriptionFilters(ctx.config),
            ...(opts.group ? { group: opts.group } : {}),
          });
          const rows = snap.groups.flatMap((g) =>
            g.subscriptions.map((s) => ({
              group: s.group,
              name: s.name,
              status: s.status,
              lag: s.lag,
              lagCapped: s.undispatchedCapped,
              oldestUnprocessedAgeSeconds: s.oldestUnprocessedAgeSeconds,
              retry: s.retry,
              failed: s.failed,
              logPosition: s.logPosition,
              undispatched: s.undispatched,
              liveWorkers: g.liveWorkers,
            })),
          );
          // Declared in the config but never started: say so rather than leave them out.
          const registered = new Set(rows.map((r) => `${r.group}/${r.name}`));
          const pending: { group: string; name: string }[] = [];
          for (const g of ctx.config.groups.values())
            for (const s of g.subscriptions.values())
              if ((!opts.group || opts.group === g.name) && !registered.has(`${g.name}/${s.name}`))
                pending.push({ group: g.name, name: s.name });
          if (opts.json) {
            for (const r of rows) print(JSON.stringify(r));
            for (const p of pending) print(JSON.stringify({ ...p, status: 'not registered' }));
            return;
          }
          if (rows.length === 0 && pending.length === 0) {
            warn(
              'es: no subscriptions: declare groups in beckett.config.ts and start es worker --group NAME.',
            );
            return;
          }
          print(
            table(
              ['GROUP', 'SUBSCRIPTION', 'STATUS', 'LAG', 'OLDEST', 'RETRY', 'FAILED', 'READ', 'WORKERS'],
              [
                ...rows.map((r) => [
                  r.group,
                  r.name,
                  r.status,
                  `${r.lag}${r.lagCapped ? '+' : ''}`,
                  formatAge(r.oldestUnprocessedAgeSeconds),
                  String(r.retry),
                  String(r.failed),
                  // How far the group's reader has dispatched the log to it: "caught up" when no
                  // message of the log waits for it (its position only moves on matching messages).
                  readText(r.undispatched, r.logPosition, snap.head),
                  String(r.liveWorkers),
                ]),
                ...pending.map((p) => [p.group, p.name, 'not registered', '-', '-', '-', '-', '-', '0']),
              ],
            ),
          );
        }
      });
    });

  for (const action of ['pause', 'resume'] as const) {
    subs
      .command(action)
      .argument('<group>', 'subscription group')
      .argument('<subscription>', 'subscription name')
      .description(
        action === 'pause'
          ? 'stop handing out its checkpoints (work in flight finishes; new messages are still recorded)'
          : 'hand out its checkpoints again',
      )
      .option('--json', 'print the result as JSON')
      .addHelpText('after', `\nExample:\n  $ es subscriptions ${action} InventoryAllocation allocate`)
      .action(async (group: string, name: string, opts: { json?: boolean }, cmd: Command) => {
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const { withContext } = await import('../context.js');
        const { assertSubscription } = await import('../../operations/subscriptionControl.js');
        const { pauseSubscription, resumeSubscription } = await import(
          '../../subscriptions/registerSubscriptions.js'
        );
        const { print } = await import('../output.js');
        await withContext(globals, { poolSize: 2 }, async (ctx) => {
          const before = await assertSubscription(ctx.pool, ctx.store.sqlContext, group, name);
          const fn = action === 'pause' ? pauseSubscription : resumeSubscription;
          const changed = await fn(ctx.pool, ctx.schema, group, name);
          const status = changed ? (action === 'pause' ? 'paused' : 'active') : (before?.status ?? 'unknown');
          if (opts.json) print(JSON.stringify({ group, subscription: name, changed, status }));
          else if (changed) print(`${action === 'pause' ? 'paused' : 'resumed'} ${group}/${name}`);
          else print(`${group}/${name} unchanged: its status is ${status}`);
        });
      });
  }

  subs
    .command('reset')
    .argument('<group>', 'subscription group')
    .argument('<subscription>', 'subscription name')
    .description('start a subscription over: delete its checkpoints, read the log again from the beginning')
    .option('--to-end', 'start from the current end of the log instead (skip everything so far)')
    .option('--yes', 'really do it (every message is handled again, or with --to-end skipped)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ es subscriptions pause InventoryAllocation allocate
  $ es subscriptions reset InventoryAllocation allocate --yes
  $ es subscriptions resume InventoryAllocation allocate

Refused (exit 7) while a worker holds one of its checkpoints: pause it first. To handle a range
again without starting over, see es replay.`,
    )
    .action(
      async (
        group: string,
        name: string,
        opts: { toEnd?: boolean; yes?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const { InvalidInputError } = await import('../../errors.js');
        if (!opts.yes)
          throw new InvalidInputError(
            `Resetting ${group}/${name} deletes its checkpoints${opts.toEnd ? ' and skips every message so far' : ' and handles every message again'}.`,
            'Add --yes to confirm.',
          );
        const { withContext } = await import('../context.js');
        const { resetSubscription } = await import('../../operations/subscriptionControl.js');
        const { print } = await import('../output.js');
        await withContext(globals, { poolSize: 2, readsLog: true }, async (ctx) => {
          const r = await resetSubscription(ctx.pool, ctx.store.sqlContext, {
            group,
            subscription: name,
            to: opts.toEnd ? 'end' : 'beginning',
          });
          if (opts.json) print(JSON.stringify(r));
          else
            print(
              `reset ${group}/${name}: deleted ${r.checkpoints} checkpoint(s); it reads the log again from ${r.from === 'end' ? `the end (position ${r.position})` : 'the beginning'}`,
            );
        });
      },
    );

  subs
    .command('forget')
    .argument('<group>', 'subscription group')
    .argument('<subscription>', 'subscription name')
    .description('delete a subscription no config declares any more (status unknown), with its checkpoints')
    .option('--yes', 'really do it (its checkpoints are deleted; declared again later, it starts anew)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Example:
  $ es subscriptions forget InventoryAllocation oldProjection --yes

A subscription no live worker's config declares is marked unknown and kept, with its checkpoints,
in case a worker brings it back. Forget it once it is gone for good. Refused (exit 7) while this
config declares it, while it is not unknown (a live worker of another version still runs it), or
while one of its checkpoints is leased.`,
    )
    .action(async (group: string, name: string, opts: { yes?: boolean; json?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { InvalidInputError } = await import('../../errors.js');
      if (!opts.yes)
        throw new InvalidInputError(
          `Forgetting ${group}/${name} deletes it and its checkpoints.`,
          'Add --yes to confirm.',
        );
      const { withAdmin } = await import('../context.js');
      const { print } = await import('../output.js');
      await withAdmin(globals, { poolSize: 2 }, async (admin) => {
        const r = await admin.forget(group, name);
        if (opts.json) print(JSON.stringify(r));
        else print(`forgot ${group}/${name}: deleted it and ${r.checkpoints} checkpoint(s)`);
      });
    });
}
