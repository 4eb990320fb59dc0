import { redactSecrets } from '../db/databaseUrl.js';
import { InvalidInputError } from '../errors.js';
import { quoteValue } from '../validation/quoteValue.js';

/** How a worker's log lines are written: one human line, or one JSON object per line. */
export type LogFormat = 'pretty' | 'json';

/**
 * How much a worker says. `warn` (the default) is quiet: failures, warnings, start and stop, and a
 * periodic summary. `info` adds one line per handled message; `debug` one per claim as well.
 * `error` keeps only failures.
 */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

const LEVELS: LogLevel[] = ['error', 'warn', 'info', 'debug'];

export function parseLogFormat(value: string): LogFormat {
  if (value === 'pretty' || value === 'json') return value;
  throw new InvalidInputError(`--log-format must be pretty or json, got ${quoteValue(value)}.`);
}

export function parseLogLevel(value: string): LogLevel {
  if ((LEVELS as string[]).includes(value)) return value as LogLevel;
  throw new InvalidInputError(`--log-level must be one of ${LEVELS.join(', ')}, got ${quoteValue(value)}.`);
}

/** One log record: `event` names what happened; the rest are its fields. */
export interface LogRecord {
  level: LogLevel;
  event: string;
  /** The human sentence (pretty) and the `msg` field (json). */
  msg: string;
  [field: string]: unknown;
}

export interface WorkerLog {
  readonly level: LogLevel;
  enabled(level: LogLevel): boolean;
  write(record: LogRecord): void;
}

function clock(d: Date): string {
  return d.toISOString().slice(11, 23);
}

/** A line for a record: `12:00:01.234 handled allocate orders-1@2 ...` or its JSON. */
export function formatLogRecord(record: LogRecord, format: LogFormat, now: Date = new Date()): string {
  if (format === 'json') {
    const { level, event, msg, ...fields } = record;
    return redactSecrets(JSON.stringify({ time: now.toISOString(), level, event, msg, ...fields }));
  }
  const tag =
    record.level === 'error'
      ? 'ERROR '
      : record.level === 'warn' && record.event === 'warning'
        ? 'WARN '
        : '';
  return redactSecrets(`${clock(now)} ${tag}${record.msg}`);
}

/** A log writing lines at or above `level` to `out` (stderr: the worker prints nothing on stdout). */
export function createWorkerLog(
  opts: { format: LogFormat; level: LogLevel },
  out: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): WorkerLog {
  const rank = LEVELS.indexOf(opts.level);
  const enabled = (level: LogLevel) => LEVELS.indexOf(level) <= rank;
  return {
    level: opts.level,
    enabled,
    write(record) {
      if (enabled(record.level)) out(formatLogRecord(record, opts.format));
    },
  };
}

/** Counts between two summaries. */
export interface SummaryWindow {
  handled: number;
  failed: number;
  /** Messages of the group not handled yet (lag summed over its subscriptions), if known. */
  lag: number | undefined;
  seconds: number;
}

/** The periodic summary line's record (said only when something happened or work is waiting). */
export function summaryRecord(group: string, w: SummaryWindow): LogRecord | undefined {
  if (w.handled === 0 && w.failed === 0 && !w.lag) return undefined;
  const rate = w.seconds > 0 ? w.handled / w.seconds : 0;
  return {
    level: 'warn',
    event: 'summary',
    msg: `${group}: handled ${w.handled}, failed ${w.failed} in the last ${Math.round(w.seconds)}s (${rate.toFixed(1)}/s); ${w.lag === undefined ? 'lag unknown' : w.lag === 0 ? 'caught up' : `lag ${w.lag} messages`}`,
    group,
    handled: w.handled,
    failed: w.failed,
    lag: w.lag ?? null,
    seconds: Math.round(w.seconds * 10) / 10,
  };
}
