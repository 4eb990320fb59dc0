import { InvalidInputError } from '../errors.js';
import { quoteValue } from './quoteValue.js';

/*
 * The allowed form of the names beckett stores and matches on. They end up in SQL parameters (never
 * SQL text), in terminal output, log lines and metric labels, so control characters, NUL (which
 * PostgreSQL text cannot hold) and unbounded lengths are refused at the door, the same way in the
 * CLI and the library.
 */

/** Longest message type name. */
export const MAX_TYPE_NAME = 200;
/** Longest stream name. */
export const MAX_STREAM_NAME = 500;
/** Longest tag (`key:value`). */
export const MAX_TAG = 200;
/** Most tags on one message. */
export const MAX_TAGS = 100;

/** A type name: a letter or `_` first, then letters, digits and `_ . : / -`. */
const TYPE_NAME = /^[A-Za-z_][A-Za-z0-9_.:/-]*$/;

// C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
const CONTROL_OR_SPACE = /[\s\u0000-\u001f\u007f-\u009f]/;

/**
 * True when the text holds a control character (including NUL and line breaks) or an unpaired
 * UTF-16 surrogate. A lone surrogate has no UTF-8 form: the driver would send U+FFFD in its place,
 * so "a-\ud800" and "a-\udc00" would both be stored as one stream "a-\ufffd".
 */
export function hasControlCharacter(text: string): boolean {
  return CONTROL.test(text) || !isWellFormed(text);
}

/** String.prototype.isWellFormed (Node 20; not in the ES2023 typings): no unpaired surrogate. */
export const isWellFormed = (text: string): boolean =>
  (text as unknown as { isWellFormed(): boolean }).isWellFormed();

/** True when `stream` is a valid stream name (see assertStreamName). */
export function isStreamName(stream: unknown): stream is string {
  return (
    typeof stream === 'string' &&
    stream.length > 0 &&
    stream.length <= MAX_STREAM_NAME &&
    !CONTROL_OR_SPACE.test(stream) &&
    !hasControlCharacter(stream)
  );
}

/** Throws InvalidInputError unless `type` is a valid message type name. */
export function assertTypeName(type: unknown, what = 'message type'): asserts type is string {
  if (typeof type !== 'string' || type.length === 0 || type.length > MAX_TYPE_NAME || !TYPE_NAME.test(type)) {
    throw new InvalidInputError(
      `Invalid ${what} ${quoteValue(type)}: use 1-${MAX_TYPE_NAME} letters, digits and "_ . : / -", starting with a letter or "_".`,
      'Examples: order_placed, OrderPlaced, billing.invoice_sent',
    );
  }
}

/** What a stream name may hold, for error messages. */
export const STREAM_NAME_RULE = `use 1-${MAX_STREAM_NAME} characters without spaces, control characters or unpaired surrogates`;

/** Throws InvalidInputError unless `stream` is a valid stream name. */
export function assertStreamName(stream: unknown): asserts stream is string {
  if (!isStreamName(stream)) {
    throw new InvalidInputError(
      `Invalid stream name ${quoteValue(stream)}: ${STREAM_NAME_RULE}.`,
      'Stream names look like category-id, for example order-123.',
    );
  }
}

/** Throws InvalidInputError unless `category` is a valid category (a stream name without "-"). */
export function assertCategory(category: unknown): asserts category is string {
  if (
    typeof category !== 'string' ||
    category === '' ||
    category.includes('-') ||
    category.length > MAX_STREAM_NAME ||
    CONTROL_OR_SPACE.test(category) ||
    hasControlCharacter(category)
  ) {
    throw new InvalidInputError(
      `Invalid category ${quoteValue(category)}: a category is the stream name's part before the first "-".`,
    );
  }
}

/** Throws InvalidInputError unless `tag` is a valid tag: 1-200 characters, no spaces or control characters. */
export function assertTag(tag: unknown, where = ''): asserts tag is string {
  if (
    typeof tag !== 'string' ||
    tag.length === 0 ||
    tag.length > MAX_TAG ||
    CONTROL_OR_SPACE.test(tag) ||
    hasControlCharacter(tag)
  ) {
    throw new InvalidInputError(
      `Invalid tag ${quoteValue(tag)}${where}: tags are 1-${MAX_TAG} characters without spaces, control characters or unpaired surrogates, such as "course:c1".`,
    );
  }
}

/** The tags of a message: an array of at most MAX_TAGS valid tags. */
export function assertTags(tags: unknown, where = ''): asserts tags is string[] {
  if (!Array.isArray(tags)) {
    throw new InvalidInputError(
      `Invalid tags ${quoteValue(tags)}${where}: tags are an array of strings such as ["course:c1"].`,
    );
  }
  if (tags.length > MAX_TAGS)
    throw new InvalidInputError(`Too many tags${where}: ${tags.length} (at most ${MAX_TAGS}).`);
  for (const t of tags) assertTag(t, where);
}
