import type pg from 'pg';
import type { ResolvedConfig, ResolvedRetentionPolicy } from '../config/types.js';
import { type Queryable, type SqlContext, withClient } from '../db/queryable.js';
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
 * Candidates of one policy among the messages `range` selects: matching streams ($1 category or $2
 * LIKE pattern), older than $3 ms or beyond the newest $4 of their stream, never the newest message
 * of a stream: every writer checks an expected version against the stream's head
 * (src/store/appendToStream.ts, migration 0012), so the head is what keeps a deleted position from
 * being written again. The head is one backward probe of the (stream_name, stream_position) index.
 */
const candidatesSql = (ctx: SqlContext, range: string) => `
  SELECT m.ctid, m.global_position, m.stream_name, m.stream_position, m.transaction_id, m.type
    FROM ${ctx.s}.messages m
    JOIN LATERAL (SELECT max(h.stream_position) AS head FROM ${ctx.s}.messages h
                   WHERE h.stream_name = m.stream_name) h ON true
   WHERE ${range}
     AND ($1::text IS NULL OR split_part(m.stream_name, '-', 1) = $1)
     AND ($2::text IS NULL OR m.stream_name LIKE $2 ESCAPE '\\')
     AND m.stream_position < h.head
     AND (($3::bigint IS NOT NULL AND m.created_at < now() - make_interval(secs => $3::bigint / 1000.0))
       OR ($4::bigint IS NOT NULL AND m.stream_position <= h.head - $4::bigint))`;

/*
 * The candidates (CTE `cand`) a subscription (not `unknown`) has not processed, with the holder:
 * - its stream's checkpoint is behind it (stream_position < the message's position): one probe of
 *   the checkpoints' primary key per candidate and subscription, forced by the LATERAL ... LIMIT
 *   (as an EXISTS under an OR, the planner hashed it and scanned every checkpoint per candidate:
 *   the retention of issue 19 that slowed down with the log), or
 * - the subscription has not dispatched it yet: it lies after the subscription's log position and
 *   matches the subscription's filter ($5; unknown filters match everything).
 * The global reader advances the log position in the transaction that upserts the checkpoints, so
 * one statement sees a message either as undispatched or through its checkpoint, never neither.
 */
const heldSql = (ctx: SqlContext) => `
  SELECT m.global_position, s.group_name || '/' || s.name AS holder
    FROM cand m CROSS JOIN subs s
    JOIN LATERAL (SELECT 1 FROM ${ctx.s}.checkpoints c
                   WHERE c.group_name = s.group_name AND c.subscription_name = s.name
                     AND c.stream_name = m.stream_name AND c.stream_position < m.stream_position
                   LIMIT 1) behind ON true
  UNION
  SELECT m.global_position, s.group_name || '/' || s.name
    FROM cand m JOIN subs s
      ON (m.transaction_id, m.global_position) > (s.log_transaction_id, s.log_position) AND ${MATCHES_FILTER}`;

const subsSql = (ctx: SqlContext) =>
  `subs AS MATERIALIZED (${subscriptionsWithFilters(ctx.s, 5)} WHERE s.status <> 'unknown')`;

/** Dry run: the whole policy in one set-based statement, nothing deleted. */
const countSql = (ctx: SqlContext) => `
  WITH ${subsSql(ctx)},
  cand AS MATERIALIZED (${candidatesSql(ctx, 'true')}),
  held AS MATERIALIZED (${heldSql(ctx)})
  SELECT ((SELECT count(*) FROM cand) - (SELECT count(DISTINCT global_position) FROM held))::int AS deletable,
         (SELECT count(DISTINCT global_position) FROM held)::int AS protected,
         (SELECT coalesce(array_agg(DISTINCT holder), '{}') FROM held) AS held_by`;

/*
 * One bounded batch: the next $6 messages of the log by position after where the last batch stopped
 * ($8), and of those the deletable candidates. So no statement holds more than $6 row locks, and
 * each batch costs the same whatever the log and the checkpoints hold: a run is linear in the log it
 * passes over. They are deleted by the tuple ids the candidates were read at (a TID scan, no index
 * descent: about twice the rate of deleting by primary key). A message updated after this
 * statement's snapshot (a transaction id rebase) is followed to its new version and deleted, as the
 * lookup by primary key did.
 */
