import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import {
  applyRetention,
  createRetentionService,
  subscriptionFilters,
} from '../../src/retention/applyRetention.js';
import { registerSubscriptions } from '../../src/subscriptions/registerSubscriptions.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from './helpers.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('ops_ret');
});
afterAll(async () => db?.close());

const positions = async (stream: string) => (await db.store.readStream(stream)).map((m) => m.streamPosition);

const policy = (p: Record<string, unknown>) =>
  resolveConfig({ retention: { policies: [p] } }).retention.policies;

describe('retention', () => {
  it('keeps what a subscription has not processed, deletes what it has, and --force deletes the rest', async () => {
    // The handler fails on order-1's third message: the checkpoint stops (failed) at position 2.
    const config = opsConfig(db.schema, {
      sub: {
        category: 'order',
        maxRetries: 0,
        handler: (m) => {
          if (m.streamName === 'order-1' && m.streamPosition === 3) throw new Error('boom');
        },
      },
    });
    for (let i = 1; i <= 5; i++) await db.store.append('order-1', { type: 'placed', data: { i } });
    const ctx = db.store.sqlContext;
    const keepOne = policy({ category: 'order', maxCount: 1 });

    // Registered but nothing read yet: every candidate is held back by G/sub.
    await registerSubscriptions(db.pool, ctx, config.groups.get('G')!);
    const held = await applyRetention(db.pool, ctx, keepOne, { subscriptions: subscriptionFilters(config) });
    expect(held.policies[0]).toMatchObject({ deleted: 0, protected: 4, heldBy: ['G/sub'] });
    expect(await positions('order-1')).toEqual([1, 2, 3, 4, 5]);

    const worker = startWorker(db, config);
    await worker.start();
    await until(async () => (await checkpoint(db, 'sub', 'order-1'))?.status === 'failed', 'the failure');
    // And the global reader has dispatched the whole stream (its log position is at the head).
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT log_position FROM "${db.schema}".subscriptions WHERE group_name = 'G' AND name = 'sub'`,
      );
      return rows[0]?.log_position === 5;
    }, 'the reader');
    await worker.stop();
    expect((await checkpoint(db, 'sub', 'order-1'))?.stream_position).toBe(2);

    const dry = await applyRetention(db.pool, ctx, keepOne, {
      dryRun: true,
      subscriptions: subscriptionFilters(config),
    });
    const state = async () =>
      JSON.stringify({
        checkpoints: (await db.pool.query(`SELECT * FROM "${db.schema}".checkpoints`)).rows,
        subscriptions: (await db.pool.query(`SELECT * FROM "${db.schema}".subscriptions`)).rows,
      });
    expect(dry.policies[0], await state()).toMatchObject({
      deleted: 2,
      protected: 2,
      heldBy: ['G/sub'],
      batches: 0,
    });
    expect(await positions('order-1')).toEqual([1, 2, 3, 4, 5]);

    const applied = await applyRetention(db.pool, ctx, keepOne, {
      batchSize: 1,
      subscriptions: subscriptionFilters(config),
    });
    expect(applied.policies[0]).toMatchObject({ deleted: 2, protected: 2 });
    // Batches walk the log in windows of batchSize messages: 5 windows of 1, and the empty one that
    // ends the loop.
    expect(applied.policies[0]?.batches).toBe(6);
    expect(await positions('order-1')).toEqual([3, 4, 5]);

    const forced = await applyRetention(db.pool, ctx, keepOne, {
      force: true,
      subscriptions: subscriptionFilters(config),
    });
    expect(forced.policies[0]).toMatchObject({ deleted: 2, protected: 0 });
    // The newest message always stays, so the stream keeps its version.
    expect(await positions('order-1')).toEqual([5]);
    expect(await db.store.streamVersion('order-1')).toBe(5);
  });

  it('applies maxAge to a stream pattern, and a subscription of another category holds nothing back', async () => {
    const config = opsConfig(db.schema, { sub: { category: 'order', handler: () => undefined } });
    for (const s of ['session-a', 'session-b', 'sessionx-c'])
      for (let i = 1; i <= 3; i++) await db.store.append(s, { type: 'seen', data: { i } });
    await db.pool.query(
      `UPDATE "${db.schema}".messages SET created_at = now() - interval '2 days'
        WHERE stream_name LIKE 'session%' AND stream_position <= 2`,
    );
    const r = await applyRetention(
      db.pool,
      db.store.sqlContext,
      policy({ stream: 'session-*', maxAge: '1d' }),
      {
        subscriptions: subscriptionFilters(config),
      },
    );
    expect(r.policies[0]).toMatchObject({ policy: 'session-*', deleted: 4, protected: 0 });
    expect(await positions('session-a')).toEqual([3]);
    expect(await positions('session-b')).toEqual([3]);
    expect(await positions('sessionx-c')).toEqual([1, 2, 3]);
  });

  it('never deletes the newest message of a stream, however old; unknown filters hold back', async () => {
    await db.store.append('audit-1', [
      { type: 'a', data: {} },
      { type: 'b', data: {} },
    ]);
    await db.pool.query(
      `UPDATE "${db.schema}".messages SET created_at = now() - interval '30 days' WHERE stream_name = 'audit-1'`,
    );
    const audit = policy({ category: 'audit', maxAge: '1d' });
    // Without the config's filters, G/sub (registered above) might read audit-1: it holds it back.
    const unknownFilters = await applyRetention(db.pool, db.store.sqlContext, audit);
    expect(unknownFilters.policies[0]).toMatchObject({ deleted: 0, protected: 1, heldBy: ['G/sub'] });
    const config = opsConfig(db.schema, { sub: { category: 'order', handler: () => undefined } });
    const r = await applyRetention(db.pool, db.store.sqlContext, audit, {
      subscriptions: subscriptionFilters(config),
    });
    expect(r.policies[0]?.deleted).toBe(1);
    expect(await positions('audit-1')).toEqual([2]);
  });

  it('rejects invalid policies with the key that is wrong', () => {
    expect(() => resolveConfig({ retention: { policies: [{ category: 'order', maxAge: 'soon' }] } })).toThrow(
      /retention\.policies\[0\]\.maxAge: expected milliseconds or a duration/,
    );
    expect(() => resolveConfig({ retention: { policies: [{ maxCount: 3 }] } })).toThrow(
      /retention\.policies\[0\]: expected exactly one of category or stream, got neither/,
    );
    expect(() => resolveConfig({ retention: { policies: [{ stream: 'x-*' }], interval: 5 } })).toThrow(
      /retention\.policies\[0\]: expected maxAge, maxCount or both/,
    );
  });
});

describe('retention as a worker service', () => {
  it('applies the policies every interval until the worker stops it', async () => {
    const own = await setupDb('ops_ret_svc', { poolSize: 2 });
    try {
      await own.store.append(
        'tick-1',
        [1, 2, 3, 4].map((i) => ({ type: 't', data: { i } })),
      );
      const config = resolveConfig({
        database: { schema: own.schema },
        retention: { policies: [{ category: 'tick', maxCount: 2 }], interval: 50 },
      });
      const deleted: number[] = [];
      const errors: unknown[] = [];
      const stop = new AbortController();
      const service = createRetentionService(own.pool, own.store.sqlContext, config, {
        onResult: (r) => deleted.push(r.policies[0]?.deleted ?? -1),
        onError: (e) => errors.push(e),
      });
      const running = service(stop.signal);
      await until(() => deleted.length >= 2, 'two rounds');
      stop.abort();
      await running;
      expect(errors).toEqual([]);
      expect(deleted.slice(0, 2)).toEqual([2, 0]);
      expect((await own.store.readStream('tick-1')).map((m) => m.streamPosition)).toEqual([3, 4]);
    } finally {
      await own.close();
    }
  });
});

describe('retention racing a worker', () => {
  it('never deletes a message before the subscription has handled it', async () => {
    const own = await setupDb('ops_ret_race', { poolSize: 10 });
    const seen = new Set<string>();
    const config = opsConfig(own.schema, {
      slow: {
        category: 'job',
        batchSize: 5,
        handler: async (m) => {
          seen.add(`${m.streamName}@${m.streamPosition}`);
          await new Promise((r) => setTimeout(r, 1));
        },
      },
    });
    const worker = startWorker(own, config);
    try {
      await worker.start();
      const keepOne = resolveConfig({ retention: { policies: [{ category: 'job', maxCount: 1 }] } }).retention
        .policies;
      let deleted = 0;
      let kept = 0;
      let running = true;
      // Retention runs over and over while messages arrive and the worker handles them.
      const retention = (async () => {
        while (running) {
          const r = await applyRetention(own.pool, own.store.sqlContext, keepOne, {
            batchSize: 7,
            subscriptions: subscriptionFilters(config),
          });
          deleted += r.policies[0]?.deleted ?? 0;
          kept += r.policies[0]?.protected ?? 0;
        }
      })();
      for (let round = 1; round <= 30; round++)
        await Promise.all(
          [1, 2, 3, 4].map((s) =>
            own.store.append(
              `job-${s}`,
              [1, 2].map((i) => ({ type: 't', data: { i } })),
            ),
          ),
        );
      await until(() => seen.size === 4 * 60, 'every message handled', 60_000);
      running = false;
      await retention;
      expect(seen.size).toBe(240);
      // The race happened: retention deleted while the worker still had work it protected.
      expect(deleted).toBeGreaterThan(0);
      expect(kept).toBeGreaterThan(0);
    } finally {
      await worker.stop();
      await own.close();
    }
  });
});
