import { GENERIC_INDEX_PLANS } from '../db/planSettings.js';
import type { SqlContext } from '../db/queryable.js';
import { headSql, splitTagsSql, TAG_SEPARATOR_CHAR, taggedCte } from '../store/appendToStream.js';
import { takeLocksSql } from './lockKeys.js';
import type { QueryItem } from './query.js';

/*
 * Conditional appends of one message to one stream at an exact version, without plpgsql: two
 * statements sent together (src/db/pipeline.ts), in one transaction, for one such append or for a
 * batch of them (group commit, conditionalBatcher.ts).
 *  1. locksSql() takes the advisory locks (lockKeys.ts) in ascending id order.
 *  2. One INSERT of all the messages, each gated by its condition: its snapshot is taken after
 *     statement 1 got every lock, so each check sees every commit made under them.
 * Each check is a LATERAL probe per query item (and per part of the position; an EXISTS here may be
 * planned as one hash of a whole table), written for the item's shape: an item with tags looks up
 * its first tag in message_tags (every match carries it) and filters on type and the other tags; an
 * item without tags reads the log after the position. Nothing is inserted unless the transaction
 * is READ COMMITTED (the check is only sound then).
 *
 * One append (buildOne) gets one row: whether the transaction is READ COMMITTED, whether its
 * condition failed and, if its message was inserted, its position. A batch (buildBatch) takes one
 * row per append from unnest(), every parameter an array with one element per append, and returns
 * only what it inserted, with its snapshot: reporting every append's outcome from the one statement
 * (a CTE of the checked rows joined back to the inserted ones, or a second branch for the rest) cost
 * a tenth of the statement's server time at 10 writers (bench/README, session 20), and an append
 * that was not inserted is rare. Which of its checks failed, its condition or its version, is read
 * afterwards in that snapshot (conflictSql): while the batch held its locks no message its condition
 * matches could commit, and one committed since is not in it. (Retention deleting that match in
 * the meantime would make the append read as a version failure; refused either way.) A batch's
 * appends have the same shape and no conflicting locks, so no append's check can be about another
 * one's message.
 */

export const locksSql = (ctx: SqlContext) => `SELECT ${takeLocksSql(ctx.s, '$1::text[]', '$2::int')}`;

/*
 * A batch's lock statement also sets how the batch's INSERT that follows it is planned
 * (src/db/planSettings.ts): its generic plan, made once per connection, index lookups only. Left to
 * choose, the server planned that INSERT afresh at every execution whenever batches were small
 * (unnest() of its arrays is estimated at 100 rows, so the generic plan looked dearer than one made
 * for arrays of two or three): at 3 writers every batch, 0 generic plans of about 3,300. Only
 * batches take it: they run on the store's pool in a transaction of their own, while a single
 * conditional append may run inside the caller's transaction, whose later statements the setting
 * would reach.
 */
export const batchLocksSql = (ctx: SqlContext) =>
  `SELECT ${GENERIC_INDEX_PLANS}, ${takeLocksSql(ctx.s, '$1::text[]', '$2::int')}`;

/** What the decision saw: nothing, a log position, or a read snapshot (its xmax and xip). */
export type After =
  | { kind: 'none' }
  | { kind: 'position'; transactionId: string; globalPosition: number }
  | { kind: 'snapshot'; xmax: string; xip: string[] };

/** xmax and the in-progress ids of a pg_snapshot text ("xmin:xmax:xip,..."). */
export function snapshotBounds(snapshot: string): { xmax: string; xip: string[] } {
  const [, xmax = '0', xip = ''] = snapshot.split(':');
  return { xmax, xip: xip === '' ? [] : xip.split(',') };
}

interface CachedStatement {
  /** Statement name suffix, unique per shape. */
  name: string;
  text: string;
}

const cache = new Map<string, CachedStatement>();

/** The statement cached under `key`, built (and named `prefix` + a number) on first use. */
function cachedStatement(key: string, prefix: string, build: () => string): CachedStatement {
  let found = cache.get(key);
  if (!found) {
    found = { name: `${prefix}_${cache.size}`, text: build() };
    cache.set(key, found);
  }
  return found;
}

