import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface WorkerFlags {
  group: string;
  concurrency?: string;
  processes?: string;
  migrate?: boolean;
  leaseMs?: string;
  drainTimeout?: string;
  httpPort?: string;
}

/** Set by the supervisor on the processes it starts. */
const CHILD_ENV = 'BECKETT_WORKER_ID';

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('run a subscription group: handlers in order per stream, with checkpoints and retries')
    .requiredOption('-g, --group <name>', 'the subscription group to run (from the config)')
    .option('--concurrency <n>', 'checkpoint consumers per process (default: the group concurrency, 4)')
    .option('--processes <n>', 'worker processes under one supervisor that restarts crashed ones', '1')
    .option('--migrate', 'apply pending migrations first')
    .option('--lease-ms <ms>', 'how long a crashed worker holds a stream before others take it over', '30000')
    .option('--drain-timeout <ms>', 'on SIGINT/SIGTERM, wait this long for handlers to finish', '30000')
    .option('--http-port <port>', 'serve /metrics (Prometheus), /healthz and /readyz on this port')
    .addHelpText(
      'after',
      `
Examples:
  $ es worker --group InventoryAllocation
  $ es worker --group InventoryAllocation --concurrency 8 --processes 4
  $ es worker --config beckett.config.example.ts --group InventoryAllocation --migrate
  $ es worker --group Payments --http-port 9464      metrics and health probes
  $ OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 es worker --group Payments   export traces and metrics

Every worker also delivers scheduled messages and the config's recurring messages (each once).

Run as many workers as you like, on any number of hosts: one global reader per group is active at a
time, each stream is handled by one consumer at a time, in order. A failing handler retries with
backoff and, after maxRetries, marks only its stream failed (see es checkpoints / es retry).
The first SIGINT or SIGTERM drains (stop claiming, finish handlers in flight, release leases) and
exits 0; a second one, or --drain-timeout, stops at once (exit 1; leases expire after --lease-ms).
Exit 8 for an unknown group, 3 without a config, 10 when the schema is not migrated.`,
    )
    .action(async (opts: WorkerFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositiveInt } = await import('../parse.js');
      const { setExitCode } = await import('../main.js');
      const processes = parsePositiveInt(opts.processes ?? '1', '--processes');
      const concurrency =
        opts.concurrency === undefined ? undefined : parsePositiveInt(opts.concurrency, '--concurrency');
      const leaseMs = parsePositiveInt(opts.leaseMs ?? '30000', '--lease-ms');
      const drainTimeoutMs = parsePositiveInt(opts.drainTimeout ?? '30000', '--drain-timeout');
      const childId = process.env[CHILD_ENV];
      const supervise = processes > 1 && !childId;
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
  const { warn } = await import('../output.js');
  const { findGroup } = await import('../../subscriptions/workerRuntime.js');
  const { NotMigratedError } = await import('../../errors.js');
  const { migrate, migrationStatus } = await import('../../db/migrate.js');
  const ctx = await openContext(globals, {
    config: true,
    poolSize: Math.max(4, (run.concurrency ?? 4) * 2 + 4),
  });
  let forced = false;
  try {
    const group = findGroup(ctx.config, flags.group);
    const concurrency = run.concurrency ?? group.concurrency;
    if (flags.migrate && !run.childId) await migrate(ctx.pool, ctx.schema);
    else if ((await migrationStatus(ctx.pool, ctx.schema)).pending.length > 0)
      throw new NotMigratedError(ctx.schema);
    const stopOnSignals = (drain: () => Promise<boolean>, force: () => void) =>
      new Promise<boolean>((resolve) => {
        let signals = 0;
        let timer: NodeJS.Timeout | undefined;
        const onSignal = () => {
          signals++;
          if (signals === 1) {
            warn(`es worker: draining (send the signal again to stop at once)`);
            timer = setTimeout(() => {
              warn(`es worker: drain timeout (${run.drainTimeoutMs} ms): stopping at once`);
              onSignal();
            }, run.drainTimeoutMs);
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
      warn(`es worker: ${line}`);
    };
    const { startWorkerExtras } = await import('../../telemetry/workerExtras.js');
    const extras = await startWorkerExtras({
      pool: ctx.pool,
      store: ctx.store,
      config: ctx.config,
      group: group.name,
      // Under a supervisor, the supervisor serves the port.
      ...(flags.httpPort !== undefined && !run.childId
        ? { httpPort: (await import('../parse.js')).parseNonNegativeInt(flags.httpPort, '--http-port') }
        : {}),
      onError: sayError,
    });
    if (extras.httpPort !== undefined)
      warn(`es worker: serving /metrics, /healthz and /readyz on port ${extras.httpPort}`);
    const worker = createWorker({
      services: extras.services,
      pool: ctx.pool,
      config: ctx.config,
      schema: ctx.schema,
      group: group.name,
      concurrency,
      leaseMs: run.leaseMs,
      ...(run.childId ? { workerId: run.childId } : {}),
      onError: sayError,
      onWarning: (message) => warn(`es worker: warning: ${message}`),
      onProcessed: (e) => {
        if (e.error)
          warn(
            `es worker: ${e.subscription} ${e.stream} attempt ${e.attempt} ${e.status}: ${e.error.message}`,
          );
      },
    });
    await worker.start().catch(async (err) => {
      await extras.close();
      throw err;
    });
    extras.setReady(true);
    warn(
      `es worker: ${worker.id} running group ${group.name} (${concurrency} consumers, subscriptions: ${[
        ...group.subscriptions.keys(),
      ].join(', ')})`,
    );
    const clean = await stopOnSignals(
      () => {
        extras.setReady(false);
        return worker
          .stop()
          .then(() => extras.close())
          .then(() => true);
      },
      () => undefined,
    );
    if (clean) warn(`es worker: ${worker.id} stopped (${worker.stats().processed} messages handled)`);
    return clean;
  } catch (err) {
    throw explainDatabaseError(err, ctx.schema);
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
  const { escapeIdentifier } = await import('../../db/identifier.js');
  const sqlCtx = { schema: ctx.schema, s: escapeIdentifier(ctx.schema), prepared: false };
  const runId = `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
  // The children run this same command line without --processes (they see the worker id instead).
  const args = process.argv
    .slice(1)
    .filter((a, i, all) => a !== '--processes' && all[i - 1] !== '--processes');
  const supervisor = createSupervisor({
    processes: run.processes,
    workerId: (index, n) => `${runId}-p${index}.${n}`,
    spawn: (_index, workerId) =>
      spawn(process.execPath, [...process.execArgv, ...args.filter((a) => !a.startsWith('--processes='))], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        // Its own process group: a terminal's Ctrl-C reaches the supervisor only, which forwards it.
        detached: true,
        env: {
          ...process.env,
          [CHILD_ENV]: workerId,
          ...(ctx.source === 'embedded' ? { DATABASE_URL: ctx.url } : {}),
        },
      }),
    // The child is gone, so nothing can be in flight under its leases: hand them back now.
    onExit: async (workerId) => {
      await releaseWorkerLeases(ctx.pool, sqlCtx, workerId);
      await removeWorker(ctx.pool, sqlCtx, workerId);
    },
    log: (line) => warn(`es worker: ${line}`),
  });
  const { startWorkerExtras } = await import('../../telemetry/workerExtras.js');
  const { parseNonNegativeInt } = await import('../parse.js');
  // The children deliver scheduled messages and export telemetry; the supervisor serves the probes
  // (database gauges only: handler counters live in the children).
  const extras = await startWorkerExtras({
    pool: ctx.pool,
    store: ctx.store,
    config: ctx.config,
    group: flags.group,
    scheduler: false,
    otlp: false,
    ...(flags.httpPort !== undefined ? { httpPort: parseNonNegativeInt(flags.httpPort, '--http-port') } : {}),
  });
  if (extras.httpPort !== undefined)
    warn(`es worker: serving /metrics, /healthz and /readyz on port ${extras.httpPort}`);
  supervisor.start();
  extras.setReady(true);
  warn(
    `es worker: supervising ${run.processes} processes for group ${flags.group} (${concurrency} consumers each)`,
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
