import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';
import { collect } from '../parse.js';

interface AppendFlags {
  expectedVersion?: string;
  metadata?: string;
  tag?: string[];
  json?: boolean;
}

export function registerAppend(program: Command): void {
  program
    .command('append')
    .argument('<stream>', 'stream name, such as order-123')
    .argument('<type>', 'message type, such as order_item_added')
    .argument('<data>', 'message data as JSON')
    .description('append one message to a stream')
    .option(
      '--expected-version <v>',
      'any | no_stream | stream_exists | N (the stream version it must have)',
      'any',
    )
    .option('--metadata <json>', 'metadata as JSON (correlationId, causationId, ...)')
    .option('--tag <key:value>', 'tag for queries (repeatable)', collect)
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ es append order-1 order_item_added '{"orderId":"1","productId":"p1","quantity":2}'
  $ es append order-1 order_paid '{}' --expected-version 1
  $ es append course-c1 student_subscribed '{"studentId":"s1"}' --tag course:c1 --tag student:s1

Exit 7 when the stream's version is not the expected one (nothing is written), 9 when the data
fails the schema declared for the type in the config.`,
    )
    .action(async (stream: string, type: string, data: string, opts: AppendFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parseExpectedVersion, parseJson } = await import('../parse.js');
      const expectedVersion = parseExpectedVersion(opts.expectedVersion ?? 'any');
      const payload = parseJson(data, 'The message data');
      const metadata = opts.metadata === undefined ? undefined : parseJson(opts.metadata, '--metadata');
      if (
        metadata !== undefined &&
        (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
      ) {
        const { InvalidInputError } = await import('../../errors.js');
        throw new InvalidInputError('--metadata must be a JSON object.');
      }
      (await import('../../store/messageStore.js')).checkStreamName(stream);
      const { withContext } = await import('../context.js');
      const { print } = await import('../output.js');
      await withContext(globals, { poolSize: 2 }, async (ctx) => {
        const r = await ctx.store.append(
          stream,
          {
            type,
            data: payload,
            ...(metadata ? { metadata: metadata as Record<string, unknown> } : {}),
            ...(opts.tag ? { tags: opts.tag } : {}),
          },
          { expectedVersion },
        );
        await ctx.store.close();
        if (opts.json)
          print(JSON.stringify({ stream, streamVersion: r.streamVersion, globalPosition: r.globalPosition }));
        else
          print(
            `appended ${type} to ${stream} at version ${r.streamVersion} (global position ${r.globalPosition})`,
          );
      });
    });
}
