import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';
import { collect } from '../parse.js';

interface TailFlags {
  from?: string;
  type?: string[];
  json?: boolean;
  follow?: boolean;
}

export function registerTail(program: Command): void {
  program
    .command('tail')
    .argument('<target>', 'a stream (order-123: has a "-") or a category (order)')
    .description('print messages of a stream or category as they are committed')
    .option(
      '--from <position|time>',
      'start at a global position or an ISO time (default: new messages only)',
    )
    .option('--type <type>', 'only this message type (repeatable)', collect)
    .option('--json', 'one JSON object per line')
    .option('--no-follow', 'print what is there and exit instead of waiting for more')
    .addHelpText(
      'after',
      `
Examples:
  $ es tail order                              new messages of every order-* stream
  $ es tail order-123 --from 0                 the whole stream, then follow it
  $ es tail order --from 2026-11-24T10:00:00Z --type order_paid --no-follow
  $ es tail order --json | jq -c '{type, data}'

New messages appear within about a second of their commit (LISTEN/NOTIFY, with polling as the
backstop). Reads are gap-safe: a long-open transaction elsewhere delays them (see es lag).
Ctrl-C stops (exit 0).`,
    )
    .action(async (target: string, opts: TailFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositionOrTime } = await import('../parse.js');
      const from = opts.from === undefined ? 'end' : parsePositionOrTime(opts.from, '--from');
      const { checkStreamName } = await import('../../store/messageStore.js');
      checkStreamName(target);
      const { withContext } = await import('../context.js');
      const { formatMessage } = await import('../formatMessage.js');
      const { messageToJson, print, useColor } = await import('../output.js');
      const { tailMessages } = await import('../../operations/tail.js');
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      // A closed pipe (es tail order | head -1) ends the tail quietly.
      process.stdout.once('error', stop);
      try {
        await withContext(globals, { poolSize: 3 }, async (ctx) => {
          const color = useColor();
          for await (const m of tailMessages(ctx.pool, ctx.store.sqlContext, {
            target: target.includes('-') ? { stream: target } : { category: target },
            from,
            follow: opts.follow !== false,
            signal: controller.signal,
            definitions: ctx.config.messages,
            ...(opts.type ? { types: opts.type } : {}),
          })) {
            if (controller.signal.aborted) break;
            print(opts.json ? messageToJson(m) : formatMessage(m, color));
          }
        });
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}
