import type { Command } from 'commander';
import type { TailStart } from '../../operations/tail.js';
import { assertStreamName, assertTypeName } from '../../validation/names.js';
import type { GlobalOptions } from '../context.js';
import { collect } from '../parse.js';

interface TailFlags {
  from?: string;
  type?: string[];
  json?: boolean;
  follow?: boolean;
  exitAtEnd?: boolean;
  count?: string;
}

/** `order-*` and `order` name a category; a name with a "-" (`order-123`) names a stream. */
export function tailTarget(target: string): { stream: string } | { category: string } {
  if (target.endsWith('-*')) return { category: target.slice(0, -2) };
  return target.includes('-') ? { stream: target } : { category: target };
}

function describeStart(from: TailStart): string {
  if (from === 'end') return 'new messages only';
  if ('after' in from) return `after log position ${from.after.transactionId}:${from.after.globalPosition}`;
  return 'position' in from ? `from global position ${from.position}` : `from ${from.time.toISOString()}`;
}

export function registerTail(program: Command): void {
  program
    .command('tail')
    .argument('<target>', 'a stream (order-123: has a "-") or a category (order, or order-*)')
    .description('print messages of a stream or category as they are committed')
    .option(
      '--from <position|time>',
      'start at a global position or an ISO time (default: new messages only)',
    )
    .option('--type <type>', 'only this message type (repeatable)', collect)
    .option('--json', 'one JSON object per line')
    .option('--no-follow', 'print what is there and exit instead of waiting for more')
    .option('--exit-at-end', 'the same as --no-follow')
    .option('--count <n>', 'exit after printing N messages')
    .addHelpText(
      'after',
      `
Examples:
  $ es tail order                              new messages of every order-* stream
  $ es tail order-123 --from 0                 the whole stream, then follow it
  $ es tail order --from 2026-11-24T10:00:00Z --type order_paid --no-follow
  $ es tail 'order-*' --from 0 --count 10       the first 10 messages of the category, then exit
  $ es tail order --json | jq -c '{type, data}'

What is followed is said on stderr once the start is read (a message committed after that line is
printed), with the closest existing category or stream when nothing by that name is stored yet (a category is the stream name's prefix before the first "-": the streams
order-1, order-2 form the category order, not orders).

New messages appear within about a second of their commit (LISTEN/NOTIFY, with polling as the
backstop). Reads are gap-safe: a long-open transaction elsewhere delays them (see es lag).
Ctrl-C stops (exit 0).`,
    )
    .action(async (target: string, opts: TailFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositionOrTime, parsePositiveInt } = await import('../parse.js');
      const from: TailStart = opts.from === undefined ? 'end' : parsePositionOrTime(opts.from, '--from');
      const count = opts.count === undefined ? undefined : parsePositiveInt(opts.count, '--count');
      const followed = tailTarget(target);
      assertStreamName('stream' in followed ? followed.stream : followed.category);
      for (const t of opts.type ?? []) assertTypeName(t, '--type');
      // The modules load side by side; pg first through importPool (without its Cloudflare probe,
      // which loads undici on Node 20), as operations/tail.js imports it.
      const [
        { assertLogReadable, assertReadsFromReplica, importPool, withQueryContext },
        { formatMessage },
        { messageToJson, print, useColor, warn },
      ] = await Promise.all([import('../context.js'), import('../formatMessage.js'), import('../output.js')]);
      await importPool();
      // Loaded while the pool connects (the process waits on the server there).
      const loading = import('../../operations/tail.js');
      loading.catch(() => undefined);
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      // A closed pipe (es tail order | head -1) ends the tail quietly.
      process.stdout.once('error', stop);
      try {
        await withQueryContext(globals, { poolSize: 3, replica: true }, async (ctx) => {
          // The checks run beside the tail's start; nothing prints before they passed, and a
          // refusal also ends a tail that is waiting for new messages. The log's check (a restored
          // database: exit 12; there the gap-safe read finds nothing anyway), and with --read-url
          // the replica's (a standby of the primary; a primary that cannot be reached is said, and
          // the tail reads on).
          const checks = Promise.all([
            assertLogReadable(ctx),
            assertReadsFromReplica(ctx).then((how) => {
              if (how === 'unverified')
                warn('es tail: the primary cannot be reached: the read URL is not checked to be its standby');
            }),
          ]).catch((err: unknown) => {
            controller.abort();
            throw err;
          });
          checks.catch(() => undefined);
          const { describeTailTarget, tailMessages } = await loading;
          const color = useColor();
          const follow = opts.follow !== false && !opts.exitAtEnd;
          const what = 'stream' in followed ? `stream ${followed.stream}` : `category ${followed.category}`;
          const streams = 'category' in followed ? ` (streams ${followed.category}-*)` : '';
          // Said once the start is fixed (whatever commits after this line is printed), then the note
          // on the target, which comes after it whichever is known first.
          let started = false;
          let note: string | undefined;
          const onStarted = () => {
            warn(`following ${what}${streams}, ${describeStart(from)}${follow ? '; Ctrl-C stops' : ''}`);
            started = true;
            if (note) warn(note);
          };
          // Whether the target exists only adds a note: asked beside the tail's first read, not before.
          const described = describeTailTarget(ctx.pool, ctx.sql, followed).then((info) => {
            if (info.exists) return;
            const closest = info.closest
              ? 'category' in info.closest
                ? `; the closest existing category is ${info.closest.category} (es tail ${info.closest.category})`
                : `; the closest existing stream is ${info.closest.stream} (es tail ${info.closest.stream})`
              : '';
            note = `no messages in ${what} yet${closest}`;
            if (started) warn(note);
          });
          described.catch(() => undefined);
          let printed = 0;
          let checked = false;
          for await (const m of tailMessages(ctx.pool, ctx.sql, {
            target: followed,
            from,
            follow,
            signal: controller.signal,
            definitions: ctx.config.messages,
            onStarted,
            ...(opts.type ? { types: opts.type } : {}),
          })) {
            if (controller.signal.aborted) break;
            if (!checked) {
              await checks;
              checked = true;
            }
            print(opts.json ? messageToJson(m) : formatMessage(m, color));
            if (count !== undefined && ++printed >= count) break;
          }
          await checks;
          await described;
        });
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}
