import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { ResolvedConfig } from '../config/types.js';
import { resolveConfig } from '../config/validate.js';
import { assertSafeSchemaName, escapeIdentifier } from '../db/identifier.js';
import { createPool } from '../db/pool.js';
import type { SqlContext } from '../db/queryable.js';
import { toBeckettError } from '../db/toBeckettError.js';
import {
  BeckettError,
  ConfigError,
  InvalidInputError,
  NotFoundError,
  ReadOnlyError,
  toError,
} from '../errors.js';
import { checkHealth, type HealthResult } from '../host/checkHealth.js';
import { type ForgetResult, forgetSubscription } from '../operations/forgetSubscription.js';
import { type LagSnapshot, lagSnapshot } from '../operations/lagSnapshot.js';
import type { CheckpointInfo } from '../operations/listCheckpoints.js';
import { type ReplayArgs, type ReplayResult, replay } from '../operations/replay.js';
import type { ChangeResult } from '../operations/retryCheckpoints.js';
import {
  assertSubscription,
  type ResetResult,
  resetSubscription,
} from '../operations/subscriptionControl.js';
import { subscriptionFilters } from '../operations/subscriptionFilters.js';
import type { JobToEnqueue } from '../queues/enqueue.js';
import type { DeadLetter, QueuedJob, QueueSummary } from '../queues/queueOperations.js';
import { applyRetention, type RetentionResult } from '../retention/applyRetention.js';
import { selectRecurring } from '../scheduling/recurringMessagesSql.js';
import { cancelScheduledMessage } from '../scheduling/scheduleMessage.js';
import { createMessageStore, type MessageStore } from '../store/messageStore.js';
import type { AppendResult, ExpectedVersion, NewMessage } from '../store/types.js';
import { pauseSubscription, resumeSubscription } from '../subscriptions/registerSubscriptions.js';
import { assertText } from '../validation/options.js';
import { type AuditEntry, listAudit, recordAudit } from './audit.js';
import {
  CheckpointsNotFoundError,
  type CheckpointTarget,
  type ReleaseResult,
  release,
  resolveTarget,
  retry,
  skip,
} from './checkpointActions.js';
import { type FollowOptions, follow, WakeHub } from './follow.js';
import { type MessageView, type Page, withReadTimeout } from './pages.js';
import {
  DeadLettersNotFoundError,
  enqueue,
  purge,
  queueDeadLetters,
  queueJobs,
  queueList,
  type RedriveResult,
  redrive,
} from './queueActions.js';
import {
  type CategoryInfo,
  findMessages,
  listCategories,
  listStreams,
  logPage,
  type MessageDetail,
  messageById,
  type StreamInfo,
  streamMessages,
} from './readMessages.js';
import {
  type CheckpointDetail,
  type CheckpointStatusFilter,
  checkpointDetail,
  listCheckpointPage,
  listRecurring,
  listScheduledPage,
  listWorkers,
  type RecurringView,
  recurringView,
  retentionPreview,
  type ScheduledView,
  type SubscriptionsView,
  type Summary,
  subscriptionsView,
  summary,
  type WorkerView,
} from './readOperations.js';

export interface CreateBeckettOptions {
  /** The config (as loadConfig() returns it, or a raw defineConfig() object): message types, groups, retention. */
  config?: ResolvedConfig | Record<string, unknown>;
  /** A pool you own (left open by close()). Else `url`, else the config's database URL. */
  pool?: pg.Pool;
  /**
   * A pool on a streaming replica (yours: left open by close()) for the message store's pages:
   * categories, streams, a stream's messages, a message, finding messages and the log. Everything
   * an operator acts on (subscriptions, checkpoints, queues, scheduled messages), the lag view, the
   * header's counts and health stay on `pool`, the primary: a replica lags, and its sessions are
   * not the primary's (a blocking transaction is only seen there).
   */
  readPool?: pg.Pool;
  url?: string;
  /** Default: the config's schema, else `beckett`. */
  schema?: string;
  /** Who the audit log names for actions that name nobody. Default 'library'. */
  actor?: string;
  /** Refuse every action (ReadOnlyError, HTTP 403). Default false. */
  readOnly?: boolean;
  /** Statement timeout of admin reads, in ms. Default 5000. */
  statementTimeoutMs?: number;
  /** Connections when the handle opens its own pool. Default 5. */
  poolSize?: number;
}

