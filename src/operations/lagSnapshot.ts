import type { Queryable, SqlContext } from '../db/queryable.js';
import { InvalidInputError } from '../errors.js';
import { type BlockingTransaction, logHead, oldestOpenTransaction, readableUpTo } from '../store/readLog.js';
import { assertInteger, assertOptions, assertText } from '../validation/options.js';
import { quoteValue } from '../validation/quoteValue.js';
import { MATCHES_FILTER, type SubscriptionFilter, subscriptionsWithFilters } from './subscriptionFilters.js';

/**
 * Undispatched messages are counted among the next this many log messages after a subscription's
 * log position: a refresh reads at most this many per subscription however far behind its reader
 * is. When there are more, the count is a lower bound (`undispatchedCapped`; shown as "N+").
 */
export const UNDISPATCHED_COUNT_CAP = 5_000;

/**
 * Checkpoints needing attention (lagging, retrying, failed) are read up to this many per
 * subscription, through checkpoints_attention_idx: `behind`, `streamsBehind`, `retry` and `failed`
 * are exact below it and lower bounds at it (`checkpointsCapped`).
 */
export const ATTENTION_COUNT_CAP = 10_000;

/**
 * The global position of the last message at or before the log position of `alias` (a row with
 * log_transaction_id and log_position), in log order; 0 before the first. A position is a pair, and
 * a caught-up typed subscription's is (the snapshot's xmin, 0): its second half alone says nothing.
 */
const lastPassedSql = (ctx: SqlContext, alias: string) =>
  `coalesce((SELECT m.global_position FROM ${ctx.s}.messages m
              WHERE (m.transaction_id, m.global_position) <= (${alias}.log_transaction_id, ${alias}.log_position)
              ORDER BY m.transaction_id DESC, m.global_position DESC LIMIT 1), 0)`;

/** The age of the oldest waiting message is probed on at most this many lagging checkpoints. */
export const OLDEST_PROBE_CAP = 1_000;

export interface SubscriptionLag {
  group: string;
  name: string;
  status: string;
  /**
   * The subscription's place in the global log: the global position of the last message it has
   * passed, in log order (0 before the first). Its stored position is a (transaction id, global
   * position) pair; a caught-up typed subscription's is (the snapshot's xmin, 0).
   */
  logPosition: number;
  /** Messages not processed yet: `behind` + `undispatched`. */
  lag: number;
  /** Messages of its streams after their checkpoints (dispatched, not yet handled). */
  behind: number;
  /**
   * Matching log messages the global reader has not dispatched yet, among the next
   * UNDISPATCHED_COUNT_CAP of the log (a lower bound when `undispatchedCapped`).
   */
  undispatched: number;
  undispatchedCapped: boolean;
  /**
   * More than ATTENTION_COUNT_CAP of its checkpoints need attention: `behind`, `streamsBehind`,
   * `retry` and `failed` count the first ones only (lower bounds), and `oldestUnprocessedAgeSeconds`
   * is probed on the first OLDEST_PROBE_CAP lagging ones.
   */
  checkpointsCapped: boolean;
  /** Streams with work waiting. */
  streamsBehind: number;
  /** Age of the oldest message not processed yet, or null when there is none. */
  oldestUnprocessedAgeSeconds: number | null;
  retry: number;
  failed: number;
  /**
   * Sum of the checkpoints' positions: grows by one per handled message (throughput = its rate).
   * Kept by triggers on checkpoints in subscription_progress (migration 0024), read in O(1).
   */
  processed: number;
  /** Messages per second since the previous snapshot (null on the first one). */
  throughput: number | null;
}

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  group: string;
  concurrency: number;
  heartbeatAgeSeconds: number;
  live: boolean;
}

export interface GroupLag {
  name: string;
  /**
   * Where the group's global reader is: the global position of the last message it has passed, in
   * log order, for the subscription furthest behind (0 before the first; null without
   * subscriptions). A reader position is a (transaction id, global position) pair, and a caught-up
   * typed subscription's is (the snapshot's xmin, 0): this is the message just before it.
   */
  readerPosition: number | null;
  readerWorkerId: string | null;
  /** Seconds since the global reader last read (marked at most once a second), or null if it never did. */
  readerAgeSeconds: number | null;
  workers: WorkerInfo[];
  liveWorkers: number;
  subscriptions: SubscriptionLag[];
}

