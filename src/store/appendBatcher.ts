import type pg from 'pg';
import { messagesLockKeys, takeLocksSql, takeTwoLocksSql } from '../consistency/lockKeys.js';
import { GroupCommit } from '../db/groupCommit.js';
import { GENERIC_INDEX_PLANS, setForTransaction } from '../db/planSettings.js';
import { type SqlContext, statement } from '../db/queryable.js';
import {
  headSql,
  insertOne,
  type SingleInsert,
  splitTagsSql,
  TAG_SEPARATOR_CHAR,
  taggedCte,
} from './appendToStream.js';
import { type Notifier, queryAllOnPool, WakeupCarrier } from './notifications.js';

/*
 * Group commit (src/db/groupCommit.ts) for single-message appends with an exact expected version
 * on the store's pool: appends that arrive while earlier ones are in flight go together, as one
 * INSERT in one transaction: one round trip, one executor start and one commit (one WAL flush) for
 * all of them instead of one each. A batch of one is the single INSERT of appendToStream.ts.
 *
 * Each append keeps its own outcome: a row is inserted only if its stream is at its expected
 * version (its head is N, see appendToStream.ts) and position N+1 is free (ON CONFLICT DO NOTHING on the
 * stream position), so one stale writer does not fail the others; it gets no row, and the store
 * reports its WrongExpectedVersionError. A statement error in a batch (a payload PostgreSQL refuses,
 * say) reruns its appends one by one, so that only the bad one fails; a lost connection reruns
 * nothing (the batch may be committed).
 */

/** Statements of this store's appends running at once; the rest queue into the next batch. */
const MAX_IN_FLIGHT = 2;
/** Appends per batch statement. */
const MAX_BATCH = 100;

/**
 * Run before each batch statement, in its transaction: its generic plan, made once per connection,
 * index lookups only (src/db/planSettings.ts). Left to choose, the server planned the batch afresh at
 * every execution whenever batches were small (unnest() of its arrays is estimated at 100 rows, so
 * the generic plan looked dearer than one made for arrays of two or three): at 3 writers, 0 generic
 * plans of about 3,600, and 442 us of planning per batch (bind, `log_min_duration_statement`)
 * against 47 us with the generic plan.
 */
const BATCH_PLANS = setForTransaction(GENERIC_INDEX_PLANS);

/**
 * The batch's shapes: with tags (the tags rows from the same statement), without, and without and
 * of one type, whose two lock keys (`(*, *)` and `(type, *)`) are taken by two scalar calls instead
 * of the array form's unnest, sort and aggregate (as the single INSERT does, appendToStream.ts).
 */
type BatchShape = 'tagged' | 'untagged' | 'one_type';

const batchSqlText = (ctx: SqlContext, shape: BatchShape) => {
  const tagged = shape === 'tagged';
  // Untagged: no tags parameter; the lock keys are $7 (an array) or $7 and $8 (one type).
  const locks =
    shape === 'one_type'
      ? takeTwoLocksSql(ctx.s, '$7::text', '$8::text')
      : `${takeLocksSql(ctx.s, tagged ? '$8::text[]' : '$7::text[]')} > 0`;
  return `WITH inserted AS (
  INSERT INTO ${ctx.s}.messages (id, stream_name, stream_position, type, data, metadata, tags)
  SELECT u.id, u.stream_name, u.n + 1, u.type, u.data, u.metadata,
         ${tagged ? splitTagsSql('u.tags') : "'{}'::text[]"}
    FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[], $6::jsonb[]${tagged ? ', $7::text[]' : ''})
         WITH ORDINALITY AS u(id, stream_name, n, type, data, metadata, ${tagged ? 'tags, ' : ''}ord)
   -- The stream's head per row (a probe of the index per row), and once for the batch every
   -- message's lock keys, shared, before any position is drawn.
   WHERE ${headSql(ctx, 'u.stream_name')} = u.n AND ${locks}
   ORDER BY u.ord
  ON CONFLICT (stream_name, stream_position) DO NOTHING
  RETURNING ${tagged ? 'id, global_position, transaction_id, type, tags' : 'id, global_position'}
)${tagged ? `, ${taggedCte(ctx)}` : ''}
SELECT id, global_position FROM inserted`;
};

/**
 * A queued append: the append itself (not a copy), its carrier and its promise. Spread from the
 * append instead ({ ...m, carrier, resolve, reject }), jobs got shapes V8 reads slowly in every
 * function that touches them: about 9 us of client CPU per append at 16 writers (bench/README,
 * session 17).
 */
