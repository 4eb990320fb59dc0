import type pg from 'pg';
import type { ResolvedRecurringMessage } from '../config/types.js';
import { listenClient } from '../db/pool.js';
import type { MessageStore } from '../store/messageStore.js';
import { type BeckettMetrics, processMetrics } from '../telemetry/metrics.js';
import { deliverDueRecurring, syncRecurringMessages } from './deliverRecurring.js';
import { deliverDueMessages } from './deliverScheduled.js';
import { msUntilNextDue, scheduleChannelFor } from './scheduledMessagesSql.js';

export interface SchedulerServiceOptions {
  /** Recurring messages this worker delivers (the config's `recurring`). Default none. */
  recurring?: ResolvedRecurringMessage[];
  /** Messages appended per transaction. Default 100. */
  batchSize?: number;
  /**
   * Longest sleep between checks. Sleeps end earlier at the next due time and on a NOTIFY from
   * scheduleMessage/cancelScheduledMessage; this bound catches rows written by other means.
   * Default 5000 ms.
   */
  maxWaitMs?: number;
  /** Called with errors the loop recovers from (it pauses, then tries again). */
  onError?: (err: unknown) => void;
  /** Default: the process-wide metrics. */
  metrics?: BeckettMetrics;
}

/** Sleep for `ms`, ending early on abort or when `wake` is called. */
class Waiter {
  #pending = false;
  #resolve: (() => void) | undefined;

  wake(): void {
    this.#pending = true;
    this.#resolve?.();
  }

  /** Forget wake-ups received so far (call before looking for work). */
  reset(): void {
    this.#pending = false;
  }

  sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#pending || signal.aborted || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#resolve = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.#resolve = done;
    });
  }
}

/** A LISTEN connection that calls `onNotify`; reconnected by `ensure()` after it drops. */
class ScheduleListener {
  #client: pg.Client | undefined;
  #connecting: Promise<void> | undefined;
  #release: (() => void) | undefined;

  constructor(
    private readonly store: MessageStore,
    private readonly onNotify: () => void,
  ) {}

  async ensure(): Promise<void> {
    if (this.#client) return;
    this.#connecting ??= (async () => {
      // A connection of its own (on the pool's listen URL when it goes through PgBouncer).
      const client = listenClient(this.store.pool, 'beckett-scheduler');
      client.on('error', () => undefined);
      await client.connect();
      // A dying connection can report its error during LISTEN, after close(), or more than once:
      // release it exactly once (a second release throws inside pg-pool and kills the process),
      // and keep listening for errors so a late one is never unhandled.
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        if (this.#client === client) this.#client = undefined;
        void client.end().catch(() => undefined);
      };
      const drop = () => {
        const wasOurs = !released;
        release();
        // Wake the loop: it re-listens and re-checks, since notifications may have been missed.
        if (wasOurs) this.onNotify();
      };
      client.on('notification', () => this.onNotify());
      client.on('error', drop);
      try {
        await client.query(`LISTEN "${scheduleChannelFor(this.store.schema)}"`);
      } catch (err) {
        release();
        throw err;
      }
      if (released) return; // the connection died during LISTEN; the next ensure() reconnects
      this.#client = client;
      this.#release = release;
    })().finally(() => {
      this.#connecting = undefined;
    });
    await this.#connecting;
  }

  close(): void {
    // Close the LISTENing connection.
    this.#release?.();
    this.#release = undefined;
    this.#client = undefined;
  }
}

/**
 * The delivery loop for scheduled and recurring messages, as a worker service: run it with an
 * AbortSignal and it delivers due messages until the signal aborts, then resolves. Any number of
 * loops (processes, hosts) may run against one schema: each message and occurrence is appended once.
 * It sleeps until the next message is due (bounded by `maxWaitMs`) and wakes on the NOTIFY sent
 * when a message is scheduled, so messages arrive within a few milliseconds of their time.
 */
export function createSchedulerService(
  store: MessageStore,
  opts: SchedulerServiceOptions = {},
): (signal: AbortSignal) => Promise<void> {
  const recurring = opts.recurring ?? [];
  const names = recurring.map((r) => r.name);
  const batchSize = opts.batchSize ?? 100;
  const maxWaitMs = opts.maxWaitMs ?? 5000;
  const metrics = opts.metrics ?? processMetrics();
  return async (signal) => {
    const waiter = new Waiter();
    const listener = new ScheduleListener(store, () => waiter.wake());
    let synced = recurring.length === 0;
    let failures = 0;
    try {
      while (!signal.aborted) {
        try {
          await listener.ensure();
          waiter.reset();
          if (!synced) {
            await syncRecurringMessages(store, recurring);
            synced = true;
          }
          const s = await deliverDueMessages(store, { limit: batchSize });
          metrics.recordScheduledDelivered(s.delivered);
          const r = await deliverDueRecurring(store, recurring, { limit: batchSize });
          for (const name of r.deliveredNames) metrics.recordRecurringDelivered(name, 1);
          failures = 0;
          if (s.claimed === batchSize || r.claimed === batchSize) continue;
          const due = await msUntilNextDue(store.pool, store.sqlContext, names);
          // Due but not claimed: another loop holds it until its commit; look again shortly.
          // Otherwise sleep until a couple of ms past the due time, so the next check finds it due.
          const wait =
            due === null
              ? maxWaitMs
              : due <= 0
                ? s.claimed + r.claimed > 0
                  ? 0
                  : 50
                : Math.min(maxWaitMs, due + 2);
          await waiter.sleep(wait, signal);
        } catch (err) {
          if (signal.aborted) break;
          opts.onError?.(err);
          failures += 1;
          listener.close();
          await waiter.sleep(Math.min(maxWaitMs, 100 * 2 ** Math.min(failures, 6)), signal);
          waiter.reset();
        }
      }
    } finally {
      listener.close();
    }
  };
}
