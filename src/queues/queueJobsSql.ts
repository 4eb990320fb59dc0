import type pg from 'pg';
import { type RowsBeforeCommitResult, runRowsBeforeCommit } from '../db/pipeline.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import type { Metadata } from '../store/types.js';

/** One failed delivery, as kept in a job's error history. */
export interface JobError {
  /** The delivery that failed (1-based). */
  delivery: number;
  at: string;
  name: string;
  message: string;
  stack?: string;
  /** The worker whose visibility timeout expired, for an expired delivery. */
  worker?: string;
}

/** A job row as a dequeue returns it. */
export interface DequeuedRow {
  id: string;
  key: string | null;
  type: string;
  data: unknown;
  metadata: Metadata;
  deliveries: number;
  created_at: Date;
  errors: JobError[];
  /** Deliveries before this one: at maxDeliveries already, the job goes to the dead letters. */
  previous: number;
}

export interface EnqueueRow {
  id: string;
  key: string | null;
  type: string;
  /** JSON text. */
  data: string;
  /** JSON text. */
  metadata: string;
  delayMs: number;
}

/** Insert jobs (idempotent by id); returns the ids inserted, and the transaction's id. */
export async function insertJobs(
  db: Queryable,
  ctx: SqlContext,
  queue: string,
  rows: EnqueueRow[],
): Promise<{ inserted: string[]; xid: string }> {
  const r = await db.query<{ id: string | null; xid: string }>(
    statement(
      ctx,
      'queue_enqueue',
      `SELECT e.id, pg_current_xact_id()::text AS xid
         FROM (SELECT 1) AS one
         LEFT JOIN ${ctx.s}.queue_enqueue($1, $2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[],
                                          $7::float8[]) AS e(id) ON true`,
      [
        queue,
        rows.map((r) => r.id),
        rows.map((r) => r.key),
        rows.map((r) => r.type),
        rows.map((r) => r.data),
        rows.map((r) => r.metadata),
        rows.map((r) => r.delayMs),
      ],
    ),
  );
  return {
    inserted: r.rows.flatMap((row) => (row.id === null ? [] : [row.id])),
    xid: r.rows[0]?.xid ?? '0',
  };
}

export interface DequeueArgs {
  queue: string;
  limit: number;
  visibilityMs: number;
  maxDeliveries: number;
  token: string;
  workerId: string;
}

/**
 * Take up to `limit` visible jobs: one range scan of the dequeue index with SKIP LOCKED. Each gets
 * the delivery's token and becomes invisible for `visibilityMs`. A job taken again after its
 * visibility expired records that in its error history.
 */
function dequeueStatement(ctx: SqlContext, args: DequeueArgs): pg.QueryConfig {
  return statement(
    ctx,
    'queue_dequeue',
    `WITH picked AS (
         SELECT id, deliveries AS previous, lease_token AS previous_token, leased_by AS previous_holder
           FROM ${ctx.s}.queue_jobs
          WHERE queue = $1 AND visible_at <= now() AND visible_at < 'infinity'
          ORDER BY visible_at
          LIMIT $2
          FOR UPDATE SKIP LOCKED
       )
       UPDATE ${ctx.s}.queue_jobs j
          SET visible_at = now() + $3::float8 * interval '1 millisecond',
              deliveries = CASE WHEN p.previous < $4 THEN p.previous + 1 ELSE p.previous END,
              lease_token = $5, leased_by = $6, leased_at = now(),
              errors = CASE WHEN p.previous_token IS NULL THEN j.errors
                       ELSE j.errors || jsonb_build_array(jsonb_build_object(
                         'delivery', p.previous, 'at', now(), 'name', 'VisibilityTimeout',
                         'message', 'not acked within its visibility timeout (its worker died, stopped answering or lost the database)',
                         'worker', p.previous_holder)) END
         FROM picked p
        WHERE j.id = p.id
       RETURNING j.id, j.key, j.type, j.data, j.metadata, j.deliveries, j.created_at, j.errors,
                 p.previous`,
    [args.queue, args.limit, args.visibilityMs, args.maxDeliveries, args.token, args.workerId],
  );
}

/** Take up to `limit` visible jobs (see above); returns them once the dequeue committed. */
export async function dequeueJobs(db: Queryable, ctx: SqlContext, args: DequeueArgs): Promise<DequeuedRow[]> {
  const r = await db.query<DequeuedRow>(dequeueStatement(ctx, args));
  return r.rows;
}

