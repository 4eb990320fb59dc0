import type { SqlContext } from '../db/queryable.js';
import { appendOneSql } from '../store/appendToStream.js';
import type { QueryItem } from './query.js';

/*
 * A conditional append of one message to one stream at an exact version, without plpgsql: two
 * statements sent together (src/db/pipeline.ts), in one transaction.
 *  1. LOCKS takes the advisory locks (lockKeys.ts) in the client's order.
 *  2. The store's single INSERT (appendToStream.ts), gated by the condition: its snapshot is taken
 *     after statement 1 got every lock, so the check sees each commit made under them.
 * The check is one EXISTS per query item (and per part of the position), written for the item's
 * shape: an item with tags looks up its first tag in message_tags (every match carries it) and
 * filters on type and the other tags; an item without tags reads the log after the position. The
 * statement also reports whether the transaction is READ COMMITTED (the check is only sound then)
 * and whether the condition failed; nothing is inserted unless both are as they should be.
 */

export const LOCKS_SQL = `SELECT count(CASE WHEN u.e THEN pg_advisory_xact_lock(u.id) ELSE pg_advisory_xact_lock_shared(u.id) END)
  FROM unnest($1::bigint[], $2::boolean[]) AS u(id, e)`;

/** What the decision saw: nothing, a log position, or a read snapshot (its xmax and xip). */
export type After =
  | { kind: 'none' }
  | { kind: 'position'; transactionId: string; globalPosition: number }
  | { kind: 'snapshot'; xmax: string; xip: string[] };

/** The message's seven parameters come first ($1..$7); the condition's follow from $8. */
const FIRST_PARAM = 8;

interface GatedInsert {
  /** Statement name suffix, unique per shape. */
  name: string;
  text: string;
}

const cache = new Map<string, GatedInsert>();

function itemShape(item: QueryItem): string {
  const tags = item.tags?.length ?? 0;
  return `${item.types?.length ? 'T' : ''}${tags === 0 ? '' : tags === 1 ? 'g' : 'G'}`;
}

/** The gated INSERT for this shape of message, position and query items (cached per shape). */
export function gatedInsert(
  ctx: SqlContext,
  tagged: boolean,
  after: After,
  items: readonly QueryItem[],
): GatedInsert {
  const key = `${ctx.s}|${tagged ? 't' : 'u'}|${after.kind}|${items.map(itemShape).join(',')}`;
  let found = cache.get(key);
  if (!found) {
    found = { name: `cond_one_${cache.size}`, text: build(ctx, tagged, after.kind, items) };
    cache.set(key, found);
  }
  return found;
}

function build(ctx: SqlContext, tagged: boolean, after: After['kind'], items: readonly QueryItem[]): string {
  let n = FIRST_PARAM;
  const param = (cast: string) => `$${n++}::${cast}`;
  // The position predicate(s) on a table alias: a snapshot is two (index-friendly) ranges.
  let parts: ((x: string) => string)[] = [() => ''];
  if (after === 'position') {
    const [xid, gp] = [param('xid8'), param('bigint')];
    parts = [(x) => ` AND (${x}.transaction_id, ${x}.global_position) > (${xid}, ${gp})`];
  } else if (after === 'snapshot') {
    const [xmax, xip] = [param('xid8'), param('xid8[]')];
    parts = [(x) => ` AND ${x}.transaction_id >= ${xmax}`, (x) => ` AND ${x}.transaction_id = ANY(${xip})`];
  }
  const checks: string[] = [];
  for (const item of items) {
    const types = item.types?.length ? param('text[]') : undefined;
    const tags = item.tags ?? [];
    if (tags.length > 0) {
      const first = param('text');
      const all = tags.length > 1 ? param('text[]') : undefined;
      for (const part of parts)
        checks.push(
          `EXISTS (SELECT 1 FROM ${ctx.s}.message_tags t WHERE t.tag = ${first}${part('t')}${
            types ? ` AND t.type = ANY(${types})` : ''
          }${
            all
              ? ` AND EXISTS (SELECT 1 FROM ${ctx.s}.messages m WHERE m.global_position = t.global_position AND m.tags @> ${all})`
              : ''
          })`,
        );
    } else {
      for (const part of parts)
        checks.push(
          `EXISTS (SELECT 1 FROM ${ctx.s}.messages m WHERE ${types ? `m.type = ANY(${types})` : 'true'}${part('m')})`,
        );
    }
  }
  return appendOneSql(ctx, tagged, false, {
    cte: `SELECT current_setting('transaction_isolation') = 'read committed' AS read_committed,
       ${checks.length ? checks.join('\n        OR ') : 'false'} AS conflict`,
    where: 'gate.read_committed AND NOT gate.conflict',
    select: `SELECT gate.read_committed, gate.conflict, i.global_position, i.transaction_id::text
      FROM gate LEFT JOIN inserted i ON true`,
  });
}

/** The condition's parameters, in the order build() numbers them. */
export function gatedInsertValues(after: After, items: readonly QueryItem[]): unknown[] {
  const values: unknown[] = [];
  if (after.kind === 'position') values.push(after.transactionId, after.globalPosition);
  else if (after.kind === 'snapshot') values.push(after.xmax, after.xip);
  for (const item of items) {
    if (item.types?.length) values.push(item.types);
    const tags = item.tags ?? [];
    if (tags.length > 0) values.push(tags[0]);
    if (tags.length > 1) values.push(tags);
  }
  return values;
}

/** xmax and the in-progress ids of a pg_snapshot text ("xmin:xmax:xip,..."). */
export function snapshotBounds(snapshot: string): { xmax: string; xip: string[] } {
  const [, xmax = '0', xip = ''] = snapshot.split(':');
  return { xmax, xip: xip === '' ? [] : xip.split(',') };
}

