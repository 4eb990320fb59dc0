import type pg from 'pg';
import { GroupCommit } from '../db/groupCommit.js';
import { runPipelined } from '../db/pipeline.js';
import { type Queryable, type SqlContext, statement } from '../db/queryable.js';
import { TAG_SEPARATOR_CHAR } from '../store/appendToStream.js';
import {
  type After,
  gatedBatchInsert,
  gatedBatchRowValues,
  gatedInsert,
  gatedInsertValues,
  gatedShape,
  LOCKS_SQL,
} from './conditionSql.js';
import type { QueryItem } from './query.js';

/*
 * One message to one stream at an exact version, conditionally (conditionSql.ts): alone, or on the
 * store's pool group-committed with others (src/db/groupCommit.ts). A batch takes the union of its
 * appends' locks, then runs one gated INSERT for all of them. Only appends of the same statement
 * shape whose locks do not conflict share a batch (an exclusive lock of one is not held, in any
 * mode, by another): then no append's condition can match another's message, and each check
 * against the snapshot taken after the locks is exactly what it would be alone.
 */

export interface GatedAppend {
  id: string;
  stream: string;
  expected: number;
  type: string;
  data: string;
  metadata: string;
  tags: string[];
  locks: { ids: string[]; exclusive: boolean[] };
  after: After;
  items: readonly QueryItem[];
}

export type GatedOutcome =
  | { kind: 'appended'; globalPosition: number; transactionId: string }
  | { kind: 'condition_failed' }
  | { kind: 'wrong_version' }
  | { kind: 'not_read_committed' };

function outcome(row: (string | null)[] | undefined): GatedOutcome {
  const [readCommitted, conflict, globalPosition, transactionId] = row ?? [];
  if (readCommitted !== 't') return { kind: 'not_read_committed' };
  if (conflict === 't') return { kind: 'condition_failed' };
  if (globalPosition === null || globalPosition === undefined) return { kind: 'wrong_version' };
  return { kind: 'appended', globalPosition: Number(globalPosition), transactionId: transactionId! };
}

/** One append alone: its locks, then its gated INSERT, in one round trip. */
export async function runGatedAppend(db: Queryable, ctx: SqlContext, a: GatedAppend): Promise<GatedOutcome> {
  const insert = gatedInsert(ctx, a.tags.length > 0, a.after, a.items);
  const values = [
    a.id,
    a.stream,
    a.expected,
    a.type,
    a.data,
    a.metadata,
    a.tags,
    ...gatedInsertValues(a.after, a.items),
  ];
  const [row] = await runPipelined(db, [
    {
      name: statement(ctx, 'cond_locks', LOCKS_SQL, []).name,
      text: LOCKS_SQL,
      values: [a.locks.ids, a.locks.exclusive],
    },
    { name: statement(ctx, insert.name, insert.text, []).name, text: insert.text, values },
  ]);
  return outcome(row);
}

interface Job extends GatedAppend {
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
  readonly #pool: pg.Pool;
  readonly #ctx: SqlContext;
  readonly #group: GroupCommit<Job>;

  constructor(pool: pg.Pool, ctx: SqlContext) {
    this.#pool = pool;
    this.#ctx = ctx;
    this.#group = new GroupCommit((batch) => this.#run(batch), {
      maxInFlight: MAX_IN_FLIGHT,
      maxBatch: MAX_BATCH,
      fits,
    });
  }

  append(a: GatedAppend): Promise<GatedOutcome> {
    const lockModes = new Map<string, boolean>();
    for (const [i, id] of a.locks.ids.entries()) lockModes.set(id, a.locks.exclusive[i]!);
    return new Promise((resolve, reject) => {
      this.#group.push({
        ...a,
        shape: gatedShape(a.tags.length > 0, a.after.kind, a.items),
        lockModes,
        resolve,
        reject,
      });
    });
  }

  async #run(batch: Job[]): Promise<void> {
    if (batch.length === 1) return this.#runOne(batch[0]!);
    const first = batch[0]!;
    // The union of the batch's locks, ascending like every client takes them.
    const modes = new Map<bigint, boolean>();
    for (const job of batch) for (const [id, exclusive] of job.lockModes) modes.set(BigInt(id), exclusive);
    const ids = [...modes.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const insert = gatedBatchInsert(this.#ctx, first.tags.length > 0, first.after.kind, first.items);
    const perRow = batch.map((j) => gatedBatchRowValues(j.after, j.items));
    const values: unknown[] = [
      batch.map((j) => j.id),
      batch.map((j) => j.stream),
      batch.map((j) => j.expected),
      batch.map((j) => j.type),
      batch.map((j) => j.data),
      batch.map((j) => j.metadata),
      batch.map((j) => j.tags.join(TAG_SEPARATOR_CHAR)),
      ...perRow[0]!.map((_, k) => perRow.map((row) => row[k])),
    ];
    let rows: (string | null)[][];
    try {
      rows = await runPipelined(this.#pool, [
        {
          name: statement(this.#ctx, 'cond_locks', LOCKS_SQL, []).name,
          text: LOCKS_SQL,
          values: [ids.map(String), ids.map((id) => modes.get(id)!)],
        },
        { name: statement(this.#ctx, insert.name, insert.text, []).name, text: insert.text, values },
      ]);
    } catch {
      // Nothing of the batch was written: each append again on its own, with its own outcome.
      await Promise.all(batch.map((job) => this.#runOne(job)));
      return;
    }
    for (const [i, job] of batch.entries()) job.resolve(outcome(rows[i]));
  }

  async #runOne(job: Job): Promise<void> {
    try {
      job.resolve(await runGatedAppend(this.#pool, this.#ctx, job));
    } catch (err) {
      job.reject(err);
    }
  }
}

const batchers = new WeakMap<pg.Pool, Map<string, ConditionalBatcher>>();

/** The batcher of a pool and schema (one per store's pool, however many store objects share it). */
export function conditionalBatcherFor(pool: pg.Pool, ctx: SqlContext): ConditionalBatcher {
  let bySchema = batchers.get(pool);
  if (!bySchema) {
    bySchema = new Map();
    batchers.set(pool, bySchema);
  }
  const key = `${ctx.schema}|${ctx.prepared}`;
  let batcher = bySchema.get(key);
  if (!batcher) {
    batcher = new ConditionalBatcher(pool, ctx);
    bySchema.set(key, batcher);
  }
  return batcher;
}
