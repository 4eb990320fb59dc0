import { InvalidInputError } from '../errors.js';
import type { ExpectedVersion } from '../store/types.js';
import { quoteValue } from '../validation/quoteValue.js';

/** Digits only, and no more than Number.MAX_SAFE_INTEGER (positions and versions are bigint in SQL). */
export function parseNonNegativeInt(value: string, flag: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw new InvalidInputError(
      `${flag} must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got ${quoteValue(value)}.`,
    );
  return Number(value);
}

export function parsePositiveInt(value: string, flag: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) < 1)
    throw new InvalidInputError(
      `${flag} must be an integer from 1 to ${Number.MAX_SAFE_INTEGER}, got ${quoteValue(value)}.`,
    );
  return Number(value);
}

export function parseExpectedVersion(value: string): ExpectedVersion {
  if (value === 'any' || value === 'no_stream' || value === 'stream_exists') return value;
  if (/^\d+$/.test(value) && Number.isSafeInteger(Number(value))) return Number(value);
  throw new InvalidInputError(
    `--expected-version must be any, no_stream, stream_exists or a version number (0 to ${Number.MAX_SAFE_INTEGER}), got ${quoteValue(value)}.`,
  );
}

export function parseJson(value: string, what: string): unknown {
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new InvalidInputError(
      `${what} is not valid JSON: ${quoteValue((err as Error).message).slice(1, -1)}`,
      `Quote the JSON for your shell, for example '{"orderId":"1"}'.`,
    );
  }
}

const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

/**
 * An ISO 8601 date or time, checked field by field: Date.parse reads 2026-02-30 as March 2, and
 * that is refused here. Without a zone the time is UTC.
 */
export function parseIsoTime(value: string): Date | undefined {
  const m = ISO_TIME.exec(value);
  if (!m) return undefined;
  const [year, month, day, hour = 0, minute = 0, second = 0] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(
    (p) => (p === undefined ? undefined : Number(p)),
  ) as number[];
  const calendar = new Date(Date.UTC(year!, month! - 1, day!));
  if (
    calendar.getUTCFullYear() !== year ||
    calendar.getUTCMonth() !== month! - 1 ||
    calendar.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  )
    return undefined;
  const hasZone = m[7] !== undefined;
  const t = Date.parse(
    m[4] === undefined
      ? `${value}T00:00:00Z`
      : hasZone
        ? value.replace(' ', 'T')
        : `${value.replace(' ', 'T')}Z`,
  );
  return Number.isNaN(t) ? undefined : new Date(t);
}

/** A position (integer) or an ISO 8601 time, as accepted by --from/--to. */
export function parsePositionOrTime(value: string, flag: string): { position: number } | { time: Date } {
  if (/^\d+$/.test(value)) return { position: parseNonNegativeInt(value, flag) };
  const time = parseIsoTime(value);
  if (!time) {
    throw new InvalidInputError(
      `${flag} must be a position (an integer) or a valid ISO 8601 time, got ${quoteValue(value)}.`,
      `Examples: ${flag} 1200, ${flag} 2026-11-24T10:00:00Z`,
    );
  }
  return { time };
}

/** Collect a repeatable option into an array. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
