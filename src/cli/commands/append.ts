import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';
import { collect } from '../parse.js';

interface AppendFlags {
  expectedVersion?: string;
  metadata?: string;
  tag?: string[];
  json?: boolean;
  ndjson?: boolean;
  batchSize?: string;
  allowUnknownType?: boolean;
}

/** Messages per append when loading NDJSON: one transaction each. */
const DEFAULT_BATCH = 1000;

export function registerAppend(program: Command): void {
  program
    .command('append')
    .argument('<stream>', 'stream name, such as order-123')
    .argument('[type]', 'message type, such as order_item_added (or - to read NDJSON from stdin)')
    .argument('[data]', 'message data as JSON')
    .description('append a message to a stream (or many, as NDJSON from stdin)')
    .option(
      '--expected-version <v>',
      'any | no_stream | stream_exists | N (the stream version it must have)',
      'any',
    )
    .option('--metadata <json>', 'metadata as JSON (correlationId, causationId, ...)')
    .option('--tag <key:value>', 'tag for queries (repeatable)', collect)
    .option('--json', 'print the result as JSON')
    .option('--ndjson', 'read messages from stdin, one JSON object per line (the same as TYPE -)')
    .option(
      '--batch-size <n>',
      'with --ndjson: messages per append (one transaction each)',
      String(DEFAULT_BATCH),
    )
    .option('--allow-unknown-type', 'append a type the config does not declare under messages (warns)')
    .addHelpText(
      'after',
      `
Examples:
  $ es append order-1 order_item_added '{"orderId":"1","productId":"p1","quantity":2}'
  $ es append order-1 order_paid '{}' --expected-version 1
  $ es append course-c1 student_subscribed '{"studentId":"s1"}' --tag course:c1 --tag student:s1
  $ es append order-1 - < messages.ndjson
  $ jq -c '{type: "order_item_added", data: .}' items.json | es append order-1 --ndjson --expected-version no_stream

NDJSON: one object per line, {"type": "...", "data": {...}} with optional "metadata", "tags" and
"id" (a UUID: appends are idempotent by id, so a load that stopped half way can be run again with
the same ids). Blank lines are skipped. Messages are appended in batches of --batch-size, each batch
one transaction. --expected-version applies to the first batch; every later batch expects the
version the previous one left, so a load into a stream someone else writes to stops with exit 7
(batches already appended stay). Nothing is appended when a line is not valid JSON or not a
message the store would take (its type, data, schema, metadata, tags or id), or when two lines
give one id: every line is checked before the first batch.

When the config declares message types (messages: in beckett.config.ts), a type it does not declare
is refused (exit 2): usually a typo. --allow-unknown-type appends it anyway, with a warning.

Exit 7 when the stream's version is not the expected one (nothing is written), 9 when the data
fails the schema declared for the type in the config.`,
    )
    .action(
      async (
        stream: string,
        type: string | undefined,
        data: string | undefined,
        opts: AppendFlags,
        cmd: Command,
      ) => {
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const { parseExpectedVersion, parseJson, parsePositiveInt } = await import('../parse.js');
        const { InvalidInputError } = await import('../../errors.js');
        const expectedVersion = parseExpectedVersion(opts.expectedVersion ?? 'any');
        const ndjson = opts.ndjson || type === '-';
        const batchSize = parsePositiveInt(opts.batchSize ?? String(DEFAULT_BATCH), '--batch-size');
        (await import('../../store/messageStore.js')).checkStreamName(stream);
        type Message = import('../../store/types.js').NewMessage;
        let messages: Message[];
        /** With NDJSON, the stdin line of each message. */
        let lines: number[] | undefined;
        if (ndjson) {
          if (data !== undefined || (opts.ndjson && type !== undefined && type !== '-'))
            throw new InvalidInputError(
              'With --ndjson (or TYPE -) the messages come from stdin: give only the stream.',
            );
          if (opts.metadata !== undefined || opts.tag)
            throw new InvalidInputError('With --ndjson put metadata and tags on each line, not in flags.');
          ({ messages, lines } = parseNdjson(await readStdin(), parseJson, InvalidInputError));
        } else {
          if (type === undefined || data === undefined)
            throw new InvalidInputError(
              `missing required argument '${type === undefined ? 'type' : 'data'}'`,
              'Give STREAM TYPE DATA, or STREAM - (or --ndjson) to read NDJSON from stdin.',
            );
          const payload = parseJson(data, 'The message data');
          const metadata = opts.metadata === undefined ? undefined : parseJson(opts.metadata, '--metadata');
          if (
            metadata !== undefined &&
            (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
          ) {
            throw new InvalidInputError('--metadata must be a JSON object.');
          }
          messages = [
            {
              type,
              data: payload,
              ...(metadata ? { metadata: metadata as Record<string, unknown> } : {}),
              ...(opts.tag ? { tags: opts.tag } : {}),
            },
          ];
        }
        const { withContext } = await import('../context.js');
        const { print, warn } = await import('../output.js');
        await withContext(globals, { poolSize: 2 }, async (ctx) => {
          const declared = Object.keys(ctx.config.messages);
          const unknown = [...new Set(messages.map((m) => m.type))].filter(
            (t) => declared.length > 0 && !declared.includes(t),
          );
          if (unknown.length > 0) {
            const names = unknown.map((t) => `"${t}"`).join(', ');
            if (!opts.allowUnknownType)
              throw new InvalidInputError(
                `The config${ctx.config.path ? ` (${ctx.config.path})` : ''} declares no message type ${names} (it declares ${declared.join(', ')}).`,
                'Check the spelling, declare the type under messages in the config, or pass --allow-unknown-type.',
              );
            warn(`es: appending ${names}, a type the config does not declare (--allow-unknown-type).`);
          }
          // A schema migrated by a newer beckett is refused, as es migrate refuses it (exit 6).
          await (await import('../../db/migrate.js')).assertSchemaCurrent(ctx.pool, ctx.schema);
          if (lines) await checkMessages(ctx.store, messages, lines);
          let expected = expectedVersion;
          let last: { streamVersion: number; globalPosition: number } | undefined;
          for (let i = 0; i < messages.length; i += batchSize) {
            const batch = messages.slice(i, i + batchSize);
            last = await ctx.store.append(stream, batch, { expectedVersion: expected });
            expected = last.streamVersion;
          }
          await ctx.store.close();
          if (!last) {
            warn('es: stdin had no messages: nothing appended.');
            return;
          }
          const count = messages.length;
          if (opts.json)
            print(
              JSON.stringify({
                stream,
                streamVersion: last.streamVersion,
                globalPosition: last.globalPosition,
                ...(ndjson ? { appended: count } : {}),
              }),
            );
          else if (ndjson)
            print(
              `appended ${count} message${count === 1 ? '' : 's'} to ${stream}, now at version ${last.streamVersion}`,
            );
          else
            print(
              `appended ${type} to ${stream} at version ${last.streamVersion} (global position ${last.globalPosition})`,
            );
        });
      },
    );
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) {
    const { InvalidInputError } = await import('../../errors.js');
    throw new InvalidInputError(
      'es append reads NDJSON from stdin, but stdin is a terminal.',
      'Pipe the messages in: es append order-1 - < messages.ndjson',
    );
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Every NDJSON message checked as the store checks it (type, data and its declared schema,
 * metadata, tags, id), and every id given at most once in the load, before the first batch is
 * appended: a bad line appends nothing (the batches before it were appended once). Errors name the
 * line and keep their class and exit code.
 */
async function checkMessages(
  store: import('../../store/messageStore.js').MessageStore,
  messages: import('../../store/types.js').NewMessage[],
  lines: number[],
): Promise<void> {
  const { BeckettError, InvalidInputError } = await import('../../errors.js');
  const firstLine = new Map<string, number>();
  for (const [i, m] of messages.entries()) {
    try {
      const [prepared] = await store.prepareMessages([m]);
      if (m.id === undefined) continue;
      const seen = firstLine.get(prepared!.id);
      if (seen !== undefined)
        throw new InvalidInputError(
          `message id ${prepared!.id} is on line ${seen} too: each message needs its own id.`,
        );
      firstLine.set(prepared!.id, lines[i]!);
    } catch (err) {
      if (err instanceof BeckettError) err.message = `stdin line ${lines[i]}: ${err.message}`;
      throw err;
    }
  }
}

/** Every line parsed before anything is appended; errors name the line. */
function parseNdjson(
  text: string,
  parseJson: (value: string, what: string) => unknown,
  Invalid: typeof import('../../errors.js').InvalidInputError,
): { messages: import('../../store/types.js').NewMessage[]; lines: number[] } {
  const out: import('../../store/types.js').NewMessage[] = [];
  const lineOf: number[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const value = parseJson(line, `stdin line ${i + 1}`);
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new Invalid(
        `stdin line ${i + 1} is not a JSON object.`,
        'Each line: {"type": "...", "data": {...}}',
      );
    const m = value as Record<string, unknown>;
    const extra = Object.keys(m).filter((k) => !['type', 'data', 'metadata', 'tags', 'id'].includes(k));
    if (extra.length > 0)
      throw new Invalid(
        `stdin line ${i + 1} has unknown key ${extra.map((k) => `"${k}"`).join(', ')}.`,
        'Each line takes type, data, and optionally metadata, tags and id.',
      );
    if (typeof m.type !== 'string' || m.type === '')
      throw new Invalid(`stdin line ${i + 1} has no "type" (a message type name).`);
    if (!('data' in m)) throw new Invalid(`stdin line ${i + 1} has no "data".`);
    out.push(m as unknown as import('../../store/types.js').NewMessage);
    lineOf.push(i + 1);
  }
  return { messages: out, lines: lineOf };
}
