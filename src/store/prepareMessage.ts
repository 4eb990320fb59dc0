import type { MessageDefinition } from '../config/types.js';
import { InvalidInputError } from '../errors.js';
import { currentTraceparent } from '../telemetry/tracing.js';
import { assertTags, assertTypeName } from '../validation/names.js';
import { assertMessageData, assertMetadata } from '../validation/payload.js';
import { quoteValue } from '../validation/quoteValue.js';
import type { PreparedMessage } from './appendToStream.js';
import { validateData } from './messageTypes.js';
import type { Metadata, NewMessage } from './types.js';
import { uuidv7 } from './uuidv7.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Check messages to be written and complete them (prepareMessage, below), in order. A promise
 * only when a declared schema validates asynchronously; the active span's traceparent is read once.
 */
export function prepareMessageList(
  messages: readonly NewMessage[],
  defs: Record<string, MessageDefinition>,
  inherited: Metadata | undefined,
): PreparedMessage[] | Promise<PreparedMessage[]> {
  const traceparent = currentTraceparent();
  const out: (PreparedMessage | Promise<PreparedMessage>)[] = [];
  let pending = false;
  // Ids drawn here are distinct: only a list with ids given can hold one twice.
  let givenIds = false;
  for (const m of messages) {
    const p = prepareMessage(m, defs, inherited, traceparent);
    if (p instanceof Promise) pending = true;
    if (m.id !== undefined) givenIds = true;
    out.push(p);
  }
  if (!pending) {
    if (givenIds && out.length > 1) assertDistinctIds((out as PreparedMessage[]).map((m) => m.id));
    return out as PreparedMessage[];
  }
  // Every promise settled (none left unhandled); the first refusal in list order is the error.
  return Promise.allSettled(out).then((results) => {
    const prepared = results.map((r) => {
      if (r.status === 'rejected') throw r.reason;
      return r.value;
    });
    if (givenIds) assertDistinctIds(prepared.map((m) => m.id));
    return prepared;
  });
}

/**
 * Throws InvalidInputError when two messages of one append (of one stream or of several) share an
 * id: a message id appears once in the store, and the database would refuse the whole append
 * with a unique violation. Each stream's list is checked here when its caller gave ids (ids drawn
 * are distinct); an append to several streams checks all of its ids once more.
 */
export function assertDistinctIds(ids: readonly string[]): void {
  const seen = new Set<string>();
  for (const id of ids) {
    if (seen.has(id))
      throw new InvalidInputError(
        `Message id ${id} appears twice in one append: each message needs its own id.`,
        'Give each message a different id, or leave the ids out for new UUIDv7s.',
      );
    seen.add(id);
  }
}

/**
 * Check one message to be written and complete it: id (UUIDv7 unless given), data validated against
 * its declared schema, metadata with the inherited correlation/causation, its own id as correlation
 * id when there is none, and the active span's traceparent (`traceparent`, read by the caller).
 * Every write path (append, conditional append, scheduling) goes through here, so a message is
 * refused the same way everywhere. A promise only when its schema validates asynchronously.
 */
function prepareMessage(
  m: NewMessage,
  defs: Record<string, MessageDefinition>,
  inherited: Metadata | undefined,
  traceparent: string | undefined,
): PreparedMessage | Promise<PreparedMessage> {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) {
    throw new InvalidInputError(
      `Invalid message ${quoteValue(m)}: a message is an object { type, data, metadata?, tags?, id? }.`,
    );
  }
  assertTypeName(m.type);
  assertMessageData(m.data, m.type);
  assertMetadata(m.metadata, m.type);
  const tags = m.tags ?? [];
  assertTags(tags, ` on a "${m.type}" message`);
  if (m.id !== undefined && (typeof m.id !== 'string' || !UUID.test(m.id))) {
    throw new InvalidInputError(
      `Invalid message id ${quoteValue(m.id)}: use a UUID, or leave it out for a new UUIDv7.`,
    );
  }
  const id = m.id?.toLowerCase() ?? uuidv7();
  const metadata: Metadata = { ...inherited, ...m.metadata };
  if (metadata.correlationId === undefined) metadata.correlationId = id;
  // The appending span, so a handler of this message continues the same trace.
  if (metadata.traceparent === undefined && traceparent) metadata.traceparent = traceparent;
  const type = m.type;
  const validated = validateData(defs, type, m.data);
  return validated instanceof Promise
    ? validated.then((data) => ({ id, type, data, metadata, tags }))
    : { id, type, data: validated, metadata, tags };
}
