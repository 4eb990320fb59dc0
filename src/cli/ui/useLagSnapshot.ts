import { useCallback, useEffect, useRef, useState } from 'react';
import { type LagSnapshot, withThroughput } from '../../operations/lagSnapshot.js';

export interface LagData<S extends LagSnapshot = LagSnapshot> {
  snapshot: S | undefined;
  error: string | undefined;
  /** Fetch now instead of waiting for the next tick. */
  refresh: () => void;
}

/** How quickly MSG/S follows a change: an exponentially weighted average over about 5 s. */
const SMOOTHING_SECONDS = 5;

/**
 * Each subscription's throughput as an exponentially weighted moving average: the measured rate
 * between two snapshots jumps (0, then 336, then 0) with batches and claims; averaged over about
 * `tauSeconds` it reads as the rate it is. The first measurement is taken as is; a reset (null)
 * starts over.
 */
export function smoothThroughput<S extends LagSnapshot>(
  measured: S,
  previous: LagSnapshot | undefined,
  seconds: number,
  tauSeconds: number = SMOOTHING_SECONDS,
): S {
  if (!previous || seconds <= 0) return measured;
  const alpha = 1 - Math.exp(-seconds / tauSeconds);
  const before = new Map<string, number | null>();
  for (const g of previous.groups)
    for (const s of g.subscriptions) before.set(`${s.group}/${s.name}`, s.throughput);
  return {
    ...measured,
    groups: measured.groups.map((g) => ({
      ...g,
      subscriptions: g.subscriptions.map((s) => {
        const was = before.get(`${s.group}/${s.name}`);
        if (s.throughput === null || was === null || was === undefined) return s;
        return { ...s, throughput: was + alpha * (s.throughput - was) };
      }),
    })),
  };
}

/**
 * Fetch a lag snapshot every `intervalMs`, never two at once, and measure throughput between
 * consecutive snapshots, smoothed (smoothThroughput). A failed fetch keeps the last snapshot and reports the error.
 */
export function useLagSnapshot<S extends LagSnapshot>(
  fetch: () => Promise<S>,
  intervalMs: number,
): LagData<S> {
  const [snapshot, setSnapshot] = useState<S | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const previous = useRef<S | undefined>(undefined);
  const shown = useRef<S | undefined>(undefined);
  const inFlight = useRef(false);
  const mounted = useRef(true);

  const refresh = useCallback(() => {
    if (inFlight.current) return;
    inFlight.current = true;
    fetch().then(
      (next) => {
        inFlight.current = false;
        if (!mounted.current) return;
        const prev = previous.current;
        const seconds = prev ? (Date.parse(next.takenAt) - Date.parse(prev.takenAt)) / 1000 : 0;
        // withThroughput keeps what else the snapshot carries (the queues).
        const measured = smoothThroughput({ ...next, ...withThroughput(next, prev) }, shown.current, seconds);
        previous.current = next;
        shown.current = measured;
        setSnapshot(measured);
        setError(undefined);
      },
      (err: unknown) => {
        inFlight.current = false;
        if (mounted.current) setError(err instanceof Error ? err.message : String(err));
      },
    );
  }, [fetch]);

  useEffect(() => {
    mounted.current = true;
    refresh();
    const timer = setInterval(refresh, intervalMs);
    return () => {
      mounted.current = false;
      clearInterval(timer);
    };
  }, [refresh, intervalMs]);

  return { snapshot, error, refresh };
}
