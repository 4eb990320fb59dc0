import { type HandlerContext, idFromKey, type MessageOf, message } from 'beckett';

/** How long an order waits for its payment. Default 10 s (PAYMENT_TIMEOUT_MS). */
export const PAYMENT_TIMEOUT_MS = Number(process.env.PAYMENT_TIMEOUT_MS ?? 10_000);

export const sagaMessages = {
  order_placed: message<{ orderId: string; amount: number }>(),
  payment_received: message<{ orderId: string; amount: number }>(),
  payment_timed_out: message<{ orderId: string }>(),
  order_cancelled: message<{ orderId: string; reason: string }>(),
};

export type SagaMessage = MessageOf<typeof sagaMessages>;

export const orderStream = (orderId: string) => `order-${orderId}`;

/** The timeout's id is derived from the order, so the saga can cancel it without storing it. */
export const paymentTimeoutId = (orderId: string) => idFromKey(`payment-timeout:${orderId}`);

/**
 * The payment saga, one order stream at a time (handlers see a stream's messages in order):
 * - order_placed: schedule payment_timed_out on the order stream, PAYMENT_TIMEOUT_MS from now;
 * - payment_received: cancel that timeout;
 * - payment_timed_out: cancel the order, unless it was paid meanwhile (the payment may have landed
 *   just as the timeout was delivered, so the stream decides, not the cancel's result).
 */
export async function paymentSaga(m: SagaMessage, ctx: HandlerContext): Promise<void> {
  if (!ctx.schedule || !ctx.cancelScheduled)
    throw new Error('paymentSaga needs a beckett worker (ctx.schedule).');
  switch (m.type) {
    case 'order_placed':
      await ctx.schedule(
        orderStream(m.data.orderId),
        {
          id: paymentTimeoutId(m.data.orderId),
          type: 'payment_timed_out',
          data: { orderId: m.data.orderId },
        },
        { delay: PAYMENT_TIMEOUT_MS },
      );
      return;
    case 'payment_received':
      await ctx.cancelScheduled(paymentTimeoutId(m.data.orderId));
      return;
    case 'payment_timed_out': {
      const before = await ctx.store.readStream(m.streamName, { limit: m.streamPosition });
      if (before.some((x) => x.type === 'payment_received' || x.type === 'order_cancelled')) return;
      await ctx.store.append(m.streamName, {
        type: 'order_cancelled',
        data: { orderId: m.data.orderId, reason: 'payment not received in time' },
      });
      return;
    }
    default:
      return;
  }
}
