import type { Command } from 'commander';
import type { ChangeResult } from '../../operations/retryCheckpoints.js';
import type { GlobalOptions } from '../context.js';
import { parseStatus } from './checkpoints.js';

interface RetryFlags {
  all?: boolean;
  group?: string;
  subscription?: string;
  status?: string;
  json?: boolean;
}

export function registerRetry(program: Command): void {
  program
    .command('retry')
    .argument('[ids...]', 'checkpoint ids (group/subscription/stream), as es checkpoints shows them')
    .description('retry failing checkpoints now (a fresh round of attempts)')
    .option('--all', 'every retry or failed checkpoint matching the filters')
    .option('--group <name>', 'with --all: only this group')
    .option('--subscription <name>', 'with --all: only this subscription')
    .option('--status <status>', 'with --all: only retry or only failed checkpoints')
    .option('--json', 'print what changed as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ es retry InventoryAllocation/allocate/order-123
  $ es retry --all --group InventoryAllocation --status failed
  $ es checkpoints --status failed --json | jq -r .id | xargs es retry

Exit 8 when an id matches no checkpoint (the others are still retried).`,
    )
    .action(async (ids: string[], opts: RetryFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { InvalidInputError } = await import('../../errors.js');
      if (ids.length > 0 && opts.all) throw new InvalidInputError('Give checkpoint ids or --all, not both.');
      if (ids.length === 0 && !opts.all)
        throw new InvalidInputError(
          'Nothing to retry: give checkpoint ids or --all.',
          'List failing checkpoints with: es checkpoints --status failed',
        );
      if (!opts.all && (opts.group || opts.subscription || opts.status))
        throw new InvalidInputError('--group, --subscription and --status go with --all.');
      const status = await parseStatus(opts.status);
      if (status === 'active') throw new InvalidInputError('--status for es retry is retry or failed.');
      const { withAdmin } = await import('../context.js');
      const { CheckpointsNotFoundError } = await import('../../admin/checkpointActions.js');
      const { print, warn } = await import('../output.js');
      await withAdmin(globals, { poolSize: 2 }, async (admin) => {
        let r: ChangeResult;
        let missing: InstanceType<typeof CheckpointsNotFoundError> | undefined;
        try {
          r = await admin.retry(
            ids.length > 0
              ? { ids }
              : {
                  ...(opts.group ? { group: opts.group } : {}),
                  ...(opts.subscription ? { subscription: opts.subscription } : {}),
                  ...(status ? { status } : {}),
                },
          );
        } catch (err) {
          // Some ids match nothing: the others were retried; print them, then fail with exit 8.
          if (!(err instanceof CheckpointsNotFoundError)) throw err;
          missing = err;
          r = err.result as ChangeResult;
        }
        if (opts.json) print(JSON.stringify(r));
        else {
          for (const c of r.changed)
            print(
              `retried ${c.id} at position ${c.position + 1} (was ${c.wasStatus} after ${c.wasAttempts} attempt${c.wasAttempts === 1 ? '' : 's'}${c.lastErrorMessage ? `: ${c.lastErrorMessage}` : ''})`,
            );
          if (r.changed.length === 0 && opts.all)
            print('nothing to retry: no checkpoint matches in retry or failed.');
          for (const id of r.notFailing) warn(`es: ${id} is not failing: nothing to retry.`);
          for (const id of r.busy)
            warn(`es: ${id} is being attempted by a worker right now; try again shortly.`);
        }
        if (missing) throw missing;
      });
    });
}
