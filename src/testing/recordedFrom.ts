import { randomUUID } from 'node:crypto';
import type { NewMessage, RecordedMessage } from '../store/types.js';

/** A message given to a specification: a new one (with the stream it belongs to) or one as recorded. */
export type GivenMessage = (NewMessage & { stream?: string }) | RecordedMessage;

function isRecorded(m: GivenMessage): m is RecordedMessage {
  return 'streamPosition' in m && 'globalPosition' in m && 'streamName' in m;
}

/**
 * Recorded messages for given ones, as a store would return them: positions per stream and in
 * the log, one transaction each, JSON data. Recorded messages are kept as they are.
 */
export function recordedFrom(given: readonly GivenMessage[], defaultStream: string): RecordedMessage[] {
  const versions = new Map<string, number>();
  return given.map((m, i) => {
    if (isRecorded(m)) return m;
    const streamName = m.stream ?? defaultStream;
    const streamPosition = (versions.get(streamName) ?? 0) + 1;
    versions.set(streamName, streamPosition);
    const id = m.id ?? randomUUID();
    return {
      id,
      type: m.type,
      data: m.data === undefined ? undefined : JSON.parse(JSON.stringify(m.data)),
      metadata: { correlationId: id, ...m.metadata },
      tags: [...(m.tags ?? [])],
      streamName,
      streamPosition,
      globalPosition: i + 1,
      transactionId: String(i + 1),
      createdAt: new Date(0),
    };
  });
}