/** Options of every admin action. */
export interface ActionOptions {
  /** Who acts, for the audit log (default: the handle's actor). */
  actor?: string;
}

/** A result of an action together with nothing else: actions resolve to their typed results. */
export interface AdminApi {
  // Reads.
  summary(): Promise<Summary>;
  health(opts?: { group?: string; maxLag?: number }): Promise<HealthResult>;
  lag(): Promise<LagSnapshot>;
  categories(opts?: { search?: string; after?: string; limit?: number }): Promise<Page<CategoryInfo>>;
  streams(category: string, opts?: { after?: string; limit?: number }): Promise<Page<StreamInfo>>;
  streamMessages(
    stream: string,
    opts?: { from?: number; limit?: number; direction?: 'forward' | 'backward' },
  ): Promise<Page<MessageView>>;
  message(id: string): Promise<MessageDetail>;
  findMessages(by: {
    correlationId?: string;
    causationId?: string;
    globalPosition?: number;
  }): Promise<{ items: MessageView[] }>;
  log(opts?: {
    after?: string;
    limit?: number;
    category?: string;
    types?: string[];
  }): Promise<Page<MessageView> & { position: string }>;
  subscriptions(): Promise<SubscriptionsView>;
  checkpoints(opts?: {
    status?: CheckpointStatusFilter;
    group?: string;
    subscription?: string;
    after?: string;
    limit?: number;
  }): Promise<Page<CheckpointInfo>>;
  checkpoint(id: string): Promise<CheckpointDetail>;
  scheduled(opts?: { after?: string; limit?: number }): Promise<Page<ScheduledView>>;
  recurring(): Promise<{ items: RecurringView[] }>;
  workers(): Promise<{ items: WorkerView[] }>;
  retentionPreview(): Promise<RetentionResult>;
  audit(opts?: { after?: string; limit?: number; checkpoint?: string }): Promise<Page<AuditEntry>>;
  /** Queues with jobs, dead letters or recent stats, and those the config declares (even empty). */
  queues(): Promise<{ items: QueueSummary[] }>;
  /** A queue's next jobs in the order workers take them (default 20, at most 500). */
  queueJobs(queue: string, opts?: { limit?: number }): Promise<{ queue: string; items: QueuedJob[] }>;
  /** A queue's dead letters, oldest first, with their error history (default 100, at most 500). */
  deadLetters(queue: string, opts?: { limit?: number }): Promise<{ queue: string; items: DeadLetter[] }>;
  /** Follow messages live (gap-safe, resumable after an event's log position); ends when `signal` aborts. */
  follow(opts: FollowOptions): AsyncGenerator<MessageView, void, undefined>;
  // Actions (each recorded in the audit log).
  retry(target: CheckpointTarget, opts?: ActionOptions): Promise<ChangeResult>;
  skip(target: CheckpointTarget, opts?: ActionOptions): Promise<ChangeResult>;
  release(target: CheckpointTarget, opts?: ActionOptions): Promise<ReleaseResult>;
  pause(group: string, subscription: string, opts?: ActionOptions): Promise<SubscriptionStatusChange>;
  resume(group: string, subscription: string, opts?: ActionOptions): Promise<SubscriptionStatusChange>;
  reset(
    group: string,
    subscription: string,
    to: 'beginning' | 'end',
    opts?: ActionOptions,
  ): Promise<ResetResult>;
  /**
   * Delete a subscription no config declares any more, with its checkpoints. Refused (conflict)
   * unless it is `unknown` (no live process runs it), undeclared in this handle's config, and has
   * no leased checkpoint.
   */
  forget(group: string, subscription: string, opts?: ActionOptions): Promise<ForgetResult>;
  replay(
    args: ReplayArgs,
    opts?: ActionOptions & { dryRun?: boolean; busyTimeoutMs?: number },
  ): Promise<ReplayResult>;
  cancelScheduled(id: string, opts?: ActionOptions): Promise<{ id: string; cancelled: true }>;
  sendRecurringNow(name: string, opts?: ActionOptions): Promise<{ name: string; id: string } & AppendResult>;
  /** Put dead letters back on their queue, ready now: `{ ids }` or `{ all: true }` (404 when none of the ids is one). */
  redrive(
    queue: string,
    target: { ids?: string[]; all?: boolean },
    opts?: ActionOptions,
  ): Promise<RedriveResult>;
  /** Delete a queue's jobs, or its dead letters; `confirm` must name the queue (400 otherwise). */
  purgeQueue(
    queue: string,
    what: { deadLetters?: boolean; confirm: string },
    opts?: ActionOptions,
  ): Promise<{ queue: string; deadLetters: boolean; deleted: number }>;
  /** Enqueue jobs in one transaction (at most 1000); their ids in order. */
  enqueue(
    queue: string,
    jobs: JobToEnqueue[],
    opts?: ActionOptions,
  ): Promise<{ queue: string; ids: string[] }>;
  append(
    stream: string,
    messages: NewMessage | NewMessage[],
    opts?: ActionOptions & { expectedVersion?: ExpectedVersion },
  ): Promise<AppendResult & { stream: string; ids: string[] }>;
  applyRetention(
    opts?: ActionOptions & { policies?: string[]; dryRun?: boolean; force?: boolean },
  ): Promise<RetentionResult>;
}

