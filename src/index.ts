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
  RecurringMessageConfig,
  ResolvedConfig,
  ResolvedRecurringMessage,
  RetentionConfig,
  RetentionPolicy,
  SubscriptionConfig,
  UnmappedTypePolicy,
} from './config/types.js';
export { defineConfig, message } from './config/types.js';
export { resolveConfig } from './config/validate.js';
export * from './consistency/index.js';
export { migrate, migrationStatus } from './db/migrate.js';
export { dumpMigrationsSql } from './db/migrations.js';
export * from './errors.js';
export type { CheckpointKey, CheckpointSelector } from './operations/checkpointId.js';
export { checkpointId, parseCheckpointId } from './operations/checkpointId.js';
export type { GroupLag, LagSnapshot, SubscriptionLag, WorkerInfo } from './operations/lagSnapshot.js';
export { lagSnapshot, withThroughput } from './operations/lagSnapshot.js';
export type { CheckpointInfo } from './operations/listCheckpoints.js';
export { listCheckpoints } from './operations/listCheckpoints.js';
export type { ReplayArgs, ReplayProgress, ReplayResult } from './operations/replay.js';
export { replay, replayProgress } from './operations/replay.js';
export type { ChangeResult, CheckpointChange } from './operations/retryCheckpoints.js';
export { retryCheckpoints, skipCheckpoints } from './operations/retryCheckpoints.js';
export { resetSubscription } from './operations/subscriptionControl.js';
export { subscriptionFilters } from './operations/subscriptionFilters.js';
export type { TailOptions, TailStart } from './operations/tail.js';
export { tailMessages } from './operations/tail.js';
export type { PolicyResult, RetentionOptions, RetentionResult } from './retention/applyRetention.js';
export { applyRetention, createRetentionService, runRetentionLoop } from './retention/applyRetention.js';
export type {
  RecurringDeliveryResult,
  RecurringMessageInfo,
} from './scheduling/deliverRecurring.js';
export {
  deliverDueRecurring,
  listRecurringMessages,
  syncRecurringMessages,
} from './scheduling/deliverRecurring.js';
export type { DeliveryResult } from './scheduling/deliverScheduled.js';
export { deliverDueMessages } from './scheduling/deliverScheduled.js';
export type {
  HandlerScheduling,
  ScheduledMessage,
  ScheduleOptions,
  ScheduleWhen,
} from './scheduling/scheduleMessage.js';
export {
  cancelScheduledMessage,
  handlerScheduling,
  idFromKey,
  listScheduledMessages,
  scheduleMessage,
} from './scheduling/scheduleMessage.js';
export type { SchedulerServiceOptions } from './scheduling/schedulerService.js';
export { createSchedulerService } from './scheduling/schedulerService.js';
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
export type { GroupHealth, HealthCheckOptions, HealthResult } from './telemetry/checkHealth.js';
export { checkHealth } from './telemetry/checkHealth.js';
export type { HealthReport, HttpEndpoints, HttpEndpointsOptions } from './telemetry/httpEndpoints.js';
export { startHttpEndpoints } from './telemetry/httpEndpoints.js';
export { instrumentHandlerCall } from './telemetry/instrumentHandler.js';
export type { SubscriptionSample, SubscriptionSampler } from './telemetry/metrics.js';
export { BeckettMetrics, processMetrics } from './telemetry/metrics.js';
export { contextFromTraceparent, currentTraceparent } from './telemetry/tracing.js';
export type { WorkerExtras, WorkerExtrasOptions } from './telemetry/workerExtras.js';
export { startWorkerExtras } from './telemetry/workerExtras.js';
