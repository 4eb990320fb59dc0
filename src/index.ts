/** beckett: event store, subscriptions and operations on PostgreSQL. */

export { loadConfig } from './config/load.js';
export type { StandardSchemaV1 } from './config/standardSchema.js';
export type {
  BeckettConfig,
  DatabaseConfig,
  GroupConfig,
  HandlerContext,
  MessageDefinition,
  MessageOf,
  ResolvedConfig,
  RetentionConfig,
  RetentionPolicy,
  SubscriptionConfig,
  UnmappedTypePolicy,
} from './config/types.js';
export { defineConfig, message } from './config/types.js';
export { resolveConfig } from './config/validate.js';
export { migrate, migrationStatus } from './db/migrate.js';
export { dumpMigrationsSql } from './db/migrations.js';
export * from './errors.js';
export type { AppendOptions, MessageStoreOptions, StreamAppend } from './store/messageStore.js';
export { createMessageStore, MessageStore } from './store/messageStore.js';
export type {
  AppendResult,
  ExpectedVersion,
  LogPosition,
  Metadata,
  NewMessage,
  ReadLogOptions,
  ReadLogResult,
  ReadStreamOptions,
  RecordedMessage,
} from './store/types.js';
export { LOG_START } from './store/types.js';
export * from './consistency/index.js';
export type { ClaimedCheckpoint } from './subscriptions/claimCheckpoint.js';
export { UnmappedMessageTypeError } from './subscriptions/processCheckpoint.js';
export type { SubscriptionRow, SubscriptionStatus } from './subscriptions/registerSubscriptions.js';
export {
  listSubscriptions,
  pauseSubscription,
  resumeSubscription,
} from './subscriptions/registerSubscriptions.js';
export { retryDelayMs } from './subscriptions/retryPolicy.js';
export type {
  ProcessedEvent,
  Worker,
  WorkerOptions,
  WorkerService,
  WorkerStats,
} from './subscriptions/workerRuntime.js';
export { createWorker, findGroup } from './subscriptions/workerRuntime.js';
