import type { Queryable, SqlContext } from '../db/queryable.js';
import {
  assertBoolean,
  assertCheckpointSelector,
  assertInteger,
  assertOptions,
} from '../validation/options.js';
import { type CheckpointSelector, checkpointId, selectorSql } from './checkpointId.js';

export interface CheckpointInfo {
  /** `group/subscription/stream`: what es retry and es skip take. */
  id: string;
  group: string;
  subscription: string;
  stream: string;
  /** Last handled position of the stream. */
  position: number;
  /** Last known position of the stream. */
  version: number;
  status: 'active' | 'retry' | 'failed';
  attempts: number;
  nextAttemptAt: Date;
  lastError: { type?: string; message?: string; stack?: string; attempt?: number; at?: string } | null;
  leasedBy: string | null;
  leasedUntil: Date | null;
}

interface Row {
  group_name: string;
  subscription_name: string;
  stream_name: string;
  stream_position: number;
  stream_version: number;
  status: CheckpointInfo['status'];
  attempts: number;
  next_attempt_at: Date;
  last_error: CheckpointInfo['lastError'];
  leased_by: string | null;
  leased_until: Date | null;
}

export const CHECKPOINT_COLUMNS = `c.group_name, c.subscription_name, c.stream_name, c.stream_position,
  c.stream_version, c.status, c.attempts, c.next_attempt_at, c.last_error, c.leased_by, c.leased_until`;

export function rowToCheckpoint(r: Row): CheckpointInfo {
  return {
    id: checkpointId({ group: r.group_name, subscription: r.subscription_name, stream: r.stream_name }),
    group: r.group_name,
    subscription: r.subscription_name,
    stream: r.stream_name,
    position: r.stream_position,
    version: r.stream_version,
    status: r.status,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
    lastError: r.last_error,
    leasedBy: r.leased_by,
    leasedUntil: r.leased_until,
  };
}

export type CheckpointRow = Row;

export interface ListCheckpointsOptions {
  /** Also healthy checkpoints that have nothing to do. Default: only failing or lagging ones. */
  all?: boolean;
  /** Default 100. */
  limit?: number;
}

/**
 * Checkpoints matching a selector: by default the ones needing attention (retry, failed) or with
 * work waiting, failing ones first.
 */
export async function listCheckpoints(
  db: Queryable,
  ctx: SqlContext,
  sel: CheckpointSelector,
  opts: ListCheckpointsOptions = {},
): Promise<CheckpointInfo[]> {
  assertCheckpointSelector(sel, 'listCheckpoints');
  assertOptions(opts, 'listCheckpoints', ['all', 'limit']);
  assertBoolean(opts.all, 'all');
  if (opts.limit !== undefined) assertInteger(opts.limit, 'limit', 1);
  const { where, params } = selectorSql(sel, 1);
  const n = params.length;
  const { rows } = await db.query<Row>(
    `SELECT ${CHECKPOINT_COLUMNS} FROM ${ctx.s}.checkpoints c
      WHERE ${where}
        AND ($${n + 1}::boolean OR c.status <> 'active' OR c.stream_position < c.stream_version)
      ORDER BY CASE c.status WHEN 'failed' THEN 0 WHEN 'retry' THEN 1 ELSE 2 END,
               c.group_name, c.subscription_name, c.stream_name
      LIMIT $${n + 2}`,
    [...params, opts.all ?? false, opts.limit ?? 100],
  );
  return rows.map(rowToCheckpoint);
}
