import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { type GatedAppend, runGated } from '../../src/consistency/conditionalBatcher.js';
import { type After, snapshotBounds } from '../../src/consistency/conditionSql.js';
import { appendLocks } from '../../src/consistency/lockKeys.js';
import { Query } from '../../src/consistency/query.js';
import { createPool } from '../../src/db/pool.js';
import { InvalidInputError } from '../../src/errors.js';
import { createMessageStore } from '../../src/store/messageStore.js';
import { setupDb, type TestDb } from '../helpers/db.js';

/*
 * A batch of conditional appends (conditionalBatcher.ts) returns only the messages it inserted, with
 * its snapshot; an append without a row is told apart afterwards (its condition, or its version)
 * by its check run again in that snapshot. These tests hold that second step to what the append
 * saw under its locks, whatever commits after the batch.
 */

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('dcb_batches', { poolSize: 6 });
});
afterAll(async () => {
  await db?.close();
});

const TYPE = 'seat_taken';
const onTag = (tag: string) => Query.of({ types: [TYPE], tags: [tag] });

/** One gated append of a message tagged `tag`, whose condition is "no seat_taken tagged `tag` after `after`". */
function gated(stream: string, expected: number, tag: string, after: After): GatedAppend {
  const query = onTag(tag);
  return {
    id: randomUUID(),
    stream,
    expected,
    type: TYPE,
    data: JSON.stringify({ tag }),
    metadata: '{}',
    tags: [tag],
    locks: appendLocks(query, [{ type: TYPE, tags: [tag] }]),
    after,
    items: query.items,
  };
}

const start: After = { kind: 'position', transactionId: '0', globalPosition: 0 };

async function countWhere(where: string, values: unknown[]): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM "${db.schema}".messages WHERE ${where}`,
    values,
  );
  return Number(rows[0]!.n);
}

describe('a batch of conditional appends', () => {
  it('gives each append its own outcome: appended, condition failed, wrong version, position taken', async () => {
    await db.store.append('b1-taken', { type: TYPE, data: {}, tags: ['b1:taken'] });
    const batch = [
      gated('b1-ok', 0, 'b1:ok', start),
      gated('b1-cond', 0, 'b1:taken', start),
      gated('b1-version', 3, 'b1:version', start),
      // Both fail: the condition is reported, as for one append alone.
      gated('b1-both', 3, 'b1:taken', start),
      // The same position as the first append of the batch: the first takes it.
      gated('b1-ok', 0, 'b1:second', start),
    ];
    const outcomes = await runGated(db.pool, db.store.sqlContext, batch);
    expect(outcomes.map((o) => o.kind)).toEqual([
      'appended',
      'condition_failed',
      'wrong_version',
      'condition_failed',
      'wrong_version',
    ]);
    expect(await countWhere(`stream_name LIKE 'b1-%'`, [])).toBe(2);
    const { rows } = await db.pool.query<{ id: string }>(
      `SELECT id::text FROM "${db.schema}".messages WHERE stream_name = 'b1-ok'`,
    );
    expect(rows.map((r) => r.id)).toEqual([batch[0]!.id]);
  });

  it('does the same for decisions made on a read snapshot (readForDecision)', async () => {
    const { rows } = await db.pool.query<{ s: string }>('SELECT pg_current_snapshot()::text AS s');
    const read: After = { kind: 'snapshot', ...snapshotBounds(rows[0]!.s) };
    // Committed after the decision's read: its condition sees it.
    await db.store.append('b5-taken', { type: TYPE, data: {}, tags: ['b5:taken'] });
    const outcomes = await runGated(db.pool, db.store.sqlContext, [
      gated('b5-ok', 0, 'b5:ok', read),
      gated('b5-cond', 0, 'b5:taken', read),
      gated('b5-version', 2, 'b5:version', read),
    ]);
    expect(outcomes.map((o) => o.kind)).toEqual(['appended', 'condition_failed', 'wrong_version']);
    expect(await countWhere(`stream_name LIKE 'b5-%'`, [])).toBe(2);
  });

  it('tells a failed version from a failed condition by what the batch saw, not by what committed after it', async () => {
    // The interleaving: the batch commits without an append whose version was wrong; a message
    // its condition matches commits next; only then is the append's check read again. Forced by
    // committing that message just before the batch's follow-up query runs.
    const writer = await db.client();
    let followUps = 0;
    const pool = new Proxy(db.pool, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (prop !== 'query') return typeof value === 'function' ? value.bind(target) : value;
        return async (...args: Parameters<pg.Pool['query']>) => {
          followUps++;
          await writer.query(
            `INSERT INTO "${db.schema}".messages (id, stream_name, stream_position, type, data, metadata, tags)
             VALUES (gen_random_uuid(), 'b2-late', 1, $1, '{}', '{}', ARRAY['b2:late'])`,
            [TYPE],
          );
          await writer.query(
            `INSERT INTO "${db.schema}".message_tags (tag, transaction_id, global_position, type)
             SELECT 'b2:late', transaction_id, global_position, type FROM "${db.schema}".messages
              WHERE stream_name = 'b2-late'`,
          );
          return (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
        };
      },
    });
    const outcomes = await runGated(pool, db.store.sqlContext, [
      gated('b2-ok', 0, 'b2:ok', start),
      gated('b2-stale', 5, 'b2:late', start),
    ]);
    expect(followUps).toBe(1);
    expect(outcomes.map((o) => o.kind)).toEqual(['appended', 'wrong_version']);
    // The late message is there now: a check run today fails on it.
    const today = await runGated(db.pool, db.store.sqlContext, [
      gated('b2-today', 0, 'b2:late', start),
      gated('b2-ok2', 0, 'b2:ok2', start),
    ]);
    expect(today.map((o) => o.kind)).toEqual(['condition_failed', 'appended']);
  });

  it('an append whose check cannot be read again fails alone; the batch stands', async () => {
    await db.store.append('b4-taken', { type: TYPE, data: {}, tags: ['b4:taken'] });
    const pool = new Proxy(db.pool, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (prop === 'query') return () => Promise.reject(new Error('connection lost'));
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const outcomes = await runGated(pool, db.store.sqlContext, [
      gated('b4-ok', 0, 'b4:ok', start),
      gated('b4-cond', 0, 'b4:taken', start),
    ]);
    expect(outcomes.map((o) => o.kind)).toEqual(['appended', 'unchecked']);
    expect(await countWhere(`stream_name IN ('b4-ok', 'b4-cond')`, [])).toBe(1);
  });

  it('writes nothing when its transaction is not READ COMMITTED (the server default is REPEATABLE READ)', async () => {
    const url = new URL(db.url);
    url.searchParams.set('options', '-c default_transaction_isolation=repeatable\\ read');
    const pool = createPool(url.toString(), { max: 3 });
    const store = createMessageStore({ pool, schema: db.schema });
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) =>
          appendWithCondition(
            store,
            [
              {
                stream: `b3-${i}`,
                messages: { type: TYPE, data: {}, tags: [`b3:${i}`] },
                expectedVersion: 'no_stream',
              },
            ],
            { failIfEventsMatch: onTag(`b3:${i}`) },
          ),
        ),
      );
      for (const r of results) {
        expect(r.status).toBe('rejected');
        expect((r as PromiseRejectedResult).reason).toBeInstanceOf(InvalidInputError);
      }
      expect(await countWhere(`stream_name LIKE 'b3-%'`, [])).toBe(0);
    } finally {
      await store.close();
      await pool.end();
    }
  });
});