interface Pending {
  m: SingleInsert;
  /** The appender's own carrier: told when the batch's round trip carried the wake-up. */
  carrier: WakeupCarrier | undefined;
  /** The new message's global position, or null when the stream was not at the expected version. */
  resolve(globalPosition: number | null): void;
  reject(err: unknown): void;
}

export class AppendBatcher {
  readonly #pool: pg.Pool;
  readonly #ctx: SqlContext;
  readonly #batchSql: Record<BatchShape, string>;
  /** BATCH_PLANS as this store's statement, built once. */
  readonly #batchPlans: pg.QueryConfig;
  readonly #group: GroupCommit<Pending>;
  readonly #notifier: Notifier | undefined;

  /** With `notifier`, a batch's round trip carries the store's wake-up when one is due. */
  constructor(pool: pg.Pool, ctx: SqlContext, notifier?: Notifier) {
    this.#pool = pool;
    this.#ctx = ctx;
    this.#notifier = notifier;
    this.#batchSql = {
      tagged: batchSqlText(ctx, 'tagged'),
      untagged: batchSqlText(ctx, 'untagged'),
      one_type: batchSqlText(ctx, 'one_type'),
    };
    this.#batchPlans = statement(ctx, 'batch_plans', BATCH_PLANS, []);
    this.#group = new GroupCommit<Pending>({
      one: (p) => this.#runOne(p),
      many: (batch) => this.#runMany(batch),
      // The store turns a lost connection into AppendOutcomeUnknownError (storedAppends.ts).
      lost: (p, err) => p.reject(err),
      maxInFlight: MAX_IN_FLIGHT,
      maxBatch: MAX_BATCH,
      fillTurn: true,
      evenShares: true,
    });
  }

  /**
   * Insert `m` at position `m.n + 1`, committed when this resolves: its global position, or null
   * when the stream is not at version `m.n` (shorter, or someone else took the position).
   */
  append(m: SingleInsert, carrier?: WakeupCarrier): Promise<number | null> {
    // Alone (nothing else in flight or queued): the single INSERT at once, without the queue's
    // promise and job object.
    return (
      this.#group.runAlone(() => this.#insertOne(m, carrier)) ??
      new Promise((resolve, reject) => this.#group.push({ m, carrier, resolve, reject }))
    );
  }

  /** Take no more appends; resolves once those taken are settled. */
  close(): Promise<void> {
    return this.#group.close();
  }

  #carrier(): WakeupCarrier | undefined {
    return this.#notifier ? new WakeupCarrier(this.#pool, this.#notifier) : undefined;
  }

  async #runMany(batch: Pending[]): Promise<void> {
    // The batch's round trip carries the store's wake-up when one is due (see WakeupCarrier).
    const carrier = this.#carrier();
    const inserts = batch.map((p) => p.m);
    const values: unknown[] = [
      inserts.map((m) => m.id),
      inserts.map((m) => m.stream),
      inserts.map((m) => m.n),
      inserts.map((m) => m.type),
      inserts.map((m) => m.data),
      inserts.map((m) => m.metadata),
    ];
    const keys = messagesLockKeys(inserts);
    let shape: BatchShape;
    if (inserts.some((m) => m.tags.length > 0)) {
      shape = 'tagged';
      values.push(
        inserts.map((m) => m.tags.join(TAG_SEPARATOR_CHAR)),
        keys,
      );
    } else if (keys.length === 2) {
      shape = 'one_type';
      values.push(keys[0], keys[1]);
    } else {
      shape = 'untagged';
      values.push(keys);
    }
    // The batch's plan settings first, in its transaction (BATCH_PLANS).
    const statements = [
      this.#batchPlans,
      statement(this.#ctx, `append_batch_${shape}`, this.#batchSql[shape], values),
    ];
    const { rows } = await (carrier
      ? carrier.queryAll<{ id: string; global_position: number }>(statements)
      : queryAllOnPool<{ id: string; global_position: number }>(this.#pool, statements));
    const positions = new Map(rows.map((r) => [r.id, r.global_position]));
    for (const p of batch) {
      if (carrier?.carried && p.carrier) p.carrier.carried = true;
      p.resolve(positions.get(p.m.id) ?? null);
    }
  }

  /** The single INSERT, on the appender's carrier: its round trip carries the wake-up when one is due. */
  #insertOne(m: SingleInsert, carrier: WakeupCarrier | undefined): Promise<number | null> {
    return insertOne(carrier?.db ?? this.#pool, this.#ctx, m);
  }

  async #runOne(p: Pending): Promise<void> {
    try {
      p.resolve(await this.#insertOne(p.m, p.carrier));
    } catch (err) {
      p.reject(err);
    }
  }
}
