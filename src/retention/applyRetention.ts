import type { ResolvedConfig, ResolvedRetentionPolicy } from '../config/types.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import {
  MATCHES_FILTER,
  type SubscriptionFilter,
  subscriptionFilters,
  subscriptionsWithFilters,
} from '../operations/subscriptionFilters.js';

export { type SubscriptionFilter, subscriptionFilters };

export interface RetentionOptions {
  /** Count what would be deleted, delete nothing. */
  dryRun?: boolean;
  /** Delete messages even when a subscription has not processed them yet. */
  force?: boolean;
  /** Messages per DELETE statement. Default 1000. */
  batchSize?: number;
  /** Subscription filters from the config; a subscription missing here protects every message it has not read. */
  subscriptions?: SubscriptionFilter[];
  signal?: AbortSignal;
}

export interface PolicyResult {
  policy: string;
  /** Deleted (or, in a dry run, deletable) messages. */
  deleted: number;
  /** Past the policy's limits but not yet processed by a subscription, so kept (0 with force). */
  protected: number;
  /** Subscriptions (`group/name`) holding protected messages back. */
  heldBy: string[];
  /** DELETE statements run. */
  batches: number;
}

export interface RetentionResult {
  dryRun: boolean;
  force: boolean;
  policies: PolicyResult[];
}

/** A `*` pattern as a LIKE pattern: `%`, `_` and `\` match themselves. */
export function streamPatternToLike(pattern: string): string {
  return pattern.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%');
}

/*
 * Candidates of one policy: matching streams ($1 category or $2 LIKE pattern), older than $3 ms or
 * beyond the newest $4 of their stream, never the newest message of a stream (its version, and so
 * optimistic concurrency on it, must survive).
 *
 * A candidate is held by the first subscription (not `unknown`) that has not processed it:
 * - its stream's checkpoint is behind it (stream_position < the message's position), or
 * - the subscription has not dispatched it yet: it lies after the subscription's log position and
 *   matches the subscription's filter ($5; unknown filters match everything).
 * The global reader advances the log position in the transaction that upserts the checkpoints, so
 * one statement sees a message either as undispatched or through its checkpoint, never neither.
 */
const candidatesSql = (ctx: SqlContext) => `
  WITH subs AS (${subscriptionsWithFilters(ctx.s, 5)} WHERE s.status <> 'unknown')
  SELECT m.global_position, held.holder
    FROM ${ctx.s}.messages m
    JOIN LATERAL (SELECT max(h.stream_position) AS head FROM ${ctx.s}.messages h
                   WHERE h.stream_name = m.stream_name) h ON true
    LEFT JOIN LATERAL (
      SELECT s.group_name || '/' || s.name AS holder FROM subs s
       WHERE EXISTS (SELECT 1 FROM ${ctx.s}.checkpoints c
                      WHERE c.group_name = s.group_name AND c.subscription_name = s.name
                        AND c.stream_name = m.stream_name AND c.stream_position < m.stream_position)
          OR ((m.transaction_id, m.global_position) > (s.log_transaction_id, s.log_position)
              AND ${MATCHES_FILTER})
       LIMIT 1
    ) held ON true
   WHERE ($1::text IS NULL OR split_part(m.stream_name, '-', 1) = $1)
     AND ($2::text IS NULL OR m.stream_name LIKE $2 ESCAPE '\\')
     AND m.stream_position < h.head
     AND (($3::bigint IS NOT NULL AND m.created_at < now() - make_interval(secs => $3::bigint / 1000.0))
       OR ($4::bigint IS NOT NULL AND m.stream_position <= h.head - $4::bigint))`;

const countSql = (ctx: SqlContext) => `
  SELECT count(*) FILTER (WHERE holder IS NULL)::int AS deletable,
         count(holder)::int AS protected,
         coalesce(array_agg(DISTINCT holder) FILTER (WHERE holder IS NOT NULL), '{}') AS held_by
    FROM (${candidatesSql(ctx)}) candidates`;

