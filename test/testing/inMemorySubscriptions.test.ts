import { describe, expect, it } from 'vitest';
import type { SubscriptionConfig } from '../../src/config/types.js';
import { message } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { InvalidInputError } from '../../src/errors.js';
import { createInMemoryStore } from '../../src/testing/inMemoryStore.js';
import { createInMemorySubscriptions } from '../../src/testing/inMemorySubscriptions.js';

const configWith = (subscriptions: Record<string, SubscriptionConfig>, messages?: Record<string, object>) =>
  resolveConfig({
    database: { schema: 'unused' },
    ...(messages ? { messages } : {}),
    groups: { G: { subscriptions } },
  });

describe('in-memory subscriptions', () => {
  it('handles each stream in order; a failing stream retries with backoff on the clock, then fails; others flow', async () => {
    const store = createInMemoryStore();
    const seen: string[] = [];
    const attempts: { at: number; attempt: number }[] = [];
    const config = configWith({
      orders: {
        category: 'order',
        maxRetries: 2,
        backoff: { initialMs: 1000, maxMs: 60_000 },
        handler: (m, ctx) => {
          if (m.streamName === 'order-bad' && m.streamPosition === 2) {
            attempts.push({ at: store.clock.now().getTime(), attempt: ctx.attempt });
            throw new TypeError('cannot allocate');
          }
          seen.push(`${m.streamName}#${m.streamPosition}`);
        },
      },
    });
    const subs = createInMemorySubscriptions({ store, config, group: 'G', random: () => 1 });
    await store.append(
      'order-bad',
      [1, 2, 3].map((i) => ({ type: 't', data: { i } })),
    );
    for (let s = 0; s < 3; s++)
      await store.append(
        `order-ok${s}`,
        [1, 2].map((i) => ({ type: 't', data: { i } })),
      );
    await store.append('other-1', { type: 't', data: {} });
    expect(await subs.run()).toEqual({ processed: 7, failures: 1 });
    expect(seen.filter((s) => s.startsWith('order-ok'))).toHaveLength(6);
    expect(seen).not.toContain('other-1#1');
    expect(subs.checkpoints().find((c) => c.stream === 'order-bad')).toMatchObject({
      status: 'retry',
      streamPosition: 1,
      streamVersion: 3,
      attempts: 1,
      lastError: { type: 'TypeError', message: 'cannot allocate', attempt: 1 },
    });
    // Not due before its backoff (1 s for the first retry with full jitter).
    store.clock.advance(999);
    expect(await subs.run()).toEqual({ processed: 0, failures: 0 });
    store.clock.advance(1);
    expect((await subs.run()).failures).toBe(1);
    store.clock.advance(2000);
    expect((await subs.run()).failures).toBe(1);
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(attempts.map((a) => a.at - attempts[0]!.at)).toEqual([0, 1000, 3000]);
    const failed = subs.checkpoints('orders').find((c) => c.stream === 'order-bad')!;
    expect(failed).toMatchObject({ status: 'failed', attempts: 3, nextAttemptAt: undefined });
    store.clock.advance(3_600_000);
    expect(await subs.run()).toEqual({ processed: 0, failures: 0 });
    // New messages of other streams still flow; the failed stream waits for an operator.
    await store.append('order-ok0', { type: 't', data: {} });
    await store.append('order-bad', { type: 't', data: {} });
    expect((await subs.run()).processed).toBe(1);
    subs.skip('orders', 'order-bad');
    await subs.run();
    expect(seen.filter((s) => s.startsWith('order-bad'))).toEqual([
      'order-bad#1',
      'order-bad#3',
      'order-bad#4',
    ]);
  });

  it("handlers' appends are processed in the same run, caused by their message; batch handlers; retry()", async () => {
    const store = createInMemoryStore();
    const batches: number[][] = [];
    let failOnce = true;
    const config = configWith({
      react: {
        types: ['placed'],
        handler: async (m, ctx) => {
          await ctx.store.append(`ship-${m.streamName.split('-')[1]}`, { type: 'ship', data: {} });
        },
      },
      ship: {
        category: 'ship',
        batchSize: 2,
        maxRetries: 0,
        batchHandler: (ms) => {
          if (failOnce) {
            failOnce = false;
            throw new Error('down');
          }
          batches.push(ms.map((m) => m.streamPosition));
        },
      },
    });
    const subs = createInMemorySubscriptions({ store, config, group: 'G' });
    await store.append('order-1', [
      { type: 'placed', data: {} },
      { type: 'paid', data: {} },
    ]);
    await store.append('ship-1', [
      { type: 'a', data: {} },
      { type: 'b', data: {} },
    ]);
    await subs.run();
    expect(subs.checkpoints('ship')[0]).toMatchObject({
      status: 'failed',
      streamPosition: 0,
      streamVersion: 3,
    });
    subs.retry('ship', 'ship-1');
    await subs.run();
    expect(batches).toEqual([[1, 2], [3]]);
    const [, , ship] = await store.readStream('ship-1');
    const [placed] = await store.readStream('order-1');
    expect(ship!.metadata).toMatchObject({ causationId: placed!.id, correlationId: placed!.id });
  });

  it('startFrom end, unmapped types, and refusals', async () => {
    const store = createInMemoryStore();
    await store.append('a-1', { type: 'known', data: {} });
    const got: string[] = [];
    const config = configWith(
      {
        late: { startFrom: 'end', handler: (m) => void got.push(`late:${m.type}`) },
        // Types default to the declared ones; an undeclared type named here follows onUnmappedType.
        strict: {
          category: 'a',
          types: ['known', 'mystery'],
          // Listing an undeclared type needs onUnmappedType set (here the default, 'fail').
          onUnmappedType: 'fail',
          handler: (m) => void got.push(`strict:${m.type}`),
        },
        lenient: {
          category: 'a',
          types: ['known', 'mystery'],
          onUnmappedType: 'skip',
          handler: (m) => void got.push(`lenient:${m.type}`),
        },
      },
      { known: message() },
    );
    const subs = createInMemorySubscriptions({ store, config, group: 'G' });
    await subs.run();
    await store.append('a-1', [
      { type: 'mystery', data: {} },
      { type: 'known', data: {} },
    ]);
    await subs.run();
    expect(got.sort()).toEqual(['late:known', 'lenient:known', 'lenient:known', 'strict:known'].sort());
    expect(subs.checkpoints('strict')[0]).toMatchObject({
      status: 'retry',
      streamPosition: 1,
      lastError: { type: 'UnmappedMessageTypeError' },
    });
    expect(subs.checkpoints('late')[0]).toMatchObject({ status: 'active', streamPosition: 3 });
    expect(() =>
      createInMemorySubscriptions({
        store,
        config: configWith({ p: { transactional: true, handler: () => undefined } }),
        group: 'G',
      }),
    ).toThrow(InvalidInputError);
    expect(() => createInMemorySubscriptions({ store, config, group: 'Nope' })).toThrow(
      /Unknown group "Nope"/,
    );
  });
});
