import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface ListFlags {
  json?: boolean;
  stream?: string;
  limit?: string;
}

export function registerSchedule(program: Command): void {
  const schedule = program
    .command('schedule')
    .description('list or cancel scheduled messages; show the next occurrences of recurring ones')
    .addHelpText(
      'after',
      `
Examples:
  $ es schedule list
  $ es schedule list --stream order-123 --json
  $ es schedule cancel 0193f0c2-7a61-7c5e-8d1b-2f0e4b1c9a10

Messages are scheduled from code (scheduleMessage, or ctx.schedule in a handler) and delivered by
running workers (es worker), each exactly once. Recurring messages come from the config's
"recurring" key; a worker writes them to the database when it starts.`,
    );

  schedule
    .command('list')
    .description(
      'pending scheduled messages (next due first) and recurring messages with their next occurrence',
    )
    .option('--stream <name>', 'only scheduled messages for this stream')
    .option('--limit <n>', 'most scheduled messages to show', '1000')
    .option('--json', 'one JSON object per line, with "kind": "scheduled" or "recurring"')
    .addHelpText(
      'after',
      `
Examples:
  $ es schedule list
  $ es schedule list --json | jq 'select(.kind == "recurring") | .nextOccurrenceAt'`,
    )
    .action(async (opts: ListFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositiveInt } = await import('../parse.js');
      const limit = parsePositiveInt(opts.limit ?? '1000', '--limit');
      const { withContext } = await import('../context.js');
      const { listScheduledMessages } = await import('../../scheduling/scheduleMessage.js');
      const { listRecurringMessages } = await import('../../scheduling/deliverRecurring.js');
      const { print, table } = await import('../output.js');
      await withContext(globals, { poolSize: 2 }, async (ctx) => {
        const scheduled = await listScheduledMessages(ctx.store, {
          limit,
          ...(opts.stream ? { stream: opts.stream } : {}),
        });
        const recurring = opts.stream ? [] : await listRecurringMessages(ctx.store);
        if (opts.json) {
          for (const s of scheduled)
            print(
              JSON.stringify({
                kind: 'scheduled',
                id: s.id,
                stream: s.stream,
                type: s.type,
                deliverAt: s.deliverAt.toISOString(),
                data: s.data,
                metadata: s.metadata,
                attempts: s.attempts,
                lastError: s.lastError ?? null,
              }),
            );
          for (const r of recurring)
            print(
              JSON.stringify({
                kind: 'recurring',
                name: r.name,
                cron: r.cron,
                timezone: r.timezone,
                stream: r.stream,
                type: r.type,
                nextOccurrenceAt: isoOrNull(r.nextOccurrenceAt),
                lastOccurrenceAt: r.lastOccurrenceAt ? isoOrNull(r.lastOccurrenceAt) : null,
                lastError: r.lastError ?? null,
              }),
            );
          return;
        }
        if (scheduled.length === 0) print('No scheduled messages pending.');
        else
          print(
            table(
              ['ID', 'DUE', 'STREAM', 'TYPE', 'ATTEMPTS'],
              scheduled.map((s) => [s.id, s.deliverAt.toISOString(), s.stream, s.type, String(s.attempts)]),
            ),
          );
        if (recurring.length > 0) {
          print('');
          print(
            table(
              ['RECURRING', 'CRON', 'TIME ZONE', 'NEXT', 'STREAM', 'TYPE', 'LAST ERROR'],
              recurring.map((r) => [
                r.name,
                r.cron,
                r.timezone,
                isoOrNull(r.nextOccurrenceAt) ?? 'never',
                r.stream,
                r.type,
                r.lastError ?? '',
              ]),
            ),
          );
        }
      });
    });

  schedule
    .command('cancel')
    .argument('<id>', 'the scheduled message id (see es schedule list)')
    .description('cancel a pending scheduled message (exit 8 when it is unknown or already delivered)')
    .addHelpText(
      'after',
      `
Examples:
  $ es schedule cancel 0193f0c2-7a61-7c5e-8d1b-2f0e4b1c9a10`,
    )
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { withContext } = await import('../context.js');
      const { cancelScheduledMessage } = await import('../../scheduling/scheduleMessage.js');
      const { NotFoundError } = await import('../../errors.js');
      const { print } = await import('../output.js');
      await withContext(globals, { poolSize: 2 }, async (ctx) => {
        if (!(await cancelScheduledMessage(ctx.store, id)))
          throw new NotFoundError(
            `No pending scheduled message with id ${id}: it was delivered, cancelled, or never scheduled.`,
            'List pending messages with: es schedule list',
          );
        print(`Cancelled scheduled message ${id}.`);
      });
    });
}

/** A timestamp column may hold 'infinity' (a cron expression that never fires again). */
function isoOrNull(d: Date): string | null {
  return d instanceof Date && !Number.isNaN(d.getTime()) ? d.toISOString() : null;
}
