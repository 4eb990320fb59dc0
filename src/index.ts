/** beckett: event store, subscriptions and operations on PostgreSQL. */

export type { AuditEntry } from './admin/audit.js';
export type { CheckpointTarget, ReleaseResult } from './admin/checkpointActions.js';
export { CheckpointsNotFoundError } from './admin/checkpointActions.js';
export type {
  ActionOptions,
  AdminApi,
  Beckett,
  CreateBeckettOptions,
  SubscriptionStatusChange,
} from './admin/createBeckett.js';
export { createBeckett } from './admin/createBeckett.js';
export type { FollowOptions } from './admin/follow.js';
export type { MessageView, Page } from './admin/pages.js';
export { formatLogPosition, parseLogPosition } from './admin/pages.js';
export type { CategoryInfo, MessageDetail, StreamInfo } from './admin/readMessages.js';
export type {
  CheckpointDetail,
  CheckpointStatusFilter,
  RecurringView,
  ScheduledView,
  SubscriptionsView,
  SubscriptionView,
  Summary,
  WorkerView,
} from './admin/readOperations.js';
export { loadConfig } from './config/load.js';
export type { StandardSchemaV1 } from './config/standardSchema.js';
export type {
  AppMigrationsConfig,
  BeckettConfig,
  DatabaseConfig,
  GroupConfig,
  HandlerContext,
  Job,
  JobContext,
  JobErrorEntry,
  JobOf,
  MessageDefinition,
  MessageOf,
  PlainSubscriptionConfig,
  QueueConfig,
  RecurringMessageConfig,
  ResolvedConfig,
  ResolvedQueue,
  ResolvedRecurringMessage,
  RetentionConfig,
  RetentionPolicy,
  SubscriptionConfig,
  SubscriptionOptions,
  TransactionalHandlerContext,
  TransactionalSubscriptionConfig,
  UnmappedTypePolicy,
} from './config/types.js';
export { defineConfig, message } from './config/types.js';
export { resolveConfig } from './config/validate.js';
export * from './consistency/index.js';
export type { DashboardAuth } from './dashboard/auth.js';
export type { DashboardHandler, DashboardOptions } from './dashboard/createDashboardHandler.js';
export { createDashboardHandler } from './dashboard/createDashboardHandler.js';
export type { DashboardServer, DashboardServerOptions } from './dashboard/startDashboardServer.js';
export { startDashboardServer } from './dashboard/startDashboardServer.js';
export type { AppMigration } from './db/appMigrations.js';
export { AppMigrationChangedError, loadAppMigrations } from './db/appMigrations.js';
export { developmentDatabaseUrl } from './db/developmentDatabase.js';
export type { MigrateOptions, MigrateResult, MigrationStatus } from './db/migrate.js';
export { migrate, migrationStatus } from './db/migrate.js';
export { dumpMigrationsSql } from './db/migrations.js';
export * from './errors.js';
export type { GroupHealth, HealthCheckOptions, HealthResult } from './host/checkHealth.js';
export { checkHealth } from './host/checkHealth.js';
export type { HealthReport, HttpEndpoints, HttpEndpointsOptions } from './host/httpEndpoints.js';
export { startHttpEndpoints } from './host/httpEndpoints.js';
export type { WorkerExtras, WorkerExtrasOptions } from './host/workerExtras.js';
export { startWorkerExtras } from './host/workerExtras.js';
export type { ApiHandler, ApiHandlerOptions } from './http/apiHandler.js';
export { createApiHandler } from './http/apiHandler.js';
export type { Problem } from './http/problem.js';
export type { CheckpointKey, CheckpointSelector } from './operations/checkpointId.js';
export { checkpointId, parseCheckpointId } from './operations/checkpointId.js';
export { type ForgetResult, forgetSubscription } from './operations/forgetSubscription.js';
export type { GroupLag, LagSnapshot, SubscriptionLag, WorkerInfo } from './operations/lagSnapshot.js';
export { lagSnapshot, withThroughput } from './operations/lagSnapshot.js';
export type { CheckpointInfo } from './operations/listCheckpoints.js';
export { listCheckpoints } from './operations/listCheckpoints.js';
export type { RebasePlan, RebaseResult } from './operations/rebaseTransactionIds.js';
export { planTransactionIdRebase, rebaseTransactionIds } from './operations/rebaseTransactionIds.js';
export type { ReplayArgs, ReplayProgress, ReplayResult } from './operations/replay.js';
export { replay, replayProgress } from './operations/replay.js';
export type { ChangeResult, CheckpointChange } from './operations/retryCheckpoints.js';
export { retryCheckpoints, skipCheckpoints } from './operations/retryCheckpoints.js';
export { resetSubscription } from './operations/subscriptionControl.js';
export { subscriptionFilters } from './operations/subscriptionFilters.js';
export type { TailOptions, TailStart } from './operations/tail.js';
export { tailMessages } from './operations/tail.js';
export type { EnqueueInto, EnqueueOptions, JobMessage, JobToEnqueue } from './queues/enqueue.js';
export { enqueue, enqueueJobs } from './queues/enqueue.js';
export type { DeadLetter, JobState, QueuedJob, QueueSummary } from './queues/queueOperations.js';
export {
  listDeadLetters,
  listQueues,
  peekQueue,
  purgeQueue,
  redriveDeadLetters,
} from './queues/queueOperations.js';
export type {
  JobProcessedEvent,
  QueueWorker,
  QueueWorkerOptions,
  QueueWorkerStats,
} from './queues/queueWorker.js';
export { createQueueWorker, VisibilityLostError } from './queues/queueWorker.js';
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
export type { TransactionIdCounter } from './store/transactionIdCounter.js';
export { assertTransactionIdsBehindCounter, transactionIdCounter } from './store/transactionIdCounter.js';
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
export { HandlerAbandonedError, HandlerTimeoutError } from './subscriptions/boundHandlerCall.js';
export type { ClaimedCheckpoint } from './subscriptions/claimCheckpoint.js';
export { LeaseLostError } from './subscriptions/holdLease.js';
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
export { instrumentHandlerCall } from './telemetry/instrumentHandler.js';
export type {
  BlockingSample,
  BlockingSampler,
  SubscriptionSample,
  SubscriptionSampler,
} from './telemetry/metrics.js';
export { BeckettMetrics, processMetrics } from './telemetry/metrics.js';
export { contextFromTraceparent, currentTraceparent } from './telemetry/tracing.js';
