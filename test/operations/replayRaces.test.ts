import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResolvedGroup } from '../../src/config/types.js';
import type { SqlContext } from '../../src/db/queryable.js';
import { type ReplayArgs, replay, replayProgress } from '../../src/operations/replay.js';
import { claimCheckpoint, completeCheckpoint } from '../../src/subscriptions/claimCheckpoint.js';
import { runReaderRound } from '../../src/subscriptions/globalReader.js';
import { registerSubscriptions } from '../../src/subscriptions/registerSubscriptions.js';
import { fingerprintOf } from '../../src/subscriptions/subscriptionDefinition.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { opsConfig, until } from './helpers.js';

/*
 * Replays against what runs at the same time: another replay still in flight, and a holder whose
 * lease expired but who still runs. The consumer here is driven by hand (claim, then complete at
 * the last message read), so the test decides exactly when each step happens.
 */
let db: TestDb;
let ctx: SqlContext;
let group: ResolvedGroup;
/** Global positions of seq-1's messages by stream position (1-based). */
const at: number[] = [0];

beforeAll(async () => {
  db = await setupDb('ops_replay_races');
  ctx = db.store.sqlContext;
  group = opsConfig(db.schema, { r: { category: 'seq', handler: () => undefined } }).groups.get('G')!;
  await registerSubscriptions(db.pool, ctx, group);
  await db.store.append(
    'seq-1',
    Array.from({ length: 10 }, (_, i) => ({ type: 't', data: { i: i + 1 } })),
  );
  for (const m of await db.store.readStream('seq-1')) at.push(m.globalPosition);
  await until(async () => {
    await runReaderRound(db.pool, ctx, group, 'test');
    return (await state())?.stream_version === 10;
  }, 'dispatch');
  expect(await consume()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
});
afterAll(async () => {
  await db?.close();
});

async function state() {
  const { rows } = await db.pool.query(
    `SELECT stream_version, stream_position, replay_until, replay_resume, leased_by
       FROM ${ctx.s}.checkpoints WHERE subscription_name = 'r' AND stream_name = 'seq-1'`,
  );
  return rows[0];
}

const claim = (workerId: string, leaseMs = 30_000) =>
  claimCheckpoint(db.pool, ctx, {
    group: 'G',
    subscriptions: ['r'],
    batchSizes: [100],
    fingerprints: [fingerprintOf(group.subscriptions.get('r')!)],
    workerId,
    leaseMs,
  });

/** Play the consumer until nothing is claimable: the stream positions handled, in order. */
async function consume(): Promise<number[]> {
  const handled: number[] = [];
  for (let n = 0; n < 100; n++) {
    const c = await claim('consumer');
    if (!c) return handled;
    handled.push(...c.messages!.map((m) => m.streamPosition));
    const last = c.messages![c.messages!.length - 1]?.streamPosition ?? c.streamPosition;
    expect(await completeCheckpoint(db.pool, ctx, c, last)).toBe(true);
  }
  throw new Error('the checkpoint never settled');
}

const range = (from: number, to?: number): ReplayArgs => ({
  group: 'G',
  subscription: 'r',
  from: { position: at[from]! },
  ...(to === undefined ? {} : { to: { position: at[to]! } }),
});

describe('replays racing', () => {
  it('a second bounded replay started before the first ran joins it: #3..#5 then #1..#2', async () => {
    await replay(db.pool, ctx, range(3, 5));
    await replay(db.pool, ctx, range(1, 2));
    expect(await consume()).toEqual([1, 2, 3, 4, 5]);
    expect(await state()).toMatchObject({ stream_position: 10, replay_until: null, replay_resume: null });
  });

  it('replays of ranges apart are each handled once, in stream order, and nothing between them', async () => {
    await replay(db.pool, ctx, range(7, 8));
    await replay(db.pool, ctx, range(2, 3));
    expect(await consume()).toEqual([2, 3, 7, 8]);
    // One more while the first range is half done: #9..#10 joins the ranges still to do.
    await replay(db.pool, ctx, range(2, 4));
    const first = await claim('consumer');
    expect(first?.messages?.map((m) => m.streamPosition)).toEqual([2, 3, 4]);
    expect(await completeCheckpoint(db.pool, ctx, first!, 3)).toBe(true);
    await replay(db.pool, ctx, range(9, 10));
    expect(await consume()).toEqual([4, 9, 10]);
    expect(await state()).toMatchObject({ stream_position: 10, replay_until: null });
  });

  it('a replay without an end joins a bounded one in flight', async () => {
    await replay(db.pool, ctx, range(3, 4));
    await replay(db.pool, ctx, range(8));
    expect(await consume()).toEqual([3, 4, 8, 9, 10]);
  });

  it('a rewind of a checkpoint whose lease expired is not lost to its holder writing late', async () => {
    await db.store.append('seq-1', [
      { type: 't', data: { i: 11 } },
      { type: 't', data: { i: 12 } },
    ]);
    await until(async () => {
      await runReaderRound(db.pool, ctx, group, 'test');
      return (await state()).stream_version === 12;
    }, 'dispatch');
    // A holder claims #11..#12 and stalls past its lease...
    const stalled = await claim('stalled', 200);
    expect(stalled?.messages?.map((m) => m.streamPosition)).toEqual([11, 12]);
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT leased_until < now() AS expired FROM ${ctx.s}.checkpoints WHERE subscription_name = 'r'`,
      );
      return rows[0].expired;
    }, 'the lease to expire');
    // ...the operator rewinds the checkpoint (nobody holds it now)...
    const r = await replay(db.pool, ctx, range(5, 6));
    expect(r.busy).toEqual([]);
    // ...and the holder's late write must not undo it.
    expect(await completeCheckpoint(db.pool, ctx, stalled!, 12)).toBe(false);
    expect(await state()).toMatchObject({ stream_position: 4, replay_until: 6, leased_by: null });
    expect(await consume()).toEqual([5, 6, 11, 12]);
  });

  it("the progress of a bounded replay counts the range's messages, not where the checkpoint returns to", async () => {
    const r = await replay(db.pool, ctx, range(3, 5));
    expect(r).toMatchObject({ messages: 3, redelivered: 3 });
    expect(await replayProgress(db.pool, ctx, r)).toMatchObject({ done: 0, total: 3, finished: false });
    expect(await consume()).toEqual([3, 4, 5]);
    expect(await replayProgress(db.pool, ctx, r)).toMatchObject({ done: 3, total: 3, finished: true });
  });
});
