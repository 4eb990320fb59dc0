import { InvalidInputError } from '../errors.js';
import { quoteValue } from '../validation/quoteValue.js';

/** -w/--watch [seconds]: true (the flag alone) is every 2 s. */
export function watchIntervalMs(value: string | boolean | undefined): number | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return 2000;
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || seconds < 0.2 || seconds > 3600)
    throw new InvalidInputError(`--watch takes seconds from 0.2 to 3600, got ${quoteValue(value)}.`);
  return Math.round(seconds * 1000);
}

/**
 * Run `show` now and then every `intervalMs` until Ctrl-C (exit 0), as watch(1) does: on a
 * terminal the screen is cleared before each round, otherwise rounds are separated by a line with
 * the time. An error ends the loop (and the command) with that error.
 */
export async function watchEvery(intervalMs: number, show: () => Promise<void>): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    while (!stop.signal.aborted) {
      if (process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
      process.stdout.write(
        `Every ${intervalMs / 1000}s · ${new Date().toISOString().slice(11, 19)}Z · Ctrl-C stops\n`,
      );
      await show();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs);
        stop.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
