import type pg from 'pg';
import type { ResolvedConfig } from '../config/types.js';
import { InvalidInputError, toError } from '../errors.js';
import { lagSnapshot } from '../operations/lagSnapshot.js';
import { subscriptionFilters } from '../operations/subscriptionFilters.js';
import { createRetentionService } from '../retention/applyRetention.js';
import { createSchedulerService } from '../scheduling/schedulerService.js';
import type { MessageStore } from '../store/messageStore.js';
import { oldestOpenTransaction } from '../store/readLog.js';
import { type BeckettMetrics, processMetrics, type SubscriptionSample } from '../telemetry/metrics.js';
import type { OtelSdk } from '../telemetry/sdk.js';
import { type HttpEndpoints, startHttpEndpoints } from './httpEndpoints.js';

export interface WorkerExtrasOptions {
  pool: pg.Pool;
  /** A streaming replica: the dashboard's message store pages read there (see createBeckett). */
  readPool?: pg.Pool;
  /** The store the scheduler appends with (its schema and message types). */
  store: MessageStore;
  config: ResolvedConfig;
  /** Metrics and lag for this group only. Default: every group. */
  group?: string;
  /** Serve /metrics, /healthz and /readyz on this port (0: a free one). Default: no server. */
  httpPort?: number;
  httpHost?: string;
  /** Deliver scheduled and the config's recurring messages. Default true. */
  scheduler?: boolean;
  /** Start the OTLP SDK. Default: when OTEL_EXPORTER_OTLP_ENDPOINT is set. */
  otlp?: boolean;
  metrics?: BeckettMetrics;
  /**
   * Serve the dashboard (and its REST API) at `/dashboard/` of the HTTP port. A non-loopback
   * `httpHost` then needs credentials from BECKETT_DASHBOARD_TOKEN or _USER/_PASSWORD.
   */
  dashboard?: { readOnly?: boolean };
  /** A transaction open this long is reported as holding readers back (/metrics). Default 5. */
  blockingAfterSeconds?: number;
  onError?: (err: Error, where: string) => void;
}

export interface WorkerExtras {
  /** Loops to run with the worker (`createWorker({ services })`). */
  services: ((signal: AbortSignal) => Promise<void>)[];
  metrics: BeckettMetrics;
  /** The port /metrics is served on, if any. */
  httpPort: number | undefined;
  /** `/readyz` answers 200 only between setReady(true) (worker started) and setReady(false) (draining). */
  setReady(ready: boolean): void;
  /** Stop the HTTP server and flush and stop the SDK. Idempotent. */
  close(): Promise<void>;
}

/**
 * What `es worker` runs beside the subscriptions: the scheduled/recurring delivery loop, the
 * metrics sampler (lag and failed checkpoints from the database), the HTTP endpoints and, when
 * OTEL_EXPORTER_OTLP_ENDPOINT is set, the OpenTelemetry SDK.
 */
