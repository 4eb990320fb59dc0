import type { Command } from 'commander';
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
      const { NotFoundError } = await import('../../errors.js');
      const { parseCheckpointId } = await import('../../operations/checkpointId.js');
      const keys = ids.map(parseCheckpointId);
      const { withContext } = await import('../context.js');
      const { skipCheckpoints } = await import('../../operations/retryCheckpoints.js');
      const { print, warn } = await import('../output.js');
      await withContext(globals, { poolSize: 2 }, async (ctx) => {
        const r = await skipCheckpoints(ctx.pool, ctx.store.sqlContext, { ids: keys });
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
        if (r.missing.length > 0)
          throw new NotFoundError(
            `No checkpoint ${r.missing.join(', ')}.`,
            'Ids are group/subscription/stream; list them with es checkpoints.',
          );
      });
    });
}
