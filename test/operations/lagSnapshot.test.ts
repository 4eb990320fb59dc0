import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lagSnapshot, withThroughput } from '../../src/operations/lagSnapshot.js';
import { subscriptionFilters } from '../../src/operations/subscriptionFilters.js';
import { pauseSubscription, registerSubscriptions } from '../../src/subscriptions/registerSubscriptions.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from './helpers.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('ops_lag');
});
afterAll(async () => db?.close());

describe('lagSnapshot', () => {
  it('counts undispatched, behind, retry and failed per subscription, honouring filters', async () => {
    const config = opsConfig(db.schema, {
      orders: { category: 'order', handler: () => undefined },
      paused: { category: 'order', handler: () => undefined },
      failing: {
        category: 'order',
        maxRetries: 0,
        handler: (m) => {
          if (m.streamName === 'order-2') throw new Error('no');
        },
      },
      invoices: { category: 'invoice', handler: () => undefined },
    });
    const ctx = db.store.sqlContext;
    const filters = subscriptionFilters(config);
    await registerSubscriptions(db.pool, ctx, config.groups.get('G')!);
    await db.store.append(
      'order-1',
      [1, 2].map((i) => ({ type: 'placed', data: { i } })),
    );
    await db.store.append('order-2', { type: 'placed', data: {} });

    // Nothing read yet: every matching message is undispatched; invoices match none of them.
    const before = await lagSnapshot(db.pool, ctx, { subscriptions: filters });
    const lag = (snap: typeof before, name: string) =>
      snap.groups[0]?.subscriptions.find((s) => s.name === name);
    expect(lag(before, 'orders')).toMatchObject({
      lag: 3,
      undispatched: 3,
      behind: 0,
      status: 'initializing',
    });
    expect(lag(before, 'invoices')).toMatchObject({ lag: 0, undispatched: 0 });
    expect(lag(before, 'orders')?.oldestUnprocessedAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(before.groups[0]).toMatchObject({ name: 'G', liveWorkers: 0, readerPosition: 0 });
    expect(before.head).toBe(3);

    await pauseSubscription(db.pool, db.schema, 'G', 'paused');
    const worker = startWorker(db, config);
    await worker.start();
    try {
      await until(async () => (await checkpoint(db, 'orders', 'order-1'))?.stream_position === 2, 'orders');
      await until(async () => (await checkpoint(db, 'orders', 'order-2'))?.stream_position === 1, 'orders 2');
      await until(
        async () => (await checkpoint(db, 'failing', 'order-1'))?.stream_position === 2,
        'failing 1',
      );
      await until(async () => (await checkpoint(db, 'failing', 'order-2'))?.status === 'failed', 'failing');
      const after = await lagSnapshot(db.pool, ctx, { subscriptions: filters });
      expect(lag(after, 'orders')).toMatchObject({ lag: 0, retry: 0, failed: 0, processed: 3 });
      expect(lag(after, 'orders')?.oldestUnprocessedAgeSeconds).toBeNull();
      // Paused: dispatched by the reader, not handled.
      expect(lag(after, 'paused')).toMatchObject({
        status: 'paused',
        lag: 3,
        behind: 3,
        undispatched: 0,
        streamsBehind: 2,
      });
      expect(lag(after, 'failing')).toMatchObject({ lag: 1, failed: 1, streamsBehind: 1 });
      expect(after.groups[0]).toMatchObject({ liveWorkers: 1, readerPosition: 3 });
      expect(after.groups[0]?.workers[0]).toMatchObject({ group: 'G', live: true, pid: process.pid });
      const other = await lagSnapshot(db.pool, ctx, { subscriptions: filters, group: 'Other' });
      expect(other.groups).toEqual([]);
    } finally {
      await worker.stop();
    }
  });

  it('says where the reader is when a typed subscription jumped to the snapshot (xmin, 0)', async () => {
    const typed = await setupDb('ops_lag_typed');
    const config = opsConfig(typed.schema, {
      placed: { category: 'order', types: ['placed'], handler: () => undefined },
    });
    const ctx = typed.store.sqlContext;
    const worker = startWorker(typed, config);
    try {
      await typed.store.append('order-1', [
        { type: 'placed', data: {} },
        { type: 'shipped', data: {} },
      ]);
      await typed.store.append('order-2', { type: 'placed', data: {} });
      await worker.start();
      await until(
        async () => (await checkpoint(typed, 'placed', 'order-2'))?.stream_position === 1,
        'order-2',
      );
      // A short typed read moves the position to (xmin, 0): no message is at it.
      await until(async () => {
        const { rows } = await typed.pool.query(
          `SELECT log_position FROM ${typed.schema}.subscriptions WHERE name = 'placed'`,
        );
        return rows[0]?.log_position === '0' || rows[0]?.log_position === 0;
      }, 'the reader at (xmin, 0)');
      const snap = await lagSnapshot(typed.pool, ctx, { subscriptions: subscriptionFilters(config) });
      expect(snap.head).toBe(3);
      expect(snap.groups[0]).toMatchObject({ name: 'G', readerPosition: 3 });
      expect(snap.groups[0]?.subscriptions[0]).toMatchObject({ name: 'placed', logPosition: 3 });
    } finally {
      await worker.stop();
      await typed.close();
    }
  });

  it('measures throughput between snapshots, and none across a rewind', () => {
    const snap = (at: string, processed: number) => ({
      takenAt: at,
      schema: 's',
      head: 0,
      readable: 0,
      blocking: null,
      groups: [
        {
          name: 'G',
          readerPosition: 0,
          readerWorkerId: null,
          readerAgeSeconds: null,
          workers: [],
          liveWorkers: 0,
          subscriptions: [
            {
              group: 'G',
              name: 's',
              status: 'active',
              logPosition: 0,
              lag: 0,
              behind: 0,
              undispatched: 0,
              undispatchedCapped: false,
              checkpointsCapped: false,
              streamsBehind: 0,
              oldestUnprocessedAgeSeconds: null,
              retry: 0,
              failed: 0,
              processed,
              throughput: null,
            },
          ],
        },
      ],
    });
    const rate = (a: number, b: number) =>
      withThroughput(snap('2026-01-01T00:00:02.000Z', b), snap('2026-01-01T00:00:00.000Z', a)).groups[0]
        ?.subscriptions[0]?.throughput;
    expect(rate(100, 300)).toBe(100);
    expect(rate(300, 100)).toBeNull();
    expect(
      withThroughput(snap('2026-01-01T00:00:00.000Z', 5), undefined).groups[0]?.subscriptions[0]?.throughput,
    ).toBeNull();
  });
});
