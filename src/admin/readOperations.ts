import type { ResolvedConfig } from '../config/types.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { InvalidInputError, NotFoundError } from '../errors.js';
import { parseCheckpointId } from '../operations/checkpointId.js';
import { type LagSnapshot, lagSnapshot, withThroughput } from '../operations/lagSnapshot.js';
import {
  CHECKPOINT_COLUMNS,
  type CheckpointInfo,
  type CheckpointRow,
  rowToCheckpoint,
} from '../operations/listCheckpoints.js';
import { subscriptionFilters } from '../operations/subscriptionFilters.js';
import { applyRetention, type RetentionResult } from '../retention/applyRetention.js';
import { type RecurringRow, selectRecurring } from '../scheduling/recurringMessagesSql.js';
import { cronFor } from '../scheduling/resolveRecurring.js';
import type { ScheduledRow } from '../scheduling/scheduledMessagesSql.js';
import { logEnd, oldestOpenTransaction } from '../store/readLog.js';
import { assertOneOf, assertText } from '../validation/options.js';
import { type AuditEntry, listAudit } from './audit.js';
import { decodeCursor, encodeCursor, formatLogPosition, type Page, pageLimit } from './pages.js';

/** Checkpoint counts in the header are counted up to this many each. */
export const SUMMARY_COUNT_CAP = 100_000;

/** A worker is live while its heartbeat is younger than this. */
export const STALE_WORKER_SECONDS = 30;

export interface Summary {
  /** Active checkpoints with messages waiting (counted up to SUMMARY_COUNT_CAP). */
  lagging: number;
  retrying: number;
  failed: number;
  liveWorkers: number;
  /** The oldest open transaction holding every gap-safe reader back (older than 5 s), or null. */
  blocking: { pid: number; ageMs: number; query: string; state: string; own: boolean } | null;
  /** The end of the readable log: its last log position, and the highest global position. */
  logEnd: string;
  head: number;
}

/* Each count walks checkpoints_attention_idx (the checkpoints needing attention), capped. */
const ATTENTION = `(c.status <> 'active' OR c.claimable)`;
const summarySql = (ctx: SqlContext) => `
  SELECT
    (SELECT count(*)::int FROM (SELECT 1 FROM ${ctx.s}.checkpoints c WHERE ${ATTENTION}
       AND c.status = 'active' AND c.stream_position < c.stream_version LIMIT ${SUMMARY_COUNT_CAP}) x) AS lagging,
    (SELECT count(*)::int FROM (SELECT 1 FROM ${ctx.s}.checkpoints c WHERE ${ATTENTION}
       AND c.status = 'retry' LIMIT ${SUMMARY_COUNT_CAP}) x) AS retrying,
    (SELECT count(*)::int FROM (SELECT 1 FROM ${ctx.s}.checkpoints c WHERE ${ATTENTION}
       AND c.status = 'failed' LIMIT ${SUMMARY_COUNT_CAP}) x) AS failed,
    (SELECT count(*)::int FROM ${ctx.s}.workers
      WHERE heartbeat_at > now() - make_interval(secs => ${STALE_WORKER_SECONDS})) AS live_workers,
    (SELECT coalesce(max(global_position), 0) FROM ${ctx.s}.messages) AS head`;

/** The header's live counts. */
export async function summary(db: Queryable, ctx: SqlContext): Promise<Summary> {
  const { rows } = await db.query<{
    lagging: number;
    retrying: number;
    failed: number;
    live_workers: number;
    head: number;
  }>(summarySql(ctx));
  const r = rows[0]!;
  const blocking = await oldestOpenTransaction(db, 5, ctx.schema);
  const end = await logEnd(db, ctx);
  return {
    lagging: r.lagging,
    retrying: r.retrying,
    failed: r.failed,
    liveWorkers: r.live_workers,
    blocking: blocking
      ? {
          pid: blocking.pid,
          ageMs: Math.round(blocking.ageSeconds * 1000),
          query: blocking.query,
          state: blocking.state,
          own: blocking.own,
        }
      : null,
    logEnd: formatLogPosition(end),
    head: r.head,
  };
}

export type CheckpointStatusFilter = 'lagging' | 'retrying' | 'failed' | 'leased';
const STATUS_FILTERS: readonly CheckpointStatusFilter[] = ['lagging', 'retrying', 'failed', 'leased'];

const STATUS_SQL: Record<CheckpointStatusFilter, string> = {
  lagging: `c.status = 'active' AND c.stream_position < c.stream_version`,
  retrying: `c.status = 'retry'`,
  failed: `c.status = 'failed'`,
  leased: `c.leased_until >= now()`,
};

