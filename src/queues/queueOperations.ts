import type pg from 'pg';
import { inTransaction, type Queryable, type SqlContext } from '../db/queryable.js';
import { InvalidInputError } from '../errors.js';
import type { Metadata } from '../store/types.js';
import { assertQueueName } from './enqueue.js';
import type { JobError } from './queueJobsSql.js';

/** A queue's state, for `es queue list`, `es lag`, /metrics and `es health`. */
export interface QueueSummary {
  queue: string;
  /** Jobs a worker may take now. */
  ready: number;
  /** Delivered and not acked, visibility not expired. */
  inFlight: number;
  /** Waiting for their time (a delay, or a retry's backoff). */
  delayed: number;
  /** Of the delayed jobs, those waiting for a retry (delivered before, failed). */
  retrying: number;
  /** Waiting behind an earlier job of their key. */
  waitingOnKey: number;
  dead: number;
  /** Age of the oldest job not done (seconds; 0 when empty). */
  oldestAgeSeconds: number;
  /** How long the oldest ready job has been ready (seconds; 0 when none is): what the workers owe. */
  readyAgeSeconds: number;
  /** Jobs completed per minute, averaged over the last 5 minutes. */
  completedPerMinute: number;
  failedPerMinute: number;
}

/**
 * Every queue that has jobs, dead letters or recent stats (and those named in `include`, even
 * empty), by name.
 */
export async function listQueues(
  db: Queryable,
  ctx: SqlContext,
  opts: { include?: string[]; queue?: string } = {},
): Promise<QueueSummary[]> {
  const r = await db.query<{
    queue: string;
    ready: string;
    in_flight: string;
    delayed: string;
    retrying: string;
    waiting: string;
    dead: string;
    oldest: number | null;
    ready_age: number | null;
    completed: string;
    failed: string;
  }>(
    `WITH jobs AS (
       SELECT queue,
              count(*) FILTER (WHERE visible_at <= now()) AS ready,
              count(*) FILTER (WHERE lease_token IS NOT NULL AND visible_at > now() AND visible_at < 'infinity') AS in_flight,
              count(*) FILTER (WHERE lease_token IS NULL AND visible_at > now() AND visible_at < 'infinity') AS delayed,
              count(*) FILTER (WHERE lease_token IS NULL AND deliveries > 0 AND visible_at > now()
                                 AND visible_at < 'infinity') AS retrying,
              count(*) FILTER (WHERE visible_at = 'infinity') AS waiting,
              extract(epoch FROM now() - min(created_at))::float8 AS oldest,
              extract(epoch FROM now() - min(visible_at) FILTER (WHERE visible_at <= now()))::float8 AS ready_age
         FROM ${ctx.s}.queue_jobs GROUP BY queue),
     dead AS (SELECT queue, count(*) AS dead FROM ${ctx.s}.queue_dead_letters GROUP BY queue),
     stats AS (
       SELECT queue, sum(completed) AS completed, sum(failed) AS failed
         FROM ${ctx.s}.queue_stats WHERE minute >= date_trunc('minute', now()) - interval '4 minutes'
        GROUP BY queue),
     names AS (
       SELECT queue FROM jobs UNION SELECT queue FROM dead UNION SELECT queue FROM stats
       UNION SELECT unnest($1::text[]))
     SELECT n.queue, coalesce(j.ready, 0) AS ready, coalesce(j.in_flight, 0) AS in_flight,
            coalesce(j.delayed, 0) AS delayed, coalesce(j.retrying, 0) AS retrying,
            coalesce(j.waiting, 0) AS waiting, coalesce(d.dead, 0) AS dead,
            j.oldest, j.ready_age, coalesce(s.completed, 0) AS completed, coalesce(s.failed, 0) AS failed
       FROM names n LEFT JOIN jobs j USING (queue) LEFT JOIN dead d USING (queue) LEFT JOIN stats s USING (queue)
      WHERE $2::text IS NULL OR n.queue = $2
      ORDER BY n.queue`,
    [opts.include ?? [], opts.queue ?? null],
  );
  return r.rows.map((row) => ({
    queue: row.queue,
    ready: Number(row.ready),
    inFlight: Number(row.in_flight),
    delayed: Number(row.delayed),
    retrying: Number(row.retrying),
    waitingOnKey: Number(row.waiting),
    dead: Number(row.dead),
    oldestAgeSeconds: Math.max(0, row.oldest ?? 0),
    readyAgeSeconds: Math.max(0, row.ready_age ?? 0),
    completedPerMinute: Number(row.completed) / 5,
    failedPerMinute: Number(row.failed) / 5,
  }));
}

export type JobState = 'ready' | 'in-flight' | 'delayed' | 'waiting-on-key';

/** A job as `es queue peek` shows it. */
export interface QueuedJob {
  id: string;
  queue: string;
  state: JobState;
  type: string;
  data: unknown;
  metadata: Metadata;
  key: string | null;
  deliveries: number;
  /** When a worker may take it (for in-flight jobs: when its visibility ends). */
  visibleAt: Date | null;
  runAt: Date;
  createdAt: Date;
  leasedBy: string | null;
  errors: JobError[];
}

