import type pg from 'pg';
import { GroupCommit } from '../db/groupCommit.js';
import { runPipelined } from '../db/pipeline.js';
import { type Queryable, type SqlContext, statement } from '../db/queryable.js';
import { TAG_SEPARATOR_CHAR } from '../store/appendToStream.js';
import { type Notifier, WakeupCarrier } from '../store/notifications.js';
import {
  type After,
  batchLocksSql,
  conflictSql,
  gatedInsert,
  gatedRowValues,
  gatedShape,
  locksSql,
} from './conditionSql.js';
import { type LockSet, lockParams } from './lockKeys.js';
import type { QueryItem } from './query.js';

/*
 * One message to one stream at an exact version, conditionally (conditionSql.ts): alone, or on the
 * store's pool group-committed with others (src/db/groupCommit.ts). A batch takes the union of its
 * appends' locks, then runs one gated INSERT for all of them. Only appends of the same statement
 * shape whose locks do not conflict share a batch (an exclusive lock of one is not held, in any
 * mode, by another): then no append's condition can match another's message, and each check
 * against the snapshot taken after the locks is exactly what it would be alone. As the plain
 * appends' batches (src/store/appendBatcher.ts), each batch takes its even share of the appends
 * waiting and in flight, and its round trip carries the store's wake-up when one is due.
 */

export interface GatedAppend {
  id: string;
  stream: string;
  expected: number;
  type: string;
  data: string;
  metadata: string;
  tags: string[];
  locks: LockSet;
  after: After;
  items: readonly QueryItem[];
}

export type GatedOutcome =
  | { kind: 'appended'; globalPosition: number; transactionId: string }
  | { kind: 'condition_failed' }
  | { kind: 'wrong_version' }
  | { kind: 'not_read_committed' }
  /** Not written, in a batch; reading whether its condition or its version failed failed with `error`. */
  | { kind: 'unchecked'; error: unknown };

/** The row of one append's gated INSERT (conditionSql.ts buildOne). */
interface GateRow {
  read_committed: boolean;
  conflict: boolean;
  global_position: string | number | null;
  transaction_id: string | null;
}

/** A row of a batch's gated INSERT (conditionSql.ts buildBatch): one per message inserted. */
interface BatchRow {
  read_committed: boolean;
  snapshot: string;
  id: string | null;
  global_position: string | number | null;
  transaction_id: string | null;
}

function outcome(row: GateRow | undefined): GatedOutcome {
  if (row?.read_committed !== true) return { kind: 'not_read_committed' };
  if (row.conflict) return { kind: 'condition_failed' };
  if (row.global_position === null) return { kind: 'wrong_version' };
  return {
    kind: 'appended',
    globalPosition: Number(row.global_position),
    transactionId: row.transaction_id!,
  };
}

/**
 * Appends of one shape (one, or a batch whose locks do not conflict): the union of their locks,
 * then their gated INSERT, in one round trip and one transaction. One outcome per append, in order.
 * On `db`, or on the store's pool through `carrier`, whose round trip then also carries the
 * store's wake-up when one is due (notifications.ts).
 */
export async function runGated(
  db: Queryable | WakeupCarrier,
  ctx: SqlContext,
  appends: readonly GatedAppend[],
): Promise<GatedOutcome[]> {
  const first = appends[0]!;
  const batch = appends.length > 1;
  // A batch takes the union of its appends' locks (exclusive wins), in the one order.
  let locks = first.locks;
  if (batch) {
    const modes = new Map<string, boolean>();
    for (const a of appends)
      for (const [i, key] of a.locks.keys.entries())
        modes.set(key, a.locks.exclusive[i]! || (modes.get(key) ?? false));
    locks = { keys: [...modes.keys()], exclusive: [...modes.values()] };
  }
  const insert = gatedInsert(ctx, first.tags.length > 0, first.after.kind, first.items, batch);
  const perRow = appends.map((a) => [
    a.id,
    a.stream,
    a.expected,
    a.type,
    a.data,
    a.metadata,
    a.tags.join(TAG_SEPARATOR_CHAR),
    ...gatedRowValues(a.after, a.items),
  ]);
  // One append: its values as they are; a batch: one array per parameter, an element per append.
  const values = batch ? perRow[0]!.map((_, k) => perRow.map((row) => row[k])) : perRow[0]!;
  const statements = [
    statement(
      ctx,
      batch ? 'cond_locks_batch' : 'cond_locks',
      (batch ? batchLocksSql : locksSql)(ctx),
      lockParams(locks),
    ),
    statement(ctx, insert.name, insert.text, values),
  ];
  const rows =
    db instanceof WakeupCarrier
      ? (await db.queryAll<pg.QueryResultRow>(statements)).rows
      : await runPipelined<pg.QueryResultRow>(db, statements);
  if (!batch) return [outcome(rows[0] as GateRow | undefined)];
  return batchOutcomes(db instanceof WakeupCarrier ? db.pool : db, ctx, appends, rows as BatchRow[]);
}

