import type pg from 'pg';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { InvalidInputError, NotFoundError } from '../errors.js';
import { assertQueueName, enqueueJobs, type JobToEnqueue } from '../queues/enqueue.js';
import {
  type DeadLetter,
  listDeadLetters,
  listQueues,
  peekQueue,
  purgeQueue,
  type QueuedJob,
  type QueueSummary,
  redriveDeadLetters,
} from '../queues/queueOperations.js';
import type { MessageStore } from '../store/messageStore.js';

/*
 * The operator rules of queues (what the CLI, the REST API and the dashboard may do, and what they
 * must give for it), over the queue library in src/queues/.
 */

/** Most jobs or dead letters one read returns. */
export const QUEUE_PAGE_MAX = 500;

function queueLimit(limit: unknown, fallback: number): number {
  if (limit === undefined) return fallback;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1 || limit > QUEUE_PAGE_MAX)
    throw new InvalidInputError(
      `limit must be an integer from 1 to ${QUEUE_PAGE_MAX}, got ${String(limit)}.`,
    );
  return limit;
}

/** Every queue with jobs, dead letters or recent stats, and every queue the config declares. */
export async function queueList(
  db: Queryable,
  ctx: SqlContext,
  declared: string[],
): Promise<{ items: QueueSummary[] }> {
  return { items: await listQueues(db, ctx, { include: declared }) };
}

/** The queue's next jobs in the order workers take them. */
export async function queueJobs(
  db: Queryable,
  ctx: SqlContext,
  queue: string,
  opts: { limit?: number } = {},
): Promise<{ queue: string; items: QueuedJob[] }> {
  assertQueueName(queue);
  return { queue, items: await peekQueue(db, ctx, queue, { limit: queueLimit(opts.limit, 20) }) };
}

/** The queue's dead letters, oldest first. */
export async function queueDeadLetters(
  db: Queryable,
  ctx: SqlContext,
  queue: string,
  opts: { limit?: number } = {},
): Promise<{ queue: string; items: DeadLetter[] }> {
  assertQueueName(queue);
  return { queue, items: await listDeadLetters(db, ctx, queue, { limit: queueLimit(opts.limit, 100) }) };
}

export interface RedriveResult {
  queue: string;
  /** The dead letters put back, ready now. */
  ids: string[];
  /** Ids given that are not dead letters of the queue (redriven already, or never dead). */
  missing: string[];
}

/** Raised when none of the given ids is a dead letter of the queue (nothing was put back). */
export class DeadLettersNotFoundError extends NotFoundError {
  constructor(
    readonly result: RedriveResult,
    queue: string,
  ) {
    super(
      `None of the ids is a dead letter of queue ${queue}: ${result.missing.join(', ')}.`,
      `List them with: es queue dead ${queue} (or GET /api/queues/${encodeURIComponent(queue)}/dead-letters)`,
    );
  }
}

/**
 * Put dead letters back: `{ ids }` or `{ all: true }`. Ids that are not dead letters of the queue
 * are reported in `missing`; when none is, NotFound (404).
 */
export async function redrive(
  pool: pg.Pool,
  ctx: SqlContext,
  queue: string,
  target: { ids?: string[]; all?: boolean },
): Promise<RedriveResult> {
  assertQueueName(queue);
  if (typeof target !== 'object' || target === null)
    throw new InvalidInputError('Give the dead letters to redrive: { ids: [...] } or { all: true }.');
  const all = target.all === true;
  const ids = target.ids;
  if (all && ids !== undefined) throw new InvalidInputError('Give ids or all, not both.');
  if (!all && (!Array.isArray(ids) || ids.length === 0))
    throw new InvalidInputError(
      'Give the dead letters to redrive: ids (a non-empty array of job ids), or all.',
      `List them with: es queue dead ${queue}`,
    );
  const back = await redriveDeadLetters(pool, ctx, queue, all ? 'all' : (ids as string[]));
  const missing = all ? [] : (ids as string[]).filter((i) => !back.includes(i.toLowerCase()));
  const result = { queue, ids: back, missing };
  if (!all && back.length === 0) throw new DeadLettersNotFoundError(result, queue);
  return result;
}

/**
 * Delete a queue's jobs (waiting, delayed, in flight) or, with `deadLetters`, its dead letters.
 * Confirmed only by naming the queue again in `confirm`: a purge cannot be undone.
 */
export async function purge(
  pool: pg.Pool,
  ctx: SqlContext,
  queue: string,
  opts: { deadLetters?: boolean; confirm?: unknown },
): Promise<{ queue: string; deadLetters: boolean; deleted: number }> {
  assertQueueName(queue);
  const deadLetters = opts.deadLetters === true;
  if (opts.confirm !== queue)
    throw new InvalidInputError(
      `Purging deletes ${deadLetters ? 'the dead letters' : 'every job'} of queue ${queue} and cannot be undone: confirm by giving the queue's name (confirm: ${JSON.stringify(queue)}).`,
    );
  return { queue, deadLetters, deleted: await purgeQueue(pool, ctx, queue, { deadLetters }) };
}

/** Enqueue jobs (one transaction); their ids, in order (an id already waiting is not added again). */
export async function enqueue(
  store: MessageStore,
  queue: string,
  jobs: JobToEnqueue[],
): Promise<{ queue: string; ids: string[] }> {
  assertQueueName(queue);
  if (!Array.isArray(jobs) || jobs.length === 0)
    throw new InvalidInputError('Nothing to enqueue: give a non-empty list of jobs.');
  if (jobs.length > 1000)
    throw new InvalidInputError(`At most 1000 jobs per call, got ${jobs.length}: split them.`);
  return { queue, ids: await enqueueJobs(store, queue, jobs) };
}
