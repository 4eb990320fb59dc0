import type { Command } from 'commander';
import { assertTag, assertTypeName } from '../../validation/names.js';
import type { GlobalOptions } from '../context.js';

interface ReadFlags {
  from?: string;
  limit?: string;
  backward?: boolean;
  json?: boolean;
  type?: string[];
  tag?: string[];
  after?: string;
}

const repeat = (value: string, previous: string[] = []) => [...previous, value];

export function registerRead(program: Command): void {
  program
    .command('read')
    .argument('[stream]', 'stream name, such as order-123 (leave out to query by --type/--tag)')
    .description('print the messages of a stream, or of the whole log matching types and tags, in order')
    .option('--from <position>', 'first stream position to print (backward: the highest)')
    .option('--limit <n>', 'most messages to print', '1000')
    .option('--backward', 'newest first')
    .option('--type <type>', 'without a stream: messages of this type (repeatable: any of them)', repeat)
    .option(
      '--tag <key:value>',
      'without a stream: messages carrying this tag (repeatable: all of them)',
      repeat,
    )
    .option('--after <position>', 'without a stream: continue after this global position')
    .option('--json', 'one JSON object per line')
    .addHelpText(
      'after',
      `
Without a stream, es reads the whole log (gap-safe, in commit order) for messages whose type is
one of the --type values and that carry every --tag.

Examples:
  $ es read order-1
  $ es read order-1 --from 5 --json | jq .data
  $ es read order-1 --backward --limit 1
  $ es read --tag course:c1
  $ es read --type student_subscribed --tag student:s1 --json
  $ es read --type course_defined --type student_subscribed --tag course:c1 --after 120`,
    )
    .action(async (stream: string | undefined, opts: ReadFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parseNonNegativeInt, parsePositiveInt } = await import('../parse.js');
      const { InvalidInputError } = await import('../../errors.js');
      const limit = parsePositiveInt(opts.limit ?? '1000', '--limit');
      const types = opts.type ?? [];
      const tags = opts.tag ?? [];
      for (const t of types) assertTypeName(t, '--type');
      for (const t of tags) assertTag(t, ' (--tag)');
      const { withContext } = await import('../context.js');
      const { formatMessage } = await import('../formatMessage.js');
      const { messageToJson, print, useColor } = await import('../output.js');

      if (stream === undefined) {
        if (types.length === 0 && tags.length === 0)
          throw new InvalidInputError(
            'es read needs a stream, or at least one --type or --tag to query the log.',
            'Examples: es read order-1, es read --tag course:c1, es read --type order_placed',
          );
        if (opts.from !== undefined || opts.backward)
          throw new InvalidInputError(
            '--from and --backward read a stream: give a stream, or use --after with --type/--tag.',
          );
        const after = opts.after === undefined ? undefined : parseNonNegativeInt(opts.after, '--after');
        const { Query } = await import('../../consistency/query.js');
        const query = Query.of({ types, tags });
        const { readStoreByQuery } = await import('../../consistency/readByQuery.js');
        await withContext(globals, { poolSize: 2, readsLog: true }, async (ctx) => {
          const { messages, position } = await readStoreByQuery(ctx.store, query, {
            limit,
            ...(after !== undefined ? { after } : {}),
          });
          const color = useColor();
          for (const m of messages) print(opts.json ? messageToJson(m) : formatMessage(m, color));
          if (opts.json) return;
          if (messages.length === 0) process.stderr.write('es: no matching messages.\n');
          else if (messages.length === limit)
            process.stderr.write(`es: more may follow: continue with --after ${position.globalPosition}\n`);
        });
        return;
      }

      if (types.length > 0 || tags.length > 0 || opts.after !== undefined)
        throw new InvalidInputError(
          '--type, --tag and --after query the whole log: leave out the stream.',
          'To see one stream, use es read <stream> [--from N].',
        );
      const from = opts.from === undefined ? undefined : parseNonNegativeInt(opts.from, '--from');
      (await import('../../store/messageStore.js')).checkStreamName(stream);
      await withContext(globals, { poolSize: 2 }, async (ctx) => {
        const messages = await ctx.store.replica.readStream(stream, {
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