/* One bounded batch: at most $6 messages, so no statement holds many row locks for long. */
const deleteBatchSql = (ctx: SqlContext) => `
  DELETE FROM ${ctx.s}.messages WHERE global_position IN (
    SELECT global_position FROM (${candidatesSql(ctx)}) candidates
     WHERE $7::boolean OR holder IS NULL
     ORDER BY global_position LIMIT $6)`;

function policyParams(p: ResolvedRetentionPolicy, subs: SubscriptionFilter[]): unknown[] {
  return [
    p.category ?? null,
    p.stream === undefined ? null : streamPatternToLike(p.stream),
    p.maxAgeMs ?? null,
    p.maxCount ?? null,
    JSON.stringify(subs),
  ];
}

/**
 * Apply retention policies: delete, in bounded batches, messages older than `maxAgeMs` or beyond
 * the newest `maxCount` of their stream. Messages a subscription has not processed yet are kept
 * and reported unless `force`; the newest message of every stream is always kept.
 */
export async function applyRetention(
  db: Queryable,
  ctx: SqlContext,
  policies: ResolvedRetentionPolicy[],
  opts: RetentionOptions = {},
): Promise<RetentionResult> {
  const batchSize = opts.batchSize ?? 1000;
  const force = opts.force ?? false;
  const dryRun = opts.dryRun ?? false;
  const subs = opts.subscriptions ?? [];
  const results: PolicyResult[] = [];
  for (const policy of policies) {
    const params = policyParams(policy, subs);
    const { rows } = await db.query<{ deletable: number; protected: number; held_by: string[] }>(
      countSql(ctx),
      params,
    );
    const counts = rows[0] ?? { deletable: 0, protected: 0, held_by: [] };
    const result: PolicyResult = {
      policy: policy.name,
      deleted: dryRun ? counts.deletable + (force ? counts.protected : 0) : 0,
      protected: force ? 0 : counts.protected,
      heldBy: force ? [] : counts.held_by,
      batches: 0,
    };
    if (!dryRun) {
      for (;;) {
        if (opts.signal?.aborted) break;
        const r = await db.query(deleteBatchSql(ctx), [...params, batchSize, force]);
        result.batches += 1;
        result.deleted += r.rowCount ?? 0;
        if ((r.rowCount ?? 0) < batchSize) break;
      }
    }
    results.push(result);
  }
  return { dryRun, force, policies: results };
}

/**
 * The background loop for workers: apply the config's policies every `retention.intervalMs`
 * (nothing when unset) until `signal` aborts. Errors go to `onError` and the loop carries on.
 * Several workers may run it at once: each batch deletes what is still there.
 */
export async function runRetentionLoop(
  db: Queryable,
  ctx: SqlContext,
  config: ResolvedConfig,
  signal: AbortSignal,
  hooks: { onResult?: (r: RetentionResult) => void; onError?: (err: unknown) => void } = {},
): Promise<void> {
  const every = config.retention.intervalMs;
  if (every === undefined || config.retention.policies.length === 0) return;
  const subscriptions = subscriptionFilters(config);
  while (!signal.aborted) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, every);
      signal.addEventListener('abort', done, { once: true });
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
    });
    if (signal.aborted) return;
    try {
      const r = await applyRetention(db, ctx, config.retention.policies, {
        batchSize: config.retention.batchSize,
        subscriptions,
        signal,
      });
      hooks.onResult?.(r);
    } catch (err) {
      hooks.onError?.(err);
    }
  }
}

/**
 * The retention loop as a worker service: pass it in `createWorker({ services: [...] })` and the
 * worker runs it alongside its consumers and stops it on drain. Does nothing unless the config
 * sets `retention.interval` and has policies.
 */
export function createRetentionService(
  db: Queryable,
  ctx: SqlContext,
  config: ResolvedConfig,
  hooks: { onResult?: (r: RetentionResult) => void; onError?: (err: unknown) => void } = {},
): (signal: AbortSignal) => Promise<void> {
  return (signal) => runRetentionLoop(db, ctx, config, signal, hooks);
}
