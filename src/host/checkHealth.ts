import type { ResolvedConfig } from '../config/types.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { NotFoundError } from '../errors.js';
import { lagSnapshot } from '../operations/lagSnapshot.js';
import { subscriptionFilters } from '../operations/subscriptionFilters.js';
import { listQueues, type QueueSummary } from '../queues/queueOperations.js';
import type { BlockingTransaction } from '../store/readLog.js';

export interface HealthCheckOptions {
  /** The config: its groups are checked even before any worker of theirs ran. */
  config?: ResolvedConfig;
  /** Only this group. */
  group?: string;
  /** A subscription lagging by more than this many messages makes its group unhealthy. Default: no limit. */
  maxLag?: number;
  /** A worker whose heartbeat is older than this is not live. Default 30. */
  staleWorkerSeconds?: number;
  /** A queue whose oldest ready job has waited longer than this (seconds) is unhealthy. Default: no limit. */
  maxQueueAgeSeconds?: number;
}

export interface QueueHealth extends QueueSummary {
  healthy: boolean;
  /** Why it is unhealthy (empty when healthy). */
  problems: string[];
}

export interface SubscriptionHealth {
  name: string;
  status: string;
  lag: number;
  failed: number;
  retry: number;
}

export interface GroupHealth {
  name: string;
  healthy: boolean;
  /** Why it is unhealthy (empty when healthy). */
  problems: string[];
  liveWorkers: number;
  subscriptions: SubscriptionHealth[];
}

export interface HealthResult {
  healthy: boolean;
  groups: GroupHealth[];
  /** A long-open transaction holding readers back (reported, not counted as unhealthy). */
  blocking: BlockingTransaction | null;
  /**
   * The config's queues (without a group filter): unhealthy with dead letters, or when the oldest
   * ready job waited longer than maxQueueAgeSeconds.
   */
  queues: QueueHealth[];
}

/**
 * Is each subscription group healthy? Unhealthy when no worker of the group has a live heartbeat,
 * when a subscription has failed checkpoints, or when its lag is above `maxLag`.
 */
export async function checkHealth(
  db: Queryable,
  ctx: SqlContext,
  opts: HealthCheckOptions = {},
): Promise<HealthResult> {
  const stale = opts.staleWorkerSeconds ?? 30;
  const snap = await lagSnapshot(db, ctx, {
    ...(opts.config ? { subscriptions: subscriptionFilters(opts.config) } : {}),
    ...(opts.group ? { group: opts.group } : {}),
    staleWorkerSeconds: stale,
    // A lag above maxLag must be seen even where the bounded counts would stop short of it.
    ...(opts.maxLag !== undefined ? { exactLagUpTo: Math.max(100_000, opts.maxLag + 1) } : {}),
  });
  const names = new Set(snap.groups.map((g) => g.name));
  // A group that only serves queues has no subscription worker to check: its queues are checked below.
  for (const [name, g] of opts.config?.groups ?? [])
    if ((!opts.group || name === opts.group) && g.subscriptions.size > 0) names.add(name);
  if (opts.group && !names.has(opts.group) && !opts.config?.groups.has(opts.group)) {
    const known = [...new Set([...(opts.config?.groups.keys() ?? []), ...snap.groups.map((g) => g.name)])];
    throw new NotFoundError(
      `Unknown group "${opts.group}": neither the config nor schema "${ctx.schema}" has it.${
        known.length > 0 ? ` Known groups: ${known.join(', ')}.` : ''
      }`,
      'Pass a group declared under groups in the config: es health --group NAME.',
    );
  }
  const groups: GroupHealth[] = [...names].sort().map((name) => {
    const g = snap.groups.find((x) => x.name === name);
    if (!g)
      return {
        name,
        healthy: false,
        problems: ['no worker has run this group yet (start one: es worker --group NAME)'],
        liveWorkers: 0,
        subscriptions: [],
      };
    const problems: string[] = [];
    if (g.liveWorkers === 0) problems.push(`no live worker (no heartbeat in the last ${stale} s)`);
    const subscriptions = g.subscriptions
      .filter((s) => s.status !== 'unknown')
      .map((s) => ({ name: s.name, status: s.status, lag: s.lag, failed: s.failed, retry: s.retry }));
    for (const s of subscriptions) {
      if (s.failed > 0) problems.push(`${s.name}: ${s.failed} failed checkpoint${s.failed === 1 ? '' : 's'}`);
      if (opts.maxLag !== undefined && s.lag > opts.maxLag)
        problems.push(`${s.name}: lag ${s.lag} > ${opts.maxLag}`);
    }
    return { name, healthy: problems.length === 0, problems, liveWorkers: g.liveWorkers, subscriptions };
  });
  const queueNames = opts.group
    ? (opts.config?.groups.get(opts.group)?.queues ?? [])
    : [...(opts.config?.queues.keys() ?? [])];
  const queues: QueueHealth[] =
    queueNames.length === 0
      ? []
      : (await listQueues(db, ctx, { include: queueNames }))
          .filter((q) => queueNames.includes(q.queue))
          .map((q) => {
            const problems: string[] = [];
            if (q.dead > 0)
              problems.push(`${q.dead} dead letter${q.dead === 1 ? '' : 's'} (es queue dead ${q.queue})`);
            if (opts.maxQueueAgeSeconds !== undefined && q.readyAgeSeconds > opts.maxQueueAgeSeconds)
              problems.push(
                `oldest ready job waited ${Math.round(q.readyAgeSeconds)} s > ${opts.maxQueueAgeSeconds} s`,
              );
            return { ...q, healthy: problems.length === 0, problems };
          });
  return {
    healthy: groups.every((g) => g.healthy) && queues.every((q) => q.healthy),
    groups,
    blocking: snap.blocking,
    queues,
  };
}