/**
 * The same dequeue, its rows handed over as soon as it has run, before its commit's WAL flush
 * (runRowsBeforeCommit): a worker starts the handlers while the server commits, and waits for
 * `committed` before it acks, nacks or extends them. Every delivery still commits before the
 * worker says anything about it. If `committed` rejects (only a lost connection or a server crash
 * can do that), the worker gives the delivery up: if it did not commit, the job is visible again at
 * once and the delivery never counted; if it did, the job comes back after its visibility timeout.
 */
export function dequeueJobsBeforeCommit(
  pool: pg.Pool,
  ctx: SqlContext,
  args: DequeueArgs,
): Promise<RowsBeforeCommitResult<DequeuedRow>> {
  return runRowsBeforeCommit<DequeuedRow>(pool, dequeueStatement(ctx, args));
}

/** Ack: delete the jobs still held with their tokens; returns the ids deleted. */
export async function completeJobs(
  db: Queryable,
  ctx: SqlContext,
  jobs: { id: string; token: string }[],
): Promise<Set<string>> {
  const r = await db.query<{ id: string }>(
    statement(ctx, 'queue_complete', `SELECT id FROM ${ctx.s}.queue_complete($1::uuid[], $2::uuid[]) AS id`, [
      jobs.map((j) => j.id),
      jobs.map((j) => j.token),
    ]),
  );
  return new Set(r.rows.map((row) => row.id));
}

export type FailOutcome = 'retry' | 'dead' | 'lost';

/** Nack: visible again after `backoffMs`, or to the dead letters; 'lost' when no longer held. */
export async function failJob(
  db: Queryable,
  ctx: SqlContext,
  args: { id: string; token: string; error: JobError | null; backoffMs: number; dead: boolean },
): Promise<FailOutcome> {
  const r = await db.query<{ outcome: FailOutcome }>(
    statement(ctx, 'queue_fail', `SELECT ${ctx.s}.queue_fail($1, $2, $3::jsonb, $4::float8, $5) AS outcome`, [
      args.id,
      args.token,
      args.error === null ? null : JSON.stringify(args.error),
      args.backoffMs,
      args.dead,
    ]),
  );
  return r.rows[0]!.outcome;
}

/** Heartbeat: extend the visibility of jobs still held with their tokens; returns those ids. */
export async function extendJobs(
  db: Queryable,
  ctx: SqlContext,
  jobs: { id: string; token: string }[],
  visibilityMs: number,
): Promise<Set<string>> {
  const r = await db.query<{ id: string }>(
    statement(
      ctx,
      'queue_extend',
      `UPDATE ${ctx.s}.queue_jobs j SET visible_at = now() + $3::float8 * interval '1 millisecond'
         FROM unnest($1::uuid[], $2::uuid[]) AS t(id, token)
        WHERE j.id = t.id AND j.lease_token = t.token
       RETURNING j.id`,
      [jobs.map((j) => j.id), jobs.map((j) => j.token), visibilityMs],
    ),
  );
  return new Set(r.rows.map((row) => row.id));
}

/** Deliveries made visible again because their worker is gone, per queue. */
export type ReleasedJobs = Map<string, number>;

// A released delivery keeps its count (it was a delivery: maxDeliveries still bounds a job that
// kills its worker every time) and records why in the job's error history; visible at once.
const releaseSet = (reason: string) =>
  `visible_at = now(), lease_token = NULL, leased_by = NULL, leased_at = NULL,
   errors = j.errors || jsonb_build_array(jsonb_build_object(
     'delivery', j.deliveries, 'at', now(), 'name', 'WorkerLost', 'message', ${reason}, 'worker', j.leased_by))`;

const countByQueue = (rows: { queue: string; n: number }[]): ReleasedJobs =>
  new Map(rows.map((r) => [r.queue, r.n]));

/**
 * Make the deliveries held by a worker that exited (the supervisor saw it) visible again, now rather
 * than when their visibility expires. Only a dead worker's: its handlers cannot ack any more.
 */
export async function releaseWorkerJobs(
  db: Queryable,
  ctx: SqlContext,
  workerId: string,
  reason: string,
): Promise<ReleasedJobs> {
  const r = await db.query<{ queue: string; n: number }>(
    `WITH released AS (
       UPDATE ${ctx.s}.queue_jobs j SET ${releaseSet('$2::text')}
        WHERE j.leased_by = $1 AND j.lease_token IS NOT NULL
       RETURNING j.queue)
     SELECT queue, count(*)::int AS n FROM released GROUP BY queue`,
    [workerId, reason],
  );
  return countByQueue(r.rows);
}

