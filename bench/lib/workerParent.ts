import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import { benchDir } from './env.js';
import type { ChildSpec } from './workerChild.js';

export interface ChildrenResult {
  processed: number;
  /** From "go" to the last processed item (includes worker start-up and dispatch). */
  seconds: number;
  /** From the first to the last processed item. */
  secondsFromFirst: number;
  /** Peak RSS of each child, in MiB. */
  maxRssMb: number[];
  /** Runtime counters of each child that has them (createWorker's stats()). */
  stats: (Record<string, number> | undefined)[];
  errors: string[];
}

/** Milliseconds on the system's monotonic clock: comparable across processes on one machine. */
export const now = (): number => Number(process.hrtime.bigint()) / 1e6;

/**
 * Start one child per spec, wait until all are ready, tell them to go, and wait until together
 * they processed `total` items (or `timeoutMs` passed); then stop them and collect peak RSS.
 */
export async function runChildren(
  specs: ChildSpec[],
  total: number,
  timeoutMs = 120_000,
): Promise<ChildrenResult> {
  const children: ChildProcess[] = [];
  const state = specs.map(() => ({
    n: 0,
    first: 0,
    last: 0,
    rss: 0,
    ready: false,
    done: false,
    stats: undefined as Record<string, number> | undefined,
  }));
  const errors: string[] = [];
  let wake: () => void = () => undefined;
  const changed = () =>
    new Promise<void>((r) => {
      wake = r;
    });
  for (const [i, spec] of specs.entries()) {
    const child = fork(join(benchDir(), 'lib', 'workerChild.ts'), [], {
      execArgv: ['--import', 'jiti/register'],
      env: { ...process.env, BENCH_CHILD: JSON.stringify(spec) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on(
      'message',
      (m: {
        t: string;
        n?: number;
        first?: number;
        last?: number;
        maxRssKb?: number;
        message?: string;
        stats?: Record<string, number>;
      }) => {
        const s = state[i]!;
        if (m.t === 'ready') s.ready = true;
        else if (m.t === 'progress') {
          s.n = m.n ?? 0;
          s.first = m.first ?? 0;
          s.last = m.last ?? 0;
        } else if (m.t === 'done') {
          s.rss = m.maxRssKb ?? 0;
          s.stats = m.stats;
          s.done = true;
        } else if (m.t === 'error' && errors.length < 5) errors.push(m.message ?? 'error');
        wake();
      },
    );
    child.on('exit', () => {
      state[i]!.done = true;
      wake();
    });
    children.push(child);
  }
  const deadline = now() + timeoutMs;
  const waitFor = async (cond: () => boolean) => {
    while (!cond() && now() < deadline) {
      const t = setTimeout(() => wake(), 200);
      await changed();
      clearTimeout(t);
    }
  };
  try {
    await waitFor(() => state.every((s) => s.ready || s.done));
    const go = now();
    for (const c of children) c.send({ t: 'go' });
    await waitFor(() => state.reduce((a, s) => a + s.n, 0) >= total || state.some((s) => s.done));
    for (const c of children) if (c.connected) c.send({ t: 'stop' });
    const stopDeadline = now() + 30_000;
    while (!state.every((s) => s.done) && now() < stopDeadline) {
      const t = setTimeout(() => wake(), 200);
      await changed();
      clearTimeout(t);
    }
    const started = state.filter((s) => s.first > 0);
    const first = Math.min(...started.map((s) => s.first));
    const last = Math.max(...state.map((s) => s.last));
    return {
      processed: state.reduce((a, s) => a + s.n, 0),
      seconds: (last - go) / 1000,
      secondsFromFirst: (last - first) / 1000,
      maxRssMb: state.map((s) => s.rss / 1024),
      stats: state.map((s) => s.stats),
      errors,
    };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

export interface LatencyChild {
  /** Resolves when the child is connected and waiting for go(). */
  ready: Promise<void>;
  go(): void;
  /** Stop the child; resolves with its peak RSS in MiB and its runtime counters, if any. */
  stop(): Promise<{ rssMb: number; stats: Record<string, number> | undefined }>;
  errors: string[];
}

/** One child whose handler start times (by seq) are passed to `onStarted` as they arrive. */
export function startLatencyChild(
  spec: ChildSpec,
  onStarted: (seq: number, at: number) => void,
): LatencyChild {
  const child = fork(join(benchDir(), 'lib', 'workerChild.ts'), [], {
    execArgv: ['--import', 'jiti/register'],
    env: { ...process.env, BENCH_CHILD: JSON.stringify({ ...spec, latency: true }) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const errors: string[] = [];
  let rss = 0;
  let stats: Record<string, number> | undefined;
  let readyResolve: () => void = () => undefined;
  const ready = new Promise<void>((r) => {
    readyResolve = r;
  });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  child.on('exit', () => readyResolve());
  type Msg = {
    t: string;
    pairs?: [number, number][];
    maxRssKb?: number;
    message?: string;
    stats?: Record<string, number>;
  };
  child.on('message', (m: Msg) => {
    if (m.t === 'ready') readyResolve();
    else if (m.t === 'lat') for (const [seq, at] of m.pairs ?? []) onStarted(seq, at);
    else if (m.t === 'done') {
      rss = (m.maxRssKb ?? 0) / 1024;
      stats = m.stats;
    } else if (m.t === 'error' && errors.length < 5) errors.push(m.message ?? 'error');
  });
  return {
    ready,
    errors,
    go: () => child.send({ t: 'go' }),
    async stop() {
      if (child.connected) child.send({ t: 'stop' });
      const timeout = new Promise<void>((r) => setTimeout(r, 30_000).unref());
      await Promise.race([exited, timeout]);
      if (child.exitCode === null) child.kill('SIGKILL');
      return { rssMb: rss, stats };
    },
  };
}
