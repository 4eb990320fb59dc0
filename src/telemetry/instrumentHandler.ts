import type { Link } from '@opentelemetry/api';
import { trace } from '@opentelemetry/api';
import type { RecordedMessage } from '../store/types.js';
import { type BeckettMetrics, processMetrics } from './metrics.js';
import { Attr, contextFromTraceparent, SpanKind, withSpan } from './tracing.js';

export interface HandlerCallInfo {
  group: string;
  subscription: string;
  /** 1 on the first try. */
  attempt: number;
  /** The message handled, or the batch (all from one stream, in order). */
  messages: RecordedMessage[];
  /** Default: the process-wide metrics. */
  metrics?: BeckettMetrics;
}

/**
 * Run one handler call inside a CONSUMER span and record its metrics. The span's parent is the
 * span that appended the (first) message, read from its `traceparent` metadata, so
 * append -> handler -> append forms one trace; the other messages of a batch become links.
 */
export async function instrumentHandlerCall<T>(info: HandlerCallInfo, call: () => Promise<T>): Promise<T> {
  const first = info.messages[0];
  const links: Link[] = [];
  for (const m of info.messages.slice(1)) {
    const sc = trace.getSpanContext(contextFromTraceparent(m.metadata.traceparent));
    if (sc) links.push({ context: sc });
  }
  const metrics = info.metrics ?? processMetrics();
  const started = performance.now();
  let ok = false;
  try {
    const result = await withSpan(
      `${info.subscription} process`,
      {
        kind: SpanKind.CONSUMER,
        parent: contextFromTraceparent(first?.metadata.traceparent),
        links,
        attributes: {
          [Attr.system]: 'beckett',
          [Attr.operation]: 'process',
          [Attr.group]: info.group,
          [Attr.subscription]: info.subscription,
          [Attr.attempt]: info.attempt,
          [Attr.batchCount]: info.messages.length,
          ...(first
            ? {
                [Attr.destination]: first.streamName,
                [Attr.messageId]: first.id,
                [Attr.messageType]: first.type,
                [Attr.streamPosition]: first.streamPosition,
              }
            : {}),
        },
      },
      call,
    );
    ok = true;
    return result;
  } finally {
    metrics.recordHandlerCall({
      group: info.group,
      subscription: info.subscription,
      messages: info.messages.length,
      durationSeconds: (performance.now() - started) / 1000,
      attempt: info.attempt,
      ok,
    });
  }
}