function itemShape(item: QueryItem): string {
  const tags = item.tags?.length ?? 0;
  return `${item.types?.length ? 'T' : ''}${tags === 0 ? '' : tags === 1 ? 'g' : 'G'}`;
}

/** The shape key: appends with the same key share a statement (and may share a batch). */
export function gatedShape(tagged: boolean, after: After['kind'], items: readonly QueryItem[]): string {
  return `${tagged ? 't' : 'u'}|${after}|${items.map(itemShape).join(',')}`;
}

/**
 * The gated INSERT for this shape, for one append (its read_committed, conflict, global_position,
 * transaction_id) or for a batch (see buildBatch), cached per schema, shape and kind.
 */
export function gatedInsert(
  ctx: SqlContext,
  tagged: boolean,
  after: After['kind'],
  items: readonly QueryItem[],
  batch: boolean,
): CachedStatement {
  const key = `${ctx.s}|${batch ? 'b' : '1'}|${gatedShape(tagged, after, items)}`;
  return cachedStatement(key, 'cond_insert', () =>
    (batch ? buildBatch : buildOne)(ctx, tagged, after, items),
  );
}

/**
 * The condition's checks, one `SELECT true AS hit ... LIMIT 1` per query item (and per part of
 * the position), in gatedRowValues()'s parameter order: `param(type)` names each parameter, a
 * scalar for one append, a column of the unnest()ed rows for a batch. With `visibleIn` (a
 * pg_snapshot expression), only messages visible in that snapshot count.
 */
function probes(
  ctx: SqlContext,
  after: After['kind'],
  items: readonly QueryItem[],
  param: (type: string) => string,
  visibleIn?: string,
): string[] {
  let parts: ((x: string) => string)[] = [() => ''];
  if (after === 'position') {
    const [xid, gp] = [param('xid8'), param('bigint')];
    parts = [(x) => ` AND (${x}.transaction_id, ${x}.global_position) > (${xid}, ${gp})`];
  } else if (after === 'snapshot') {
    const [xmax, xip] = [param('xid8'), param('text')];
    parts = [
      (x) => ` AND ${x}.transaction_id >= ${xmax}`,
      (x) => ` AND ${x}.transaction_id = ANY(string_to_array(${xip}, ',')::xid8[])`,
    ];
  }
  const found: string[] = [];
  for (const item of items) {
    const types = item.types?.length ? param('text') : undefined;
    const tags = item.tags ?? [];
    const first = tags.length > 0 ? param('text') : undefined;
    const all = tags.length > 1 ? param('text') : undefined;
    const typeFilter = (x: string) =>
      types ? ` AND ${x}.type = ANY(string_to_array(${types}, chr(31)))` : '';
    for (const position of parts) {
      const part = visibleIn
        ? (x: string) => `${position(x)} AND pg_visible_in_snapshot(${x}.transaction_id, ${visibleIn})`
        : position;
      if (first)
        found.push(`SELECT true AS hit FROM ${ctx.s}.message_tags t${
          all
            ? ` JOIN ${ctx.s}.messages m ON m.global_position = t.global_position AND m.tags @> string_to_array(${all}, chr(31))`
            : ''
        }
          WHERE t.tag = ${first}${part('t')}${typeFilter('t')} LIMIT 1`);
      else
        found.push(
          `SELECT true AS hit FROM ${ctx.s}.messages m WHERE true${part('m')}${typeFilter('m')} LIMIT 1`,
        );
    }
  }
  return found;
}

/** Whether any of the probes finds a message (false without probes). */
const anyMatch = (checks: string[]) =>
  checks.length ? checks.map((c) => `EXISTS (${c})`).join('\n      OR ') : 'false';

const READ_COMMITTED = `current_setting('transaction_isolation') = 'read committed'`;
const RESULT = `${READ_COMMITTED} AS read_committed`;

