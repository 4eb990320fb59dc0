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
    const gates = new Map<string, () => void>();
    const entered = new Set<string>();
    const handled: string[] = [];
    const config = configWith(db.schema, {
      s: {
        category: 'hc',
        backoff: { initialMs: 600_000, maxMs: 600_000 },
        handler: async (m, ctx) => {
          if (m.streamName.startsWith('hc-slow')) {
            // First attempt: into retry, due in ten minutes (the test makes it due when it wants).
            if (ctx.attempt === 1) throw new Error('not yet');
            entered.add(m.streamName);
            await new Promise<void>((r) => gates.set(m.streamName, r));
          }
          handled.push(`${m.streamName}#${m.streamPosition}`);
        },
      },
    });
    const checkpointOf = async (stream: string) =>
      (
        await db.pool.query(
          `SELECT status, stream_version, leased_by, lease_id FROM ${db.schema}.checkpoints WHERE stream_name = $1`,
          [stream],
        )
      ).rows[0];
    // Lease far longer than the test's wait: only a hand-back lets the other worker in.
    const w1 = startWorker(db, config, { concurrency: 1, maxPollMs: 60_000, leaseMs: 60_000 });
    await w1.start();
    let w2: ReturnType<typeof startWorker> | undefined;
    const blocker = await db.pool.connect();
    try {
      // The reader's round must start while its consumer waits; a consumer between two polls of its
      // own is not waiting, and the round then claims nothing: seen below, and tried again.
      for (let k = 1; ; k++) {
        const [slow, b] = [`hc-slow${k}`, `hc-b${k}`];
        await db.store.append(slow, { type: 't', data: {} });
        await until(async () => (await checkpointOf(slow))?.status === 'retry', `${slow} in retry`);
        await db.store.append(b, { type: 't', data: { n: 1 } });
        await until(() => handled.includes(`${b}#1`), `${b}#1 handled`);
        // The consumer back to waiting: its completion (and the claims after it) done.
        await until(async () => {
          const { rows } = await db.pool.query(
            `SELECT count(*)::int AS busy FROM pg_stat_activity
              WHERE state <> 'idle' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0`,
            [db.schema],
          );
          return (await checkpointOf(b))?.lease_id === null && rows[0].busy === 0;
        }, 'the consumer waiting');
        const handedOver = w1.stats().handedOver;

        // The reader's next round blocks where it moves its position (an UPDATE of subscriptions).
        // A table lock takes no transaction id: the log stays readable (a row lock would hold every
        // later message back, and the round would never dispatch).
        await blocker.query('BEGIN');
        await blocker.query(`LOCK TABLE ${db.schema}.subscriptions IN SHARE MODE`);
        await db.store.append(b, { type: 't', data: { n: 2 } });
        await someoneWaitsForALock(db);
        // Meanwhile the consumer is woken (the slow stream made due, as es retry does) and takes it.
        await db.pool.query(
          `UPDATE ${db.schema}.checkpoints SET next_attempt_at = now() WHERE stream_name = $1`,
          [slow],
        );
        await db.pool.query('SELECT pg_notify($1, $2)', [channelFor(db.schema), checkpointsPayload('G')]);
        await until(() => entered.has(slow), 'the consumer in the slow handler');
        // The round goes on: it dispatches b#2, and claims b for a consumer no longer waiting.
        await blocker.query('COMMIT');
        await until(async () => Number((await checkpointOf(b))?.stream_version) === 2, `${b}#2 dispatched`);
        if (w1.stats().handedOver === handedOver) {
          // The round claimed nothing (its consumer was polling): let this try settle, try again.
          if (k >= 5) throw new Error('the reader never claimed for its waiting consumer in 5 tries');
          gates.get(slow)?.();
          await until(() => handled.includes(`${b}#2`) && handled.includes(`${slow}#1`), 'the try settled');
          continue;
        }
        w2 = startWorker(db, config, { concurrency: 1, maxPollMs: 200, leaseMs: 60_000 });
        await w2.start();
        await until(() => handled.includes(`${b}#2`), `${b}#2 handled while ${slow} still runs`, 10_000);
        expect(w1.stats().handedBack).toBeGreaterThanOrEqual(1);
        expect(handled).not.toContain(`${slow}#1`);
        expect(w1.errors).toEqual([]);
        break;
      }
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
      for (const open of gates.values()) open();
      await w2?.stop();
      await w1.stop();
    }
  }, 60_000);
});
