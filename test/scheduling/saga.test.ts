import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import { listScheduledMessages } from '../../src/scheduling/scheduleMessage.js';
import { createSchedulerService } from '../../src/scheduling/schedulerService.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('saga', { poolSize: 20 });
});
afterAll(async () => db.close());

describe('the saga example (examples/saga)', () => {
  it('cancels the timeout of a paid order and cancels an unpaid order when its timeout fires', async () => {
    process.env.PAYMENT_TIMEOUT_MS = '800';
    const { default: raw } = await import('../../examples/saga/beckett.config.js');
    const { orderStream, paymentTimeoutId } = await import('../../examples/saga/paymentSaga.js');
    const config = resolveConfig({ ...raw, database: { schema: db.schema } });
    const errors: Error[] = [];
    const worker = createWorker({
      pool: db.pool,
      config,
      group: 'Payments',
      maxPollMs: 100,
      services: [createSchedulerService(db.store, { onError: (e) => errors.push(e as Error) })],
      onError: (e) => errors.push(e),
    });
    await worker.start();
    try {
      const started = Date.now();
      await db.store.append(orderStream('p1'), { type: 'order_placed', data: { orderId: 'p1', amount: 5 } });
      await db.store.append(orderStream('u1'), { type: 'order_placed', data: { orderId: 'u1', amount: 7 } });
      const until = async (check: () => Promise<boolean>, what: string) => {
        while (!(await check())) {
          if (Date.now() - started > 15_000) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await until(
        async () => (await listScheduledMessages(db.store)).length === 2,
        'both timeouts scheduled',
      );
      expect((await listScheduledMessages(db.store)).map((s) => s.id).sort()).toEqual(
        [paymentTimeoutId('p1'), paymentTimeoutId('u1')].sort(),
      );
      await db.store.append(orderStream('p1'), {
        type: 'payment_received',
        data: { orderId: 'p1', amount: 5 },
      });
      await until(
        async () => (await db.store.readStream(orderStream('u1'))).some((m) => m.type === 'order_cancelled'),
        'the unpaid order to be cancelled',
      );
      // The paid order's timeout was cancelled: nothing is pending any more.
      await until(
        async () => (await listScheduledMessages(db.store)).length === 0,
        'the paid timeout cancelled',
      );
      await new Promise((r) => setTimeout(r, Math.max(0, started + 1200 - Date.now())));
    } finally {
      await worker.stop();
    }
    expect(errors).toEqual([]);
    expect((await db.store.readStream(orderStream('p1'))).map((m) => m.type)).toEqual([
      'order_placed',
      'payment_received',
    ]);
    const unpaid = await db.store.readStream(orderStream('u1'));
    expect(unpaid.map((m) => m.type)).toEqual(['order_placed', 'payment_timed_out', 'order_cancelled']);
    // The timeout continues the order's correlation, caused by the order_placed message.
    expect(unpaid[1]!.metadata.correlationId).toBe(unpaid[0]!.id);
    expect(unpaid[1]!.metadata.causationId).toBe(unpaid[0]!.id);
    expect(unpaid[1]!.id).toBe(paymentTimeoutId('u1'));
  });
});