/** One append: scalar parameters, the checks as EXISTS, the store's probe of the stream's head. */
function buildOne(
  ctx: SqlContext,
  tagged: boolean,
  after: After['kind'],
  items: readonly QueryItem[],
): string {
  let n = 7;
  const checks = probes(ctx, after, items, (type) => `$${++n}::${type}`);
  return `WITH gate AS (
  SELECT ${RESULT}, ${anyMatch(checks)} AS conflict
), inserted AS (
  INSERT INTO ${ctx.s}.messages (id, stream_name, stream_position, type, data, metadata, tags)
  SELECT $1::uuid, $2::text, $3::bigint + 1, $4::text, $5::jsonb, $6::jsonb,
         ${splitTagsSql('$7::text')}
    FROM gate
   WHERE gate.read_committed AND NOT gate.conflict AND ${headSql(ctx, '$2::text')} = $3::bigint
  RETURNING global_position, transaction_id, type, tags
)${tagged ? `, ${taggedCte(ctx)}` : ''}
SELECT gate.read_committed, gate.conflict, i.global_position, i.transaction_id::text
  FROM gate LEFT JOIN inserted i ON true`;
}

/**
 * A batch: one row per append from unnest(), each check a LATERAL probe per row. Returns a row per
 * inserted message (id, global_position, transaction_id), each with whether the transaction is READ
 * COMMITTED and the statement's snapshot (pg_current_snapshot()), or one row of those two alone when
 * nothing was inserted.
 */
function buildBatch(
  ctx: SqlContext,
  tagged: boolean,
  after: After['kind'],
  items: readonly QueryItem[],
): string {
  const arrays = [
    '$1::uuid[]',
    '$2::text[]',
    '$3::bigint[]',
    '$4::text[]',
    '$5::jsonb[]',
    '$6::jsonb[]',
    '$7::text[]',
  ];
  const names = ['id', 'stream_name', 'n', 'type', 'data', 'metadata', 'tags'];
  const found = probes(ctx, after, items, (type) => {
    arrays.push(`$${arrays.length + 1}::${type}[]`);
    names.push(`c${arrays.length}`);
    return `u.c${arrays.length}`;
  });
  const laterals = found.map((p, i) => `\n    LEFT JOIN LATERAL (${p}) k${i} ON true`).join('');
  const noMatch = found.map((_, i) => ` AND k${i}.hit IS NULL`).join('');
  return `WITH inserted AS (
  INSERT INTO ${ctx.s}.messages (id, stream_name, stream_position, type, data, metadata, tags)
  SELECT u.id, u.stream_name, u.n + 1, u.type, u.data, u.metadata,
         ${splitTagsSql('u.tags')}
    FROM unnest(${arrays.join(', ')}) WITH ORDINALITY AS u(${names.join(', ')}, ord)${laterals}
   WHERE ${READ_COMMITTED}${noMatch} AND ${headSql(ctx, 'u.stream_name')} = u.n
   ORDER BY u.ord
  ON CONFLICT (stream_name, stream_position) DO NOTHING
  RETURNING id, global_position, transaction_id, type, tags
)${tagged ? `, ${taggedCte(ctx)}` : ''}
SELECT s.read_committed, s.snapshot, i.id, i.global_position, i.transaction_id::text
  FROM (SELECT ${READ_COMMITTED} AS read_committed, pg_current_snapshot()::text AS snapshot) s
  LEFT JOIN inserted i ON true`;
}

/**
 * One append's condition as it was in a batch's snapshot ($1, the text of a pg_snapshot): true when
 * a message it matches is visible in that snapshot. Its other parameters are gatedRowValues()'.
 */
export function conflictSql(
  ctx: SqlContext,
  after: After['kind'],
  items: readonly QueryItem[],
): CachedStatement {
  return cachedStatement(`${ctx.s}|check|${gatedShape(false, after, items)}`, 'cond_check', () => {
    let n = 1;
    const checks = probes(ctx, after, items, (type) => `$${++n}::${type}`, '$1::pg_snapshot');
    return `SELECT ${anyMatch(checks)} AS conflict`;
  });
}

/** One append's condition parameters, in probes()'s order. */
export function gatedRowValues(after: After, items: readonly QueryItem[]): unknown[] {
  const values: unknown[] = [];
  if (after.kind === 'position') values.push(after.transactionId, after.globalPosition);
  else if (after.kind === 'snapshot') values.push(after.xmax, after.xip.join(','));
  for (const item of items) {
    if (item.types?.length) values.push(item.types.join(TAG_SEPARATOR_CHAR));
    const tags = item.tags ?? [];
    if (tags.length > 0) values.push(tags[0]);
    if (tags.length > 1) values.push(tags.join(TAG_SEPARATOR_CHAR));
  }
  return values;
}
