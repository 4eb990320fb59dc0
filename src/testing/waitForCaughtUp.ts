import type pg from 'pg';
import { assertSafeSchemaName, escapeIdentifier } from '../db/identifier.js';
import type { SqlContext } from '../db/queryable.js';
import { BeckettError, InvalidInputError } from '../errors.js';
import { type GroupLag, lagSnapshot } from '../operations/lagSnapshot.js';
import type { Worker } from '../subscriptions/workerRuntime.js';

/** A group on a database: what to wait for. */
export interface CaughtUpTarget {
  pool: pg.Pool;
  group: string;
  /** Default `beckett`. */
  schema?: string;
}

export interface WaitForCaughtUpOptions {
  /** Override the target's pool and schema (a Worker brings its own). */
  pool?: pg.Pool;
  schema?: string;
  /** Give up after this long (default 30 s): throws with the group's last lag. */
  timeoutMs?: number;
  /** Poll interval (default 25 ms). */
  pollMs?: number;
  /** Wait on through failed checkpoints (until the test retries or skips them) instead of throwing at once. Default false. */
  allowFailed?: boolean;
}

/** A failed checkpoint was found while waiting: the group will never catch up on its own. */
export class FailedCheckpointsError extends BeckettError {
  readonly lag: GroupLag;
  constructor(lag: GroupLag) {
    const failed = lag.subscriptions.filter((s) => s.failed > 0).map((s) => `${s.name} (${s.failed})`);
    super('CHECKPOINTS_FAILED', `Group "${lag.name}" has failed checkpoints: ${failed.join(', ')}.`, {
      hint: 'A handler threw until its retries ran out: see es failed, or pass allowFailed to wait anyway.',
    });
    this.lag = lag;
  }
}

/**
 * Resolve once every subscription of the group has processed every message appended before
 * the call: nothing left for its global reader to dispatch (including messages held back by an
 * open transaction), and no checkpoint behind its stream. The same figures as `es lag`; a test
 * awaits this instead of sleeping. Throws FailedCheckpointsError as soon as a checkpoint failed
 * (unless allowFailed), and an Error with the last lag after `timeoutMs`.
 */
export async function waitForCaughtUp(
  target: Worker | CaughtUpTarget,
  opts: WaitForCaughtUpOptions = {},
): Promise<GroupLag> {
  // A Worker carries its pool and schema as a CaughtUpTarget does.
  const given: Partial<CaughtUpTarget> = target;
  const pool = opts.pool ?? given.pool;
  if (!pool)
    throw new InvalidInputError(
      'waitForCaughtUp needs the pool the group runs on.',
      'Pass a Worker, or { pool, group, schema }.',
    );
  const schema = assertSafeSchemaName(opts.schema ?? given.schema ?? 'beckett');
  const ctx: SqlContext = { schema, s: escapeIdentifier(schema), prepared: false };
  const group = target.group;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let last: GroupLag | undefined;
  for (;;) {
    const snapshot = await lagSnapshot(pool, ctx, { group });
    last = snapshot.groups.find((g) => g.name === group);
    if (last && last.subscriptions.length > 0) {
      if (!opts.allowFailed && last.subscriptions.some((s) => s.failed > 0))
        throw new FailedCheckpointsError(last);
      if (last.subscriptions.every((s) => s.status !== 'initializing' && s.lag === 0)) return last;
    }
    if (Date.now() > deadline)
      throw new Error(
        `Group "${group}" did not catch up within ${timeoutMs} ms: ${
          last
            ? last.subscriptions
                .map(
                  (s) =>
                    `${s.name} ${s.status}, lag ${s.lag} (${s.undispatched} undispatched, ${s.behind} behind), ${s.retry} retrying`,
                )
                .join('; ')
            : 'the group is not registered (is its worker started?)'
        }${snapshot.blocking ? `; transaction pid ${snapshot.blocking.pid} open for ${Math.round(snapshot.blocking.ageSeconds)} s holds readers back` : ''}.`,
      );
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 25));
  }
}
