import type pg from 'pg';
import { listenClient } from '../db/pool.js';
import { channelFor } from '../store/notifications.js';
import { sleep } from './wakeup.js';

/** Payload the global reader sends after it dispatched new work to a group's checkpoints. */
export const checkpointsPayload = (group: string): string => `checkpoints:${group}`;

export interface WakeupHandlers {
  /** New messages were appended (the store's notification, empty payload). */
  onAppended(): void;
  /** The global reader of this group raised some checkpoints' stream_version. */
  onCheckpoints(): void;
  /** (Re)connected: anything may have happened while the listener was away. */
  onConnected(): void;
  /** Any other payload (queue wake-ups: src/queues/queueWakeups.ts). */
  onOther?(payload: string): void;
}

/**
 * LISTEN on the schema's channel on a dedicated connection (a pooled one would lose its LISTEN when
 * returned), reconnecting with backoff after the server goes away. Notifications only shorten
 * waits: pollers remain the backstop, so a lost notification delays and never loses work.
 */
export async function listenForWakeups(
  pool: pg.Pool,
  schema: string,
  group: string,
  handlers: WakeupHandlers,
  signal: AbortSignal,
): Promise<void> {
  const channel = channelFor(schema);
  const forGroup = checkpointsPayload(group);
  let delay = 100;
  while (!signal.aborted) {
    const client = listenClient(pool, 'beckett-listener');
    const lost = new Promise<void>((resolve) => {
      client.on('error', () => resolve());
      client.on('end', () => resolve());
    });
    try {
      await client.connect();
      client.on('notification', (n) => {
        if (n.channel !== channel) return;
        if (!n.payload) handlers.onAppended();
        else if (n.payload === forGroup) handlers.onCheckpoints();
        else handlers.onOther?.(n.payload);
      });
      await client.query(`LISTEN "${channel.replace(/"/g, '""')}"`);
      delay = 100;
      handlers.onConnected();
      const aborted = new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      await Promise.race([lost, aborted]);
    } catch {
      // Unreachable server: retry below.
    } finally {
      await client.end().catch(() => undefined);
    }
    if (!signal.aborted) {
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 5000);
    }
  }
}

/**
 * Coalesced NOTIFY after commit (never inside the writing transaction, where it would serialise
 * commits cluster-wide): at most one in flight and one queued, however often send() is called.
 */
export class CoalescedNotify {
  #inFlight = false;
  #pending = false;
  constructor(
    private readonly pool: pg.Pool,
    private readonly channel: string,
    private readonly payload: string,
  ) {}

  send(): void {
    if (this.#inFlight) {
      this.#pending = true;
      return;
    }
    this.#inFlight = true;
    void this.#loop();
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#pending = false;
        await this.pool
          .query('SELECT pg_notify($1, $2)', [this.channel, this.payload])
          .catch(() => undefined);
      } while (this.#pending);
    } finally {
      this.#inFlight = false;
    }
  }

  async flush(): Promise<void> {
    while (this.#inFlight) await new Promise((r) => setTimeout(r, 1));
  }
}
