import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface JsonFlag {
  json?: boolean;
}

const JOB_STATES = 'ready, in-flight, delayed, waiting-on-key';

export function registerQueue(program: Command): void {
  const queue = program
    .command('queue')
    .description('job queues: depth, peek, enqueue, dead letters, redrive, purge')
    .addHelpText(
      'after',
      `
Examples:
  $ es queue list                                   depth, in flight, delayed, dead, oldest age, rate
  $ es queue enqueue emails '{"type":"welcome","data":{"to":"a@example.com"}}'
  $ cat jobs.ndjson | es queue enqueue emails       one job per line, in one transaction
  $ es queue peek emails --limit 5
  $ es queue dead emails                            jobs that failed maxDeliveries times, with errors
  $ es queue redrive emails --all                   put them back
  $ es queue purge emails --yes

Queues are declared in the config (queues: { emails: { handler, concurrency, visibilityTimeout,
maxDeliveries, backoff, batchSize } }) and served by es worker --queue emails (or a group's queues).
A job is delivered to one worker at a time, invisible to others until acked or until its visibility
timeout passes; a handler that throws retries it after backoff, and after maxDeliveries it moves to
the dead letters. Exit 2 for a bad queue name, id or JSON, 8 when nothing matched.`,
    );

  queue
    .command('list')
    .description('every queue: ready, in flight, delayed, waiting on key, dead, oldest age, rate')
    .option('--json', 'one JSON object per queue and line')
    .addHelpText(
      'after',
      `
Examples:
  $ es queue list
  $ es queue list --json | jq 'select(.dead > 0) | .queue'

READY jobs a worker may take now; IN FLIGHT delivered and not acked; DELAYED waiting for their time
(a delay, or a retry's backoff); ON KEY waiting behind an earlier job of their key; DEAD in the dead
letters; OLDEST age of the oldest job not done; READY FOR how long the oldest ready job has waited;
DONE/MIN jobs completed per minute over the last 5 minutes. Queues declared in the config are listed
even when empty.`,
    )
    .action(async (opts: JsonFlag, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { withAdmin } = await import('../context.js');
      const { print, table } = await import('../output.js');
      await withAdmin(globals, { poolSize: 2 }, async (admin) => {
        const queues = (await admin.queues()).items;
        if (opts.json) {
          for (const q of queues) print(JSON.stringify(q));
          return;
        }
        if (queues.length === 0) {
          print('No queues: none declared in the config, no jobs and no dead letters.');
          return;
        }
        print(
          table(
            [
              'QUEUE',
              'READY',
              'IN FLIGHT',
              'DELAYED',
              'ON KEY',
              'DEAD',
              'OLDEST',
              'READY FOR',
              'DONE/MIN',
              'FAILED/MIN',
            ],
            queues.map((q) => [
              q.queue,
              String(q.ready),
              String(q.inFlight),
              String(q.delayed),
              String(q.waitingOnKey),
              String(q.dead),
              age(q.oldestAgeSeconds),
              age(q.readyAgeSeconds),
              rate(q.completedPerMinute),
              rate(q.failedPerMinute),
            ]),
          ),
        );
      });
    });

  queue
    .command('peek')
    .argument('<queue>', 'the queue')
    .description('the next jobs in the order workers take them, without taking them')
    .option('--limit <n>', 'most jobs to show', '20')
    .option('--json', 'one JSON object per job and line')
    .addHelpText(
      'after',
      `
Examples:
  $ es queue peek emails
  $ es queue peek emails --limit 100 --json | jq -c '{id, state, deliveries}'

States: ${JOB_STATES}.`,
    )
    .action(async (name: string, opts: JsonFlag & { limit?: string }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositiveInt } = await import('../parse.js');
      const limit = parsePositiveInt(opts.limit ?? '20', '--limit');
      const { withAdmin } = await import('../context.js');
      const { print, table } = await import('../output.js');
      await withAdmin(globals, { poolSize: 2 }, async (admin) => {
        const jobs = (await admin.queueJobs(name, { limit })).items;
        if (opts.json) {
          for (const j of jobs) print(JSON.stringify(j));
          return;
        }
        if (jobs.length === 0) {
          print(`Queue ${name} has no jobs.`);
          return;
        }
        print(
          table(
            ['ID', 'STATE', 'TYPE', 'KEY', 'DELIVERIES', 'VISIBLE AT', 'LAST ERROR'],
            jobs.map((j) => [
              j.id,
              j.state,
              j.type,
              j.key ?? '',
              String(j.deliveries),
              j.visibleAt ? j.visibleAt.toISOString() : '',
              oneLine(j.errors.at(-1)?.message ?? ''),
            ]),
          ),
        );
      });
    });

  queue
    .command('enqueue')
    .argument('<queue>', 'the queue')
    .argument(
      '[job]',
      'a JSON job {"type", "data", "metadata"?, "id"?, "key"?, "delay"?}; without it, NDJSON from stdin',
    )
    .description('enqueue one job, or many from stdin (one JSON job per line, in one transaction)')
    .option(
      '--delay <ms>',
      'run no earlier than this many milliseconds from now (jobs without their own delay)',
    )
    .option('--key <key>', 'ordering key: one job per key at a time, in order (jobs without their own key)')
    .option('--json', 'print the ids as JSON ({"queue","ids"})')
    .addHelpText(
      'after',
      `
Examples:
  $ es queue enqueue emails '{"type":"welcome","data":{"to":"a@example.com"}}'
  $ es queue enqueue emails '{"type":"welcome","data":{},"id":"0193f0c2-7a61-7c5e-8d1b-2f0e4b1c9a10"}'
  $ es queue enqueue reports '{"type":"nightly","data":{}}' --delay 60000
  $ jq -c '.[]' jobs.json | es queue enqueue emails --key customer-42

An id makes enqueueing idempotent: a job whose id is still waiting, in flight or dead is not added
again. Data is validated against the type's schema when the config maps the type.`,
    )
    .action(
      async (
        name: string,
        job: string | undefined,
        opts: JsonFlag & { delay?: string; key?: string },
        cmd: Command,
      ) => {
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const { parseNonNegativeInt } = await import('../parse.js');
        const delay = opts.delay === undefined ? undefined : parseNonNegativeInt(opts.delay, '--delay');
        const { InvalidInputError } = await import('../../errors.js');
        const enqueueModule: typeof import('../../queues/enqueue.js') = await import(
          '../../queues/enqueue.js'
        );
        enqueueModule.assertQueueName(name);
        let lines: { text: string; where: string }[];
        if (job !== undefined) lines = [{ text: job, where: 'the job argument' }];
        else {
          if (process.stdin.isTTY)
            throw new InvalidInputError(
              'Give a job as JSON, or pipe NDJSON jobs (one per line) into es queue enqueue.',
              `es queue enqueue ${name} '{"type":"welcome","data":{}}'`,
            );
          const text = await readStdin();
          lines = text
            .split('\n')
            .map((t, i) => ({ text: t.trim(), where: `line ${i + 1} of stdin` }))
            .filter((l) => l.text !== '');
          if (lines.length === 0)
            throw new InvalidInputError('No jobs on stdin: give one JSON job per line.');
        }
        const jobs = lines.map((l) => toJob(l.text, l.where, { delay, key: opts.key }, InvalidInputError));
        const { withAdmin } = await import('../context.js');
        const { print } = await import('../output.js');
        await withAdmin(globals, { poolSize: 2 }, async (admin) => {
          const ids: string[] = [];
          // In chunks, so a very long stdin neither builds one huge statement nor holds one transaction.
          for (let i = 0; i < jobs.length; i += 1000)
            ids.push(...(await admin.enqueue(name, jobs.slice(i, i + 1000))).ids);
          if (opts.json) print(JSON.stringify({ queue: name, ids }));
          else if (ids.length === 1) print(`Enqueued ${ids[0]} to ${name}.`);
          else print(`Enqueued ${ids.length} jobs to ${name}.`);
        });
      },
    );

  queue
    .command('dead')
    .argument('<queue>', 'the queue')
    .description('dead letters: jobs that failed maxDeliveries times, with their last error')
    .option('--limit <n>', 'most dead letters to show (oldest first)', '100')
    .option('--json', 'one JSON object per dead letter and line, with the whole error history')
    .addHelpText(
      'after',
      `
Examples:
  $ es queue dead emails
  $ es queue dead emails --json | jq '.errors[-1].message'
  $ es queue redrive emails --all           put them back once the cause is fixed`,
    )
    .action(async (name: string, opts: JsonFlag & { limit?: string }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositiveInt } = await import('../parse.js');
      const limit = parsePositiveInt(opts.limit ?? '100', '--limit');
      const { withAdmin } = await import('../context.js');
      const { print, table } = await import('../output.js');
      await withAdmin(globals, { poolSize: 2 }, async (admin) => {
        const dead = (await admin.deadLetters(name, { limit })).items;
        if (opts.json) {
          for (const d of dead) print(JSON.stringify(d));
          return;
        }
        if (dead.length === 0) {
          print(`Queue ${name} has no dead letters.`);
          return;
        }
        print(
          table(
            ['ID', 'TYPE', 'KEY', 'DELIVERIES', 'DEAD AT', 'LAST ERROR'],
            dead.map((d) => [
              d.id,
              d.type,
              d.key ?? '',
              String(d.deliveries),
              d.deadAt.toISOString(),
              oneLine(d.errors.at(-1)?.message ?? ''),
            ]),
          ),
        );
      });
    });

  queue
    .command('redrive')
    .argument('<queue>', 'the queue')
    .argument('[ids...]', 'dead letter ids (see es queue dead)')
    .description('put dead letters back on their queue, ready now (their error history kept)')
    .option('--all', 'every dead letter of the queue')
    .option('--json', 'print the ids put back as JSON ({"queue","ids"})')
    .addHelpText(
      'after',
      `
Examples:
  $ es queue redrive emails 0193f0c2-7a61-7c5e-8d1b-2f0e4b1c9a10
  $ es queue redrive emails --all

Exit 8 when none of the ids is a dead letter of the queue.`,
    )
    .action(async (name: string, ids: string[], opts: JsonFlag & { all?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { InvalidInputError } = await import('../../errors.js');
      if (opts.all && ids.length > 0) throw new InvalidInputError('Give ids or --all, not both.');
      if (!opts.all && ids.length === 0)
        throw new InvalidInputError(
          'Give the dead letter ids to redrive, or --all.',
          `List them with: es queue dead ${name}`,
        );
      const { withAdmin } = await import('../context.js');
      const { DeadLettersNotFoundError } = await import('../../admin/queueActions.js');
      const { print, warn } = await import('../output.js');
      await withAdmin(globals, { poolSize: 2 }, async (admin) => {
        let r: import('../../admin/queueActions.js').RedriveResult;
        let none: InstanceType<typeof DeadLettersNotFoundError> | undefined;
        try {
          r = await admin.redrive(name, opts.all ? { all: true } : { ids });
        } catch (err) {
          if (!(err instanceof DeadLettersNotFoundError)) throw err;
          none = err;
          r = err.result;
        }
        if (opts.json) print(JSON.stringify({ queue: name, ids: r.ids }));
        else print(`Redrove ${r.ids.length} dead letter(s) to ${name}.`);
        if (r.missing.length > 0)
          warn(`es queue redrive: not dead letters of ${name}: ${r.missing.join(', ')}`);
        if (none) throw none;
      });
    });

  queue
    .command('purge')
    .argument('<queue>', 'the queue')
    .description(
      "delete a queue's jobs (waiting, delayed and in flight), or with --dead-letters its dead letters",
    )
    .option('--dead-letters', 'delete the dead letters instead of the jobs')
    .option('-y, --yes', 'do not ask for confirmation (required when stdin is not a terminal)')
    .option('--json', 'print {"queue","deleted"}')
    .addHelpText(
      'after',
      `
Examples:
  $ es queue purge emails                  asks first
  $ es queue purge emails --dead-letters --yes

A handler still running on a purged job finishes, but its ack finds nothing. Cannot be undone.`,
    )
    .action(async (name: string, opts: JsonFlag & { deadLetters?: boolean; yes?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { InvalidInputError } = await import('../../errors.js');
      const enqueueModule: typeof import('../../queues/enqueue.js') = await import('../../queues/enqueue.js');
      enqueueModule.assertQueueName(name);
      const what = opts.deadLetters ? `the dead letters of queue ${name}` : `every job of queue ${name}`;
      if (!opts.yes) {
        if (!process.stdin.isTTY)
          throw new InvalidInputError(
            `es queue purge deletes ${what}: confirm with --yes (stdin is not a terminal to ask on).`,
          );
        const { createInterface } = await import('node:readline/promises');
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await rl.question(
          `Delete ${what}? This cannot be undone. Type the queue name to confirm: `,
        );
        rl.close();
        if (answer.trim() !== name) throw new InvalidInputError('Not confirmed: nothing was deleted.');
      }
      const { withAdmin } = await import('../context.js');
      const { print } = await import('../output.js');
      await withAdmin(globals, { poolSize: 2 }, async (admin) => {
        const { deleted } = await admin.purgeQueue(name, {
          deadLetters: opts.deadLetters ?? false,
          confirm: name,
        });
        if (opts.json) print(JSON.stringify({ queue: name, deleted }));
        else print(`Deleted ${deleted} ${opts.deadLetters ? 'dead letter(s)' : 'job(s)'} of ${name}.`);
      });
    });
}

function age(seconds: number): string {
  if (seconds <= 0) return '-';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${Math.floor(seconds % 60)}s`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86_400)}d${Math.floor((seconds % 86_400) / 3600)}h`;
}

function rate(perMinute: number): string {
  return perMinute === 0 ? '0' : perMinute < 10 ? perMinute.toFixed(1) : String(Math.round(perMinute));
}

function oneLine(s: string): string {
  const line = s.replace(/\s+/g, ' ');
  return line.length > 60 ? `${line.slice(0, 57)}...` : line;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

type JobInput = import('../../queues/enqueue.js').JobToEnqueue;

function toJob(
  text: string,
  where: string,
  defaults: { delay: number | undefined; key: string | undefined },
  InvalidInputError: typeof import('../../errors.js').InvalidInputError,
): JobInput {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(
      `${where} is not valid JSON: ${(err as Error).message}`,
      'A job is {"type": "...", "data": {...}} with optional "metadata", "id", "key" and "delay".',
    );
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new InvalidInputError(`${where}: a job is a JSON object {"type", "data", ...}.`);
  const { type, data, metadata, id, key, delay, ...rest } = raw as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0)
    throw new InvalidInputError(
      `${where}: unknown key(s) ${unknown.map((k) => `"${k}"`).join(', ')}; a job has type, data, metadata, id, key, delay.`,
    );
  if (data === undefined) throw new InvalidInputError(`${where}: the job has no "data" (use {} for none).`);
  const k = key ?? defaults.key;
  const d = delay ?? defaults.delay;
  return {
    message: { type, data, ...(metadata !== undefined ? { metadata } : {}) } as JobInput['message'],
    ...(id !== undefined ? { id: id as string } : {}),
    ...(k !== undefined ? { key: k as string } : {}),
    ...(d !== undefined ? { delay: d as number } : {}),
  };
}