export interface LagSnapshot {
  takenAt: string;
  schema: string;
  /** The highest global position written. */
  head: number;
  /** Every message up to this global position is final: gap-safe readers can read that far now. */
  readable: number;
  /** A long-open transaction holding every gap-safe reader back, if any. */
  blocking: BlockingTransaction | null;
  groups: GroupLag[];
}

export interface LagSnapshotOptions {
  /** Subscription filters from the config (unknown ones count every undispatched message). */
  subscriptions?: SubscriptionFilter[];
  /** Only this group. */
  group?: string;
  /** A worker whose heartbeat is older than this is shown as not live. Default 30. */
  staleWorkerSeconds?: number;
  /** An open transaction older than this is reported as blocking. Default 5. */
  blockingAfterSeconds?: number;
  /**
   * Count the lag exactly up to this many messages (health's maxLag + 1): every lagging checkpoint,
   * and the matching undispatched messages however sparse. Slower on big stores (it reads every
   * lagging checkpoint and may walk the rest of the log). Default: the bounded counts.
   */
  exactLagUpTo?: number;
}

interface SubscriptionRow {
  group_name: string;
  name: string;
  status: string;
  log_position: number;
  behind: number;
  streams_behind: number;
  retry: number;
  failed: number;
  processed: number;
  attention: number;
  oldest_pending_age: number | null;
  undispatched: number;
  scanned: number;
  oldest_undispatched_age: number | null;
}

/*
 * The next log entries after the subscription's log position, in log order: an index walk that stops
 * at the cap, then the filter. (Filtering inside, the planner misjudged how many match and sorted a
 * bitmap of the whole rest of the log: 540 ms per subscription on 1M messages.)
 */
const boundedUndispatched = (ctx: SqlContext) => `LEFT JOIN LATERAL (
      SELECT count(*) FILTER (WHERE ${MATCHES_FILTER})::int AS undispatched,
             count(*)::int AS scanned,
             min(m.created_at) FILTER (WHERE ${MATCHES_FILTER}) AS oldest
        FROM (SELECT l.stream_name, l.type, l.created_at FROM ${ctx.s}.messages l
               WHERE (l.transaction_id, l.global_position) > (s.log_transaction_id, s.log_position)
               ORDER BY l.transaction_id, l.global_position
               LIMIT ${UNDISPATCHED_COUNT_CAP}) m) und ON true`;

/* The matching messages after the log position, counted up to `upTo` however sparse they are. */
const exactUndispatched = (ctx: SqlContext, upTo: number) => `LEFT JOIN LATERAL (
      SELECT count(*)::int AS undispatched, count(*)::int AS scanned, min(x.created_at) AS oldest FROM (
        SELECT m.created_at FROM ${ctx.s}.messages m
         WHERE (m.transaction_id, m.global_position) > (s.log_transaction_id, s.log_position)
           AND ${MATCHES_FILTER}
         LIMIT ${Math.floor(upTo)}) x) und ON true`;

/*
 * Per subscription, each part bounded whatever the number of checkpoints or messages:
 *  - its checkpoints needing attention (lagging, retrying, failed), up to a cap, through
 *    checkpoints_attention_idx (a caught-up, idle checkpoint costs nothing);
 *  - the oldest message waiting after a lagging checkpoint, probed on the first lagging ones;
 *  - the sum of its positions, from the counter rows the checkpoint triggers keep;
 *  - the matching log messages after its log position that the global reader has not dispatched
 *    yet, counted up to a cap.
 */