/** Checkpoints needing attention (lagging, retrying, failed or leased), in id order, a page at a time. */
export async function listCheckpointPage(
  db: Queryable,
  ctx: SqlContext,
  opts: {
    status?: CheckpointStatusFilter;
    group?: string;
    subscription?: string;
    after?: string;
    limit?: number;
  } = {},
): Promise<Page<CheckpointInfo>> {
  assertOneOf(opts.status, 'status', STATUS_FILTERS);
  assertText(opts.group, 'group');
  assertText(opts.subscription, 'subscription');
  const limit = pageLimit(opts.limit);
  const after = decodeCursor(opts.after, 3) as [string, string, string] | undefined;
  const { rows } = await db.query<CheckpointRow>(
    `SELECT ${CHECKPOINT_COLUMNS} FROM ${ctx.s}.checkpoints c
      WHERE ${ATTENTION} AND ${opts.status ? STATUS_SQL[opts.status] : 'true'}
        AND ($1::text IS NULL OR c.group_name = $1) AND ($2::text IS NULL OR c.subscription_name = $2)
        AND ($3::text IS NULL OR (c.group_name, c.subscription_name, c.stream_name) > ($3, $4, $5))
      ORDER BY c.group_name, c.subscription_name, c.stream_name
      LIMIT $6`,
    [opts.group ?? null, opts.subscription ?? null, ...(after ?? [null, null, null]), limit + 1],
  );
  const items = rows.slice(0, limit).map(rowToCheckpoint);
  const last = items[items.length - 1];
  return {
    items,
    next: rows.length > limit && last ? encodeCursor([last.group, last.subscription, last.stream]) : null,
  };
}

export interface AttemptError {
  attempt: number | null;
  at: string | null;
  /** The stream position of the message the attempt failed on (the first one not handled). */
  position: number | null;
  type: string | null;
  message: string | null;
  stack: string | null;
}

export interface CheckpointDetail extends CheckpointInfo {
  /**
   * Its last failed attempts, newest first (at most 10, recorded by the statement that records each
   * failure; kept after it recovers or an operator retries or skips it).
   */
  attemptHistory: AttemptError[];
  /** Operator actions on it, newest first. */
  history: AuditEntry[];
}

/** One checkpoint, by its id (`group/subscription/stream`), with its error and what operators did to it. */
export async function checkpointDetail(
  db: Queryable,
  ctx: SqlContext,
  id: string,
): Promise<CheckpointDetail> {
  const key = parseCheckpointId(id);
  const { rows } = await db.query<CheckpointRow & { error_history: Record<string, unknown>[] }>(
    `SELECT ${CHECKPOINT_COLUMNS}, c.error_history FROM ${ctx.s}.checkpoints c
      WHERE c.group_name = $1 AND c.subscription_name = $2 AND c.stream_name = $3`,
    [key.group, key.subscription, key.stream],
  );
  const row = rows[0];
  if (!row)
    throw new NotFoundError(
      `No checkpoint ${id}.`,
      'Ids are group/subscription/stream; list them with es checkpoints or GET /api/checkpoints.',
    );
  const text = (v: unknown) => (typeof v === 'string' ? v : null);
  const int = (v: unknown) => (typeof v === 'number' ? v : null);
  return {
    ...rowToCheckpoint(row),
    attemptHistory: (row.error_history ?? []).map((e) => ({
      attempt: int(e.attempt),
      at: text(e.at),
      position: int(e.position),
      type: text(e.type),
      message: text(e.message),
      stack: text(e.stack),
    })),
    history: (await listAudit(db, ctx, { checkpoint: id, limit: 50 })).items,
  };
}

export interface SubscriptionView {
  name: string;
  status: string;
  lag: number;
  /** The lag and the counts beside it are lower bounds: too many to count on each refresh (lag "N+"). */
  lagCapped: boolean;
  /** Age of the oldest message not processed yet, or null. */
  oldestAgeMs: number | null;
  /** Messages handled per second since the previous call (null on the first). */
  rate: number | null;
  failed: number;
  retrying: number;
  streamsBehind: number;
  logPosition: number;
}

export interface SubscriptionsView {
  groups: {
    name: string;
    liveWorkers: number;
    readerPosition: number | null;
    readerAgeSeconds: number | null;
    subscriptions: SubscriptionView[];
  }[];
}

/** Groups and subscriptions with their lag (the rate against the previous snapshot, if any). */
export async function subscriptionsView(
  db: Queryable,
  ctx: SqlContext,
  config: ResolvedConfig | undefined,
  previous: LagSnapshot | undefined,
): Promise<{ view: SubscriptionsView; snapshot: LagSnapshot }> {
  const snapshot = withThroughput(
    await lagSnapshot(db, ctx, config ? { subscriptions: subscriptionFilters(config) } : {}),
    previous,
  );
  return {
    snapshot,
    view: {
      groups: snapshot.groups.map((g) => ({
        name: g.name,
        liveWorkers: g.liveWorkers,
        readerPosition: g.readerPosition,
        readerAgeSeconds: g.readerAgeSeconds,
        subscriptions: g.subscriptions.map((s) => ({
          name: s.name,
          status: s.status,
          lag: s.lag,
          lagCapped: s.undispatchedCapped || s.checkpointsCapped,
          oldestAgeMs:
            s.oldestUnprocessedAgeSeconds === null ? null : Math.round(s.oldestUnprocessedAgeSeconds * 1000),
          rate: s.throughput,
          failed: s.failed,
          retrying: s.retry,
          streamsBehind: s.streamsBehind,
          logPosition: s.logPosition,
        })),
      })),
    },
  };
}

