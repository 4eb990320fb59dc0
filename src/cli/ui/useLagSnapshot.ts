import { useCallback, useEffect, useRef, useState } from 'react';
import { type LagSnapshot, withThroughput } from '../../operations/lagSnapshot.js';

export interface LagData {
  snapshot: LagSnapshot | undefined;
  error: string | undefined;
  /** Fetch now instead of waiting for the next tick. */
  refresh: () => void;
}

/**
 * Fetch a lag snapshot every `intervalMs`, never two at once, and measure throughput between
 * consecutive snapshots. A failed fetch keeps the last snapshot and reports the error.
 */
export function useLagSnapshot(fetch: () => Promise<LagSnapshot>, intervalMs: number): LagData {
  const [snapshot, setSnapshot] = useState<LagSnapshot | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const previous = useRef<LagSnapshot | undefined>(undefined);
  const inFlight = useRef(false);
  const mounted = useRef(true);

  const refresh = useCallback(() => {
    if (inFlight.current) return;
    inFlight.current = true;
    fetch().then(
      (next) => {
        inFlight.current = false;
        if (!mounted.current) return;
        const measured = withThroughput(next, previous.current);
        previous.current = next;
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
