import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResolvedGroup } from '../../src/config/types.js';
import type { SqlContext } from '../../src/db/queryable.js';
import { resetSubscription } from '../../src/operations/subscriptionControl.js';
import { claimCheckpoints } from '../../src/subscriptions/claimCheckpoint.js';
import { type ReaderRound, readerRound, tryLockReader } from '../../src/subscriptions/globalReader.js';
import { registerSubscriptions } from '../../src/subscriptions/registerSubscriptions.js';
import { fingerprintOf } from '../../src/subscriptions/subscriptionDefinition.js';
import { setupDb, type TestDb, untilCommittedReadable } from '../helpers/db.js';
import { heldAtCommit } from '../helpers/heldAtCommit.js';
import { configWith, until } from './helpers.js';

/*
 * The global reader against the interleavings that broke it: a stream whose second message comes
 * first in log order, an operator's reset while a round is in flight, and a round with nothing to
 * write taking a transaction id (which holds back every gap-safe reader of the cluster).
 */
let db: TestDb;
let ctx: SqlContext;
beforeAll(async () => {
  db = await setupDb('rdr');
  ctx = db.store.sqlContext;
});
afterAll(async () => {
  await db?.close();
});

/** The group of a config with one subscription to a category, registered. */
async function groupFor(name: string, category: string, group = 'G'): Promise<ResolvedGroup> {
  const config = configWith(db.schema, { [name]: { category, handler: () => undefined } });
  const g = config.groups.get('G')!;
  const renamed: ResolvedGroup = { ...g, name: group };
  await registerSubscriptions(db.pool, ctx, renamed);
  return renamed;
}

/** The backend of the last round started. */
let roundPid = 0;

/** One reader round; `xid`: the transaction id its statement took by writing (null: none). */
async function round(group: ResolvedGroup, batchSize = 1000): Promise<ReaderRound> {
  const client = await db.pool.connect();
  roundPid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  try {
    return await readerRound(client, ctx, group, 'test-reader', batchSize);
  } finally {
    client.release();
  }
}

/** Resolves once the last round started waits for a lock (a row another transaction holds). */
async function roundWaitsForALock(): Promise<void> {
  await until(async () => {
    const { rows } = await db.pool.query(
      'SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND NOT granted',
      [roundPid],
    );
    return rows[0].n > 0;
  }, 'the round to wait for a lock');
}

/** Wait until a transaction id is below every running transaction's (so gap-safe reads see it). */
async function readable(xid: string): Promise<void> {
  await until(async () => {
    const { rows } = await db.pool.query('SELECT $1::xid8 < pg_snapshot_xmin(pg_current_snapshot()) AS ok', [
      xid,
    ]);
    return rows[0].ok;
  }, `transaction ${xid} to be readable`);
}

async function lastXid(stream: string): Promise<string> {
  const { rows } = await db.pool.query(
    `SELECT max(transaction_id::text::bigint)::text AS x FROM ${ctx.s}.messages WHERE stream_name = $1`,
    [stream],
  );
  return rows[0].x;
}

async function checkpointOf(sub: string, stream: string) {
  const { rows } = await db.pool.query(
    `SELECT stream_version, stream_position FROM ${ctx.s}.checkpoints
      WHERE subscription_name = $1 AND stream_name = $2`,
    [sub, stream],
  );
  return rows[0] as { stream_version: number; stream_position: number } | undefined;
}

async function position(sub: string): Promise<number> {
  const { rows } = await db.pool.query(`SELECT log_position FROM ${ctx.s}.subscriptions WHERE name = $1`, [
    sub,
  ]);
  return rows[0].log_position;
}

/** Rounds until the subscription's reader has read everything readable up to `stream`'s last write. */
async function drain(group: ResolvedGroup, stream: string, batchSize = 1000): Promise<void> {
  await readable(await lastXid(stream));
  for (;;) if ((await round(group, batchSize)).read === 0) return;
}

