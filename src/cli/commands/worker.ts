import type { Command } from 'commander';
import { InvalidInputError } from '../../errors.js';
import { parseDuration } from '../../retention/resolveRetention.js';
import { quoteValue } from '../../validation/quoteValue.js';
import type { GlobalOptions } from '../context.js';
import { parseNonNegativeInt } from '../parse.js';

interface WorkerFlags {
  group?: string;
  queue?: string[];
  concurrency?: string;
  processes?: string;
  migrate?: boolean;
  leaseMs?: string;
  drainTimeout?: string;
  httpPort?: string;
  httpHost?: string;
  dashboard?: boolean;
  dashboardReadOnly?: boolean;
  exitWhenCaughtUp?: boolean;
  once?: boolean;
  logFormat?: string;
  logLevel?: string;
  verbose?: boolean;
  summaryInterval?: string;
}

/** Set by the supervisor on the processes it starts. */
const CHILD_ENV = 'BECKETT_WORKER_ID';

/** How often --exit-when-caught-up looks at the group's lag. */
const CAUGHT_UP_POLL_MS = 250;

/** How long after --drain-timeout the command stops at once if the drain has still not ended. */
const DRAIN_BACKSTOP_MS = 5000;

/**
 * Settings for every session of the worker's pool. A transaction left idle (a handler's own, or one
 * abandoned at its timeout) holds a transaction id that stalls every gap-safe reader of the cluster:
 * the server ends it once it is idle for longer than any handler of the group may run. (No session
 * statement_timeout: `--migrate` runs on this pool and may build indexes for longer; handler
 * transactions set their own.)
 */