export interface SubscriptionStatusChange {
  group: string;
  subscription: string;
  /** False when it already was in that state. */
  changed: boolean;
}

/** The one public handle: the message store, and the admin API every operator surface goes through. */
export interface Beckett {
  readonly pool: pg.Pool;
  readonly schema: string;
  readonly config: ResolvedConfig | undefined;
  readonly store: MessageStore;
  readonly sqlContext: SqlContext;
  readonly readOnly: boolean;
  readonly admin: AdminApi;
  /** Close the store and the pool it opened (a pool you passed stays open). Idempotent. */
  close(): Promise<void>;
}

function isResolved(config: unknown): config is ResolvedConfig {
  return typeof config === 'object' && config !== null && (config as ResolvedConfig).groups instanceof Map;
}

/**
 * Open beckett on a database: `createBeckett({ url, schema })`, `createBeckett({ pool })` or
 * `createBeckett({ config: await loadConfig() })`.
 */
export function createBeckett(opts: CreateBeckettOptions = {}): Beckett {
  const config =
    opts.config === undefined
      ? undefined
      : isResolved(opts.config)
        ? opts.config
        : resolveConfig(opts.config);
  const schema = assertSafeSchemaName(opts.schema ?? config?.database.schema ?? 'beckett');
  const url = opts.url ?? config?.database.url;
  if (!opts.pool && !url)
    throw new InvalidInputError(
      'createBeckett needs a pool, a url, or a config with a database URL.',
      'Pass { url: process.env.DATABASE_URL } or { pool }.',
    );
  const pool = opts.pool ?? createPool(url!, { max: opts.poolSize ?? 5, applicationName: 'beckett-admin' });
  const ownsPool = !opts.pool;
  const store = createMessageStore({
    pool,
    schema,
    messages: config?.messages ?? {},
    preparedStatements: config?.database.preparedStatements ?? true,
  });
  const ctx: SqlContext = { schema, s: escapeIdentifier(schema), prepared: false };
  const timeoutMs = opts.statementTimeoutMs ?? 5000;
  const defaultActor = opts.actor ?? 'library';
  const readOnly = opts.readOnly ?? false;
  let previousSnapshot: LagSnapshot | undefined;
  const hub = new WakeHub(pool, schema);

  const read = <T>(fn: (db: pg.PoolClient) => Promise<T>) => withReadTimeout(pool, { timeoutMs, schema }, fn);
  // The message store's pages: on the replica when there is one.
  const browse = <T>(fn: (db: pg.PoolClient) => Promise<T>) =>
    withReadTimeout(opts.readPool ?? pool, { timeoutMs, schema }, fn);

  /** Run an action and record it in the audit log, whatever its outcome. */
  async function act<T>(
    action: string,
    target: Record<string, unknown>,
    o: ActionOptions | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    if (readOnly) throw new ReadOnlyError(action);
    const actor = o?.actor ?? defaultActor;
    assertText(actor, 'actor');
    let result: T;
    try {
      result = await fn();
    } catch (thrown) {
      const err = toBeckettError(thrown, { schema });
      // Nothing was attempted on bad input: only actions that reached the database are recorded.
      if (!(err instanceof InvalidInputError)) {
        const partial =
          err instanceof CheckpointsNotFoundError || err instanceof DeadLettersNotFoundError
            ? { result: err.result }
            : {};
        await recordAudit(pool, ctx, {
          actor,
          action,
          target,
          result: 'error',
          detail: {
            code: err instanceof BeckettError ? err.code : 'UNEXPECTED',
            message: toError(err).message,
            ...partial,
          },
        });
      }
      throw err;
    }
    await recordAudit(pool, ctx, { actor, action, target, result: 'ok', detail: result });
    return result;
  }

  const checkpointTarget = (t: CheckpointTarget) =>
    t && typeof t === 'object' && 'ids' in t ? { checkpoints: t.ids } : { ...t };

  const admin: AdminApi = {
    summary: () => read((db) => summary(db, ctx)),
    health: (o = {}) =>
      read((db) =>
        checkHealth(db, ctx, {
          ...(config ? { config } : {}),
          ...(o.group ? { group: o.group } : {}),
          ...(o.maxLag !== undefined ? { maxLag: o.maxLag } : {}),
        }),
      ),
    lag: () =>
      read((db) => lagSnapshot(db, ctx, config ? { subscriptions: subscriptionFilters(config) } : {})),
    categories: (o) => browse((db) => listCategories(db, ctx, o)),
    streams: (category, o) => browse((db) => listStreams(db, ctx, category, o)),
    streamMessages: (stream, o) => browse((db) => streamMessages(db, ctx, stream, o)),
    message: (id) => browse((db) => messageById(db, ctx, id)),
    findMessages: (by) => browse((db) => findMessages(db, ctx, by)),
    log: (o) => browse((db) => logPage(db, ctx, o)),
    subscriptions: () =>
      read(async (db) => {
        const { view, snapshot } = await subscriptionsView(db, ctx, config, previousSnapshot);
        previousSnapshot = snapshot;
        return view;
      }),
    checkpoints: (o) => read((db) => listCheckpointPage(db, ctx, o)),
    checkpoint: (id) => read((db) => checkpointDetail(db, ctx, id)),
    scheduled: (o) => read((db) => listScheduledPage(db, ctx, o)),
    recurring: () => read((db) => listRecurring(db, ctx)),
    workers: () => read((db) => listWorkers(db, ctx)),
    retentionPreview: () => read((db) => retentionPreview(db, ctx, config)),
    audit: (o) => read((db) => listAudit(db, ctx, o)),
    follow: (o) => follow(pool, ctx, hub, o),
    queues: () => read((db) => queueList(db, ctx, config ? [...config.queues.keys()] : [])),
    queueJobs: (queue, o) => read((db) => queueJobs(db, ctx, queue, o)),
    deadLetters: (queue, o) => read((db) => queueDeadLetters(db, ctx, queue, o)),

    retry: (target, o) =>
      act('retry', checkpointTarget(target), o, async () =>
        retry(pool, ctx, await resolveTarget(pool, ctx, target, 'retry')),
      ),
    skip: (target, o) =>
      act('skip', checkpointTarget(target), o, async () =>
        skip(pool, ctx, await resolveTarget(pool, ctx, target, 'skip')),
      ),
    release: (target, o) =>
      act('release', checkpointTarget(target), o, async () =>
        release(pool, ctx, await resolveTarget(pool, ctx, target, 'release')),
      ),
    pause: (group, subscription, o) =>
      act('pause', { group, subscription }, o, async () => {
        assertText(group, 'group');
        assertText(subscription, 'subscription');
        await assertSubscription(pool, ctx, group, subscription);
        return { group, subscription, changed: await pauseSubscription(pool, schema, group, subscription) };
      }),
    resume: (group, subscription, o) =>
      act('resume', { group, subscription }, o, async () => {
        assertText(group, 'group');
        assertText(subscription, 'subscription');
        await assertSubscription(pool, ctx, group, subscription);
        return { group, subscription, changed: await resumeSubscription(pool, schema, group, subscription) };
      }),
    reset: (group, subscription, to, o) =>
      act('reset', { group, subscription, to }, o, () =>
        resetSubscription(pool, ctx, { group, subscription, to }),
      ),
    forget: (group, subscription, o) =>
      act('forget', { group, subscription }, o, () =>
        forgetSubscription(pool, ctx, { group, subscription, ...(config ? { config } : {}) }),
      ),
    replay: (args, o = {}) => {
      const { actor, ...replayOpts } = o;
      const run = () => replay(pool, ctx, args, replayOpts);
      // A dry run changes nothing: not an action, not audited, allowed read-only.
      if (replayOpts.dryRun) return run();
      return act('replay', { ...args }, { ...(actor ? { actor } : {}) }, run);
    },
    cancelScheduled: (id, o) =>
      act('cancelScheduled', { scheduled: id }, o, async () => {
        if (!(await cancelScheduledMessage(store, id)))
          throw new NotFoundError(
            `No scheduled message ${id}: it was delivered or cancelled already, or never scheduled.`,
            'List pending ones with es schedule list or GET /api/scheduled.',
          );
        return { id, cancelled: true as const };
      }),
    sendRecurringNow: (name, o) =>
      act('sendRecurringNow', { recurring: name }, o, async () => {
        assertText(name, 'name');
        const row = (await selectRecurring(pool, ctx)).find((r) => r.name === name);
        if (!row)
          throw new NotFoundError(
            `No recurring message "${name}".`,
            'Recurring messages are declared in the config (recurring: [...]) and stored when a worker starts.',
          );
        const view = recurringView(row);
        const id = randomUUID();
        const r = await store.append(view.stream, {
          id,
          type: view.type,
          data: view.data,
          metadata: { recurring: name, occurrence: new Date().toISOString(), sentNow: true },
        });
        return { name, id, ...r };
      }),
    redrive: (queue, target, o) =>
      act('redrive', { queue, ...(target?.all ? { all: true } : { ids: target?.ids }) }, o, () =>
        redrive(pool, ctx, queue, target),
      ),
    purgeQueue: (queue, what, o) =>
      act('purgeQueue', { queue, deadLetters: what?.deadLetters === true }, o, () =>
        purge(pool, ctx, queue, what ?? {}),
      ),
    enqueue: (queue, jobs, o) => act('enqueue', { queue }, o, () => enqueue(store, queue, jobs)),
    append: (stream, messages, o = {}) => {
      const { actor, expectedVersion } = o;
      const list = Array.isArray(messages) ? messages : [messages];
      return act('append', { stream }, actor ? { actor } : undefined, async () => {
        // Ids are given up front so the result (and the audit log) can name them.
        const withIds = list.map((m) =>
          m && typeof m === 'object' && !m.id ? { ...m, id: randomUUID() } : m,
        );
        const r = await store.append(stream, withIds, { expectedVersion: expectedVersion ?? 'any' });
        return { stream, ids: withIds.map((m) => String(m.id)), ...r };
      });
    },
    applyRetention: (o = {}) => {
      const { actor, policies: names, dryRun, force } = o;
      const run = async () => {
        const all = config?.retention.policies ?? [];
        if (all.length === 0)
          throw new ConfigError(
            `No retention policies in ${config?.path ?? 'the config (no config file found)'}.`,
            "Add retention: { policies: [{ category: 'order', maxAge: '90d' }] } to beckett.config.ts.",
          );
        const unknown = (names ?? []).filter((n) => !all.some((p) => p.name === n));
        if (unknown.length > 0)
          throw new NotFoundError(
            `Unknown retention polic${unknown.length > 1 ? 'ies' : 'y'}: ${unknown.join(', ')}.`,
            `Known policies: ${all.map((p) => p.name).join(', ')}.`,
          );
        return applyRetention(pool, ctx, names ? all.filter((p) => names.includes(p.name)) : all, {
          dryRun: dryRun ?? false,
          force: force ?? false,
          batchSize: config!.retention.batchSize,
          subscriptions: subscriptionFilters(config!),
        });
      };
      if (dryRun) return run();
      return act(
        'applyRetention',
        { policies: names ?? 'all', force: force ?? false },
        actor ? { actor } : undefined,
        run,
      );
    },
  };

  let closed = false;
  return {
    pool,
    schema,
    config,
    store,
    sqlContext: ctx,
    readOnly,
    admin,
    async close() {
      if (closed) return;
      closed = true;
      hub.close();
      await store.close();
      if (ownsPool) await pool.end().catch(() => undefined);
    },
  };
}
