import type { MessageDefinition } from '../config/types.js';
import { InvalidInputError } from '../errors.js';
import { currentTraceparent } from '../telemetry/tracing.js';
import { type PreparedMessage, TAG_SEPARATOR_CHAR } from './appendToStream.js';
import { validateData } from './messageTypes.js';
import type { Metadata, NewMessage } from './types.js';
import { uuidv7 } from './uuidv7.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Check one message to be written and complete it: id (UUIDv7 unless given), data validated against
 * its declared schema, metadata with the inherited correlation/causation, its own id as correlation
 * id when there is none, and the active span's traceparent. Every write path (append, conditional
 * append, scheduling) goes through here, so a message is refused the same way everywhere.
 */
export async function prepareMessage(
  m: NewMessage,
  defs: Record<string, MessageDefinition>,
  inherited: Metadata | undefined,
): Promise<PreparedMessage> {
  if (typeof m !== 'object' || m === null || typeof m.type !== 'string' || m.type.length === 0) {
    throw new InvalidInputError(
      `Invalid message ${JSON.stringify(m)}: a message needs a non-empty string "type".`,
    );
  }
  if (m.data === undefined) {
    throw new InvalidInputError(
      `Message of type "${m.type}" has no data.`,
      'Pass data: {} for a message without payload.',
    );
  }
  const tags = m.tags ?? [];
  if (
    !Array.isArray(tags) ||
    tags.some((t) => typeof t !== 'string' || t.length === 0 || t.includes(TAG_SEPARATOR_CHAR))
  ) {
    throw new InvalidInputError(
      `Invalid tags on a "${m.type}" message: tags are non-empty strings such as "course:c1".`,
    );
  }
  if (m.id !== undefined && (typeof m.id !== 'string' || !UUID.test(m.id))) {
    throw new InvalidInputError(
      `Invalid message id ${JSON.stringify(m.id)}: use a UUID, or leave it out for a new UUIDv7.`,
    );
  }
  const id = m.id?.toLowerCase() ?? uuidv7();
  const validated = validateData(defs, m.type, m.data);
  const data = validated instanceof Promise ? await validated : validated;
  const metadata: Metadata = { ...inherited, ...m.metadata };
  if (metadata.correlationId === undefined) metadata.correlationId = id;
  // The appending span, so a handler of this message continues the same trace.
  if (metadata.traceparent === undefined) {
    const traceparent = currentTraceparent();
    if (traceparent) metadata.traceparent = traceparent;
  }
  return { id, type: m.type, data, metadata, tags };
}
