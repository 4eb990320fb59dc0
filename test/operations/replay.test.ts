import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../src/errors.js';
import { replay, replayProgress } from '../../src/operations/replay.js';
import type { Worker } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from './helpers.js';

let db: TestDb;
let worker: Worker;
/** What the handler saw, as stream@position, in order. */
const handled: string[] = [];

beforeAll(async () => {
  db = await setupDb('ops_replay');
  const config = opsConfig(db.schema, {
    sub: {
      category: 'order',
      handler: (m) => {
        handled.push(`${m.streamName}@${m.streamPosition}`);
      },
    },
    other: { category: 'order', handler: () => undefined },
  });
  // Global positions: order-1 -> 1, 2, 3; order-2 -> 4, 5, 6.
  await db.store.append(
    'order-1',
    [1, 2, 3].map((i) => ({ type: 'placed', data: { i } })),
  );
  await db.store.append(
    'order-2',
    [1, 2, 3].map((i) => ({ type: 'placed', data: { i } })),
  );
  worker = startWorker(db, config);
  await worker.start();
  await until(() => handled.length === 6, 'the first pass');
  await caughtUp();
});

/** Every checkpoint is back at its stream's end (handlers run before positions are written). */
async function caughtUp(): Promise<void> {
  for (const sub of ['sub', 'other'])
    for (const stream of ['order-1', 'order-2'])
      await until(async () => (await checkpoint(db, sub, stream))?.stream_position === 3, `${sub} ${stream}`);
}
afterAll(async () => {
  await worker?.stop();
  await db?.close();
});

async function settle(count: number): Promise<string[]> {
  await until(() => handled.length >= count, `${count} messages handled again`);
  await caughtUp();
  // Give a wrongly rewound checkpoint time to show up.
  await new Promise((r) => setTimeout(r, 300));
  return handled.splice(0).sort();
}

describe('replay', () => {
  it('handles exactly the range again when it ends a stream, and nothing else', async () => {
    handled.splice(0);
    const r = await replay(db.pool, db.store.sqlContext, {
      group: 'G',
      subscription: 'sub',
      from: { position: 5 },
      to: { position: 6 },
    });
    expect(r).toMatchObject({ messages: 2, redelivered: 2, busy: [] });
    expect(r.streams).toEqual([
      { stream: 'order-2', previousPosition: 3, rewoundTo: 1, handledAgainUpTo: 3, messages: 2 },
    ]);
    expect(await settle(2)).toEqual(['order-2@2', 'order-2@3']);
    const p = await replayProgress(db.pool, db.store.sqlContext, r);
    expect(p).toMatchObject({ done: 2, total: 2, finished: true, failed: [] });
  });

  it('handles exactly the range when it ends mid-stream: the checkpoint then returns to where it was', async () => {
    handled.splice(0);
    const r = await replay(db.pool, db.store.sqlContext, {
      group: 'G',
      subscription: 'sub',
      from: { position: 2 },
      to: { position: 2 },
    });
    expect(r).toMatchObject({ messages: 1, redelivered: 1 });
    expect(r.streams).toEqual([
      { stream: 'order-1', previousPosition: 3, rewoundTo: 1, handledAgainUpTo: 2, messages: 1 },
    ]);
    // settle() also waits for the checkpoint to be back at 3: order-1@3 must not be handled again.
    expect(await settle(1)).toEqual(['order-1@2']);
    const cp = await db.pool.query(
      `SELECT replay_until, replay_resume FROM "${db.schema}".checkpoints WHERE subscription_name = 'sub' AND stream_name = 'order-1'`,
    );
    expect(cp.rows[0]).toEqual({ replay_until: null, replay_resume: null });
  });

  it('without --to, replays each stream in order from the range up to where it was', async () => {
    handled.splice(0);
    const r = await replay(db.pool, db.store.sqlContext, {
      group: 'G',
      subscription: 'sub',
      from: { position: 2 },
      stream: 'order-1',
    });
    expect(r).toMatchObject({ messages: 2, redelivered: 2 });
    expect(await settle(2)).toEqual(['order-1@2', 'order-1@3']);
  });

  it('selects by time and by stream', async () => {
    // Each append is one transaction, so order-2's messages are all later than order-1's.
    const [first] = await db.store.readStream('order-2', { limit: 1 });
    handled.splice(0);
    const byTime = await replay(db.pool, db.store.sqlContext, {
      group: 'G',
      subscription: 'sub',
      from: { time: first!.createdAt },
    });
    expect(byTime.streams.map((s) => [s.stream, s.rewoundTo])).toEqual([['order-2', 0]]);
    expect(await settle(3)).toEqual(['order-2@1', 'order-2@2', 'order-2@3']);
    const byStream = await replay(db.pool, db.store.sqlContext, {
      group: 'G',
      subscription: 'sub',
      from: { position: 3 },
      stream: 'order-1',
    });
    expect(byStream.streams.map((s) => [s.stream, s.rewoundTo])).toEqual([['order-1', 2]]);
    expect(await settle(1)).toEqual(['order-1@3']);
  });

  it('changes nothing on a dry run, and leaves other subscriptions alone', async () => {
    const before = await checkpoint(db, 'sub', 'order-1');
    const r = await replay(
      db.pool,
      db.store.sqlContext,
      { group: 'G', subscription: 'sub' },
      { dryRun: true },
    );
    expect(r).toMatchObject({ dryRun: true, messages: 6, redelivered: 6 });
    expect(await checkpoint(db, 'sub', 'order-1')).toEqual(before);
    expect((await checkpoint(db, 'other', 'order-1'))?.stream_position).toBe(3);
  });

  it('reports a checkpoint a worker holds instead of racing it', async () => {
    await db.pool.query(
      `UPDATE "${db.schema}".checkpoints SET leased_by = 'someone', leased_until = now() + interval '1 minute'
        WHERE subscription_name = 'other' AND stream_name = 'order-1'`,
    );
    const r = await replay(
      db.pool,
      db.store.sqlContext,
      { group: 'G', subscription: 'other' },
      { busyTimeoutMs: 300 },
    );
    expect(r.busy).toEqual(['order-1']);
    expect(r.streams.map((s) => s.stream)).toEqual(['order-2']);
    expect((await checkpoint(db, 'other', 'order-1'))?.stream_position).toBe(3);
  });

  it('names the known subscriptions for an unknown one', async () => {
    const err = await replay(db.pool, db.store.sqlContext, { group: 'G', subscription: 'nope' }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toMatch(/Known subscriptions of G: other, sub/);
    const group = await replay(db.pool, db.store.sqlContext, { group: 'H', subscription: 'sub' }).catch(
      (e) => e,
    );
    expect(group.message).toMatch(/Unknown group "H".*Known groups: G/);
  });
});