const deleteBatchSql = (ctx: SqlContext) => `
  WITH win AS MATERIALIZED (
    SELECT global_position FROM ${ctx.s}.messages WHERE global_position > $8
     ORDER BY global_position LIMIT $6),
  ${subsSql(ctx)},
  cand AS MATERIALIZED (${candidatesSql(ctx, 'm.global_position > $8 AND m.global_position <= (SELECT max(global_position) FROM win)')}),
  held AS MATERIALIZED (${heldSql(ctx)}),
  deleted AS (
    DELETE FROM ${ctx.s}.messages
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM cand
                              WHERE $7::boolean OR global_position NOT IN (SELECT global_position FROM held)))
    RETURNING global_position)
  SELECT (SELECT count(*) FROM deleted)::int AS n,
         (SELECT count(DISTINCT global_position) FROM held)::int AS held,
         (SELECT coalesce(array_agg(DISTINCT holder), '{}') FROM held) AS held_by,
         (SELECT count(*) FROM win)::int AS scanned,
         (SELECT max(global_position) FROM win) AS last`;

/*
 * Run one retention statement with JIT compilation off. Its cost estimate grows with the tables
 * (the candidates times the subscriptions times an index probe), and past jit_above_cost the server
 * spent about 150 ms compiling each 1,000-message batch that runs in 20 ms: the batches slowed
 * down as the log grew. On a pool, a transaction of its own with SET LOCAL; on a client the caller
 * passed in (maybe inside its own transaction), applyRetention turns JIT off for the run and puts
 * the caller's setting back.
 */
/** A pool (of any copy of pg) counts its idle clients; a client does not. */
const isPool = (db: Queryable): db is pg.Pool => 'idleCount' in db;

async function runWithoutJit<R extends pg.QueryResultRow>(
  db: Queryable,
  sql: string,
  params: unknown[],
): Promise<R[]> {
  if (!isPool(db)) return (await db.query<R>(sql, params)).rows;
  return withClient(db, async (client) => {
    await client.query('BEGIN; SET LOCAL jit = off');
    try {
      const { rows } = await client.query<R>(sql, params);
      await client.query('COMMIT');
      return rows;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}

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
  if (isPool(db)) return applyPolicies(db, ctx, policies, opts);
  const { rows } = await db.query<{ jit: string }>(
    `SELECT current_setting('jit') AS jit, set_config('jit', 'off', false)`,
  );
  try {
    return await applyPolicies(db, ctx, policies, opts);
  } finally {
    // In a transaction that failed, the setting went back with it (and this query fails).
    await db.query(`SELECT set_config('jit', $1, false)`, [rows[0]?.jit ?? 'on']).catch(() => undefined);
  }
}

async function applyPolicies(
  db: Queryable,
  ctx: SqlContext,
  policies: ResolvedRetentionPolicy[],
  opts: RetentionOptions,
): Promise<RetentionResult> {
  const batchSize = opts.batchSize ?? 1000;
  const force = opts.force ?? false;
  const dryRun = opts.dryRun ?? false;
  const subs = opts.subscriptions ?? [];
  const results: PolicyResult[] = [];
  for (const policy of policies) {
    const params = policyParams(policy, subs);
    const result: PolicyResult = { policy: policy.name, deleted: 0, protected: 0, heldBy: [], batches: 0 };
    if (dryRun) {
      const rows = await runWithoutJit<{ deletable: number; protected: number; held_by: string[] }>(
        db,
        countSql(ctx),
        params,
      );
      const counts = rows[0] ?? { deletable: 0, protected: 0, held_by: [] };
      result.deleted = counts.deletable + (force ? counts.protected : 0);
      result.protected = force ? 0 : counts.protected;
      result.heldBy = force ? [] : counts.held_by;
    } else {
      // What the batches kept is what they found held: the same candidates the dry run counts, seen
      // window by window (one pass over the log, not one more).
      const heldBy = new Set<string>();
      let after = 0;
      for (;;) {
        if (opts.signal?.aborted) break;
        const done = await runWithoutJit<{
          n: number;
          held: number;
          held_by: string[];
          scanned: number;
          last: number | null;
        }>(db, deleteBatchSql(ctx), [...params, batchSize, force, after]);
        const batch = done[0];
        result.batches += 1;
        if (!batch) break;
        result.deleted += batch.n;
        if (!force) {
          result.protected += batch.held;
          for (const h of batch.held_by) heldBy.add(h);
        }
        if (batch.scanned < batchSize || batch.last === null) break;
        after = batch.last;
      }
      result.heldBy = [...heldBy].sort();
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