/**
 * Each append's outcome from its batch's rows: appended (a row), or, without a row, not READ
 * COMMITTED (nothing was inserted then), or its condition or its version failed: which, is read in
 * the batch's snapshot (conditionSql.ts conflictSql), one statement per such append. That read
 * failing fails only its append (not written; why, unknown).
 */
async function batchOutcomes(
  db: Queryable,
  ctx: SqlContext,
  appends: readonly GatedAppend[],
  rows: BatchRow[],
): Promise<GatedOutcome[]> {
  const first = rows[0];
  if (first?.read_committed !== true) return appends.map(() => ({ kind: 'not_read_committed' }));
  const inserted = new Map<string, BatchRow>();
  for (const r of rows) if (r.id !== null) inserted.set(r.id, r);
  const outcomes: GatedOutcome[] = [];
  for (const a of appends) {
    const r = inserted.get(a.id);
    if (r) {
      outcomes.push({
        kind: 'appended',
        globalPosition: Number(r.global_position),
        transactionId: r.transaction_id!,
      });
      continue;
    }
    const check = conflictSql(ctx, a.after.kind, a.items);
    try {
      const { rows: found } = await db.query<{ conflict: boolean }>(
        statement(ctx, check.name, check.text, [first.snapshot, ...gatedRowValues(a.after, a.items)]),
      );
      outcomes.push(found[0]?.conflict === true ? { kind: 'condition_failed' } : { kind: 'wrong_version' });
    } catch (error) {
      outcomes.push({ kind: 'unchecked', error });
    }
  }
  return outcomes;
}

/** A queued append: the append itself (not a copy, see appendBatcher.ts' Pending) and its promise. */
interface Job {
  append: GatedAppend;
  shape: string;
  lockModes: Map<string, boolean>;
  resolve(o: GatedOutcome): void;
  reject(err: unknown): void;
}

/** Statements of this store's conditional appends running at once. */
const MAX_IN_FLIGHT = 2;
const MAX_BATCH = 100;

/** Whether `job` can share a batch: the same shape, and no lock that either holds exclusively. */
function fits(batch: readonly Job[], job: Job): boolean {
  if (batch[0]!.shape !== job.shape) return false;
  for (const other of batch)
    for (const [id, exclusive] of job.lockModes) {
      const mode = other.lockModes.get(id);
      if (mode !== undefined && (mode || exclusive)) return false;
    }
  return true;
}

export class ConditionalBatcher {
  readonly #group: GroupCommit<Job>;

  /**
   * Each batch's round trip carries the store's wake-up when one is due (as the plain appends'
   * batches do); a batch that carried none announces its appends after commit.
   */
  constructor(pool: pg.Pool, ctx: SqlContext, notifier: Notifier) {
    const run = async (appends: GatedAppend[]) => {
      const carrier = new WakeupCarrier(pool, notifier);
      const outcomes = await runGated(carrier, ctx, appends);
      if (!carrier.carried) notifier.notify();
      return outcomes;
    };
    this.#group = new GroupCommit<Job>({
      one: async (job) => {
        try {
          job.resolve((await run([job.append]))[0]!);
        } catch (err) {
          job.reject(err);
        }
      },
      many: async (batch) => {
        const outcomes = await run(batch.map((job) => job.append));
        for (const [i, job] of batch.entries()) {
          const o = outcomes[i]!;
          if (o.kind === 'unchecked') job.reject(o.error);
          else job.resolve(o);
        }
      },
      lost: (job, err) => job.reject(err),
      maxInFlight: MAX_IN_FLIGHT,
      maxBatch: MAX_BATCH,
      fillTurn: true,
      evenShares: true,
      fits,
    });
  }

  /** Take no more appends; resolves once those taken are settled. */
  close(): Promise<void> {
    return this.#group.close();
  }

  append(a: GatedAppend): Promise<GatedOutcome> {
    const lockModes = new Map<string, boolean>();
    for (const [i, key] of a.locks.keys.entries()) lockModes.set(key, a.locks.exclusive[i]!);
    return new Promise((resolve, reject) => {
      this.#group.push({
        append: a,
        shape: gatedShape(a.tags.length > 0, a.after.kind, a.items),
        lockModes,
        resolve,
        reject,
      });
    });
  }
}