const subscriptionsSql = (ctx: SqlContext, exactUpTo: number | undefined) => `
  WITH subs AS (${subscriptionsWithFilters(ctx.s, 1)} WHERE ($2::text IS NULL OR s.group_name = $2))
  SELECT s.group_name, s.name, s.status,
         ${lastPassedSql(ctx, 's')} AS log_position,
         cp.behind, cp.streams_behind, cp.retry, cp.failed, cp.attention, pr.processed,
         extract(epoch FROM now() - op.oldest)::float8 AS oldest_pending_age,
         und.undispatched, und.scanned, extract(epoch FROM now() - und.oldest)::float8 AS oldest_undispatched_age
    FROM subs s
    LEFT JOIN LATERAL (
      SELECT coalesce(sum(a.stream_version - a.stream_position)
                        FILTER (WHERE a.stream_position < a.stream_version), 0)::bigint AS behind,
             count(*) FILTER (WHERE a.stream_position < a.stream_version)::int AS streams_behind,
             count(*) FILTER (WHERE a.status = 'retry')::int AS retry,
             count(*) FILTER (WHERE a.status = 'failed')::int AS failed,
             count(*)::int AS attention
        FROM (SELECT c.stream_version, c.stream_position, c.status FROM ${ctx.s}.checkpoints c
               WHERE c.group_name = s.group_name AND c.subscription_name = s.name
                 AND (c.status <> 'active' OR c.claimable)
               LIMIT ${exactUpTo === undefined ? ATTENTION_COUNT_CAP : 'ALL'}) a) cp ON true
    LEFT JOIN LATERAL (
      -- One probe of the stream key per lagging checkpoint: a join let the planner hash the whole
      -- messages table (1.25 s on 1M messages and 2,000 lagging checkpoints).
      SELECT min((SELECT m.created_at FROM ${ctx.s}.messages m
                   WHERE m.stream_name = l.stream_name AND m.stream_position = l.stream_position + 1)) AS oldest
        FROM (SELECT c.stream_name, c.stream_position FROM ${ctx.s}.checkpoints c
               WHERE c.group_name = s.group_name AND c.subscription_name = s.name
                 AND (c.status <> 'active' OR c.claimable)
                 AND c.stream_position < c.stream_version
               LIMIT ${OLDEST_PROBE_CAP}) l) op ON true
    LEFT JOIN LATERAL (
      SELECT coalesce(sum(p.processed), 0)::bigint AS processed FROM ${ctx.s}.subscription_progress p
       WHERE p.group_name = s.group_name AND p.subscription_name = s.name) pr ON true
    ${exactUpTo === undefined ? boundedUndispatched(ctx) : exactUndispatched(ctx, exactUpTo)}
   ORDER BY s.group_name, s.name`;

const groupsSql = (ctx: SqlContext) => `
  SELECT g.name, g.reader_worker_id, extract(epoch FROM now() - g.reader_at)::float8 AS reader_age,
         (SELECT ${lastPassedSql(ctx, 'r')}
            FROM (SELECT s.log_transaction_id, s.log_position FROM ${ctx.s}.subscriptions s
                   WHERE s.group_name = g.name AND s.status <> 'unknown'
                   ORDER BY s.log_transaction_id, s.log_position LIMIT 1) r) AS reader_position
    FROM ${ctx.s}.subscription_groups g
   WHERE ($1::text IS NULL OR g.name = $1)
   ORDER BY g.name`;

const workersSql = (ctx: SqlContext) => `
  SELECT id, host, pid, group_name, concurrency,
         extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age
    FROM ${ctx.s}.workers
   WHERE ($1::text IS NULL OR group_name = $1)
   ORDER BY group_name, started_at`;

