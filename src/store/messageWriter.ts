import type pg from 'pg';
import { ConditionalBatcher } from '../consistency/conditionalBatcher.js';
import type { SqlContext } from '../db/queryable.js';
import { AppendBatcher } from './appendBatcher.js';
import type { Notifier } from './notifications.js';

/*
 * The one writer of a store: every message the library inserts goes through the statements built
 * by appendToStream.ts (single INSERT, append_to_stream()), appendBatcher.ts (group-committed
 * INSERTs) and src/consistency/conditionSql.ts (INSERTs gated by a condition, and
 * append_with_condition()), all from the same parts: the stream's head check (headSql), the
 * messages' advisory lock keys taken shared (lockKeys.ts takeLocksSql), and their message_tags
 * rows (taggedCte). The SQL functions of migration 0012 follow the same rules for writers outside
 * Node. A store's writer owns its group commits: they live as long as the store, and close()
 * settles every append taken before it refuses new ones.
 *
 * What every write keeps, whatever its path (test/store/writePaths.test.ts enumerates them):
 * - its expected version is checked against the stream's head, never a deleted position;
 * - its message_tags rows commit with it;
 * - it holds its messages' lock keys (shared) before its positions are drawn, so a conditional
 *   append sees it or it comes after;
 * - on the store's pool: validated by prepareMessageList(), announced after commit, and idempotent by
 *   message id after a lost reply (storedAppends.ts).
 */
export class MessageWriter {
  /** Single-message appends with an exact expected version. */
  readonly plain: AppendBatcher;
  /** Single-message conditional appends with an exact expected version. */
  readonly gated: ConditionalBatcher;

  constructor(pool: pg.Pool, ctx: SqlContext, notifier: Notifier) {
    this.plain = new AppendBatcher(pool, ctx, notifier);
    this.gated = new ConditionalBatcher(pool, ctx, notifier);
  }

  /** Take no more appends; resolves once every append taken is settled. */
  async close(): Promise<void> {
    await Promise.all([this.plain.close(), this.gated.close()]);
  }
}
