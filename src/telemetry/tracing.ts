import {
  type Attributes,
  type Context,
  context,
  type Link,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';

/** Instrumentation scope of every beckett span and metric. */
export const INSTRUMENTATION_NAME = 'beckett';

let cachedTracer: Tracer | undefined;

// The API hands out a proxy tracer that follows the provider registered later, so one lookup does.
function tracer(): Tracer {
  cachedTracer ??= trace.getTracer(INSTRUMENTATION_NAME);
  return cachedTracer;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The W3C `traceparent` of the active span, or undefined when no (valid) span is active. */
export function currentTraceparent(ctx: Context = context.active()): string | undefined {
  const sc = trace.getSpanContext(ctx);
  if (!sc || !trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/**
 * A context whose (remote) parent is the span named by a W3C `traceparent`; the root context when
 * the value is missing or malformed. Parsed here rather than through the global propagator, so the
 * link from a handled message to its appender holds whatever propagator the user registered.
 */
export function contextFromTraceparent(traceparent: unknown): Context {
  if (typeof traceparent !== 'string') return ROOT_CONTEXT;
  const m = TRACEPARENT.exec(traceparent.trim().toLowerCase());
  if (!m) return ROOT_CONTEXT;
  const spanContext = {
    traceId: m[1]!,
    spanId: m[2]!,
    traceFlags: Number.parseInt(m[3]!, 16),
    isRemote: true,
  };
  if (!trace.isSpanContextValid(spanContext)) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, spanContext);
}

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /** Parent context; default the active one. */
  parent?: Context;
  links?: Link[];
}

/**
 * Run `fn` inside a new active span, ending it when `fn` settles; a throw is recorded on the span
 * (status ERROR) and rethrown. Without an SDK registered this costs a no-op span.
 */
export async function withSpan<T>(
  name: string,
  opts: SpanOptions,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const span = tracer().startSpan(
    name,
    {
      kind: opts.kind ?? SpanKind.INTERNAL,
      ...(opts.attributes ? { attributes: opts.attributes } : {}),
      ...(opts.links ? { links: opts.links } : {}),
    },
    opts.parent ?? context.active(),
  );
  const ctx = trace.setSpan(opts.parent ?? context.active(), span);
  try {
    return await context.with(ctx, () => fn(span));
  } catch (err) {
    span.recordException(err instanceof Error ? err : String(err));
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}

/** Span attribute names (OpenTelemetry messaging conventions where one fits). */
export const Attr = {
  system: 'messaging.system',
  operation: 'messaging.operation.type',
  destination: 'messaging.destination.name',
  messageId: 'messaging.message.id',
  batchCount: 'messaging.batch.message_count',
  messageType: 'beckett.message.type',
  group: 'beckett.group',
  subscription: 'beckett.subscription',
  attempt: 'beckett.attempt',
  streamPosition: 'beckett.stream.position',
  category: 'beckett.category',
} as const;

export { SpanKind };
