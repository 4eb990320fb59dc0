/** Latency samples in milliseconds, with percentiles computed once on demand. */
export class Latencies {
  readonly #samples: number[] = [];
  #sorted: number[] | undefined;

  add(ms: number): void {
    this.#samples.push(ms);
    this.#sorted = undefined;
  }

  /** Time `fn` and record its duration. */
  async time<T>(fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    const result = await fn();
    this.add(performance.now() - start);
    return result;
  }

  merge(other: Latencies): void {
    for (const s of other.samples) this.add(s);
  }

  get samples(): readonly number[] {
    return this.#samples;
  }

  get count(): number {
    return this.#samples.length;
  }

  /** Nearest-rank percentile, p in [0, 100]. NaN when there are no samples. */
  percentile(p: number): number {
    if (this.#samples.length === 0) return Number.NaN;
    this.#sorted ??= [...this.#samples].sort((a, b) => a - b);
    const rank = Math.min(this.#sorted.length, Math.max(1, Math.ceil((p / 100) * this.#sorted.length)));
    return this.#sorted[rank - 1]!;
  }

  get p50(): number {
    return this.percentile(50);
  }

  get p99(): number {
    return this.percentile(99);
  }

  get max(): number {
    return this.percentile(100);
  }
}

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The result of one measured variant. */
export interface Measurement {
  label: string;
  messages: number;
  seconds: number;
  latencies?: Latencies;
  /** Free-form extra column (for example peak RSS). */
  note?: string;
}

export function rate(m: Measurement): number {
  return m.messages / m.seconds;
}

/** Run `fn` and return the elapsed seconds along with its result. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; result: T }> {
  const start = performance.now();
  const result = await fn();
  return { seconds: (performance.now() - start) / 1000, result };
}

/** The median of per-round ratios a[i] / b[i] (rounds interleaved, so drift cancels out). */
export function medianRatio(a: Measurement[], b: Measurement[]): number {
  return median(a.map((m, i) => rate(m) / rate(b[i]!)));
}

/** The measurement whose rate is the median of several rounds. */
export function medianOf(ms: Measurement[]): Measurement {
  const target = median(ms.map(rate));
  return ms.reduce((best, m) => (Math.abs(rate(m) - target) < Math.abs(rate(best) - target) ? m : best));
}
