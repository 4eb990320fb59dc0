import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelFor } from '../../src/store/notifications.js';
import { checkpointsPayload } from '../../src/subscriptions/listenForWakeups.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { configWith, startWorker, until } from './helpers.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('handed');
});
afterAll(async () => {
  await db?.close();
});

/** Resolves once a backend of the database waits for a lock (the reader's round, here). */
async function someoneWaitsForALock(db: TestDb): Promise<void> {
  await until(async () => {
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND strpos(query, $1) > 0`,
      [db.schema],
    );
    return rows[0].n > 0;
  }, 'a backend waiting for a lock');
}

describe('claims the reader hands over', () => {
  /*
   * The interleaving: the reader starts a round for its one idle consumer; before the round's claim
   * commits, that consumer is woken and takes a stream whose handler runs long; the reader's claim
   * then finds nobody waiting. Kept for "the next consumer to look", it held its stream's lease for
   * as long as that slow handler ran (up to the lease), while another worker sat idle.
   */
  it('go back at once when every consumer of the process turned busy, for another worker to run', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    let slowEntered = false;
    const handled: string[] = [];
    const config = configWith(db.schema, {
      s: {
        category: 'hc',
        backoff: { initialMs: 600_000, maxMs: 600_000 },
        handler: async (m, ctx) => {
          if (m.streamName === 'hc-slow') {
            // First attempt: into retry, due in ten minutes (the test makes it due when it wants).
            if (ctx.attempt === 1) throw new Error('not yet');
            slowEntered = true;
            await gate;
          }
          handled.push(`${m.streamName}#${m.streamPosition}`);
        },
      },
    });
    // Lease far longer than the test's wait: only a hand-back lets the other worker in.
    const w1 = startWorker(db, config, { concurrency: 1, maxPollMs: 60_000, leaseMs: 60_000 });
    await w1.start();
    let w2: ReturnType<typeof startWorker> | undefined;
    const blocker = await db.pool.connect();
    try {
      await db.store.append('hc-slow', { type: 't', data: {} });
      await until(async () => {
        const { rows } = await db.pool.query(
          `SELECT status FROM ${db.schema}.checkpoints WHERE stream_name = 'hc-slow'`,
        );
        return rows[0]?.status === 'retry';
      }, 'hc-slow in retry');
      await db.store.append('hc-b', { type: 't', data: { n: 1 } });
      await until(() => handled.includes('hc-b#1'), 'hc-b#1 handled');
      // The consumer back to waiting: its completion (and the claims after it, which find nothing)
      // done, so that the reader's next round claims for it.
      await until(async () => {
        const { rows } = await db.pool.query(
          `SELECT (SELECT lease_id IS NULL FROM ${db.schema}.checkpoints WHERE stream_name = 'hc-b') AS free,
                  (SELECT count(*)::int FROM pg_stat_activity
                    WHERE state <> 'idle' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0) AS busy`,
          [db.schema],
        );
        return rows[0].free && rows[0].busy === 0;
      }, 'the consumer waiting');

      // The reader's next round blocks where it moves its position (an UPDATE of subscriptions),
      // its consumer still idle. A table lock takes no transaction id: the log stays readable
      // (a row lock would hold every later message back, and the round would never dispatch).
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE ${db.schema}.subscriptions IN SHARE MODE`);
      await db.store.append('hc-b', { type: 't', data: { n: 2 } });
      await someoneWaitsForALock(db);
      // Meanwhile the consumer is woken (hc-slow made due, as es retry does) and takes hc-slow.
      await db.pool.query(
        `UPDATE ${db.schema}.checkpoints SET next_attempt_at = now() WHERE stream_name = 'hc-slow'`,
      );
      await db.pool.query('SELECT pg_notify($1, $2)', [channelFor(db.schema), checkpointsPayload('G')]);
      await until(() => slowEntered, 'the consumer in the slow handler');
      // The round goes on: it claims hc-b for a consumer that is no longer waiting.
      await blocker.query('COMMIT');
      await until(async () => {
        const { rows } = await db.pool.query(
          `SELECT leased_by FROM ${db.schema}.checkpoints WHERE stream_name = 'hc-b'`,
        );
        return rows[0]?.leased_by === w1.id || w1.stats().handedBack > 0;
      }, 'hc-b claimed by the first worker');

      w2 = startWorker(db, config, { concurrency: 1, maxPollMs: 200, leaseMs: 60_000 });
      await w2.start();
      await until(() => handled.includes('hc-b#2'), 'hc-b#2 handled while hc-slow still runs', 10_000);
      expect(w1.stats().handedBack).toBeGreaterThanOrEqual(1);
      expect(handled).not.toContain('hc-slow#1');
      expect(w1.errors).toEqual([]);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
      open();
      await w2?.stop();
      await w1.stop();
    }
  }, 30_000);
});
