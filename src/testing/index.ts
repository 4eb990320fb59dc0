/**
 * beckett/testing: test domain code without a database (an in-memory store, decider
 * specifications, a handler harness, in-memory subscriptions), and helpers for integration tests
 * against PostgreSQL (waitForCaughtUp, a fault-injecting store).
 */
export type {
  DeciderGiven,
  DeciderThen,
  DeciderWhen,
  ErrorClass,
} from './deciderSpecification.js';
export { DeciderSpecification } from './deciderSpecification.js';
export type { Fault, FaultyCall, FaultyMethod, FaultyStore } from './faultyStore.js';
export { createFaultyStore } from './faultyStore.js';
export type {
  ExpectedEffects,
  HandlerHarness,
  HandlerHarnessOptions,
  HandlerOutcome,
  HandlerThen,
  HandlerWhen,
  HarnessHandler,
  StreamMessage,
} from './handlerHarness.js';
export { createHandlerHarness } from './handlerHarness.js';
export type { InMemoryScheduledMessage, InMemoryStoreOptions } from './inMemoryStore.js';
export { createInMemoryStore, InMemoryMessageStore } from './inMemoryStore.js';
export type {
  InMemoryCheckpoint,
  InMemorySubscriptions,
  InMemorySubscriptionsOptions,
  RunResult,
} from './inMemorySubscriptions.js';
export { createInMemorySubscriptions } from './inMemorySubscriptions.js';
export { assertMessagesMatch } from './matchMessages.js';
export type { ProjectionHarness, ProjectionOutcome } from './projectionHarness.js';
export { createProjectionHarness } from './projectionHarness.js';
export type { GivenMessage } from './recordedFrom.js';
export type { MessageStoreApi } from './storeApi.js';
export { storeApiOf } from './storeApi.js';
export type { TestClock } from './testClock.js';
export { createTestClock } from './testClock.js';
export type { CaughtUpTarget, WaitForCaughtUpOptions } from './waitForCaughtUp.js';
export { FailedCheckpointsError, waitForCaughtUp } from './waitForCaughtUp.js';