describe('global reader races', () => {
  it("a new checkpoint starts before the stream's first message when a batch holds only its second", async () => {
    const group = await groupFor('early', 'early', 'G1');
    // T1 takes its transaction id first (a multi-stream append, a caller's transaction)...
    const t1 = await db.client();
    await t1.query('BEGIN');
    const inT1 = db.store.withTransaction(t1 as unknown as pg.PoolClient);
    await inT1.append('other-1', { type: 't', data: {} });
    // ...another writer's early-1#1 commits with a later transaction id...
    await db.store.append('early-1', { type: 't', data: { n: 1 } });
    // ...and T1 then writes early-1#2: in log order #2 comes before #1.
    await inT1.append('early-1', { type: 't', data: { n: 2 } });
    await t1.query('COMMIT');
    // A batch of one puts a boundary between them.
    await drain(group, 'early-1', 1);
    expect(await checkpointOf('early', 'early-1')).toEqual({ stream_version: 2, stream_position: 0 });
  });

  it('a subscription starting at the end of the log never handles older messages of a stream', async () => {
    await db.store.append('late-1', [
      { type: 't', data: {} },
      { type: 't', data: {} },
    ]);
    await readable(await lastXid('late-1'));
    const config = configWith(db.schema, {
      late: { category: 'late', startFrom: 'end', handler: () => undefined },
    });
    const group = { ...config.groups.get('G')!, name: 'G2' };
    await registerSubscriptions(db.pool, ctx, group);
    await db.store.append('late-1', { type: 't', data: {} });
    await drain(group, 'late-1');
    expect(await checkpointOf('late', 'late-1')).toEqual({ stream_version: 3, stream_position: 2 });
  });

  it('a reset to the beginning is not undone by a reader round in flight', async () => {
    const group = await groupFor('rs', 'rs', 'G3');
    await db.store.append('rs-1', [
      { type: 't', data: {} },
      { type: 't', data: {} },
      { type: 't', data: {} },
    ]);
    await drain(group, 'rs-1');
    await db.pool.query(`UPDATE ${ctx.s}.checkpoints SET stream_position = 3 WHERE subscription_name = 'rs'`);
    await db.store.append('rs-1', { type: 't', data: {} });
    await readable(await lastXid('rs-1'));
    // The operator's reset has written and not committed: the subscription's row is locked...
    const op = heldAtCommit(db.pool);
    const reset = resetSubscription(op.pool, ctx, { group: 'G3', subscription: 'rs', to: 'beginning' });
    await op.atCommit;
    // ...when a round reads the old position and rs-1#4, and waits to move the position...
    const inFlight = round(group);
    await roundWaitsForALock();
    // ...until the reset commits.
    op.release();
    await reset;
    // The round then finishes: it must not move the position or create checkpoints.
    expect(await inFlight).toMatchObject({ locked: false, dispatched: 0 });
    expect(await position('rs')).toBe(0);
    expect(await checkpointOf('rs', 'rs-1')).toBeUndefined();
    await drain(group, 'rs-1');
    expect(await checkpointOf('rs', 'rs-1')).toEqual({ stream_version: 4, stream_position: 0 });
  });

  it('a round with nothing to write takes no transaction id, nor one that finds the group locked', async () => {
    const group = await groupFor('idle', 'idle', 'G4');
    await db.store.append('idle-1', { type: 't', data: {} });
    await drain(group, 'idle-1');
    expect(await round(group)).toMatchObject({ locked: false, read: 0, xid: null });
    // Another process's round holds the group's reader lock (without a transaction id either)...
    const holder = await db.client();
    try {
      await holder.query('BEGIN');
      expect(await tryLockReader(holder, ctx, 'G4')).toBe(true);
      const { rows } = await holder.query('SELECT pg_current_xact_id_if_assigned()::text AS xid');
      expect(rows).toEqual([{ xid: null }]);
      // ...and a round finds it locked, taking none.
      expect(await round(group)).toMatchObject({ locked: true, read: 0, xid: null });
    } finally {
      await holder.query('ROLLBACK');
    }
    // A round that writes takes one.
    await db.store.append('idle-1', { type: 't', data: {} });
    await readable(await lastXid('idle-1'));
    const wrote = await round(group);
    expect(wrote).toMatchObject({ read: 1, dispatched: 1 });
    expect(wrote.xid).not.toBeNull();
  });

  it("a round marks the group's reader at most once a second, not once per round", async () => {
    const group = await groupFor('mark', 'mark', 'G6');
    const markedAt = async () =>
      (
        await db.pool.query<{ at: string; now: string }>(
          `SELECT reader_at::text AS at, clock_timestamp()::text AS now FROM ${ctx.s}.subscription_groups WHERE name = 'G6'`,
        )
      ).rows[0]!;
    await db.store.append('mark-1', { type: 't', data: {} });
    await drain(group, 'mark-1');
    const first = await markedAt();
    expect(first.at).not.toBeNull();
    await db.store.append('mark-1', { type: 't', data: {} });
    await readable(await lastXid('mark-1'));
    expect(await round(group)).toMatchObject({ read: 1, dispatched: 1 });
    const second = await markedAt();
    // Unchanged, unless a second passed (a slow machine): then the mark moves once.
    if (Date.parse(second.now) - Date.parse(first.at) < 1000) expect(second.at).toBe(first.at);
    else expect(Date.parse(second.at)).toBeGreaterThan(Date.parse(first.at));
  });

  it("a round after an operator's reset reads from where the reset put the subscription", async () => {
    const group = await groupFor('again', 'again', 'G5');
    await db.store.append('again-1', [
      { type: 't', data: {} },
      { type: 't', data: {} },
    ]);
    await drain(group, 'again-1');
    await db.pool.query(
      `UPDATE ${ctx.s}.checkpoints SET stream_position = 2 WHERE subscription_name = 'again'`,
    );
    await resetSubscription(db.pool, ctx, { group: 'G5', subscription: 'again', to: 'beginning' });
    const r = await round(group);
    expect(r.read).toBeGreaterThanOrEqual(2);
    expect(await checkpointOf('again', 'again-1')).toEqual({ stream_version: 2, stream_position: 0 });
  });

  it("a round's claims for its idle consumers skip a checkpoint a consumer is claiming, and one it holds", async () => {
    const group = await groupFor('ho', 'ho', 'HO');
    const sub = group.subscriptions.get('ho')!;
    const args = {
      group: 'HO',
      subscriptions: ['ho'],
      batchSizes: [sub.batchSize],
      fingerprints: [fingerprintOf(sub)],
      workerId: 'w-test',
      leaseMs: 30_000,
    };
    const claimFor = (n: number) => ({ args, leaseIds: Array.from({ length: n }, () => randomUUID()) });
    for (let i = 1; i <= 3; i++) await db.store.append(`ho-${i}`, { type: 't', data: { i } });
    // Gap-safe reads stop at any open transaction of the cluster (other test files): wait past them.
    await untilCommittedReadable(db.pool);
    const reader = await db.pool.connect();
    const consumer = await db.pool.connect();
    try {
      // Round 1 dispatches three streams and claims one for its one idle consumer.
      const first = await readerRound(reader, ctx, group, 'w-test', 1000, claimFor(1));
      expect(first.dispatched).toBe(3);
      expect(first.claims).toHaveLength(1);
      // A fourth stream (committed first: the open claim below would hold the gap-safe read back)...
      await db.store.append('ho-4', { type: 't', data: {} });
      await untilCommittedReadable(db.pool);
      // ...a consumer's claim in flight: its transaction holds the row it picked, uncommitted...
      await consumer.query('BEGIN');
      const mine = await claimCheckpoints(consumer, ctx, args, [randomUUID()]);
      expect(mine).toHaveLength(1);
      // ...while the next round dispatches ho-4 and claims for three idle consumers: it gets the two
      // streams nobody holds or claims, never the consumer's.
      const second = await readerRound(reader, ctx, group, 'w-test', 1000, claimFor(3));
      await consumer.query('COMMIT');
      expect(second.dispatched).toBe(1);
      const taken = [
        first.claims![0]!.stream,
        mine[0]!.stream,
        ...(second.claims ?? []).map((c) => c.stream),
      ];
      expect(taken.sort()).toEqual(['ho-1', 'ho-2', 'ho-3', 'ho-4']);
      // Once the consumer's claim committed, a round still leaves its lease (and every other) alone.
      for (let i = 1; i <= 4; i++) await db.store.append(`ho-${i}`, { type: 't', data: { i } });
      await untilCommittedReadable(db.pool);
      const third = await readerRound(reader, ctx, group, 'w-test', 1000, claimFor(2));
      expect(third.dispatched).toBe(4);
      expect(third.claims ?? []).toEqual([]);
      const { rows } = await db.pool.query<{ n: number }>(
        `SELECT count(DISTINCT lease_id)::int AS n FROM "${db.schema}".checkpoints
          WHERE group_name = 'HO' AND lease_id IS NOT NULL`,
      );
      expect(rows[0]!.n).toBe(4);
    } finally {
      await consumer.query('ROLLBACK').catch(() => undefined);
      reader.release();
      consumer.release();
    }
  });
});
