import type { ResolvedRetention, ResolvedRetentionPolicy } from '../config/types.js';

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** Milliseconds from a number of ms or a duration such as `'90d'`, `'12h'`, `'30m'`; undefined if invalid. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^(\d+)\s*(ms|s|m|h|d|w)$/.exec(value.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * (UNITS[m[2] ?? ''] ?? 0);
  return ms > 0 ? ms : undefined;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const describe = (v: unknown) =>
  v === undefined
    ? 'undefined'
    : typeof v === 'string'
      ? JSON.stringify(v)
      : Array.isArray(v)
        ? 'an array'
        : String(v);

const DURATION = "milliseconds or a duration such as '90d', '12h', '30m'";

/**
 * Check the config's `retention` key and apply defaults. Problems are reported through `problem`
 * with the key path, so the config error lists them with the others.
 */
export function resolveRetention(
  raw: unknown,
  problem: (key: string, expected: string, got: string) => void,
): ResolvedRetention {
  const out: ResolvedRetention = { policies: [], batchSize: 1000, intervalMs: undefined };
  if (raw === undefined) return out;
  if (!isRecord(raw)) {
    problem('retention', 'an object { policies: [...] }', describe(raw));
    return out;
  }
  for (const key of Object.keys(raw)) {
    if (!['policies', 'batchSize', 'interval'].includes(key))
      problem(`retention.${key}`, 'one of policies, batchSize, interval', 'an unknown key');
  }
  if (raw.batchSize !== undefined) {
    const b = raw.batchSize;
    if (typeof b !== 'number' || !Number.isInteger(b) || b < 1)
      problem('retention.batchSize', 'an integer >= 1', describe(b));
    else out.batchSize = b;
  }
  if (raw.interval !== undefined) {
    const ms = parseDuration(raw.interval);
    if (ms === undefined) problem('retention.interval', DURATION, describe(raw.interval));
    else out.intervalMs = ms;
  }
  if (!Array.isArray(raw.policies)) {
    problem('retention.policies', 'an array of policies', describe(raw.policies));
    return out;
  }
  const names = new Set<string>();
  raw.policies.forEach((p: unknown, i: number) => {
    const path = `retention.policies[${i}]`;
    if (!isRecord(p)) {
      problem(path, 'an object { category | stream, maxAge | maxCount }', describe(p));
      return;
    }
    for (const key of Object.keys(p)) {
      if (!['name', 'category', 'stream', 'maxAge', 'maxCount'].includes(key))
        problem(`${path}.${key}`, 'one of name, category, stream, maxAge, maxCount', 'an unknown key');
    }
    const { category, stream, name } = p;
    if ((category === undefined) === (stream === undefined))
      problem(path, 'exactly one of category or stream', category === undefined ? 'neither' : 'both');
    if (category !== undefined && (typeof category !== 'string' || category === '' || category.includes('-')))
      problem(`${path}.category`, 'a category name (no "-")', describe(category));
    if (stream !== undefined && (typeof stream !== 'string' || stream === '' || /\s/.test(stream)))
      problem(`${path}.stream`, 'a stream name pattern such as "session-*"', describe(stream));
    if (name !== undefined && (typeof name !== 'string' || name === ''))
      problem(`${path}.name`, 'a non-empty string', describe(name));
    const maxAgeMs = p.maxAge === undefined ? undefined : parseDuration(p.maxAge);
    if (p.maxAge !== undefined && maxAgeMs === undefined)
      problem(`${path}.maxAge`, DURATION, describe(p.maxAge));
    const maxCount = p.maxCount;
    if (
      maxCount !== undefined &&
      (typeof maxCount !== 'number' || !Number.isInteger(maxCount) || maxCount < 1)
    )
      problem(`${path}.maxCount`, 'an integer >= 1', describe(maxCount));
    if (p.maxAge === undefined && maxCount === undefined)
      problem(path, 'maxAge, maxCount or both', 'neither');
    const policy: ResolvedRetentionPolicy = {
      name: typeof name === 'string' && name ? name : String(category ?? stream),
      category: typeof category === 'string' ? category : undefined,
      stream: typeof stream === 'string' ? stream : undefined,
      maxAgeMs,
      maxCount: typeof maxCount === 'number' ? maxCount : undefined,
    };
    if (names.has(policy.name))
      problem(`${path}.name`, 'a name no other policy has', JSON.stringify(policy.name));
    names.add(policy.name);
    out.policies.push(policy);
  });
  return out;
}
