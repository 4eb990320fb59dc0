import type { Command } from 'commander';
import type { ChangeResult } from '../../operations/retryCheckpoints.js';
import type { GlobalOptions } from '../context.js';

export function registerSkip(program: Command): void {
  program
    .command('skip')
    .argument('<ids...>', 'checkpoint ids (group/subscription/stream), as es checkpoints shows them')
    .description('move failing checkpoints past the message that fails')
    .option('--json', 'print what changed as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ es skip InventoryAllocation/allocate/order-123
  $ es checkpoints --status failed --json | jq -r .id | xargs es skip

The failing message counts as handled and is not delivered again; the stream's next message is
due at once. Only retry or failed checkpoints are skipped. Exit 8 when an id matches no checkpoint.`,
    )
    .action(async (ids: string[], opts: { json?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { withAdmin } = await import('../context.js');
      const { CheckpointsNotFoundError } = await import('../../admin/checkpointActions.js');
      const { print, warn } = await import('../output.js');
      await withAdmin(globals, { poolSize: 2 }, async (admin) => {
        let r: ChangeResult;
        let missing: InstanceType<typeof CheckpointsNotFoundError> | undefined;
        try {
          r = await admin.skip({ ids });
        } catch (err) {
          // Some ids match nothing: the others were skipped; print them, then fail with exit 8.
          if (!(err instanceof CheckpointsNotFoundError)) throw err;
          missing = err;
          r = err.result as ChangeResult;
        }
        if (opts.json) print(JSON.stringify(r));
        else {
          for (const c of r.changed)
            print(
              `skipped ${c.id} message ${c.skipped?.position}${c.skipped?.type ? ` (${c.skipped.type})` : ''} (was ${c.wasStatus} after ${c.wasAttempts} attempt${c.wasAttempts === 1 ? '' : 's'}${c.lastErrorMessage ? `: ${c.lastErrorMessage}` : ''})`,
            );
          for (const id of r.notFailing) warn(`es: ${id} is not failing: nothing to skip.`);
          for (const id of r.busy)
            warn(`es: ${id} is being attempted by a worker right now; try again shortly.`);
        }
        if (missing) throw missing;
      });
    });
}
