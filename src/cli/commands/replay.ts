import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface ReplayFlags {
  group: string;
  subscription: string;
  from?: string;
  to?: string;
  stream?: string;
  dryRun?: boolean;
  wait?: boolean;
  json?: boolean;
}

export function registerReplay(program: Command): void {
  program
    .command('replay')
    .description('handle a range of messages again: move the matching checkpoints back')
    .requiredOption('--group <name>', 'subscription group')
    .requiredOption('--subscription <name>', 'subscription to replay')
    .option('--from <position|time>', 'first message: a global position or an ISO time (default: the start)')
    .option('--to <position|time>', 'last message, inclusive (default: everything handled so far)')
    .option('--stream <name>', 'only this stream')
    .option('--dry-run', 'say how many streams and messages, change nothing')
    .option('--wait', 'show progress until the workers have handled the range again')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ es replay --group InventoryAllocation --subscription allocate --from 2026-11-24T10:00:00Z --dry-run
  $ es replay --group InventoryAllocation --subscription allocate --from 1200 --to 1500 --wait
  $ es replay --group InventoryAllocation --subscription allocate --stream order-123

Each stream with handled messages in the range goes back to just before its first one; the
workers then handle that stream again, in order. With --to they stop at the range's last message
and the checkpoint returns to where it was: later messages are not handled again (other messages of
the stream that fall between the range's messages are, to keep its order; the result says how many).
Without --to they go on up to where it was. A replay started while another one of the same
subscription still runs joins it: each range is handled again once, in stream order. A checkpoint
whose lease expired is moved back too, and its late holder can no longer write over it.
Workers of the group must be running.
Exit 8 for an unknown group or subscription; 7 when a worker held a checkpoint throughout.`,
    )
    .action(async (opts: ReplayFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositionOrTime } = await import('../parse.js');
      const from = opts.from === undefined ? undefined : parsePositionOrTime(opts.from, '--from');
      const to = opts.to === undefined ? undefined : parsePositionOrTime(opts.to, '--to');
      if (opts.stream !== undefined)
        (await import('../../store/messageStore.js')).checkStreamName(opts.stream);
      const { withContext } = await import('../context.js');
      const { replay, replayProgress } = await import('../../operations/replay.js');
      const { BeckettError, ExitCode } = await import('../../errors.js');
      const { print, warn } = await import('../output.js');
      const { setExitCode } = await import('../main.js');
      await withContext(globals, { poolSize: 2, readsLog: true }, async (ctx) => {
        const sql = ctx.store.sqlContext;
        const types = ctx.config.groups.get(opts.group)?.subscriptions.get(opts.subscription)?.types;
        const r = await replay(
          ctx.pool,
          sql,
          {
            group: opts.group,
            subscription: opts.subscription,
            ...(from ? { from } : {}),
            ...(to ? { to } : {}),
            ...(opts.stream ? { stream: opts.stream } : {}),
            ...(types ? { types } : {}),
          },
          { dryRun: opts.dryRun ?? false },
        );
        const name = `${r.group}/${r.subscription}`;
        if (opts.json && !opts.wait) print(JSON.stringify(r));
        else if (!opts.json) {
          const what = `${r.messages} message${r.messages === 1 ? '' : 's'} in ${r.streams.length} stream${r.streams.length === 1 ? '' : 's'}`;
          const extra =
            r.redelivered > r.messages
              ? ` (${r.redelivered} handled again in all: those streams' other messages within the range, in order)`
              : '';
          if (r.dryRun) print(`would replay ${what} of ${name}${extra}; nothing changed (dry run)`);
          else if (r.streams.length === 0)
            print(`nothing to replay: ${name} has handled no message in that range`);
          else print(`replaying ${what} of ${name}${extra}`);
        }
        if (r.busy.length > 0) {
          warn(
            `es: ${r.busy.length} stream(s) were held by a worker throughout and were not replayed: ${r.busy.join(', ')}`,
          );
          setExitCode(cmd, ExitCode.conflict);
        }
        if (!opts.wait || r.dryRun || r.streams.length === 0) return;
        const { liveWorkerCount } = await import('../../operations/subscriptionControl.js');
        if ((await liveWorkerCount(ctx.pool, sql, r.group)) === 0)
          warn(
            `es: no live worker in group ${r.group}: the replay waits until one runs (es worker --group ${r.group}).`,
          );
        const tty = Boolean(process.stderr.isTTY);
        const stopped = new AbortController();
        const stop = () => stopped.abort();
        process.once('SIGINT', stop);
        try {
          for (;;) {
            const p = await replayProgress(ctx.pool, sql, r);
            if (tty) {
              const width = 30;
              const filled = p.total === 0 ? width : Math.round((p.done / p.total) * width);
              process.stderr.write(
                `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${p.done}/${p.total} messages`,
              );
            }
            if (p.finished || p.failed.length > 0 || stopped.signal.aborted) {
              if (tty) process.stderr.write('\n');
              if (opts.json) print(JSON.stringify({ ...r, progress: p }));
              else if (p.finished)
                print(`replay of ${name} done: ${p.done} message${p.done === 1 ? '' : 's'} handled again`);
              else if (stopped.signal.aborted)
                print(`stopped waiting at ${p.done}/${p.total}; the workers carry on with the replay`);
              if (p.failed.length > 0)
                throw new BeckettError(
                  'REPLAY_FAILED',
                  `Replay of ${name} stopped: ${p.failed.length} checkpoint(s) failed (${p.failed.join(', ')}).`,
                  {
                    hint: `See es checkpoints --group ${r.group} --status failed, then es retry or es skip.`,
                  },
                );
              return;
            }
            await new Promise((res) => setTimeout(res, 250));
          }
        } finally {
          process.off('SIGINT', stop);
        }
      });
    });
}
