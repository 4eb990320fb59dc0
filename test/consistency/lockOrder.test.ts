import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { Query } from '../../src/consistency/query.js';
import { AppendConditionFailedError } from '../../src/errors.js';
import { createMessageStore } from '../../src/store/messageStore.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

/*
 * Every statement takes its lock keys in ascending id order (src/consistency/lockKeys.ts): that is
 * what keeps a writer (shared keys) and a conditional append (exclusive keys, also ascending) from
 * deadlocking. Forced here for the single untagged append's two scalar calls: a conditional
 * appender holds the lower key of the message's two exclusively; the writer must wait there, holding
 * nothing, so that the appender can then take the higher key too. A writer that took the higher key
 * first would hold it shared while waiting for the lower, and the appender's request for the higher
 * would close the cycle (deadlock detected).
 */

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('lock_order');
});
afterAll(async () => db.close());

const advisoryLockWaits = async () =>
  (
    await db.pool.query(
      `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()`,
    )
  ).rows.length;
const waitingForAdvisoryLock = async () => (await advisoryLockWaits()) > 0;

describe('lock keys in ascending order', () => {
  it('a single untagged append waits at its lower key, holding none, while a condition holds it', async () => {
    const s = `"${db.schema}"`;
    const { rows } = await db.pool.query<{ lo: string; hi: string }>(
      `SELECT least(a, b)::text AS lo, greatest(a, b)::text AS hi
         FROM (SELECT ${s}.lock_id($1) AS a, ${s}.lock_id($2) AS b) k`,
      ['*\u001f*', 't=ordered\u001f*'],
    );
    const { lo, hi } = rows[0]!;
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock($1::bigint)', [lo]);
      const written = db.store.append(
        'ordered-1',
        { type: 'ordered', data: {} },
        { expectedVersion: 'no_stream' },
      );
      written.catch(() => undefined);
      await until(waitingForAdvisoryLock, 'the append waiting for the lower key', 10_000);
      // The writer holds nothing yet: the higher key is free for the condition.
      await holder.query(`SET LOCAL lock_timeout = '5s'`);
      await holder.query('SELECT pg_advisory_xact_lock($1::bigint)', [hi]);
      await holder.query('COMMIT');
      await expect(written).resolves.toMatchObject({ streamVersion: 1 });
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
    }
  });

  // 'no_stream': the gated INSERT of conditionalBatcher.ts; 'any': append_with_condition() in SQL.
  it.each(['no_stream', 'any'] as const)(
    'two conditional appends (expected version %s), each matching the other’s message, never deadlock on their keys',
    async (expectedVersion) => {
      // A appends a `left` message on the condition "no `right` message"; B the reverse. Each holds
      // its condition's key exclusively and the other's message key shared. Taken in the order given
      // (condition keys first), both take their exclusive key, then wait at (*, *), which a third
      // transaction holds; once it commits, each waits for the key the other holds: a deadlock. In
      // ascending id order one of them waits before it holds anything the other needs.
      const s = `"${db.schema}"`;
      const other = createMessageStore({ pool: db.pool, schema: db.schema });
      const holder = await db.pool.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(`SELECT pg_advisory_xact_lock(${s}.lock_id($1))`, ['*\u001f*']);
        const crossed = (store: typeof other, mine: string, theirs: string) =>
          appendWithCondition(
            store,
            [
              {
                stream: `crossed-${expectedVersion}-${mine}`,
                messages: { type: mine, data: {} },
                expectedVersion,
              },
            ],
            {
              failIfEventsMatch: Query.of({ types: [theirs] }),
            },
          );
        const outcomes = Promise.allSettled([
          crossed(db.store, 'left', 'right'),
          crossed(other, 'right', 'left'),
        ]);
        await until(async () => (await advisoryLockWaits()) >= 2, 'both appends waiting for a key', 10_000);
        await holder.query('COMMIT');
        const [a, b] = await outcomes;
        // One wins; the other sees the winner's message and fails its condition (not a deadlock).
        const failed = [a, b].filter((o) => o.status === 'rejected');
        expect(failed).toHaveLength(1);
        expect((failed[0] as PromiseRejectedResult).reason).toBeInstanceOf(AppendConditionFailedError);
      } finally {
        await holder.query('ROLLBACK').catch(() => undefined);
        holder.release();
        await other.close();
      }
    },
  );
});
