import type { ResolvedConfig, SubscriptionConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { createWorker, type Worker, type WorkerOptions } from '../../src/subscriptions/workerRuntime.js';
import type { TestDb } from '../helpers/db.js';

/** A config with one group `G` holding the given subscriptions. */
export function configWith(
  schema: string,
  subscriptions: Record<string, SubscriptionConfig>,
  extra: { messages?: Record<string, object>; concurrency?: number } = {},
): ResolvedConfig {
  return resolveConfig({
    database: { schema },
    ...(extra.messages ? { messages: extra.messages } : {}),
    groups: { G: { subscriptions, ...(extra.concurrency ? { concurrency: extra.concurrency } : {}) } },
  });
}

export function startWorker(
  db: TestDb,
  config: ResolvedConfig,
  opts: Partial<WorkerOptions> = {},
): Worker & { errors: Error[] } {
  const errors: Error[] = [];
  const w = createWorker({
    pool: db.pool,
    config,
    group: 'G',
    maxPollMs: 200,
    onError: (e) => errors.push(e),
    ...opts,
  });
  return Object.assign(w, { errors });
}

export { until } from '../helpers/until.js';

export const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
