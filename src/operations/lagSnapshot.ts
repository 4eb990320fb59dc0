import type { Queryable, SqlContext } from '../db/queryable.js';
import { type BlockingTransaction, logHead, oldestOpenTransaction, readableUpTo } from '../store/readLog.js';
import { MATCHES_FILTER, type SubscriptionFilter, subscriptionsWithFilters } from './subscriptionFilters.js';

/** Undispatched messages are counted up to this many per subscription (keeps a refresh cheap). */
export const UNDISPATCHED_COUNT_CAP = 100_000;

export interface SubscriptionLag {
  group: string;
  name: string;
  status: string;
  /** The subscription's place in the global log: everything up to here was dispatched. */
  logPosition: number;
  /** Messages not processed yet: `behind` + `undispatched`. */
  lag: number;
  /** Messages of its streams after their checkpoints (dispatched, not yet handled). */
  behind: number;
  /** Matching log messages the global reader has not dispatched yet (capped, see `undispatchedCapped`). */
  undispatched: number;
  undispatchedCapped: boolean;
  /** Streams with work waiting. */
  streamsBehind: number;
  /** Age of the oldest message not processed yet, or null when there is none. */
  oldestUnprocessedAgeSeconds: number | null;
  retry: number;
  failed: number;
  /** Sum of the checkpoints' positions: grows by one per handled message (throughput = its rate). */
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
  /** The lowest log position among the group's subscriptions: where its global reader reads. */
  readerPosition: number | null;
  readerWorkerId: string | null;
  /** Seconds since the global reader last advanced, or null if it never did. */
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
  oldest_pending_age: number | null;
  undispatched: number;
  oldest_undispatched_age: number | null;
}

/*
 * Per subscription: its checkpoints (lagging streams, retry/failed counts, the sum of positions for
 * throughput), the oldest message waiting after a checkpoint, and the matching log messages after
 * its log position that the global reader has not dispatched yet (counted up to a cap).
 */
const subscriptionsSql = (ctx: SqlContext) => `
  WITH subs AS (${subscriptionsWithFilters(ctx.s, 1)} WHERE ($2::text IS NULL OR s.group_name = $2))
  SELECT s.group_name, s.name, s.status, s.log_position,
         cp.behind, cp.streams_behind, cp.retry, cp.failed, cp.processed,
         extract(epoch FROM now() - op.oldest)::float8 AS oldest_pending_age,
         und.undispatched, extract(epoch FROM now() - und.oldest)::float8 AS oldest_undispatched_age
    FROM subs s
    LEFT JOIN LATERAL (
      SELECT coalesce(sum(c.stream_version - c.stream_position)
                        FILTER (WHERE c.stream_position < c.stream_version), 0)::bigint AS behind,
             count(*) FILTER (WHERE c.stream_position < c.stream_version)::int AS streams_behind,
             count(*) FILTER (WHERE c.status = 'retry')::int AS retry,
             count(*) FILTER (WHERE c.status = 'failed')::int AS failed,
             coalesce(sum(c.stream_position), 0)::bigint AS processed
        FROM ${ctx.s}.checkpoints c
       WHERE c.group_name = s.group_name AND c.subscription_name = s.name) cp ON true
    LEFT JOIN LATERAL (
      SELECT min(m.created_at) AS oldest
        FROM ${ctx.s}.checkpoints c
        JOIN ${ctx.s}.messages m ON m.stream_name = c.stream_name AND m.stream_position = c.stream_position + 1
       WHERE c.group_name = s.group_name AND c.subscription_name = s.name
         AND c.stream_position < c.stream_version) op ON true
    LEFT JOIN LATERAL (
      SELECT count(*)::int AS undispatched, min(x.created_at) AS oldest FROM (
        SELECT m.created_at FROM ${ctx.s}.messages m
         WHERE (m.transaction_id, m.global_position) > (s.log_transaction_id, s.log_position)
           AND ${MATCHES_FILTER}
         LIMIT ${UNDISPATCHED_COUNT_CAP}) x) und ON true
   ORDER BY s.group_name, s.name`;

const groupsSql = (ctx: SqlContext) => `
  SELECT g.name, g.reader_worker_id, extract(epoch FROM now() - g.reader_at)::float8 AS reader_age,
         (SELECT min(s.log_position) FROM ${ctx.s}.subscriptions s
           WHERE s.group_name = g.name AND s.status <> 'unknown') AS reader_position
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
  const group = opts.group ?? null;
  const stale = opts.staleWorkerSeconds ?? 30;
  const [subs, groups, workers, head, readable, blocking] = await Promise.all([
    db.query<SubscriptionRow>(subscriptionsSql(ctx), [JSON.stringify(opts.subscriptions ?? []), group]),
    db.query<{
      name: string;
      reader_worker_id: string | null;
      reader_age: number | null;
      reader_position: number | null;
    }>(groupsSql(ctx), [group]),
    db.query<{
      id: string;
      host: string;
      pid: number;
      group_name: string;
      concurrency: number;
      heartbeat_age: number;
    }>(workersSql(ctx), [group]),
    logHead(db, ctx),
    readableUpTo(db, ctx),
    oldestOpenTransaction(db, opts.blockingAfterSeconds ?? 5),
  ]);
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
              undispatchedCapped: s.undispatched >= UNDISPATCHED_COUNT_CAP,
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