/** One picture of every group's progress: what `es lag` shows and prints with --json. */
export async function lagSnapshot(
  db: Queryable,
  ctx: SqlContext,
  opts: LagSnapshotOptions = {},
): Promise<LagSnapshot> {
  assertOptions(opts, 'lagSnapshot', [
    'subscriptions',
    'group',
    'staleWorkerSeconds',
    'blockingAfterSeconds',
    'exactLagUpTo',
  ]);
  assertText(opts.group, 'group');
  if (opts.subscriptions !== undefined && !Array.isArray(opts.subscriptions))
    throw new InvalidInputError(
      `subscriptions must be an array (subscriptionFilters(config)), got ${quoteValue(opts.subscriptions)}.`,
    );
  if (opts.staleWorkerSeconds !== undefined) assertInteger(opts.staleWorkerSeconds, 'staleWorkerSeconds', 1);
  if (opts.blockingAfterSeconds !== undefined)
    assertInteger(opts.blockingAfterSeconds, 'blockingAfterSeconds', 0);
  const group = opts.group ?? null;
  const stale = opts.staleWorkerSeconds ?? 30;
  // One after the other: `db` may be a single client (pg refuses concurrent queries on one).
  if (opts.exactLagUpTo !== undefined) assertInteger(opts.exactLagUpTo, 'exactLagUpTo', 1);
  const subs = await db.query<SubscriptionRow>(subscriptionsSql(ctx, opts.exactLagUpTo), [
    JSON.stringify(opts.subscriptions ?? []),
    group,
  ]);
  const groups = await db.query<{
    name: string;
    reader_worker_id: string | null;
    reader_age: number | null;
    reader_position: number | null;
  }>(groupsSql(ctx), [group]);
  const workers = await db.query<{
    id: string;
    host: string;
    pid: number;
    group_name: string;
    concurrency: number;
    heartbeat_age: number;
  }>(workersSql(ctx), [group]);
  const head = await logHead(db, ctx);
  const readable = await readableUpTo(db, ctx);
  const blocking = await oldestOpenTransaction(db, opts.blockingAfterSeconds ?? 5, ctx.schema);
  return {
    takenAt: new Date().toISOString(),
    schema: ctx.schema,
    head,
    readable,
    blocking: blocking ?? null,
    groups: groups.rows.map((g) => {
      const ws: WorkerInfo[] = workers.rows
        .filter((w) => w.group_name === g.name)
        .map((w) => ({
          id: w.id,
          host: w.host,
          pid: w.pid,
          group: w.group_name,
          concurrency: w.concurrency,
          heartbeatAgeSeconds: w.heartbeat_age,
          live: w.heartbeat_age < stale,
        }));
      return {
        name: g.name,
        readerPosition: g.reader_position,
        readerWorkerId: g.reader_worker_id,
        readerAgeSeconds: g.reader_age,
        workers: ws,
        liveWorkers: ws.filter((w) => w.live).length,
        subscriptions: subs.rows
          .filter((s) => s.group_name === g.name)
          .map((s) => {
            const ages = [s.oldest_pending_age, s.oldest_undispatched_age].filter(
              (a): a is number => a !== null,
            );
            return {
              group: s.group_name,
              name: s.name,
              status: s.status,
              logPosition: s.log_position,
              lag: s.behind + s.undispatched,
              behind: s.behind,
              undispatched: s.undispatched,
              undispatchedCapped: s.scanned >= (opts.exactLagUpTo ?? UNDISPATCHED_COUNT_CAP),
              checkpointsCapped: opts.exactLagUpTo === undefined && s.attention >= ATTENTION_COUNT_CAP,
              streamsBehind: s.streams_behind,
              oldestUnprocessedAgeSeconds: ages.length > 0 ? Math.max(...ages) : null,
              retry: s.retry,
              failed: s.failed,
              processed: s.processed,
              throughput: null,
            };
          }),
      };
    }),
  };
}

/** The snapshot with each subscription's throughput measured against the previous snapshot. */
export function withThroughput(next: LagSnapshot, prev: LagSnapshot | undefined): LagSnapshot {
  if (!prev) return next;
  const seconds = (Date.parse(next.takenAt) - Date.parse(prev.takenAt)) / 1000;
  if (seconds <= 0) return next;
  const before = new Map<string, number>();
  for (const g of prev.groups)
    for (const s of g.subscriptions) before.set(`${s.group}/${s.name}`, s.processed);
  return {
    ...next,
    groups: next.groups.map((g) => ({
      ...g,
      subscriptions: g.subscriptions.map((s) => {
        const was = before.get(`${s.group}/${s.name}`);
        // A replay or reset moves positions back: no meaningful rate for that interval.
        return {
          ...s,
          throughput: was === undefined || s.processed < was ? null : (s.processed - was) / seconds,
        };
      }),
    })),
  };
}
