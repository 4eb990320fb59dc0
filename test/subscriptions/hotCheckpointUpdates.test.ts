import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SqlContext } from '../../src/db/queryable.js';
import { type ClaimArgs, claimCheckpoints, extendLease } from '../../src/subscriptions/claimCheckpoint.js';
import { setupDb, type TestDb } from '../helpers/db.js';

/*
 * The updates a checkpoint gets most (a claim, a lease extension, the reader raising the version of
 * a checkpoint that already lags) are HOT: no index reads a column they change, predicates included,
 * so they add no index entries and the table stays small under load (issue 19). Counted with the
 * server's per-transaction statistics (pg_stat_get_xact_tuples_hot_updated), inside one transaction
 * that is rolled back.
 */
let db: TestDb;
let ctx: SqlContext;

beforeAll(async () => {
  db = await setupDb('hotcp');
  ctx = db.store.sqlContext;
  const s = ctx.s;
  await db.pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('G')`);
  await db.pool.query(
    `INSERT INTO ${s}.subscriptions (group_name, name, status, fingerprint) VALUES ('G', 'live', 'active', 'f')`,
  );
  await db.store.append('h-1', [
    { type: 't', data: { n: 1 } },
    { type: 't', data: { n: 2 } },
    { type: 't', data: { n: 3 } },
  ]);
  await db.pool.query(
    `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, next_attempt_at)
     VALUES ('G', 'live', 'h-1', 2, now() - interval '1 minute')`,
  );
});
afterAll(async () => {
  await db?.close();
});

const args: ClaimArgs = {
  group: 'G',
  subscriptions: ['live'],
  batchSizes: [10],
  fingerprints: ['f'],
  workerId: 'w',
  leaseMs: 30_000,
};

/** Rows of checkpoints updated, and how many of those were HOT, by `client`'s transaction so far. */
async function updates(client: pg.PoolClient): Promise<{ updated: number; hot: number }> {
  const { rows } = await client.query<{ updated: number; hot: number }>(
    `SELECT pg_stat_get_xact_tuples_updated(c.oid)::int AS updated,
            pg_stat_get_xact_tuples_hot_updated(c.oid)::int AS hot
       FROM pg_class c WHERE c.oid = $1::regclass`,
    [`${ctx.s}.checkpoints`],
  );
  return rows[0]!;
}

describe('checkpoint updates', () => {
  it('a claim, a lease extension and raising the version of a lagging checkpoint are HOT', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const [claim] = await claimCheckpoints(client, ctx, args, [randomUUID()]);
      expect(claim?.stream).toBe('h-1');
      expect(await updates(client)).toEqual({ updated: 1, hot: 1 });
      expect(await extendLease(client, ctx, claim!, 30_000)).toBe(true);
      expect(await updates(client)).toEqual({ updated: 2, hot: 2 });
      // What the global reader's upsert changes when a new message arrives for a lagging stream.
      await client.query(
        `UPDATE ${ctx.s}.checkpoints SET stream_version = 3, updated_at = now()
          WHERE group_name = 'G' AND subscription_name = 'live' AND stream_name = 'h-1'`,
      );
      expect(await updates(client)).toEqual({ updated: 3, hot: 3 });
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});
