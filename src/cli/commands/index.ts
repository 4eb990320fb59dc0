import type { Command } from 'commander';

/** A command as `es --help` lists it, and the module that declares it, loaded only when it runs. */
export interface CommandEntry {
  name: string;
  /** The help line's term as commander prints it: name, `[options]` when it has any, arguments. */
  usage: string;
  /** The command's description (the same text its module gives `.description()`). */
  summary: string;
  /** Import the command's module and return its register function (flags, help, action). */
  load: () => Promise<(program: Command) => void>;
}

const lazy = (usage: string, summary: string, load: CommandEntry['load']): CommandEntry => ({
  name: usage.split(' ')[0]!,
  usage,
  summary,
  load,
});

/**
 * Every command, in help order: one line each. `es --help` imports none of these modules, and a
 * command imports only its own (test/cli/commandRegistry.test.ts checks usage and summary against
 * the module, and what `es --help` and `es tail` load). Command modules import the library inside
 * their action.
 */
// biome-ignore format: one line per command
export const commands: CommandEntry[] = [
  lazy('init [options]', 'create beckett.config.ts and an example handler in the working directory', async () => (await import('./init.js')).registerInit),
  lazy('migrate [options]', 'create or upgrade beckett tables in the schema (safe to run concurrently and repeatedly)', async () => (await import('./migrate.js')).registerMigrate),
  lazy('dump-migrations [options] [file]', 'write every migration as one SQL script, for psql or your own migration tool', async () => (await import('./dumpMigrations.js')).registerDumpMigrations),
  lazy('append [options] <stream> [type] [data]', 'append a message to a stream (or many, as NDJSON from stdin)', async () => (await import('./append.js')).registerAppend),
  lazy('read [options] [stream]', 'print the messages of a stream, or of the whole log matching types and tags, in order', async () => (await import('./read.js')).registerRead),
  lazy('tail [options] <target>', 'print messages of a stream or category as they are committed', async () => (await import('./tail.js')).registerTail),
  lazy('worker [options]', 'run a subscription group (handlers in order per stream, with checkpoints and retries) and/or job queues', async () => (await import('./worker.js')).registerWorker),
  lazy('demo [options]', 'see it work: append orders and run the inventory-allocation worker, no config needed', async () => (await import('./demo.js')).registerDemo),
  lazy('subscriptions', 'list subscriptions with their status and lag; pause, resume, reset or forget one', async () => (await import('./subscriptions.js')).registerSubscriptions),
  lazy('lag [options]', 'live view of subscription lag, throughput, retries, workers, blocking transactions and queues', async () => (await import('./lag.js')).registerLag),
  lazy('checkpoints [options]', 'list checkpoints that fail, wait for a retry or have work waiting', async () => (await import('./checkpoints.js')).registerCheckpoints),
  lazy('retry [options] [ids...]', 'retry failing checkpoints now (a fresh round of attempts)', async () => (await import('./retry.js')).registerRetry),
  lazy('skip [options] <ids...>', 'move failing checkpoints past the message that fails', async () => (await import('./skip.js')).registerSkip),
  lazy('replay [options]', 'handle a range of messages again: move the matching checkpoints back', async () => (await import('./replay.js')).registerReplay),
  lazy('retention', 'delete old messages by the retention policies in the config', async () => (await import('./retention.js')).registerRetention),
  lazy('schedule', 'list or cancel scheduled messages; show the next occurrences of recurring ones', async () => (await import('./schedule.js')).registerSchedule),
  lazy('queue', 'job queues: depth, peek, enqueue, dead letters, redrive, purge', async () => (await import('./queue.js')).registerQueue),
  lazy('health [options]', 'check subscription groups (live workers, no failed checkpoints, lag under a limit) and queues (no dead letters)', async () => (await import('./health.js')).registerHealth),
  lazy('dashboard [options]', 'serve the web dashboard: browse messages, watch lag, retry and skip failed checkpoints', async () => (await import('./dashboard.js')).registerDashboard),
  lazy('completion <shell>', 'print a shell completion script for es and beckett (commands and options)', async () => (await import('./completion.js')).registerCompletion),
  lazy('db', 'the embedded PostgreSQL used when no database URL is given; repair a restored database', async () => (await import('./db.js')).registerDb),
];
