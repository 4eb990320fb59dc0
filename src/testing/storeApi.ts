import { type DecisionStore, decisionStoreOf } from '../consistency/commandExecutor.js';
import type { Query } from '../consistency/query.js';
import {
  type ReadByQueryOptions,
  type ReadByQueryResult,
  readStoreByQuery,
} from '../consistency/readByQuery.js';
import type { MessageStore } from '../store/messageStore.js';
import type { ReadLogOptions, ReadLogResult, RecordedMessage } from '../store/types.js';

/**
 * What the in-memory store and the PostgreSQL store have in common: the MessageStore's methods,
 * and the consistency functions (readByQuery, readForDecision, appendWithCondition) as methods.
 * Write code that must run on both against this type; `storeApiOf(store)` adapts a MessageStore.
 */
export interface MessageStoreApi extends DecisionStore {
  streamVersion(stream: string): Promise<number>;
  readCategory(category: string, opts?: ReadLogOptions): Promise<ReadLogResult>;
  readAll(opts?: ReadLogOptions): Promise<ReadLogResult>;
  /** A store whose appends carry the cause's correlation id and its id as causation id. */
  causedBy(cause: Pick<RecordedMessage, 'id' | 'metadata'>): MessageStoreApi;
  readByQuery(query: Query, opts?: ReadByQueryOptions): Promise<ReadByQueryResult>;
  close(): Promise<void>;
}

/** The PostgreSQL MessageStore as a MessageStoreApi (the consistency functions bound to it). */
export function storeApiOf(store: MessageStore): MessageStoreApi {
  return {
    ...decisionStoreOf(store),
    streamVersion: (stream) => store.streamVersion(stream),
    readCategory: (category, opts) => store.readCategory(category, opts),
    readAll: (opts) => store.readAll(opts),
    causedBy: (cause) => storeApiOf(store.causedBy(cause)),
    readByQuery: (query, opts) => readStoreByQuery(store, query, opts),
    close: () => store.close(),
  };
}
