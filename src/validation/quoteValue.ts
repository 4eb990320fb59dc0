/** Most characters of a bad value an error message repeats: enough to recognise it, never a wall. */
export const QUOTE_MAX = 200;

/**
 * A bad value for an error message: JSON-quoted, control characters escaped, cut to QUOTE_MAX
 * characters with the full length named. Never throws (BigInt, cycles and symbols included).
 */
export function quoteValue(value: unknown, max: number = QUOTE_MAX): string {
  let text: string;
  if (typeof value === 'string') text = JSON.stringify(value);
  else if (typeof value === 'bigint') text = `${value}n`;
  else if (typeof value === 'symbol' || typeof value === 'function') text = `a ${typeof value}`;
  else if (value === undefined) text = 'undefined';
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    }
  }
  if (text.length <= max) return text;
  return `${text.slice(0, max)}… (${text.length} characters)`;
}