function workerSessionSettings(
  config: import('../../config/types.js').ResolvedConfig,
  group: string | undefined,
): Record<string, number> {
  if (group === undefined) return {};
  const subs = [...(config.groups.get(group)?.subscriptions.values() ?? [])];
  if (subs.length === 0) return {};
  return { idle_in_transaction_session_timeout: Math.max(...subs.map((s) => s.handlerTimeoutMs)) + 1000 };
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description(
      'run a subscription group (handlers in order per stream, with checkpoints and retries) and/or job queues',
    )
    .option('-g, --group <name>', 'the subscription group to run (from the config), with its queues')
    .option(
      '-q, --queue <name>',
      'a queue to serve (from the config; repeat for several); without --group, only queues',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--concurrency <n>', 'checkpoint consumers per process (default: the group concurrency, 4)')
    .option('--processes <n>', 'worker processes under one supervisor that restarts crashed ones', '1')
    .option('--migrate', 'apply pending migrations first')
    .option(
      '--lease-ms <ms>',
      'how long a crashed (or blocked) worker holds a stream before others take it over',
      '30000',
    )
    .option(
      '--drain-timeout <ms>',
      'on SIGINT/SIGTERM, wait this long for handlers to finish, then abandon them',
      '30000',
    )
    .option('--http-port <port>', 'serve /metrics (Prometheus), /healthz and /readyz on this port')
    .option(
      '--http-host <address>',
      'address for --http-port (default 127.0.0.1, this machine only; 0.0.0.0 exposes it to the network)',
    )
    .option('--dashboard', 'also serve the web dashboard at /dashboard/ of --http-port')
    .option('--dashboard-read-only', 'with --dashboard: hide and refuse every action')
    .option(
      '--exit-when-caught-up',
      'drain and exit once every subscription of the group has handled every message (scripts, CI)',
    )
    .option('--once', 'the same as --exit-when-caught-up')
    .option(
      '--log-format <format>',
      'pretty (one line each, with the time) or json (one object per line)',
      'pretty',
    )
    .option(
      '--log-level <level>',
      'error (failures only), warn (failures, warnings, start/stop and a periodic summary), info (and one line per handled message), debug (and one per claim)',
      'warn',
    )
    .option('-v, --verbose', 'the same as --log-level info: a line per handled message')
    .option(
      '--summary-interval <duration>',
      "how often the summary is said (e.g. '10s', '1m'; 0 turns it off)",
      '10s',
    )
    .addHelpText(
      'after',
      `
Examples:
  $ es worker --group InventoryAllocation
  $ es worker --group InventoryAllocation --concurrency 8 --processes 4
  $ es worker --config beckett.config.example.ts --group InventoryAllocation --migrate
  $ es worker --group Payments --http-port 9464      metrics and health probes on 127.0.0.1
  $ es worker --group Payments --http-port 9464 --http-host 0.0.0.0   reachable from other hosts:
                                                    only on a trusted network (no authentication)
  $ es worker --group Payments --http-port 9464 --dashboard   the dashboard at
                                                    http://127.0.0.1:9464/dashboard/ (see es dashboard --help)
  $ es worker --group InventoryAllocation --once     handle what is there, then exit (0, or 1 if
                                                     checkpoints failed)
  $ es worker --queue emails                         serve a job queue (repeat --queue for more)
  $ es worker --group Payments --queue emails        a group (and its config queues) plus a queue
  $ OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 es worker --group Payments   export traces and metrics
  $ es worker --group InventoryAllocation --verbose --log-format json 2> worker.ndjson
  $ es --read-url postgres://app@replica:5432/app worker --group Projections   catch-up from a replica

With --read-url (BECKETT_READ_URL, database.readUrl) a checkpoint more than a batch behind reads its
messages from the streaming replica; a batch the replica has not replayed yet is read from the
primary. The reader, claims, checkpoints and live batches stay on the primary; --dashboard's
message pages read from the replica. The read URL must be a hot standby of the primary (or the
primary itself): anything else (another cluster, a restored copy, a promoted standby) is refused
at start (exit 3).

Logs go to stderr (nothing is printed on stdout). By default the worker is quiet: it says when it
starts and stops, every failure (subscription, stream, attempt, error), warnings, and every
--summary-interval a summary when anything happened or work is waiting ("handled 120, failed 0 in
the last 10s (12.0/s); lag 35 messages"). --verbose adds a line per handled message (its
subscription, stream@position, type, global position and duration). With --log-format json each
line is an object with time, level, event (started, handled, claim, failed, warning, summary,
stopped, ...), msg and the event's fields.

Every worker also delivers scheduled messages and the config's recurring messages (each once).

Handler timeout: a handler call (one message, or one batch) may run for the subscription's
handlerTimeout (config, per subscription or per group; default 30s). Then ctx.signal aborts, the
attempt counts as failed and is retried with backoff, the stream's lease is released, and a
transactional handler's transaction is ended on the server (its writes roll back). Worker sessions
end a transaction left idle for longer than the group's longest handlerTimeout.

A worker that cannot renew a lease in time (a handler blocked the event loop, or the database was
away, for longer than --lease-ms) handles no further message of that stream: another worker may have
taken it over.

Run as many workers as you like, on any number of hosts: one global reader per group is active at a
time, each stream is handled by one consumer at a time, in order. A failing handler retries with
backoff and, after maxRetries, marks only its stream failed (see es checkpoints / es retry).
The first SIGINT or SIGTERM drains (stop claiming, finish handlers in flight, release leases) and
exits 0; handlers still running after --drain-timeout are abandoned and their leases released
(exit 1). A second signal stops at once (exit 1; leases expire after --lease-ms).
Queues: a job is delivered to one worker at a time and stays invisible to the others until acked
or its visibilityTimeout passes (extended while the handler runs). A handler that returns acks
(deletes) the job; one that throws, or runs past the queue's handlerTimeout (default 30s; then
ctx.signal aborts), retries it after backoff; after maxDeliveries it moves to the dead letters
(es queue dead / es queue redrive). A worker that dies gives its jobs back at once: the supervisor
releases a crashed child's deliveries, and any queue worker releases those of a worker whose
heartbeat is 30 s old (each still counts as a delivery). Jobs with the same key run one at a time,
in order.
With --once, queues count as done when no job is ready, in flight or waiting for a retry (jobs
delayed by their enqueue are not waited for).
Exit 8 for an unknown group or queue, 3 without a config, 10 when the schema is not migrated, 6 when a
newer beckett migrated it, 12 when the database was restored into another cluster and its
transaction ids need es db rebase-xids.`,
    )
    .action(async (opts: WorkerFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositiveInt } = await import('../parse.js');
      const { setExitCode } = await import('../main.js');
      if (opts.group === undefined && (opts.queue ?? []).length === 0)
        throw new InvalidInputError(
          'Give the group to run (--group NAME) or the queues to serve (--queue NAME).',
          'es worker --group InventoryAllocation, or es worker --queue emails',
        );
      const processes = parsePositiveInt(opts.processes ?? '1', '--processes');
      const concurrency =
        opts.concurrency === undefined ? undefined : parsePositiveInt(opts.concurrency, '--concurrency');
      const leaseMs = parsePositiveInt(opts.leaseMs ?? '30000', '--lease-ms');
      const drainTimeoutMs = parsePositiveInt(opts.drainTimeout ?? '30000', '--drain-timeout');
      if (opts.httpPort !== undefined) parsePort(opts.httpPort);
      if ((opts.dashboard || opts.dashboardReadOnly) && opts.httpPort === undefined) {
        const { InvalidInputError } = await import('../../errors.js');
        throw new InvalidInputError(
          '--dashboard is served on --http-port: give a port too.',
          'es worker --group G --http-port 9464 --dashboard',
        );
      }
      const { parseLogFormat, parseLogLevel } = await import('../workerLog.js');
      parseLogFormat(opts.logFormat ?? 'pretty');
      parseLogLevel(opts.logLevel ?? 'warn');
      summaryIntervalMs(opts.summaryInterval);
      const childId = process.env[CHILD_ENV];
      const supervise = processes > 1 && !childId;
      if ((opts.exitWhenCaughtUp || opts.once) && processes > 1) {
        const { InvalidInputError } = await import('../../errors.js');
        throw new InvalidInputError('--exit-when-caught-up runs one process: leave out --processes');
      }
      const clean = await runWorkerCommand(globals, opts, {
        supervise,
        processes,
        concurrency,
        leaseMs,
        drainTimeoutMs,
        childId,
      });
      if (!clean) setExitCode(cmd, 1);
    });
}

