import type { RecordedMessage } from './types.js';

export interface MessageRow {
  global_position: number;
  id: string;
  stream_name: string;
  stream_position: number;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
  tags: string[];
  transaction_id: string;
  created_at: Date;
}

/** The columns every read selects, in the order MessageRow expects. */
export const MESSAGE_COLUMNS =
  'global_position, id, stream_name, stream_position, type, data, metadata, tags, transaction_id::text AS transaction_id, created_at';

export function rowToMessage(row: MessageRow): RecordedMessage {
  return {
    id: row.id,
    type: row.type,
    data: row.data,
    metadata: row.metadata,
    tags: row.tags,
    streamName: row.stream_name,
    streamPosition: row.stream_position,
    globalPosition: row.global_position,
    transactionId: row.transaction_id,
    createdAt: row.created_at,
  };
}