export async function startWorkerExtras(opts: WorkerExtrasOptions): Promise<WorkerExtras> {
  const metrics = opts.metrics ?? processMetrics();
  const sql = opts.store.sqlContext;
  const filters = subscriptionFilters(opts.config);
  const sample = async (): Promise<SubscriptionSample[]> => {
    const snap = await lagSnapshot(opts.pool, sql, {
      subscriptions: filters,
      ...(opts.group ? { group: opts.group } : {}),
    });
    return snap.groups.flatMap((g) =>
      g.subscriptions.map((s) => ({
        group: g.name,
        subscription: s.name,
        lag: s.lag,
        failedCheckpoints: s.failed,
        retryingCheckpoints: s.retry,
      })),
    );
  };
  metrics.setSubscriptionSampler(sample);
  if (opts.config.queues.size > 0) {
    const { listQueues } = await import('../queues/queueOperations.js');
    const include = [...opts.config.queues.keys()];
    metrics.setQueueSampler(async () =>
      (await listQueues(opts.pool, sql, { include })).filter((q) => include.includes(q.queue)),
    );
  }
  metrics.setBlockingSampler(() =>
    oldestOpenTransaction(opts.pool, opts.blockingAfterSeconds ?? 5, sql.schema),
  );

  let sdk: OtelSdk | undefined;
  if (opts.otlp ?? Boolean(process.env.OTEL_EXPORTER_OTLP_ENDPOINT)) {
    const { startOtelSdk } = await import('../telemetry/sdk.js');
    sdk = await startOtelSdk({ serviceName: opts.group ? `beckett-worker-${opts.group}` : 'beckett-worker' });
  }
  metrics.register();

  let ready = false;
  let server: HttpEndpoints | undefined;
  let dashboard: Awaited<ReturnType<typeof startDashboardRoutes>> | undefined;
  if (opts.httpPort !== undefined && opts.dashboard) {
    try {
      dashboard = await startDashboardRoutes(opts, opts.dashboard);
    } catch (err) {
      await sdk?.shutdown();
      throw err;
    }
  }
  if (opts.httpPort !== undefined) {
    try {
      server = await startHttpEndpoints({
        port: opts.httpPort,
        ...(opts.httpHost ? { host: opts.httpHost } : {}),
        metrics: () => metrics.prometheus(),
        health: async () => {
          try {
            await opts.pool.query('SELECT 1');
            return { ok: true, checks: { database: 'ok' } };
          } catch (err) {
            return { ok: false, checks: { database: toError(err).message } };
          }
        },
        ready: () => ({ ok: ready, checks: { worker: ready ? 'running' : 'not started or draining' } }),
        ...(opts.onError ? { onError: (e, path) => opts.onError?.(e, `http ${path}`) } : {}),
        ...(dashboard ? { routes: dashboard.handler } : {}),
      });
    } catch (err) {
      await dashboard?.close();
      await sdk?.shutdown();
      const e = toError(err) as NodeJS.ErrnoException;
      throw new InvalidInputError(
        `Cannot serve --http-port ${opts.httpPort}: ${e.code ?? e.message}${opts.httpHost ? ` (address ${opts.httpHost})` : ''}.`,
        e.code === 'EADDRINUSE'
          ? 'Another process uses that port: pick another one (0 picks a free port).'
          : undefined,
      );
    }
  }

  const services =
    opts.scheduler === false
      ? []
      : [
          createSchedulerService(opts.store, {
            recurring: opts.config.recurring,
            metrics,
            ...(opts.onError ? { onError: (e: unknown) => opts.onError?.(toError(e), 'scheduler') } : {}),
          }),
          // Scheduled retention (config retention.interval); returns at once when none is set.
          createRetentionService(opts.pool, opts.store.sqlContext, opts.config, {
            ...(opts.onError ? { onError: (e: unknown) => opts.onError?.(toError(e), 'retention') } : {}),
          }),
        ];

  let closing: Promise<void> | undefined;
  return {
    services,
    metrics,
    httpPort: server?.port,
    setReady(value) {
      ready = value;
    },
    close() {
      closing ??= (async () => {
        ready = false;
        await server?.close();
        await dashboard?.close();
        await sdk?.shutdown();
        metrics.setSubscriptionSampler(undefined);
        metrics.setBlockingSampler(undefined);
        metrics.setQueueSampler(undefined);
      })();
      return closing;
    },
  };
}

/** The dashboard on the worker's HTTP port: refuses a non-loopback host without credentials. */
async function startDashboardRoutes(opts: WorkerExtrasOptions, d: { readOnly?: boolean }) {
  const { assertAuth, assertSafeBind, authFromEnv } = await import('../dashboard/auth.js');
  const { createDashboardHandler } = await import('../dashboard/createDashboardHandler.js');
  const { createBeckett } = await import('../admin/createBeckett.js');
  const auth = authFromEnv();
  if (auth) assertAuth(auth);
  const host = opts.httpHost ?? '127.0.0.1';
  assertSafeBind(host, auth);
  const beckett = createBeckett({
    pool: opts.pool,
    ...(opts.readPool ? { readPool: opts.readPool } : {}),
    schema: opts.store.sqlContext.schema,
    config: opts.config,
    actor: 'dashboard',
  });
  const handler = createDashboardHandler({
    beckett,
    basePath: '/dashboard/',
    readOnly: d.readOnly ?? false,
    ...(auth ? { auth } : {}),
  });
  return {
    handler: (req: Parameters<typeof handler>[0], res: Parameters<typeof handler>[1]) =>
      handler(req, res, () => undefined),
    close: () => beckett.close(),
  };
}