function parsePort(value: string): number {
  const port = parseNonNegativeInt(value, '--http-port');
  if (port > 65535)
    throw new InvalidInputError(
      `--http-port must be 0-65535 (0 picks a free port), got ${quoteValue(value)}.`,
    );
  return port;
}

/** --summary-interval in ms (0: no summary). */
function summaryIntervalMs(value: string | undefined): number {
  if (value === undefined) return 10_000;
  if (value === '0') return 0;
  const ms = parseDuration(value);
  if (ms === undefined || ms < 100)
    throw new InvalidInputError(
      `--summary-interval must be a duration such as '10s' or '1m' (or 0 for none), got ${quoteValue(value)}.`,
    );
  return ms;
}

/**
 * The config with the group's handlers wrapped to log a line per handled message (--verbose).
 * Handlers only: what a subscription receives (its definition and fingerprint) is unchanged.
 */
function withMessageLog(
  config: import('../../config/types.js').ResolvedConfig,
  groupName: string,
  log: import('../workerLog.js').WorkerLog,
): import('../../config/types.js').ResolvedConfig {
  const group = config.groups.get(groupName);
  if (!group) return config;
  type Sub = import('../../config/types.js').ResolvedSubscription;
  type Msg = Parameters<NonNullable<Sub['handler']>>[0];
  const said = (sub: Sub, messages: Msg[], ms: number) => {
    for (const m of messages)
      log.write({
        level: 'info',
        event: 'handled',
        msg: `${sub.name} ${m.streamName}@${m.streamPosition} ${m.type} (global ${m.globalPosition}) ${ms.toFixed(1)} ms`,
        group: groupName,
        subscription: sub.name,
        stream: m.streamName,
        streamPosition: m.streamPosition,
        globalPosition: m.globalPosition,
        type: m.type,
        id: m.id,
        ms: Math.round(ms * 10) / 10,
      });
  };
  const subscriptions = new Map<string, Sub>();
  for (const [name, sub] of group.subscriptions) {
    const { handler, batchHandler } = sub;
    subscriptions.set(name, {
      ...sub,
      handler: handler
        ? async (message, ctx) => {
            const t = performance.now();
            await handler(message, ctx);
            said(sub, [message], performance.now() - t);
          }
        : undefined,
      batchHandler: batchHandler
        ? async (messages, ctx) => {
            const t = performance.now();
            await batchHandler(messages, ctx);
            said(sub, messages, (performance.now() - t) / Math.max(1, messages.length));
          }
        : undefined,
    });
  }
  return { ...config, groups: new Map(config.groups).set(groupName, { ...group, subscriptions }) };
}

