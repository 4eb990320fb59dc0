import { hostname } from 'node:os';
import type pg from 'pg';
import type { SqlContext } from '../db/queryable.js';
import { sleep } from '../subscriptions/wakeup.js';
import { heartbeat, removeWorker } from '../subscriptions/workersTable.js';
import { type ReleasedJobs, releaseStaleWorkerJobs, staleWorkers } from './queueJobsSql.js';
import { queueNotifierFor } from './queueWakeups.js';

export interface WorkerLivenessOptions {
  pool: pg.Pool;
  ctx: SqlContext;
  /** The worker's id: its `workers` row and the `leased_by` of its deliveries. */
  id: string;
  group: string;
  concurrency: number;
  heartbeatMs: number;
  staleWorkerMs: number;
  /** Deliveries of stale workers were made visible again (after the NOTIFY was asked for). */
  onReleased: (released: ReleasedJobs) => void;
  onError: (err: unknown, where: string) => void;
}

/**
 * A queue worker's heartbeat in the `workers` table, and the release of the deliveries of workers
 * whose heartbeat went stale (each such worker once per stale heartbeat, here). Tells the worker
 * when its own heartbeat has not reached the database for staleWorkerMs: then the others may have
 * released its jobs, and its handlers should stop.
 */
export class WorkerLiveness {
  readonly #o: WorkerLivenessOptions;
  readonly #record;
  /** When the last heartbeat that reached the database was sent (monotonic clock: performance.now()). */
  #lastBeatAt = performance.now();
  /**
   * Stale workers released lately (by id and the heartbeat they went stale at), with when: each is
   * swept again once staleWorkerMs has passed, for a dequeue of theirs that committed after the
   * release (sent before the worker died) holds a delivery nothing else gives back before its
   * visibility timeout. A dead worker's row expires after WORKER_EXPIRY_SECONDS.
   */
  readonly #swept = new Map<string, number>();

  constructor(opts: WorkerLivenessOptions) {
    this.#o = opts;
    this.#record = {
      id: opts.id,
      host: hostname(),
      pid: process.pid,
      group: opts.group,
      concurrency: opts.concurrency,
    };
  }

  /** True when no heartbeat has reached the database for staleWorkerMs (`now`: performance.now()). */
  lost(now: number): boolean {
    return now - this.#lastBeatAt >= this.#o.staleWorkerMs;
  }

  /** Touch the worker's row (created if missing). */
  async beat(): Promise<void> {
    const sentAt = performance.now();
    await heartbeat(this.#o.pool, this.#o.ctx, this.#record);
    this.#lastBeatAt = sentAt;
  }

  /** Give back the deliveries of workers whose heartbeat went stale, and wake their queues. */
  async releaseStale(): Promise<void> {
    const { pool, ctx, staleWorkerMs } = this.#o;
    const key = (w: { id: string; heartbeatAt: string }) => `${w.id}\u0000${w.heartbeatAt}`;
    const startedAt = performance.now();
    for (const [k, at] of this.#swept) if (startedAt - at >= staleWorkerMs) this.#swept.delete(k);
    const stale = (await staleWorkers(pool, ctx, { staleMs: staleWorkerMs, selfId: this.#o.id })).filter(
      (w) => !this.#swept.has(key(w)),
    );
    if (stale.length === 0) return;
    const released = await releaseStaleWorkerJobs(pool, ctx, {
      ids: stale.map((w) => w.id),
      staleMs: staleWorkerMs,
    });
    for (const w of stale) this.#swept.set(key(w), startedAt);
    const notifier = queueNotifierFor(pool, ctx);
    for (const queue of released.keys()) notifier.notify(queue);
    if (released.size > 0) this.#o.onReleased(released);
  }

  /** Heartbeat and release every heartbeatMs until `until` aborts. */
  async run(until: AbortSignal): Promise<void> {
    while (!until.aborted) {
      await sleep(this.#o.heartbeatMs, until);
      if (until.aborted) break;
      await this.beat().catch((err) => this.#o.onError(err, 'queue worker heartbeat'));
      await this.releaseStale().catch((err) => this.#o.onError(err, 'queue worker heartbeat'));
    }
  }

  /** A clean stop: the row goes (nothing is held any more). */
  async remove(): Promise<void> {
    await removeWorker(this.#o.pool, this.#o.ctx, this.#o.id).catch((err) => this.#o.onError(err, 'stop'));
  }
}
