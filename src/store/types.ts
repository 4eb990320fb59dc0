/** Message metadata. Correlation and causation ids are kept by the store; anything else is yours. */
export interface Metadata {
  correlationId?: string;
  causationId?: string;
  /** W3C trace context of the appending span. */
  traceparent?: string;
  [key: string]: unknown;
}

/** A message to append. `id` defaults to a new UUIDv7. */
export interface NewMessage<Type extends string = string, Data = unknown> {
  type: Type;
  data: Data;
  metadata?: Metadata;
  /** `key:value` strings, indexed for queries. */
  tags?: string[];
  id?: string;
}

/** A message as stored. */
export interface RecordedMessage<Type extends string = string, Data = unknown> {
  id: string;
  type: Type;
  data: Data;
  metadata: Metadata;
  tags: string[];
  streamName: string;
  /** 1-based position in its stream. */
  streamPosition: number;
  /** Position in the whole log (assigned at insert; commits may land out of this order). */
  globalPosition: number;
  /** The writing transaction (xid8, as a string): the first half of the log order. */
  transactionId: string;
  createdAt: Date;
}

/**
 * What the stream's version must be for an append to go through.
 * - `'any'`: no check;
 * - `'no_stream'` (or `0`): the stream must not exist;
 * - `'stream_exists'`: the stream must have at least one message;
 * - a number N: the stream's last position must be exactly N.
 */
export type ExpectedVersion = 'any' | 'no_stream' | 'stream_exists' | number;

export interface AppendResult {
  /** The stream's version after the append (its last position). */
  streamVersion: number;
  /** Global position of the last appended message. */
  globalPosition: number;
}

/**
 * A place in the gap-safe log: messages are ordered by (transactionId, globalPosition).
 * The start of the log is `{ transactionId: '0', globalPosition: 0 }`.
 */
export interface LogPosition {
  transactionId: string;
  globalPosition: number;
}

export const LOG_START: LogPosition = Object.freeze({ transactionId: '0', globalPosition: 0 });

export type Direction = 'forward' | 'backward';

export interface ReadStreamOptions {
  direction?: Direction;
  /** First position to read (forward: lowest; backward: highest). Default: start or end of the stream. */
  from?: number;
  /** Most messages to return. Default 1000. */
  limit?: number;
}

export interface ReadLogOptions {
  /** Read messages after this log position. Default: the start of the log. */
  after?: LogPosition;
  limit?: number;
  /** Only these message types. */
  types?: string[];
}

export interface ReadLogResult {
  messages: RecordedMessage[];
  /** Where the next read should continue from (unchanged when nothing was read). */
  position: LogPosition;
}