export interface WorkerView {
  id: string;
  host: string;
  pid: number;
  group: string;
  concurrency: number;
  startedAt: string;
  heartbeatAt: string;
  live: boolean;
}

/** Workers as registered: live ones (recent heartbeat) first, then gone ones, newest first. */
export async function listWorkers(db: Queryable, ctx: SqlContext): Promise<{ items: WorkerView[] }> {
  const { rows } = await db.query<{
    id: string;
    host: string;
    pid: number;
    group_name: string;
    concurrency: number;
    started_at: Date;
    heartbeat_at: Date;
    live: boolean;
  }>(
    `SELECT id, host, pid, group_name, concurrency, started_at, heartbeat_at,
            heartbeat_at > now() - make_interval(secs => ${STALE_WORKER_SECONDS}) AS live
       FROM ${ctx.s}.workers ORDER BY live DESC, heartbeat_at DESC LIMIT 1000`,
  );
  return {
    items: rows.map((r) => ({
      id: r.id,
      host: r.host,
      pid: r.pid,
      group: r.group_name,
      concurrency: r.concurrency,
      startedAt: r.started_at.toISOString(),
      heartbeatAt: r.heartbeat_at.toISOString(),
      live: r.live,
    })),
  };
}

export interface ScheduledView {
  id: string;
  stream: string;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
  deliverAt: string;
  attempts: number;
  lastError: string | null;
  createdAt: string;
}

/** Scheduled messages in delivery order (keyset on deliver_at, id). */
export async function listScheduledPage(
  db: Queryable,
  ctx: SqlContext,
  opts: { after?: string; limit?: number } = {},
): Promise<Page<ScheduledView>> {
  const limit = pageLimit(opts.limit);
  const after = decodeCursor(opts.after, 2) as [string, string] | undefined;
  const { rows } = await db.query<ScheduledRow>(
    `SELECT id, stream_name, type, data, metadata, tags, deliver_at, attempts, last_error, created_at
       FROM ${ctx.s}.scheduled_messages
      WHERE $1::timestamptz IS NULL OR (deliver_at, id) > ($1::timestamptz, $2::uuid)
      ORDER BY deliver_at, id LIMIT $3`,
    [...(after ?? [null, null]), limit + 1],
  );
  const items = rows.slice(0, limit).map((r) => ({
    id: r.id,
    stream: r.stream_name,
    type: r.type,
    data: r.data,
    metadata: r.metadata,
    deliverAt: r.deliver_at.toISOString(),
    attempts: r.attempts,
    lastError: r.last_error,
    createdAt: r.created_at.toISOString(),
  }));
  const last = items[items.length - 1];
  return { items, next: rows.length > limit && last ? encodeCursor([last.deliverAt, last.id]) : null };
}

export interface RecurringView {
  name: string;
  cron: string;
  timezone: string;
  stream: string;
  type: string;
  data: unknown;
  nextOccurrenceAt: string;
  /** The next occurrences after the pending one (up to 5 in all, the pending one first). */
  nextOccurrences: string[];
  lastOccurrenceAt: string | null;
  lastError: string | null;
  attempts: number;
}

export function recurringView(r: RecurringRow): RecurringView {
  const next = [r.next_occurrence_at];
  try {
    const cron = cronFor(r.cron, r.timezone);
    while (next.length < 5) {
      const n = cron.nextRun(next[next.length - 1]!);
      if (!n) break;
      next.push(n);
    }
  } catch {
    // A cron expression this version cannot read: show the stored next occurrence only.
  }
  return {
    name: r.name,
    cron: r.cron,
    timezone: r.timezone,
    stream: r.stream_name,
    type: r.type,
    data: r.data,
    nextOccurrenceAt: r.next_occurrence_at.toISOString(),
    nextOccurrences: next.map((d) => d.toISOString()),
    lastOccurrenceAt: r.last_occurrence_at?.toISOString() ?? null,
    lastError: r.last_error,
    attempts: r.attempts,
  };
}

/** Recurring messages known to the database, the next due first, with their next occurrences. */
export async function listRecurring(db: Queryable, ctx: SqlContext): Promise<{ items: RecurringView[] }> {
  return { items: (await selectRecurring(db, ctx)).map(recurringView) };
}

/** What `es retention apply --dry-run` would delete, per policy of the config (none without policies). */
export async function retentionPreview(
  db: Queryable,
  ctx: SqlContext,
  config: ResolvedConfig | undefined,
): Promise<RetentionResult> {
  const policies = config?.retention.policies ?? [];
  if (policies.length === 0) return { dryRun: true, force: false, policies: [] };
  return applyRetention(db, ctx, policies, {
    dryRun: true,
    force: false,
    batchSize: config!.retention.batchSize,
    subscriptions: subscriptionFilters(config!),
  });
}

export function assertCheckpointIds(ids: unknown): string[] {
  if (!Array.isArray(ids) || ids.length === 0 || ids.some((i) => typeof i !== 'string'))
    throw new InvalidInputError(
      `ids must be a non-empty array of checkpoint ids (group/subscription/stream), got ${JSON.stringify(ids)}.`,
    );
  return ids as string[];
}
