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

/**
 * The columns every read selects, in the order MessageRow expects. transaction_id is selected as
 * the xid8 column itself (node-postgres hands an xid8 over as its decimal text): a
 * `transaction_id::text AS transaction_id` would shadow the column, and the reads'
 * `ORDER BY transaction_id` would then sort as text ('1002' < '872') while their cursors compare xid8.
 */
export const MESSAGE_COLUMNS =
  'global_position, id, stream_name, stream_position, type, data, metadata, tags, transaction_id, created_at';

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
