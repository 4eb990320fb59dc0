import { context, metrics, trace } from '@opentelemetry/api';
import { BeckettError, ExitCode } from '../errors.js';

export interface OtelSdk {
  /** Flush what is buffered and stop exporting. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * Start the OpenTelemetry SDK with OTLP/HTTP exporters for traces and metrics, configured by the
 * standard environment variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
 * OTEL_SERVICE_NAME, ...). `es worker` calls this when OTEL_EXPORTER_OTLP_ENDPOINT is set; library
 * users register their own SDK instead. The SDK packages are imported here, on call, so nothing of
 * them loads otherwise.
 */
export async function startOtelSdk(
  opts: { serviceName?: string; metricIntervalMs?: number } = {},
): Promise<OtelSdk> {
  try {
    return await startSdk(opts);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') throw err;
    // Optional dependencies: an install with --omit=optional leaves the SDK out.
    throw new BeckettError(
      'OTEL_SDK_UNAVAILABLE',
      `OTEL_EXPORTER_OTLP_ENDPOINT is set, but the OpenTelemetry SDK is not installed (${(err as Error).message.split('\n')[0]}).`,
      {
        exitCode: ExitCode.config,
        hint: `Install it (npm install ${SDK_PACKAGES.join(' ')}), or unset OTEL_EXPORTER_OTLP_ENDPOINT.`,
        cause: err,
      },
    );
  }
}

/** The SDK packages: optional dependencies of beckett, loaded only when exporting. */
const SDK_PACKAGES = [
  '@opentelemetry/sdk-trace-base',
  '@opentelemetry/sdk-metrics',
  '@opentelemetry/resources',
  '@opentelemetry/exporter-trace-otlp-http',
  '@opentelemetry/exporter-metrics-otlp-http',
  '@opentelemetry/context-async-hooks',
];

async function startSdk(opts: { serviceName?: string; metricIntervalMs?: number }): Promise<OtelSdk> {
  const [
    { BasicTracerProvider, BatchSpanProcessor },
    { MeterProvider, PeriodicExportingMetricReader },
    resources,
  ] = await Promise.all([
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/sdk-metrics'),
    import('@opentelemetry/resources'),
  ]);
  const [{ OTLPTraceExporter }, { OTLPMetricExporter }, { AsyncLocalStorageContextManager }] =
    await Promise.all([
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/exporter-metrics-otlp-http'),
      import('@opentelemetry/context-async-hooks'),
    ]);
  const resource = resources.defaultResource().merge(
    resources.resourceFromAttributes({
      'service.name': process.env.OTEL_SERVICE_NAME ?? opts.serviceName ?? 'beckett-worker',
    }),
  );
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const tracerProvider = new BasicTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  trace.setGlobalTracerProvider(tracerProvider);
  const meterProvider = new MeterProvider({
    resource,
    readers: [
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter(),
        exportIntervalMillis: opts.metricIntervalMs ?? 15_000,
      }),
    ],
  });
  metrics.setGlobalMeterProvider(meterProvider);
  let done: Promise<void> | undefined;
  return {
    shutdown() {
      done ??= Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]).then(() => {
        trace.disable();
        metrics.disable();
        context.disable();
      });
      return done;
    },
  };
}
