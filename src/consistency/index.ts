/** Consistency models: tag queries, conditional (DCB) appends, deciders, snapshots. */
export type { CommandExecutorOptions, DecisionStore, ExecuteResult, LoadedState } from './commandExecutor.js';
export { CommandExecutor, execute as executeCommand, isRetryableConflict } from './commandExecutor.js';
export type {
  AppendCondition,
  ConditionalAppendResult,
  ConditionalStreamAppend,
} from './conditionalAppend.js';
export { appendWithCondition } from './conditionalAppend.js';
export type { Boundary, DecidedMessage, Decider, SnapshotPolicy } from './decider.js';
export type { QueryItem } from './query.js';
export { Query, tag } from './query.js';
export type {
  DecisionSnapshot,
  ReadByQueryOptions,
  ReadByQueryResult,
  ReadForDecisionResult,
} from './readByQuery.js';
export { readAllByQuery, readForDecision, readStoreByQuery as readByQuery } from './readByQuery.js';
export type { Snapshot } from './snapshots.js';
