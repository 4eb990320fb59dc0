import type { MessageDefinition } from '../config/types.js';
import { MessageValidationError } from '../errors.js';
import type { Metadata, RecordedMessage } from './types.js';

/** Validate data against the type's declared schema, if any; returns the (possibly parsed) data. */
export function validateData(
  defs: Record<string, MessageDefinition>,
  type: string,
  data: unknown,
): unknown | Promise<unknown> {
  const schema = defs[type]?.schema;
  // No schema: the data as is, synchronously (most appends; no promise to wait for).
  if (!schema) return data;
  return (async () => {
    const result = await schema['~standard'].validate(data);
    if (result.issues)
      throw new MessageValidationError(type, result.issues as { message: string; path?: unknown[] }[]);
    return result.value;
  })();
}

/** Apply the declared upcaster, if any, to messages read from the store. */
export function upcast(
  defs: Record<string, MessageDefinition>,
  messages: RecordedMessage[],
): RecordedMessage[] {
  for (const m of messages) {
    const fn = defs[m.type]?.upcast;
    if (fn) m.data = fn(m.data, m.metadata as Metadata);
  }
  return messages;
}
