import { InvalidInputError } from '../errors.js';
import type { ExpectedVersion } from '../store/types.js';

export function parseNonNegativeInt(value: string, flag: string): number {
  if (!/^\d+$/.test(value))
    throw new InvalidInputError(`${flag} must be an integer >= 0, got ${JSON.stringify(value)}.`);
  return Number(value);
}

export function parsePositiveInt(value: string, flag: string): number {
  const n = parseNonNegativeInt(value, flag);
  if (n < 1) throw new InvalidInputError(`${flag} must be an integer >= 1, got ${JSON.stringify(value)}.`);
  return n;
}

export function parseExpectedVersion(value: string): ExpectedVersion {
  if (value === 'any' || value === 'no_stream' || value === 'stream_exists') return value;
  if (/^\d+$/.test(value)) return Number(value);
  throw new InvalidInputError(
    `--expected-version must be any, no_stream, stream_exists or a version number, got ${JSON.stringify(value)}.`,
  );
}

export function parseJson(value: string, what: string): unknown {
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new InvalidInputError(
      `${what} is not valid JSON: ${(err as Error).message}`,
      `Quote the JSON for your shell, for example '{"orderId":"1"}'.`,
    );
  }
}

/** A position (integer) or an ISO 8601 time, as accepted by --from/--to. */
export function parsePositionOrTime(value: string, flag: string): { position: number } | { time: Date } {
  if (/^\d+$/.test(value)) return { position: Number(value) };
  const t = Date.parse(value);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(value)) {
    throw new InvalidInputError(
      `${flag} must be a position (an integer) or an ISO 8601 time, got ${JSON.stringify(value)}.`,
      `Examples: ${flag} 1200, ${flag} 2026-11-24T10:00:00Z`,
    );
  }
  return { time: new Date(t) };
}

/** Collect a repeatable option into an array. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
