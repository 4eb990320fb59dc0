import type { Command } from 'commander';
import { registerAppend } from './append.js';
import { registerCheckpoints } from './checkpoints.js';
import { registerDb } from './db.js';
import { registerDemo } from './demo.js';
import { registerDumpMigrations } from './dumpMigrations.js';
import { registerHealth } from './health.js';
import { registerInit } from './init.js';
import { registerLag } from './lag.js';
import { registerMigrate } from './migrate.js';
import { registerRead } from './read.js';
import { registerReplay } from './replay.js';
import { registerRetention } from './retention.js';
import { registerRetry } from './retry.js';
import { registerSchedule } from './schedule.js';
import { registerSkip } from './skip.js';
import { registerSubscriptions } from './subscriptions.js';
import { registerTail } from './tail.js';
import { registerWorker } from './worker.js';

/**
 * Every command, in help order. Command files only declare flags and help; they import the library
 * inside their action, so `es --help` loads nothing heavy.
 */
export const commands: ((program: Command) => void)[] = [
  registerInit,
  registerMigrate,
  registerDumpMigrations,
  registerAppend,
  registerRead,
  registerTail,
  registerWorker,
  registerDemo,
  registerSubscriptions,
  registerLag,
  registerCheckpoints,
  registerRetry,
  registerSkip,
  registerReplay,
  registerRetention,
  registerSchedule,
  registerHealth,
  registerDb,
];
