import assert from 'node:assert/strict';

/**
 * Assert that `actual` messages match `expected` ones, in order: each expected message is compared
 * on the fields it gives (type and data, and stream, tags, metadata or id only when given), so a
 * test does not have to restate generated ids or inherited metadata. Throws node's AssertionError
 * with a diff, which every test runner shows.
 */
export function assertMessagesMatch(
  actual: readonly Record<string, unknown>[],
  expected: readonly Record<string, unknown>[],
  what: string,
): void {
  const shaped = actual.map((a, i) => {
    const e = expected[i];
    if (!e) return normalise(a);
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(e)) {
      if (key === 'metadata' && typeof e.metadata === 'object' && e.metadata !== null) {
        const m = (a.metadata ?? {}) as Record<string, unknown>;
        out.metadata = Object.fromEntries(Object.keys(e.metadata).map((k) => [k, m[k]]));
      } else out[key] = a[key];
    }
    return normalise(out);
  });
  assert.deepStrictEqual(shaped, expected.map(normalise), `${what} differ from the expected ones.`);
}

/** Data as a store keeps it (JSON), so `data: { at: new Date() }` compares with what was stored. */
function normalise(m: Record<string, unknown>): Record<string, unknown> {
  return 'data' in m && m.data !== undefined ? { ...m, data: JSON.parse(JSON.stringify(m.data)) } : m;
}
