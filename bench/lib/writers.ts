import { Latencies, type Measurement, timed } from './stats.js';

export interface WriterPlan {
  writers: number;
  /** Total appends across all writers. */
  appends: number;
  /** Streams each writer owns (round-robin over them). */
  streamsPerWriter: number;
}

/** One append by writer `writer` to `stream`, whose version the writer knows to be `version`. */
export type AppendFn = (writer: number, stream: string, version: number) => Promise<void>;

/** Stream names are unique per variant (`tag`) so variants never share streams. */
export function streamName(tag: string, writer: number, k: number): string {
  return `${tag}-w${writer}s${k}`;
}

/**
 * `writers` concurrent writers, each appending one message at a time to its own streams with the
 * last known version as expected version; every append's latency is recorded.
 */
export async function runWriters(
  label: string,
  tag: string,
  plan: WriterPlan,
  fn: AppendFn,
): Promise<Measurement> {
  const latencies = new Latencies();
  const perWriter = Math.ceil(plan.appends / plan.writers);
  const { seconds } = await timed(async () => {
    await Promise.all(
      Array.from({ length: plan.writers }, async (_, w) => {
        const versions = new Array<number>(plan.streamsPerWriter).fill(0);
        for (let i = 0; i < perWriter; i++) {
          const k = i % plan.streamsPerWriter;
          const start = performance.now();
          await fn(w, streamName(tag, w, k), versions[k]!);
          latencies.add(performance.now() - start);
          versions[k] = versions[k]! + 1;
        }
      }),
    );
  });
  return { label, messages: perWriter * plan.writers, seconds, latencies };
}

/**
 * Appends each variant makes once per plan before its timed rounds, untimed: V8 compiles a function
 * with its optimising tier only after thousands of calls, and a library's append path is many more
 * functions than a raw INSERT's. With a short warm-up alone, the 1-writer rounds measured mostly
 * that compilation (bench/README, session 15). Not scaled: it is what the code needs.
 */
export const JIT_WARMUP = 10_000;

/** Warm every variant's code with JIT_WARMUP untimed appends of `plan`, each on a setup of its own. */
export async function warmJit(
  variants: readonly { setup(poolSize: number): Promise<{ append: AppendFn; close(): Promise<void> }> }[],
  name: string,
  plan: WriterPlan,
): Promise<void> {
  for (const v of variants) {
    const { append, close } = await v.setup(plan.writers);
    try {
      await runWriters('warmup', `jit${name}`, { ...plan, appends: JIT_WARMUP }, append);
    } finally {
      await close();
    }
  }
}