/*
 * The same for a batch of such appends (group commit, conditionalBatcher.ts): one row per append
 * from unnest(), every condition parameter an array with one element per append, each check a
 * LATERAL probe per row (an EXISTS here may be planned as one hash of a whole table), and per row
 * whether its condition failed and, if it was inserted, its position. The batch's appends have the
 * same shape and no conflicting locks, so no append's check can be about another one's message.
 */
const batchCache = new Map<string, GatedInsert>();

export function gatedBatchInsert(
  ctx: SqlContext,
  tagged: boolean,
  after: After['kind'],
  items: readonly QueryItem[],
): GatedInsert {
  const key = `${ctx.s}|${tagged ? 't' : 'u'}|${after}|${items.map(itemShape).join(',')}`;
  let found = batchCache.get(key);
  if (!found) {
    found = { name: `cond_batch_${batchCache.size}`, text: buildBatch(ctx, tagged, after, items) };
    batchCache.set(key, found);
  }
  return found;
}

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
  const column = (cast: string) => {
    arrays.push(`$${arrays.length + 1}::${cast}`);
    const name = `c${arrays.length}`;
    names.push(name);
    return `u.${name}`;
  };
  let parts: ((x: string) => string)[] = [() => ''];
  if (after === 'position') {
    const [xid, gp] = [column('xid8[]'), column('bigint[]')];
    parts = [(x) => ` AND (${x}.transaction_id, ${x}.global_position) > (${xid}, ${gp})`];
  } else if (after === 'snapshot') {
    const [xmax, xip] = [column('xid8[]'), column('text[]')];
    parts = [
      (x) => ` AND ${x}.transaction_id >= ${xmax}`,
      (x) => ` AND ${x}.transaction_id = ANY(string_to_array(${xip}, ',')::xid8[])`,
    ];
  }
  const probes: string[] = [];
  for (const item of items) {
    const types = item.types?.length ? column('text[]') : undefined;
    const tags = item.tags ?? [];
    const first = tags.length > 0 ? column('text[]') : undefined;
    const all = tags.length > 1 ? column('text[]') : undefined;
    for (const part of parts) {
      if (first)
        probes.push(`SELECT true AS hit FROM ${ctx.s}.message_tags t${
          all
            ? ` JOIN ${ctx.s}.messages m ON m.global_position = t.global_position AND m.tags @> string_to_array(${all}, chr(31))`
            : ''
        }
          WHERE t.tag = ${first}${part('t')}${types ? ` AND t.type = ANY(string_to_array(${types}, chr(31)))` : ''} LIMIT 1`);
      else
        probes.push(
          `SELECT true AS hit FROM ${ctx.s}.messages m
          WHERE ${types ? `m.type = ANY(string_to_array(${types}, chr(31)))` : 'true'}${part('m')} LIMIT 1`,
        );
    }
  }
  const laterals = probes.map((p, i) => `\n    LEFT JOIN LATERAL (${p}) k${i} ON true`).join('');
  const conflict = probes.length ? probes.map((_, i) => `k${i}.hit IS NOT NULL`).join(' OR ') : 'false';
  return `WITH gate AS (
  SELECT u.*, (${conflict}) AS conflict
    FROM unnest(${arrays.join(', ')}) WITH ORDINALITY AS u(${names.join(', ')}, ord)${laterals}
), inserted AS (
  INSERT INTO ${ctx.s}.messages (id, stream_name, stream_position, type, data, metadata, tags)
  SELECT g.id, g.stream_name, g.n + 1, g.type, g.data, g.metadata,
         CASE WHEN g.tags = '' THEN '{}'::text[] ELSE string_to_array(g.tags, chr(31)) END
    FROM gate g
    LEFT JOIN LATERAL (
      SELECT true AS found FROM ${ctx.s}.messages p
       WHERE p.stream_name = g.stream_name AND p.stream_position = g.n LIMIT 1) p ON true
   WHERE NOT g.conflict AND (g.n = 0 OR p.found)
   ORDER BY g.ord
  ON CONFLICT (stream_name, stream_position) DO NOTHING
  RETURNING id, global_position, transaction_id, type, tags
)${
    tagged
      ? `, tagged AS (
  INSERT INTO ${ctx.s}.message_tags (tag, transaction_id, global_position, type)
  SELECT DISTINCT g.tag, i.transaction_id, i.global_position, i.type
    FROM inserted i CROSS JOIN LATERAL unnest(i.tags) AS g(tag)
)`
      : ''
  }
SELECT current_setting('transaction_isolation') = 'read committed' AS read_committed, g.conflict,
       i.global_position, i.transaction_id::text
  FROM gate g LEFT JOIN inserted i ON i.id = g.id ORDER BY g.ord`;
}

/** One append's condition parameters for the batch statement, in buildBatch()'s order. */
export function gatedBatchRowValues(after: After, items: readonly QueryItem[]): unknown[] {
  const values: unknown[] = [];
  if (after.kind === 'position') values.push(after.transactionId, after.globalPosition);
  else if (after.kind === 'snapshot') values.push(after.xmax, after.xip.join(','));
  for (const item of items) {
    if (item.types?.length) values.push(item.types.join(SEPARATOR));
    const tags = item.tags ?? [];
    if (tags.length > 0) values.push(tags[0]);
    if (tags.length > 1) values.push(tags.join(SEPARATOR));
  }
  return values;
}

const SEPARATOR = '\u001f';

/** The shape key: appends with the same key can share a batch statement. */
export function gatedShape(tagged: boolean, after: After['kind'], items: readonly QueryItem[]): string {
  return `${tagged ? 't' : 'u'}|${after}|${items.map(itemShape).join(',')}`;
}