interface RunOptions {
  supervise: boolean;
  processes: number;
  concurrency: number | undefined;
  leaseMs: number;
  drainTimeoutMs: number;
  childId: string | undefined;
}

/**
 * Runs the worker (or the supervisor) until a signal. Not withContext: a forced stop must be able
 * to return while handlers still hold connections, and closing the pool would wait for them.
 */
async function runWorkerCommand(
  globals: GlobalOptions,
  flags: WorkerFlags,
  run: RunOptions,
): Promise<boolean> {
  const { openContext, explainDatabaseError } = await import('../context.js');
  const { createWorkerLog, parseLogFormat, parseLogLevel, summaryRecord } = await import('../workerLog.js');
  const log = createWorkerLog({
    format: parseLogFormat(flags.logFormat ?? 'pretty'),
    level:
      flags.verbose && (flags.logLevel ?? 'warn') === 'warn'
        ? 'info'
        : parseLogLevel(flags.logLevel ?? 'warn'),
  });
  /** A line of the worker's log: lifecycle and warnings at warn, failures at error. */
  const warn = (msg: string, event = 'notice', level: 'warn' | 'error' = 'warn', fields = {}) =>
    log.write({ level, event, msg, ...fields });
  const { findGroup } = await import('../../subscriptions/workerRuntime.js');
  const { assertSchemaCurrent, migrate } = await import('../../db/migrate.js');
  const ctx = await openContext(globals, {
    config: true,
    // The config's database.poolSize, or enough for the group's concurrency (see DatabaseConfig).
    poolSize: (config) =>
      config.database.poolSize ??
      (run.concurrency ??
        (flags.group === undefined ? undefined : config.groups.get(flags.group)?.concurrency) ??
        4) *
        2 +
        4,
    settings: (config) => workerSessionSettings(config, flags.group),
  });
  let forced = false;
  // Starts the drain as the first signal does (--exit-when-caught-up).
  let drainNow: (() => void) | undefined;
  try {
    const group = flags.group === undefined ? undefined : findGroup(ctx.config, flags.group);
    const concurrency = run.concurrency ?? group?.concurrency ?? 4;
    const { findQueue } = await import('../../queues/queueWorker.js');
    // The group's queues and those given with --queue, each once.
    const queueNames = [...new Set([...(group?.queues ?? []), ...(flags.queue ?? [])])];
    for (const q of queueNames) findQueue(ctx.config, q);
    const runsSubscriptions = group !== undefined && group.subscriptions.size > 0;
    if (flags.migrate && !run.childId)
      await migrate(
        ctx.pool,
        ctx.schema,
        undefined,
        ctx.config.migrations ? { appFolder: ctx.config.migrations.folder } : {},
      );
    else await assertSchemaCurrent(ctx.pool, ctx.schema);
    // A restored database whose ids are ahead: say so once, before any process starts.
    await (await import('../context.js')).assertLogReadable(ctx);
    const stopOnSignals = (drain: () => Promise<boolean>, force: () => void) =>
      new Promise<boolean>((resolve) => {
        let signals = 0;
        let timer: NodeJS.Timeout | undefined;
        const onSignal = () => {
          signals++;
          if (signals === 1) {
            // A supervisor says it for its children.
            if (!run.childId) warn(`es worker: draining (send the signal again to stop at once)`);
            // The worker abandons handlers at the drain timeout by itself; this is the backstop.
            timer = setTimeout(() => {
              warn(`es worker: drain timeout (${run.drainTimeoutMs} ms): stopping at once`);
              onSignal();
            }, run.drainTimeoutMs + DRAIN_BACKSTOP_MS);
            timer.unref();
            void drain().then((ok) => {
              clearTimeout(timer);
              resolve(ok && !forced);
            });
          } else if (!forced) {
            forced = true;
            force();
            resolve(false);
          }
        };
        // Never a second signal's forced stop: only a drain not started yet.
        drainNow = () => {
          if (signals === 0) onSignal();
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        // A supervised child whose supervisor died drains rather than running unsupervised.
        if (run.childId) process.on('disconnect', onSignal);
      });

    if (run.supervise) return await supervise(ctx, flags, run, concurrency, stopOnSignals);

    const { createWorker } = await import('../../subscriptions/workerRuntime.js');
    // While the database is away every loop reports the same error: say it once per few seconds.
    const lastSaid = new Map<string, number>();
    const sayError = (err: Error, where: string) => {
      const line = `${where}: ${err.message}`;
      const now = Date.now();
      if ((lastSaid.get(line) ?? 0) > now - 5000) return;
      lastSaid.set(line, now);
      warn(`es worker: ${line}`, 'error', 'error', { where, error: err.message });
    };
    const { startWorkerExtras } = await import('../../host/workerExtras.js');
    const extras = await startWorkerExtras({
      pool: ctx.pool,
      ...(ctx.readPool !== ctx.pool ? { readPool: ctx.readPool } : {}),
      store: ctx.store,
      config: ctx.config,
      ...(group ? { group: group.name } : {}),
      // Under a supervisor, the supervisor serves the port.
      ...(flags.httpPort !== undefined && !run.childId
        ? {
            httpPort: parsePort(flags.httpPort),
            ...(flags.httpHost ? { httpHost: flags.httpHost } : {}),
            ...(flags.dashboard || flags.dashboardReadOnly
              ? { dashboard: { readOnly: flags.dashboardReadOnly ?? false } }
              : {}),
          }
        : {}),
      onError: sayError,
    });
    if (extras.httpPort !== undefined)
      warn(
        `es worker: serving /metrics, /healthz and /readyz${flags.dashboard || flags.dashboardReadOnly ? ' and /dashboard/' : ''} on port ${extras.httpPort}`,
      );
    const window = { handled: 0, failed: 0, since: Date.now() };
    const { createQueueWorker } = await import('../../queues/queueWorker.js');
    const { defaultWorkerId } = await import('../../subscriptions/workerRuntime.js');
    // One id (and one workers row) for the process: its subscription consumers and its queues.
    const workerId = run.childId ?? defaultWorkerId();
    const queueWorker =
      queueNames.length === 0
        ? undefined
        : createQueueWorker({
            pool: ctx.pool,
            config: ctx.config,
            schema: ctx.schema,
            queues: queueNames,
            drainTimeoutMs: run.drainTimeoutMs,
            workerId,
            ...(group ? { group: group.name } : {}),
            onError: sayError,
            onProcessed: (e) => {
              if (e.error) {
                window.failed++;
                warn(
                  `es worker: queue ${e.queue} job ${e.id} delivery ${e.deliveries} ${e.outcome}: ${e.error.message}`,
                  'failed',
                  'error',
                  {
                    queue: e.queue,
                    job: e.id,
                    deliveries: e.deliveries,
                    outcome: e.outcome,
                    error: e.error.message,
                  },
                );
              } else window.handled++;
            },
          });
    // Without subscriptions, a group-less worker that only serves queues: the scheduler and retention
    // services run in a worker of their own here.
    const serviceAbort = new AbortController();
    const services = runsSubscriptions ? [] : extras.services.map((service) => service(serviceAbort.signal));
    const worker = !runsSubscriptions
      ? undefined
      : createWorker({
          services: extras.services,
          pool: ctx.pool,
          // --read-url / database.readUrl: catch-up batches read from the replica.
          ...(ctx.readPool !== ctx.pool ? { readPool: ctx.readPool } : {}),
          config: log.enabled('info') ? withMessageLog(ctx.config, group!.name, log) : ctx.config,
          schema: ctx.schema,
          group: group!.name,
          concurrency,
          leaseMs: run.leaseMs,
          drainTimeoutMs: run.drainTimeoutMs,
          workerId,
          onError: sayError,
          onWarning: (message) => warn(`es worker: warning: ${message}`, 'warning'),
          onProcessed: (e) => {
            window.handled += e.handled;
            const fields = {
              group: e.group,
              subscription: e.subscription,
              stream: e.stream,
              position: e.position,
              status: e.status,
              attempt: e.attempt,
              handled: e.handled,
            };
            if (e.error) {
              window.failed++;
              warn(
                `es worker: ${e.subscription} ${e.stream} attempt ${e.attempt} ${e.status}: ${e.error.message}`,
                'failed',
                'error',
                { ...fields, error: e.error.message, errorType: e.error.name },
              );
            } else if (log.enabled('debug'))
              log.write({
                level: 'debug',
                event: 'claim',
                msg: `${e.subscription} ${e.stream}: ${e.handled} handled, at ${e.position} (${e.status})`,
                ...fields,
              });
          },
        });
    try {
      await worker?.start();
      await queueWorker?.start();
    } catch (err) {
      await worker?.stop();
      await queueWorker?.stop();
      serviceAbort.abort();
      await Promise.allSettled(services);
      await extras.close();
      throw err;
    }
    extras.setReady(true);
    const name = worker?.id ?? queueWorker!.id;
    const parts = [
      ...(group && worker
        ? [
            `group ${group.name} (${concurrency} consumers, subscriptions: ${[...group.subscriptions.keys()].join(', ')})`,
          ]
        : []),
      ...(queueNames.length > 0 ? [`queues ${queueNames.join(', ')}`] : []),
    ];
    // Signals are handled from here on, before the line that says it runs: a SIGTERM sent on that
    // line drains (the imports below take time, and the default action would kill the process).
    const stopping = stopOnSignals(
      async () => {
        extras.setReady(false);
        await Promise.all([worker?.stop(), queueWorker?.stop()]);
        serviceAbort.abort();
        await Promise.allSettled(services);
        await extras.close();
        const abandoned = (worker?.stats().abandoned ?? 0) + (queueWorker?.stats().abandoned ?? 0);
        if (abandoned > 0)
          warn(`es worker: drain timeout (${run.drainTimeoutMs} ms): ${abandoned} handler(s) abandoned`);
        return abandoned === 0;
      },
      () => undefined,
    );
    warn(`es worker: ${name} running ${parts.join(' and ')}`, 'started', 'warn', {
      worker: name,
      ...(group ? { group: group.name } : {}),
      ...(queueNames.length > 0 ? { queues: queueNames } : {}),
      concurrency,
    });
    // Every --summary-interval: what was handled and failed since the last one, and the lag left.
    const everyMs = summaryIntervalMs(flags.summaryInterval);
    let summaryTimer: NodeJS.Timeout | undefined;
    if (everyMs > 0) {
      const { lagSnapshot } = await import('../../operations/lagSnapshot.js');
      const { subscriptionFilters } = await import('../../operations/subscriptionFilters.js');
      const summarise = async () => {
        const seconds = (Date.now() - window.since) / 1000;
        const counts = { handled: window.handled, failed: window.failed };
        window.handled = 0;
        window.failed = 0;
        window.since = Date.now();
        let lag: number | undefined;
        try {
          if (!group) throw new Error('no group');
          const snap = await lagSnapshot(ctx.pool, ctx.store.sqlContext, {
            subscriptions: subscriptionFilters(ctx.config),
            group: group.name,
          });
          lag = (snap.groups.find((g) => g.name === group.name)?.subscriptions ?? []).reduce(
            (sum, sub) => sum + sub.lag,
            0,
          );
        } catch {
          lag = undefined;
        }
        const record = summaryRecord(group?.name ?? queueNames.join(', '), { ...counts, lag, seconds });
        if (summaryTimer === undefined) return;
        if (record) log.write({ ...record, msg: `es worker: ${record.msg}` });
        summaryTimer = setTimeout(() => void summarise(), everyMs);
        summaryTimer.unref();
      };
      summaryTimer = setTimeout(() => void summarise(), everyMs);
      summaryTimer.unref();
    }
    let failedLeft = 0;
    if (flags.exitWhenCaughtUp || flags.once) {
      const { groupCaughtUp } = await import('../../operations/caughtUp.js');
      const { listQueues } = await import('../../queues/queueOperations.js');
      const poll = async (): Promise<void> => {
        if (!drainNow) return;
        try {
          const state =
            group && worker
              ? await groupCaughtUp(ctx.pool, ctx.store.sqlContext, ctx.config, group.name)
              : { done: true, failed: 0 };
          const busy =
            queueNames.length === 0
              ? []
              : (await listQueues(ctx.pool, ctx.store.sqlContext, { include: queueNames })).filter(
                  (q) => queueNames.includes(q.queue) && q.ready + q.inFlight + q.retrying > 0,
                );
          if (state.done && busy.length === 0) {
            failedLeft = state.failed;
            warn(
              `es worker: ${[...(group && worker ? [`group ${group.name}`] : []), ...(queueNames.length > 0 ? [`queues ${queueNames.join(', ')}`] : [])].join(' and ')} caught up${state.failed > 0 ? ` except ${state.failed} failed checkpoint(s) (es checkpoints)` : ''}`,
            );
            drainNow();
            return;
          }
        } catch (err) {
          sayError(err instanceof Error ? err : new Error(String(err)), 'caught-up check');
        }
        setTimeout(() => void poll(), CAUGHT_UP_POLL_MS).unref();
      };
      setTimeout(() => void poll(), 0);
    }
    const clean = await stopping;
    drainNow = undefined;
    clearTimeout(summaryTimer);
    summaryTimer = undefined;
    if (clean) {
      const done = [
        ...(worker ? [`${worker.stats().processed} messages handled`] : []),
        ...(queueWorker ? [`${queueWorker.stats().completed} jobs completed`] : []),
      ];
      warn(`es worker: ${name} stopped (${done.join(', ')})`, 'stopped', 'warn', {
        worker: name,
        ...(worker ? { processed: worker.stats().processed } : {}),
        ...(queueWorker ? { completed: queueWorker.stats().completed } : {}),
      });
    }
    return clean && failedLeft === 0;
  } catch (err) {
    throw explainDatabaseError(err, ctx.schema, ctx.url);
  } finally {
    // After a forced stop, handlers may still hold connections: leave them to process exit.
    if (!forced) await ctx.close();
  }
}

async function supervise(
  ctx: Awaited<ReturnType<typeof import('../context.js').openContext>>,
  flags: WorkerFlags,
  run: RunOptions,
  concurrency: number,
  stopOnSignals: (drain: () => Promise<boolean>, force: () => void) => Promise<boolean>,
): Promise<boolean> {
  const { spawn } = await import('node:child_process');
  const { hostname } = await import('node:os');
  const { randomBytes } = await import('node:crypto');
  const { warn } = await import('../output.js');
  const { createSupervisor } = await import('../../subscriptions/supervisor.js');
  const { releaseWorkerLeases } = await import('../../subscriptions/claimCheckpoint.js');
  const { removeWorker } = await import('../../subscriptions/workersTable.js');
  const { releaseWorkerJobs } = await import('../../queues/queueJobsSql.js');
  const { queueNotifierFor } = await import('../../queues/queueWakeups.js');
  const { escapeIdentifier } = await import('../../db/identifier.js');
  const sqlCtx = { schema: ctx.schema, s: escapeIdentifier(ctx.schema), prepared: false };
  const runId = `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
  // The children run this same command line without --processes (they see the worker id instead)
  // and without --database-url: the URL, password included, goes through the environment, which
  // other users cannot read, rather than argv, which ps shows to everyone.
  const dropped = new Set(['--processes', '--database-url']);
  const args = process.argv
    .slice(1)
    .filter(
      (a, i, all) =>
        !dropped.has(a) && !dropped.has(all[i - 1] ?? '') && ![...dropped].some((d) => a.startsWith(`${d}=`)),
    );
  const supervisor = createSupervisor({
    processes: run.processes,
    workerId: (index, n) => `${runId}-p${index}.${n}`,
    spawn: (_index, workerId) =>
      spawn(process.execPath, [...process.execArgv, ...args], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        // Its own process group: a terminal's Ctrl-C reaches the supervisor only, which forwards it.
        detached: true,
        env: {
          ...process.env,
          [CHILD_ENV]: workerId,
          // The URL the supervisor uses (flag, environment, config or embedded), for the children.
          DATABASE_URL: ctx.url,
        },
      }),
    // The child is gone, so nothing can be in flight under its leases: hand them back now, and its
    // queue deliveries (each still counts as a delivery).
    onExit: async (workerId, code, signal) => {
      await releaseWorkerLeases(ctx.pool, sqlCtx, workerId);
      const released = await releaseWorkerJobs(
        ctx.pool,
        sqlCtx,
        workerId,
        `its worker process exited (${signal ?? `code ${code}`})`,
      );
      const notifier = queueNotifierFor(ctx.pool, sqlCtx);
      for (const queue of released.keys()) notifier.notify(queue);
      await removeWorker(ctx.pool, sqlCtx, workerId);
    },
    log: (line) => warn(`es worker: ${line}`),
  });
  const { startWorkerExtras } = await import('../../host/workerExtras.js');
  // The children deliver scheduled messages and export telemetry; the supervisor serves the probes
  // (database gauges only: handler counters live in the children).
  const extras = await startWorkerExtras({
    pool: ctx.pool,
    store: ctx.store,
    config: ctx.config,
    ...(flags.group ? { group: flags.group } : {}),
    scheduler: false,
    otlp: false,
    ...(flags.httpPort !== undefined
      ? {
          httpPort: parsePort(flags.httpPort),
          ...(flags.httpHost ? { httpHost: flags.httpHost } : {}),
          ...(flags.dashboard || flags.dashboardReadOnly
            ? { dashboard: { readOnly: flags.dashboardReadOnly ?? false } }
            : {}),
        }
      : {}),
  });
  if (extras.httpPort !== undefined)
    warn(
      `es worker: serving /metrics, /healthz and /readyz${flags.dashboard || flags.dashboardReadOnly ? ' and /dashboard/' : ''} on port ${extras.httpPort}`,
    );
  supervisor.start();
  extras.setReady(true);
  warn(
    `es worker: supervising ${run.processes} processes for ${[
      ...(flags.group ? [`group ${flags.group}`] : []),
      ...(flags.queue?.length ? [`queues ${flags.queue.join(', ')}`] : []),
    ].join(' and ')} (${concurrency} consumers each)`,
  );
  return stopOnSignals(
    () => {
      extras.setReady(false);
      return supervisor.stop().finally(() => extras.close());
    },
    () => {
      void extras.close();
      supervisor.force();
    },
  );
}
