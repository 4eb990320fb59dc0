import { InvalidInputError } from '../errors.js';
import { hasControlCharacter, isWellFormed } from './names.js';
import { quoteValue } from './quoteValue.js';

/** Deepest nesting of objects and arrays accepted in data and metadata. */
export const MAX_DEPTH = 64;

/** Longest correlation or causation id. */
export const MAX_ID_LENGTH = 200;

const isPlainObject = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

const unpairedSurrogate = (what: string, at: string) =>
  new InvalidInputError(
    `${what} with an unpaired UTF-16 surrogate${at}: it has no UTF-8 form, so PostgreSQL cannot store it.`,
    'Remove the lone surrogate (a half of a split emoji, often), or replace it: text.toWellFormed().',
  );

/**
 * Checks that `value` is stored by PostgreSQL's jsonb as it is: JSON values only (no BigInt,
 * function, symbol, NaN or Infinity), no cycle, no NUL character or unpaired surrogate in a string
 * or key (jsonb cannot hold \u0000, and a lone surrogate has no UTF-8 form), nesting at most
 * MAX_DEPTH. Objects with toJSON (Date) are taken as JSON.stringify takes them. Throws
 * InvalidInputError naming the path of the first bad value.
 */
export function assertJsonValue(value: unknown, what: string): void {
  check(value, 0, { what, ancestors: [], keys: [] });
}

/**
 * One walk of assertJsonValue: the objects from the root to the value checked (a cycle is one of
 * them met again) and the keys leading to it, made into a path only for an error. Every message's
 * data and metadata is walked on every append: no closure, set or path string per value.
 */
interface Walk {
  what: string;
  ancestors: object[];
  keys: (string | number)[];
}

/** ` at a.b[2]`: where the walk is, for an error ('' at the root). */
function at(w: Walk): string {
  let path = '';
  for (const k of w.keys)
    path = typeof k === 'number' ? `${path}[${k}]` : path ? `${path}.${k.slice(0, 50)}` : k.slice(0, 50);
  return path ? ` at ${path}` : '';
}

function check(v: unknown, depth: number, w: Walk): void {
  switch (typeof v) {
    case 'string':
      if (v.includes('\u0000'))
        throw new InvalidInputError(
          `${w.what} holds a NUL character (\\u0000)${at(w)}: PostgreSQL cannot store it.`,
          'Remove the NUL character, or encode binary content (base64).',
        );
      if (!isWellFormed(v)) throw unpairedSurrogate(`${w.what} holds a string`, at(w));
      return;
    case 'number':
      if (!Number.isFinite(v))
        throw new InvalidInputError(`${w.what} holds ${String(v)}${at(w)}: JSON has no such number.`);
      return;
    case 'boolean':
    case 'undefined':
      return;
    case 'bigint':
      throw new InvalidInputError(
        `${w.what} holds a BigInt (${quoteValue(v)})${at(w)}: JSON cannot represent it.`,
        'Convert it to a string (value.toString()) or a number.',
      );
    case 'function':
    case 'symbol':
      throw new InvalidInputError(`${w.what} holds a ${typeof v}${at(w)}: only JSON values can be stored.`);
  }
  if (v !== null) checkObject(v as object, depth, w);
}

function checkObject(obj: object, depth: number, w: Walk): void {
  if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
    let json: unknown;
    try {
      json = (obj as { toJSON: () => unknown }).toJSON();
    } catch (err) {
      throw new InvalidInputError(`${w.what}${at(w)}: its toJSON() failed: ${(err as Error).message}`);
    }
    if (json !== obj) {
      check(json, depth, w);
      return;
    }
  }
  if (depth >= MAX_DEPTH)
    throw new InvalidInputError(
      `${w.what} is nested deeper than ${MAX_DEPTH} levels${at(w)}.`,
      'Flatten the structure.',
    );
  if (w.ancestors.includes(obj))
    throw new InvalidInputError(`${w.what} holds a circular reference${at(w)}: JSON cannot represent it.`);
  w.ancestors.push(obj);
  if (Array.isArray(obj)) {
    for (let i = 0; i < obj.length; i++) {
      w.keys.push(i);
      check(obj[i], depth + 1, w);
      w.keys.pop();
    }
  } else {
    for (const key of Object.keys(obj)) {
      if (key.includes('\u0000'))
        throw new InvalidInputError(
          `${w.what} has a key with a NUL character (\\u0000)${at(w)}: PostgreSQL cannot store it.`,
        );
      if (!isWellFormed(key)) throw unpairedSurrogate(`${w.what} has a key`, at(w));
      w.keys.push(key);
      check((obj as Record<string, unknown>)[key], depth + 1, w);
      w.keys.pop();
    }
  }
  w.ancestors.pop();
}

/**
 * Message data is a JSON object (`{}` for a message without payload): not an array, a number, a
 * string or null. The same rule holds for the CLI and the library.
 */
export function assertMessageData(data: unknown, type: string): asserts data is Record<string, unknown> {
  if (data === undefined)
    throw new InvalidInputError(
      `Message of type "${type}" has no data.`,
      'Pass data: {} for a message without payload.',
    );
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    throw new InvalidInputError(
      `The data of a "${type}" message must be a JSON object, got ${quoteValue(data)}.`,
      'Wrap the value in an object, for example {"items": [...]}; use {} for no payload.',
    );
  assertJsonValue(data, `The data of a "${type}" message`);
}

/**
 * Metadata is a plain object; `correlationId`, `causationId` and `traceparent`, when given, are
 * non-empty strings of at most MAX_ID_LENGTH characters.
 */
export function assertMetadata(
  metadata: unknown,
  type: string,
): asserts metadata is Record<string, unknown> | undefined {
  if (metadata === undefined) return;
  if (!isPlainObject(metadata))
    throw new InvalidInputError(
      `The metadata of a "${type}" message must be a JSON object, got ${quoteValue(metadata)}.`,
      'For example {"correlationId": "c-1"}.',
    );
  for (const key of ['correlationId', 'causationId', 'traceparent'] as const) {
    const v = metadata[key];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.length === 0 || v.length > MAX_ID_LENGTH || hasControlCharacter(v))
      throw new InvalidInputError(
        `metadata.${key} of a "${type}" message must be a string of 1-${MAX_ID_LENGTH} printable characters, got ${quoteValue(v)}.`,
      );
  }
  assertJsonValue(metadata, `The metadata of a "${type}" message`);
}
