import type { ResolvedConfig, SubscriptionConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { createWorker, type Worker } from '../../src/subscriptions/workerRuntime.js';
import type { TestDb } from '../helpers/db.js';

/** A config with one group `G` holding the given subscriptions, plus any other top-level keys. */
export function opsConfig(
  schema: string,
  subscriptions: Record<string, SubscriptionConfig>,
  extra: Record<string, unknown> = {},
): ResolvedConfig {
  return resolveConfig({ database: { schema }, groups: { G: { subscriptions } }, ...extra });
}

export function startWorker(db: TestDb, config: ResolvedConfig): Worker {
  return createWorker({ pool: db.pool, config, group: 'G', maxPollMs: 100, onError: () => undefined });
}

export { until } from '../helpers/until.js';

/** The checkpoint row of (G, subscription, stream). */
export async function checkpoint(
  db: TestDb,
  subscription: string,
  stream: string,
): Promise<
  { stream_position: number; stream_version: number; status: string; attempts: number } | undefined
> {
  const { rows } = await db.pool.query(
    `SELECT stream_position, stream_version, status, attempts FROM "${db.schema}".checkpoints
      WHERE group_name = 'G' AND subscription_name = $1 AND stream_name = $2`,
    [subscription, stream],
  );
  return rows[0];
}
