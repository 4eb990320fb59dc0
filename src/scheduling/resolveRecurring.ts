import { createRequire } from 'node:module';
import type { Cron } from 'croner';
import type { ResolvedRecurringMessage } from '../config/types.js';
import { InvalidInputError } from '../errors.js';
import { assertTypeName, isStreamName, STREAM_NAME_RULE } from '../validation/names.js';
import { assertMessageData } from '../validation/payload.js';
import { quoteValue } from '../validation/quoteValue.js';

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const describe = (v: unknown): string =>
  v === undefined
    ? 'undefined'
    : typeof v === 'string'
      ? JSON.stringify(v)
      : Array.isArray(v)
        ? 'an array'
        : typeof v;
const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,99}$/;

/** Run a check that throws InvalidInputError; its message becomes the problem at `key`. */
function checked(bad: (key: string, msg: string) => void, key: string, check: () => void): void {
  try {
    check();
  } catch (err) {
    if (!(err instanceof InvalidInputError)) throw err;
    bad(key, err.hint ? `${err.message} ${err.hint}` : err.message);
  }
}

/** True when `tz` is an IANA time zone this runtime knows. */
export function isValidTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

let cronClass: typeof Cron | undefined;

/** The croner job for a recurring message (paused: it only computes times, it never fires). */
export function cronFor(cron: string, timezone: string): Cron {
  // Loaded on first use (a config with recurring messages), not by every command that reads a config.
  cronClass ??= (createRequire(import.meta.url)('croner') as typeof import('croner')).Cron;
  return new cronClass(cron, { timezone, paused: true });
}

/** The first occurrence strictly after `after`, or undefined when the expression has no more. */
export function nextOccurrence(cron: string, timezone: string, after: Date): Date | undefined {
  return cronFor(cron, timezone).nextRun(after) ?? undefined;
}

/**
 * Check the config's `recurring` key (an array of { name, cron, timezone, stream, message }).
 * Problems are reported through `problem` with the key path, so the config error lists them all.
 */
export function resolveRecurring(raw: unknown, problem: (line: string) => void): ResolvedRecurringMessage[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    problem(
      `recurring: expected an array of { name, cron, timezone, stream, message }, got ${describe(raw)}`,
    );
    return [];
  }
  const out: ResolvedRecurringMessage[] = [];
  const names = new Set<string>();
  raw.forEach((r: unknown, i) => {
    const path = `recurring[${i}]`;
    if (!isRecord(r)) {
      problem(`${path}: expected an object { name, cron, timezone, stream, message }, got ${describe(r)}`);
      return;
    }
    const before = out.length;
    let ok = true;
    const bad = (key: string, msg: string) => {
      problem(`${path}.${key}: ${msg}`);
      ok = false;
    };
    for (const key of Object.keys(r)) {
      if (!['name', 'cron', 'timezone', 'stream', 'message'].includes(key))
        bad(key, 'unknown key (allowed: name, cron, timezone, stream, message)');
    }
    const name = r.name;
    if (typeof name !== 'string' || !NAME.test(name))
      bad('name', `expected a name of letters, digits, "_", "-" or ".", got ${describe(name)}`);
    else if (names.has(name)) bad('name', `"${name}" is used twice: names must be unique`);
    else names.add(name);
    const timezone = r.timezone ?? 'UTC';
    if (typeof timezone !== 'string' || !isValidTimeZone(timezone))
      bad(
        'timezone',
        `expected an IANA time zone such as "UTC" or "Europe/Berlin", got ${describe(r.timezone)}`,
      );
    if (typeof r.cron !== 'string' || r.cron.trim() === '')
      bad('cron', `expected a cron expression, got ${describe(r.cron)}`);
    else {
      try {
        const tz = typeof timezone === 'string' && isValidTimeZone(timezone) ? timezone : 'UTC';
        if (!nextOccurrence(r.cron, tz, new Date())) bad('cron', `"${r.cron}" never fires again`);
      } catch (err) {
        bad('cron', `invalid cron expression "${r.cron}": ${(err as Error).message}`);
      }
    }
    // The rules every append applies (a message refused at each delivery would hold its schedule).
    if (!isStreamName(r.stream))
      bad(
        'stream',
        `expected a stream name such as "reports-daily" (${STREAM_NAME_RULE}), got ${quoteValue(r.stream, 80)}`,
      );
    const m = r.message;
    if (!isRecord(m)) bad('message', `expected { type, data }, got ${describe(m)}`);
    else {
      for (const key of Object.keys(m))
        if (!['type', 'data'].includes(key)) bad(`message.${key}`, 'unknown key (allowed: type, data)');
      checked(bad, 'message.type', () => assertTypeName(m.type));
      checked(bad, 'message.data', () => assertMessageData(m.data, String(m.type)));
    }
    if (ok && out.length === before && isRecord(m)) {
      out.push({
        name: name as string,
        cron: (r.cron as string).trim(),
        timezone: timezone as string,
        stream: r.stream as string,
        message: { type: m.type as string, data: m.data },
      });
    }
  });
  return out;
}
