import { AssertionError } from 'node:assert';
// The saga example imports the built package ('beckett'), so its harness comes from 'beckett/testing'
// too (npm run build first, as for the CLI tests): this also runs the package's testing entry.
import { InvalidInputError, resolveConfig } from 'beckett';
import {
  createHandlerHarness,
  createInMemoryStore,
  createInMemorySubscriptions,
  createTestClock,
} from 'beckett/testing';
import { describe, expect, it } from 'vitest';
import {
  orderStream,
  PAYMENT_TIMEOUT_MS,
  paymentSaga,
  paymentTimeoutId,
} from '../../examples/saga/paymentSaga.js';

describe('handler harness (saga example)', () => {
  it('order_placed schedules the payment timeout on the store clock, with the order as cause', async () => {
    const clock = createTestClock();
    const harness = createHandlerHarness(paymentSaga, { store: createInMemoryStore({ clock }) });
    const o = await harness
      .when({ stream: 'order-1', type: 'order_placed', data: { orderId: '1', amount: 5 } })
      .then({
        appended: [],
        scheduled: [
          {
            id: paymentTimeoutId('1'),
            stream: 'order-1',
            type: 'payment_timed_out',
            data: { orderId: '1' },
            deliverAt: new Date(clock.now().getTime() + 10_000),
          },
        ],
      });
    expect(o.scheduled[0]!.metadata).toMatchObject({
      correlationId: o.message.id,
      causationId: o.message.id,
    });
    // The timeout fires when the clock passes it.
    clock.advance(9_999);
    expect(await harness.store.deliverDue()).toEqual({ delivered: 0, duplicates: 0 });
    clock.advance(1);
    expect(await harness.store.deliverDue()).toEqual({ delivered: 1, duplicates: 0 });
    expect((await harness.store.readStream('order-1')).map((m) => m.type)).toEqual([
      'order_placed',
      'payment_timed_out',
    ]);
  });

  it('payment_received cancels the timeout; payment_timed_out cancels an unpaid order only', async () => {
    const harness = createHandlerHarness(paymentSaga);
    await harness
      .given([{ stream: 'order-2', type: 'order_placed', data: { orderId: '2', amount: 5 } }])
      .when({ stream: 'order-2', type: 'payment_received', data: { orderId: '2', amount: 5 } })
      .then({ appended: [], cancelled: [paymentTimeoutId('2')] });
    const unpaid = await createHandlerHarness(paymentSaga)
      .given([{ stream: 'order-3', type: 'order_placed', data: { orderId: '3', amount: 5 } }])
      .when({ stream: 'order-3', type: 'payment_timed_out', data: { orderId: '3' } })
      .then({
        appended: [
          {
            stream: 'order-3',
            type: 'order_cancelled',
            data: { orderId: '3', reason: 'payment not received in time' },
          },
        ],
      });
    // Appends from a handler continue the handled message's correlation, caused by it.
    expect(unpaid.appended[0]!.metadata).toMatchObject({
      correlationId: unpaid.message.id,
      causationId: unpaid.message.id,
    });
    await createHandlerHarness(paymentSaga)
      .given([
        { stream: 'order-4', type: 'order_placed', data: { orderId: '4', amount: 5 } },
        { stream: 'order-4', type: 'payment_received', data: { orderId: '4', amount: 5 } },
      ])
      .when({ stream: 'order-4', type: 'payment_timed_out', data: { orderId: '4' } })
      .then({ appended: [] });
  });

  it('then fails on other effects; thenThrows; the store has no pool', async () => {
    const harness = createHandlerHarness(paymentSaga);
    await expect(
      harness
        .when({ stream: 'order-5', type: 'order_placed', data: { orderId: '5', amount: 1 } })
        .then({ scheduled: [] }),
    ).rejects.toBeInstanceOf(AssertionError);
    const usesPool = createHandlerHarness(async (_m, ctx) => {
      ctx.store.pool.query('SELECT 1');
    });
    await usesPool
      .when({ stream: 'x-1', type: 't', data: {} })
      .thenThrows(InvalidInputError, (e) => expect(e.message).toMatch(/ctx.store.pool is not available/));
    await expect(
      createHandlerHarness(() => undefined)
        .when({ stream: 'x-1', type: 't', data: {} })
        .thenThrows(Error),
    ).rejects.toThrow(/but it returned/);
  });
});

describe('the saga example on in-memory subscriptions', () => {
  it('cancels the timeout of a paid order and cancels an unpaid order when its timeout fires', async () => {
    const { default: raw } = await import('../../examples/saga/beckett.config.js');
    const config = resolveConfig(raw);
    const store = createInMemoryStore({ messages: config.messages });
    const subs = createInMemorySubscriptions({ store, config, group: 'Payments' });
    await store.append(orderStream('p1'), { type: 'order_placed', data: { orderId: 'p1', amount: 5 } });
    await store.append(orderStream('u1'), { type: 'order_placed', data: { orderId: 'u1', amount: 7 } });
    await subs.run();
    expect(
      store
        .listScheduled()
        .map((s) => s.id)
        .sort(),
    ).toEqual([paymentTimeoutId('p1'), paymentTimeoutId('u1')].sort());
    await store.append(orderStream('p1'), { type: 'payment_received', data: { orderId: 'p1', amount: 5 } });
    await subs.run();
    expect(store.listScheduled().map((s) => s.id)).toEqual([paymentTimeoutId('u1')]);
    store.clock.advance(PAYMENT_TIMEOUT_MS);
    // The timeout is delivered, then handled, in one run.
    await subs.run();
    expect((await store.readStream(orderStream('p1'))).map((m) => m.type)).toEqual([
      'order_placed',
      'payment_received',
    ]);
    const unpaid = await store.readStream(orderStream('u1'));
    expect(unpaid.map((m) => m.type)).toEqual(['order_placed', 'payment_timed_out', 'order_cancelled']);
    expect(unpaid[1]!.metadata).toMatchObject({ correlationId: unpaid[0]!.id, causationId: unpaid[0]!.id });
    expect(unpaid[1]!.id).toBe(paymentTimeoutId('u1'));
    expect(
      subs.checkpoints().every((c) => c.status === 'active' && c.streamPosition === c.streamVersion),
    ).toBe(true);
  });
});
