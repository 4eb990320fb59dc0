import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface ReadFlags {
  from?: string;
  limit?: string;
  backward?: boolean;
  json?: boolean;
}

export function registerRead(program: Command): void {
  program
    .command('read')
    .argument('<stream>', 'stream name, such as order-123')
    .description('print the messages of a stream, in order')
    .option('--from <position>', 'first stream position to print (backward: the highest)')
    .option('--limit <n>', 'most messages to print', '1000')
    .option('--backward', 'newest first')
    .option('--json', 'one JSON object per line')
    .addHelpText(
      'after',
      `
Examples:
  $ es read order-1
  $ es read order-1 --from 5 --json | jq .data
  $ es read order-1 --backward --limit 1`,
    )
    .action(async (stream: string, opts: ReadFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parseNonNegativeInt, parsePositiveInt } = await import('../parse.js');
      const from = opts.from === undefined ? undefined : parseNonNegativeInt(opts.from, '--from');
      const limit = parsePositiveInt(opts.limit ?? '1000', '--limit');
      (await import('../../store/messageStore.js')).checkStreamName(stream);
      const { withContext } = await import('../context.js');
      const { formatMessage } = await import('../formatMessage.js');
      const { messageToJson, print, useColor } = await import('../output.js');
      await withContext(globals, { poolSize: 2 }, async (ctx) => {
        const messages = await ctx.store.readStream(stream, {
          limit,
          direction: opts.backward ? 'backward' : 'forward',
          ...(from !== undefined ? { from } : {}),
        });
        const color = useColor();
        for (const m of messages) print(opts.json ? messageToJson(m) : formatMessage(m, color));
        if (messages.length === 0 && !opts.json)
          process.stderr.write(`es: stream "${stream}" has no messages${from ? ` from ${from}` : ''}.\n`);
      });
    });
}
