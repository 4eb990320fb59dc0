import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool } from '../../src/db/pool.js';
import type { SqlContext } from '../../src/db/queryable.js';
import { ClaimBatcher, CompleteBatcher } from '../../src/subscriptions/batchedClaims.js';
import {
  type ClaimArgs,
  claimCheckpoint,
  claimCheckpoints,
} from '../../src/subscriptions/claimCheckpoint.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

/*
 * Several checkpoints claimed in one statement, and several completions written in one: each claim
 * still has its own lease (one holder per stream), a concurrent claimer gets none of them, and each
 * completion is conditional on its own lease id, whatever the others in its statement.
 */
let db: TestDb;
let ctx: SqlContext;
const STREAMS = 6;

beforeAll(async () => {
  db = await setupDb('bclaim');
  ctx = db.store.sqlContext;
  const s = ctx.s;
  await db.pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('G')`);
  await db.pool.query(
    `INSERT INTO ${s}.subscriptions (group_name, name, status, fingerprint) VALUES ('G', 'live', 'active', 'f')`,
  );
  for (let i = 1; i <= STREAMS; i++) {
    await db.store.append(`b-${i}`, [
      { type: 't', data: { i, n: 1 } },
      { type: 't', data: { i, n: 2 } },
    ]);
  }
  await db.pool.query(
    `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, next_attempt_at)
     SELECT 'G', 'live', 'b-' || i, 2, now() - make_interval(secs => 100 - i) FROM generate_series(1, ${STREAMS}) i`,
  );
});
afterAll(async () => {
  await db?.close();
});

const args = (workerId: string): ClaimArgs => ({
  group: 'G',
  subscriptions: ['live'],
  batchSizes: [10],
  fingerprints: ['f'],
  workerId,
  leaseMs: 30_000,
});

/** A message on `stream` and its checkpoint at version 1, for group G's subscription live to claim. */
async function checkpointToClaim(stream: string): Promise<void> {
  await db.store.append(stream, { type: 't', data: {} });
  await db.pool.query(
    `INSERT INTO ${ctx.s}.checkpoints (group_name, subscription_name, stream_name, stream_version)
     VALUES ('G', 'live', $1, 1)`,
    [stream],
  );
}

async function leases(): Promise<Map<string, string | null>> {
  const { rows } = await db.pool.query(
    `SELECT stream_name, lease_id::text AS lease FROM ${ctx.s}.checkpoints ORDER BY stream_name`,
  );
  return new Map(rows.map((r) => [r.stream_name, r.lease]));
}

describe('claims and completions shared by the consumers of a process', () => {
  it('claims several checkpoints in one statement, each under its own lease, in claim order, with its messages', async () => {
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const claims = await claimCheckpoints(db.pool, ctx, args('A'), ids);
    expect(claims.map((c) => c.stream)).toEqual(['b-1', 'b-2', 'b-3']);
    expect(claims.map((c) => c.leaseId)).toEqual(ids);
    for (const c of claims) expect(c.messages!.map((m) => m.streamPosition)).toEqual([1, 2]);
    const held = await leases();
    expect(claims.map((c) => held.get(c.stream))).toEqual(ids);
    // A concurrent claimer gets only the checkpoints nobody holds.
    const other = await claimCheckpoints(db.pool, ctx, args('B'), [
      randomUUID(),
      randomUUID(),
      randomUUID(),
      randomUUID(),
    ]);
    expect(other.map((c) => c.stream).sort()).toEqual(['b-4', 'b-5', 'b-6']);
    expect(await claimCheckpoint(db.pool, ctx, args('C'))).toBeUndefined();

    // Completions in one statement: each lands only under its own lease.
    const completions = new CompleteBatcher(db.pool, ctx, 'G', 10);
    const stale = { ...claims[1]!, leaseId: randomUUID() };
    const results = await Promise.all([
      completions.complete(claims[0]!, 2),
      completions.complete(stale, 2),
      completions.complete(claims[2]!, 1),
      ...other.map((c) => completions.complete(c, 2)),
    ]);
    await completions.close();
    expect(results).toEqual([true, false, true, true, true, true]);
    const { rows } = await db.pool.query(
      `SELECT stream_name, stream_position, lease_id::text AS lease FROM ${ctx.s}.checkpoints ORDER BY stream_name`,
    );
    expect(rows).toEqual([
      { stream_name: 'b-1', stream_position: 2, lease: null },
      { stream_name: 'b-2', stream_position: 0, lease: claims[1]!.leaseId },
      { stream_name: 'b-3', stream_position: 1, lease: null },
      { stream_name: 'b-4', stream_position: 2, lease: null },
      { stream_name: 'b-5', stream_position: 2, lease: null },
      { stream_name: 'b-6', stream_position: 2, lease: null },
    ]);
  });

  it('consumers asking at once share a claim statement and each gets its own checkpoint, or none', async () => {
    // b-3 still lags (1 of 2); b-2 is held by the first test's lease.
    await db.pool.query(
      `UPDATE ${ctx.s}.checkpoints SET stream_version = 3 WHERE stream_name IN ('b-1', 'b-4')`,
    );
    await db.store.append('b-1', { type: 't', data: {} });
    await db.store.append('b-4', { type: 't', data: {} });
    const batcher = new ClaimBatcher(db.pool, ctx, args('D'), 8);
    const ids = Array.from({ length: 6 }, () => randomUUID());
    const got = await Promise.all(ids.map((id) => batcher.claim(id)));
    await batcher.close();
    const claimed = got.filter((c) => c !== undefined);
    expect(claimed.map((c) => c.stream).sort()).toEqual(['b-1', 'b-3', 'b-4']);
    // Every claim went to the consumer that generated its lease id.
    for (const [i, c] of got.entries()) if (c) expect(c.leaseId).toBe(ids[i]);
    const held = await leases();
    for (const c of claimed) expect(held.get(c.stream)).toBe(c.leaseId);
  });

  it("a consumer's completion carries its next claim in its round trip; a failed claim leaves the completion standing", async () => {
    // The other lagging checkpoints are held by the tests above. b-6 gets a third message: claim it,
    // then complete it while asking for the next checkpoint, b-5, which gets one too.
    await db.pool.query(`UPDATE ${ctx.s}.checkpoints SET stream_version = 3 WHERE stream_name = 'b-6'`);
    await db.store.append('b-6', { type: 't', data: {} });
    const [held] = await claimCheckpoints(db.pool, ctx, args('E'), [randomUUID()]);
    expect(held?.stream).toBe('b-6');
    await db.pool.query(`UPDATE ${ctx.s}.checkpoints SET stream_version = 3 WHERE stream_name = 'b-5'`);
    await db.store.append('b-5', { type: 't', data: {} });
    const completions = new CompleteBatcher(db.pool, ctx, 'G', 4, args('E'));
    const nextLease = randomUUID();
    const { completed, claimed } = completions.completeAndClaim(held!, 3, nextLease);
    expect(await completed).toBe(true);
    const next = await claimed;
    expect(next).toMatchObject({ stream: 'b-5', leaseId: nextLease, streamPosition: 2 });
    expect(next!.messages!.map((m) => m.streamPosition)).toEqual([3]);
    const state = await leases();
    expect(state.get('b-6')).toBeNull();
    expect(state.get('b-5')).toBe(nextLease);
    // A claim that fails (a lease id that is not a uuid) runs after the completion committed: the
    // completion stands, only the claim fails.
    const bad = completions.completeAndClaim(next!, 3, 'not-a-uuid');
    expect(await bad.completed).toBe(true);
    await expect(bad.claimed).rejects.toThrow(/uuid/);
    expect((await leases()).get('b-5')).toBeNull();
    await completions.close();
  });

  it("a claim's commit waits for its WAL flush even in a transaction that turned the flush off", async () => {
    // A reader round commits without a flush unless it claimed: the claim statement itself turns
    // the flush back on (a lease must survive a database crash while its holder works).
    await checkpointToClaim('b-8');
    const client = await db.pool.connect();
    const flush = async () =>
      (await client.query<{ s: string }>("SELECT current_setting('synchronous_commit') AS s")).rows[0]!.s;
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL synchronous_commit = off');
      // Nothing claimable for this subscription: no claim, no flush.
      const none = await claimCheckpoints(client, ctx, { ...args('H'), subscriptions: ['nobody'] }, [
        randomUUID(),
      ]);
      expect(none).toEqual([]);
      expect(await flush()).toBe('off');
      const [claimed] = await claimCheckpoints(client, ctx, args('H'), [randomUUID()]);
      expect(claimed).toBeDefined();
      expect(await flush()).toBe('on');
    } finally {
      await client.query('ROLLBACK');
      client.release();
      await db.pool.query(`DELETE FROM ${ctx.s}.checkpoints WHERE stream_name = 'b-8'`);
    }
  });

  it("a lone completion waiting on its checkpoint's row while another consumer takes the lease over writes nothing", async () => {
    // One completion alone is the update by key with its generic plan (planSettings.ts): it must
    // still recheck the lease id on the row version the takeover commits (one holder acks).
    await checkpointToClaim('b-8');
    const [held] = await claimCheckpoints(db.pool, ctx, args('H'), [randomUUID()]);
    expect(held?.stream).toBe('b-8');
    const taker = await db.pool.connect();
    const completions = new CompleteBatcher(db.pool, ctx, 'G', 4);
    const takeover = randomUUID();
    try {
      // The takeover (the lease expired, another consumer claimed), not committed yet.
      await taker.query('BEGIN');
      await taker.query(
        `UPDATE ${ctx.s}.checkpoints SET lease_id = $1, leased_by = 'I' WHERE stream_name = 'b-8'`,
        [takeover],
      );
      const completed = completions.complete(held!, 1);
      await until(async () => {
        const { rows } = await db.pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`,
          [`%${db.schema}".checkpoints%`],
        );
        return rows.length > 0;
      }, 'the completion waiting on the row');
      await taker.query('COMMIT');
      expect(await completed).toBe(false);
      const { rows } = await db.pool.query(
        `SELECT stream_position, lease_id::text AS lease FROM ${ctx.s}.checkpoints WHERE stream_name = 'b-8'`,
      );
      expect(rows[0]).toEqual({ stream_position: 0, lease: takeover });
    } finally {
      await taker.query('ROLLBACK').catch(() => undefined);
      taker.release();
      await completions.close();
    }
  });

  it('the completion has committed, and let go of its checkpoint, while the claim that follows it waits', async () => {
    // The interleaving that deadlocked when one transaction held both: the claim waits (here on a
    // lock of the subscriptions table, which the completion does not read) while another writer (the
    // reader's upsert) needs the completed checkpoint's row.
    await checkpointToClaim('b-7');
    const [held] = await claimCheckpoints(db.pool, ctx, args('F'), [randomUUID()]);
    expect(held?.stream).toBe('b-7');
    const barrier = await db.pool.connect();
    // On a new connection: the claim's first Parse, which takes the locks of the tables it reads,
    // goes inline after the completion's COMMIT (src/db/pipeline.ts), so it waits behind the
    // barrier and the completion does not (it did when the Parse ran in a round trip before them).
    const pool = createPool(db.url, { max: 1 });
    const completions = new CompleteBatcher(pool, ctx, 'G', 4, args('F'));
    try {
      await barrier.query(`BEGIN; LOCK TABLE ${ctx.s}.subscriptions IN ACCESS EXCLUSIVE MODE`);
      const { completed, claimed } = completions.completeAndClaim(held!, 1, randomUUID());
      claimed.catch(() => undefined);
      // Committed (visible to others) and unlocked (another writer takes the row at once), while
      // the claim still waits behind the barrier.
      // (Until the completion commits, its transaction holds the row: NOWAIT then fails, 55P03.)
      await until(async () => {
        const { rows } = await db.pool
          .query(
            `SELECT stream_position, lease_id FROM ${ctx.s}.checkpoints WHERE stream_name = 'b-7' FOR UPDATE NOWAIT`,
          )
          .catch((err: { code?: string }) => {
            if (err.code === '55P03') return { rows: [] };
            throw err;
          });
        return rows[0]?.stream_position === 1 && rows[0]?.lease_id === null;
      }, 'the completion committed and its row free');
      await barrier.query('ROLLBACK');
      expect(await completed).toBe(true);
      await claimed;
    } finally {
      await barrier.query('ROLLBACK').catch(() => undefined);
      barrier.release();
      await completions.close();
      await pool.end();
    }
  });
});