/** Workers (other than `selfId`) whose heartbeat is older than `staleMs`, with that heartbeat. */
export async function staleWorkers(
  db: Queryable,
  ctx: SqlContext,
  args: { staleMs: number; selfId: string },
): Promise<{ id: string; heartbeatAt: string }[]> {
  const r = await db.query<{ id: string; heartbeat_at: string }>(
    statement(
      ctx,
      'queue_stale_workers',
      `SELECT id, heartbeat_at::text FROM ${ctx.s}.workers
        WHERE heartbeat_at < now() - $1::float8 * interval '1 millisecond' AND id <> $2`,
      [args.staleMs, args.selfId],
    ),
  );
  return r.rows.map((row) => ({ id: row.id, heartbeatAt: row.heartbeat_at }));
}

/**
 * Make the deliveries of workers whose heartbeat went stale visible again. The workers' rows are
 * locked and their staleness checked again under the lock (FOR UPDATE re-reads a row updated since
 * the snapshot), so a heartbeat that commits first keeps its worker's jobs; one that comes after
 * finds them released, and that worker's acks and extensions no longer match a lease token (one
 * holder acks, always). A worker whose heartbeat is being written now (row locked) is alive: skipped.
 */
export async function releaseStaleWorkerJobs(
  db: Queryable,
  ctx: SqlContext,
  args: { ids: string[]; staleMs: number },
): Promise<ReleasedJobs> {
  const r = await db.query<{ queue: string; n: number }>(
    `WITH stale AS (
       SELECT id FROM ${ctx.s}.workers
        WHERE id = ANY ($1::text[]) AND heartbeat_at < now() - $2::float8 * interval '1 millisecond'
          FOR UPDATE SKIP LOCKED),
     released AS (
       UPDATE ${ctx.s}.queue_jobs j
          SET ${releaseSet(`'its worker stopped answering (no heartbeat for ' || round($2::float8 / 1000) || ' s)'`)}
         FROM stale w
        WHERE j.leased_by = w.id AND j.lease_token IS NOT NULL
       RETURNING j.queue)
     SELECT queue, count(*)::int AS n FROM released GROUP BY queue`,
    [args.ids, args.staleMs],
  );
  return countByQueue(r.rows);
}

/**
 * Milliseconds until the queue's next job becomes visible (a delayed job, a retry after backoff, an
 * in-flight job whose visibility ends), or undefined when none will: the worker sleeps until then.
 */
export async function nextVisibleInMs(
  db: Queryable,
  ctx: SqlContext,
  queue: string,
): Promise<number | undefined> {
  const r = await db.query<{ ms: number | null }>(
    statement(
      ctx,
      'queue_next_visible',
      `SELECT extract(epoch FROM (SELECT min(visible_at) FROM ${ctx.s}.queue_jobs
                                   WHERE queue = $1 AND visible_at > now() AND visible_at < 'infinity')
                      - clock_timestamp())::float8 * 1000 AS ms`,
      [queue],
    ),
  );
  const ms = r.rows[0]?.ms;
  return ms === null || ms === undefined ? undefined : Math.max(0, ms);
}

/** Add a worker's completed/failed counts to the queue's per-minute stats. */
export async function addQueueStats(
  db: Queryable,
  ctx: SqlContext,
  queue: string,
  completed: number,
  failed: number,
): Promise<void> {
  await db.query(
    statement(
      ctx,
      'queue_stats',
      `INSERT INTO ${ctx.s}.queue_stats AS s (queue, minute, completed, failed)
       VALUES ($1, date_trunc('minute', now()), $2, $3)
       ON CONFLICT (queue, minute) DO UPDATE SET completed = s.completed + $2, failed = s.failed + $3`,
      [queue, completed, failed],
    ),
  );
}

/** Which of these transactions committed ('committed'), are still running, or rolled back. */
export async function transactionStatuses(
  db: Queryable,
  xids: string[],
): Promise<Map<string, string | null>> {
  const r = await db.query<{ xid: string; status: string | null }>(
    `SELECT x AS xid, pg_xact_status(x::xid8) AS status FROM unnest($1::text[]) AS x`,
    [xids],
  );
  return new Map(r.rows.map((row) => [row.xid, row.status]));
}
