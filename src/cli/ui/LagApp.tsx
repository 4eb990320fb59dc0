import { useApp, useInput, useStdout } from 'ink';
import { useEffect, useRef, useState } from 'react';
import { flattenSubscriptions, LagView, type LagViewSnapshot, MIN_WIDTH } from './LagView.js';
import { useLagSnapshot } from './useLagSnapshot.js';

export interface LagAppProps {
  /** A lag snapshot, with the queues to show. */
  fetch: () => Promise<LagViewSnapshot>;
  /** Retry the failed checkpoints of a subscription; resolves to how many were retried. */
  retryFailed: (group: string, subscription: string) => Promise<number>;
  /** Default 1000. */
  intervalMs?: number;
  /** Default: the terminal's width (followed on resize). */
  width?: number;
  /** Default: the terminal's height (followed on resize). */
  height?: number;
}

/**
 * The terminal's size, followed on resize. Every line is cut to one column less than the width
 * and the frame to one row less than the height: a line that wraps, or a frame that scrolls, is
 * not erased by the next frame and stays behind as a stale copy.
 */
function useTerminalSize(): { columns: number; rows: number } {
  const { stdout } = useStdout();
  const read = () => ({ columns: stdout.columns || 100, rows: stdout.rows || 40 });
  const [size, setSize] = useState(read);
  useEffect(() => {
    const onResize = () => setSize(read());
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  });
  return size;
}

/** `es lag`: the live view with its keys (q quits, arrows select, r retries failed checkpoints). */
export function LagApp({ fetch, retryFailed, intervalMs = 1000, width, height }: LagAppProps) {
  const { exit } = useApp();
  const terminal = useTerminalSize();
  const { snapshot, error, refresh } = useLagSnapshot(fetch, intervalMs);
  const [selected, setSelected] = useState(0);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const subs = flattenSubscriptions(snapshot);
  const current = Math.min(selected, Math.max(0, subs.length - 1));
  // Keys act on what is on screen now: the input handler may be one render behind.
  const latest = useRef({ subs, current });
  latest.current = { subs, current };

  useInput((input, key) => {
    if (input === 'q' || (key.ctrl && input === 'c') || key.escape) {
      exit();
      return;
    }
    const now = latest.current;
    if (key.upArrow) setSelected(Math.max(0, now.current - 1));
    if (key.downArrow) setSelected(Math.min(Math.max(0, now.subs.length - 1), now.current + 1));
    if (input === 'r') {
      const s = now.subs[now.current];
      if (!s) return;
      if (s.failed === 0) {
        setNotice(`${s.group}/${s.name} has no failed checkpoints.`);
        return;
      }
      setNotice(`retrying ${s.group}/${s.name}…`);
      retryFailed(s.group, s.name).then(
        (n) => {
          setNotice(`retried ${n} failed checkpoint${n === 1 ? '' : 's'} of ${s.group}/${s.name}`);
          refresh();
        },
        (err: unknown) => setNotice(`retry failed: ${err instanceof Error ? err.message : String(err)}`),
      );
    }
  });

  return (
    <LagView
      snapshot={snapshot}
      selected={current}
      width={width ?? Math.max(MIN_WIDTH, terminal.columns - 1)}
      height={height ?? Math.max(8, terminal.rows - 1)}
      notice={notice}
      error={error}
    />
  );
}