/** The queue's next jobs in the order workers take them (ready first), without taking them. */
export async function peekQueue(
  db: Queryable,
  ctx: SqlContext,
  queue: string,
  opts: { limit?: number } = {},
): Promise<QueuedJob[]> {
  assertQueueName(queue);
  const r = await db.query(
    `SELECT id, queue, type, data, metadata, key, deliveries, run_at, created_at, leased_by, errors,
            CASE WHEN visible_at = 'infinity' THEN NULL ELSE visible_at END AS visible_at,
            CASE WHEN visible_at = 'infinity' THEN 'waiting-on-key'
                 WHEN visible_at <= now() THEN 'ready'
                 WHEN lease_token IS NOT NULL THEN 'in-flight' ELSE 'delayed' END AS state
       FROM ${ctx.s}.queue_jobs WHERE queue = $1
      ORDER BY visible_at, key_seq NULLS FIRST, id LIMIT $2`,
    [queue, opts.limit ?? 20],
  );
  return r.rows.map((row) => ({
    id: row.id,
    queue: row.queue,
    state: row.state,
    type: row.type,
    data: row.data,
    metadata: row.metadata,
    key: row.key,
    deliveries: row.deliveries,
    visibleAt: row.visible_at,
    runAt: row.run_at,
    createdAt: row.created_at,
    leasedBy: row.leased_by,
    errors: row.errors,
  }));
}

/** A dead letter: a job that failed maxDeliveries times, with every error. */
export interface DeadLetter {
  id: string;
  queue: string;
  type: string;
  data: unknown;
  metadata: Metadata;
  key: string | null;
  deliveries: number;
  errors: JobError[];
  createdAt: Date;
  deadAt: Date;
}

/** A queue's dead letters, oldest first. */
export async function listDeadLetters(
  db: Queryable,
  ctx: SqlContext,
  queue: string,
  opts: { limit?: number } = {},
): Promise<DeadLetter[]> {
  assertQueueName(queue);
  const r = await db.query(
    `SELECT id, queue, type, data, metadata, key, deliveries, errors, created_at, dead_at
       FROM ${ctx.s}.queue_dead_letters WHERE queue = $1 ORDER BY dead_at, id LIMIT $2`,
    [queue, opts.limit ?? 100],
  );
  return r.rows.map((row) => ({
    id: row.id,
    queue: row.queue,
    type: row.type,
    data: row.data,
    metadata: row.metadata,
    key: row.key,
    deliveries: row.deliveries,
    errors: row.errors,
    createdAt: row.created_at,
    deadAt: row.dead_at,
  }));
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Put dead letters back on their queue (the given ids, or all with `ids: 'all'`), ready now, their
 * error history kept; deliveries count from 0 again. Returns the ids put back (an id not among the
 * queue's dead letters is not in it).
 */
export async function redriveDeadLetters(
  pool: pg.Pool,
  ctx: SqlContext,
  queue: string,
  ids: string[] | 'all',
): Promise<string[]> {
  assertQueueName(queue);
  if (ids !== 'all') {
    if (!Array.isArray(ids) || ids.length === 0)
      throw new InvalidInputError('Give the dead letters to redrive: ids, or all.');
    for (const id of ids)
      if (typeof id !== 'string' || !UUID.test(id))
        throw new InvalidInputError(
          `Invalid job id ${JSON.stringify(id)}: job ids are UUIDs (see es queue dead).`,
        );
  }
  const r = await pool.query<{ id: string }>(`SELECT id FROM ${ctx.s}.queue_redrive($1, $2::uuid[]) AS id`, [
    queue,
    ids === 'all' ? null : ids.map((i) => i.toLowerCase()),
  ]);
  return r.rows.map((row) => row.id);
}

/**
 * Delete a queue's jobs (waiting, delayed and in flight: a running handler's ack then finds nothing)
 * or, with `deadLetters`, its dead letters. Returns how many were deleted.
 */
export async function purgeQueue(
  pool: pg.Pool,
  ctx: SqlContext,
  queue: string,
  opts: { deadLetters?: boolean } = {},
): Promise<number> {
  assertQueueName(queue);
  if (opts.deadLetters) {
    const r = await pool.query(`DELETE FROM ${ctx.s}.queue_dead_letters WHERE queue = $1`, [queue]);
    return r.rowCount ?? 0;
  }
  return inTransaction(pool, async (client) => {
    // Keys first: an enqueue holding one of them finishes before its jobs are deleted below.
    await client.query(`DELETE FROM ${ctx.s}.queue_keys WHERE queue = $1`, [queue]);
    const r = await client.query(`DELETE FROM ${ctx.s}.queue_jobs WHERE queue = $1`, [queue]);
    return r.rowCount ?? 0;
  });
}
