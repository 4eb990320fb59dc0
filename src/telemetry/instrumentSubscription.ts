import type { HandlerContext, ResolvedSubscription, WorkerHandlerContext } from '../config/types.js';
import { handlerEnqueue } from '../queues/enqueue.js';
import { handlerScheduling } from '../scheduling/scheduleMessage.js';
import type { RecordedMessage } from '../store/types.js';
import { instrumentHandlerCall } from './instrumentHandler.js';
import type { BeckettMetrics } from './metrics.js';

function withScheduling(
  ctx: WorkerHandlerContext,
  cause: RecordedMessage,
  subscription: string,
): HandlerContext {
  const s = handlerScheduling(ctx.store, cause, { subscription, client: ctx.client });
  return {
    ...ctx,
    schedule: (stream, message, when) => s.schedule(stream, message, when),
    cancelScheduled: (id) => s.cancelScheduled(id),
    enqueue: handlerEnqueue(ctx.store, cause, { who: subscription, client: ctx.client }),
  };
}

/**
 * The subscription with its handler wrapped: each call runs in a span continuing the appender's
 * trace, records duration/processed/retry metrics, and gets `ctx.schedule` / `ctx.cancelScheduled`
 * (inside the handler's transaction for transactional subscriptions).
 */
export function instrumentSubscription(
  sub: ResolvedSubscription,
  opts: { metrics?: BeckettMetrics } = {},
): ResolvedSubscription {
  const { handler, batchHandler } = sub;
  const info = (ctx: WorkerHandlerContext, messages: RecordedMessage[]) => ({
    group: sub.group,
    subscription: sub.name,
    attempt: ctx.attempt,
    messages,
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
  });
  return {
    ...sub,
    handler: handler
      ? (message, ctx) =>
          instrumentHandlerCall(info(ctx, [message]), async () =>
            handler(message, withScheduling(ctx, message, sub.name)),
          )
      : undefined,
    batchHandler: batchHandler
      ? (messages, ctx) =>
          instrumentHandlerCall(info(ctx, messages), async () =>
            batchHandler(messages, withScheduling(ctx, messages[0]!, sub.name)),
          )
      : undefined,
  };
}
