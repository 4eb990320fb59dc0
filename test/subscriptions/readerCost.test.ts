import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResolvedGroup } from '../../src/config/types.js';
import { escapeIdentifier } from '../../src/db/identifier.js';
import type { Queryable, SqlContext } from '../../src/db/queryable.js';
import { readableUpTo } from '../../src/store/readLog.js';
import { ROUND_SETTINGS, roundStatement } from '../../src/subscriptions/globalReader.js';
import { registerSubscriptions } from '../../src/subscriptions/registerSubscriptions.js';
import { cachedPlanBuffers } from '../helpers/cachedPlanBuffers.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';
import { configWith } from './helpers.js';

/*
 * The global reader's round runs every time the group is woken, so its cost must not grow with the
 * log: it reads from the group's position through the log index, and asks the index (not the table)
 * whether committed messages wait behind a running transaction. An EXISTS on `transaction_id >= xmin` was
 * planned as a scan of the whole messages table when nothing waited: the common case.
 */
let db: TestDb;
let ctx: SqlContext;
const LOG = 50_000;

beforeAll(async () => {
  db = await setupDb('readercost');
  ctx = { schema: db.schema, s: escapeIdentifier(db.schema), prepared: false };
  await db.pool.query(
    `INSERT INTO ${ctx.s}.messages (id, stream_name, stream_position, type, data)
     SELECT gen_random_uuid(), 'p-' || (i % 1000), i / 1000 + 1, 'T', '{}'::jsonb
       FROM generate_series(0, ${LOG - 1}) i`,
  );
  // No ANALYZE: a log that grew since autovacuum last analyzed it, where the old EXISTS was planned
  // as a sequential scan (717 buffers here, against 4 with statistics).
});
afterAll(async () => {
  await db?.close();
});

interface PlanNode {
  'Shared Hit Blocks': number;
  'Shared Read Blocks': number;
}

/** A group of one subscription to every stream, untyped or typed, at the head of the log. */
async function groupAtHead(typed: boolean): Promise<ResolvedGroup> {
  const config = configWith(db.schema, {
    [typed ? 'typed' : 'untyped']: { ...(typed ? { types: ['T'] } : {}), handler: () => undefined },
  });
  const group = { ...config.groups.get('G')!, name: typed ? 'GT' : 'GU' };
  await registerSubscriptions(db.pool, ctx, group);
  await db.pool.query(
    `UPDATE ${ctx.s}.subscriptions s SET status = 'active', log_transaction_id = h.transaction_id,
            log_position = h.global_position
       FROM (SELECT transaction_id, global_position FROM ${ctx.s}.messages
              ORDER BY transaction_id DESC, global_position DESC LIMIT 1) h
      WHERE s.group_name = $1`,
    [group.name],
  );
  return group;
}

/** A reader round at the head of the log, under EXPLAIN (ANALYZE, BUFFERS): buffers touched. */
async function roundBuffers(typed: boolean): Promise<{ buffers: number; read: number; held: boolean }> {
  const round = roundStatement(ctx, await groupAtHead(typed), 'cost', 1000);
  const result = await db.pool.query<{ read: number; held: boolean }>(round.text, round.values);
  const r = await db.pool.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${round.text}`, round.values);
  const plan = (r.rows[0] as { 'QUERY PLAN': { Plan: PlanNode }[] })['QUERY PLAN'][0]!.Plan;
  return {
    buffers: plan['Shared Hit Blocks'] + plan['Shared Read Blocks'],
    read: result.rows[0]!.read,
    held: result.rows[0]!.held,
  };
}

describe('reader cost', () => {
  it(`reads the head of a ${LOG}-message log through a few index pages, untyped and typed`, async () => {
    for (const typed of [false, true]) {
      const { buffers, read, held } = await roundBuffers(typed);
      expect(read).toBe(0);
      // (held may be true here: another test's open transaction elsewhere in the cluster.)
      void held;
      // A few index and heap pages, not the hundreds holding the log.
      expect(buffers, `${buffers} buffers (typed: ${typed})`).toBeLessThan(30);
    }
  });

  it('a round far behind reads its batch through the log index, not the whole log after it', async () => {
    const config = configWith(db.schema, { behind: { handler: () => undefined } });
    const group = { ...config.groups.get('G')!, name: 'GB' };
    await registerSubscriptions(db.pool, ctx, group);
    const round = roundStatement(ctx, group, 'cost', 10);
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(ROUND_SETTINGS);
      const r = await client.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${round.text}`, round.values);
      const plan = (r.rows[0] as { 'QUERY PLAN': { Plan: PlanNode }[] })['QUERY PLAN'][0]!.Plan;
      const buffers = plan['Shared Hit Blocks'] + plan['Shared Read Blocks'];
      // Ten messages read and ten checkpoints created: tens of pages, not the log's hundreds.
      expect(buffers, `${buffers} buffers`).toBeLessThan(150);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it('still says held when a committed message waits behind a running transaction', async () => {
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_current_xact_id()');
      await db.store.append('late-1', { type: 'T', data: {} });
      const { buffers, read, held } = await roundBuffers(false);
      expect(held).toBe(true);
      expect(read).toBe(0);
      expect(buffers, `${buffers} buffers`).toBeLessThan(30);
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
  });

  it("the lag snapshot's readable position reads the entries after xmin, not the log", async () => {
    // Another test file's transaction that began before this log was written (the embedded server
    // is shared) holds xmin at or before it: every entry is then after xmin, and reading them all is
    // right. Wait for those to end: the figure is about a log that is all behind xmin.
    await until(async () => {
      const { rows } = await db.pool.query<{ past: boolean }>(
        `SELECT pg_snapshot_xmin(pg_current_snapshot()) >
                (SELECT transaction_id FROM ${ctx.s}.messages ORDER BY transaction_id DESC LIMIT 1) AS past`,
      );
      return rows[0]!.past;
    }, 'the transactions older than this log to end');
    let plan: PlanNode | undefined;
    const explaining = {
      query: async (text: string) => {
        const r = await db.pool.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`);
        plan = (r.rows[0] as { 'QUERY PLAN': { Plan: PlanNode }[] })['QUERY PLAN'][0]!.Plan;
        return { ...r, rows: [] };
      },
    } as unknown as Queryable;
    await readableUpTo(explaining, ctx);
    const buffers = plan!['Shared Hit Blocks'] + plan!['Shared Read Blocks'];
    expect(buffers, `${buffers} buffers`).toBeLessThan(30);
    expect(await readableUpTo(db.pool, ctx)).toBeGreaterThan(0);
  });
});

describe('a round planned while the log was empty', () => {
  // A worker's round is a prepared statement: the server caches its generic plan, made once, on
  // the table sizes of that moment, and keeps it until the next ANALYZE. Made on an empty log it
  // read the log CTE through a sequential scan and a sort, so every round then read the whole log
  // (the benchmarks' fresh schemas: a round slowed down as the log grew).
  it('still reads a grown log through the log index', async () => {
    const fresh = await setupDb('readerplan');
    const client = await fresh.pool.connect();
    try {
      const fctx: SqlContext = { schema: fresh.schema, s: escapeIdentifier(fresh.schema), prepared: true };
      // No statistics until the end of the test: an analyze would replace the cached plan.
      await fresh.pool.query(`ALTER TABLE ${fctx.s}.messages SET (autovacuum_enabled = off)`);
      const config = configWith(fresh.schema, { fromEmpty: { handler: () => undefined } });
      const group = config.groups.get('G')!;
      await registerSubscriptions(fresh.pool, fctx, group);
      const round = roundStatement(fctx, group, 'plan', 10);
      // The generic plan, made now, on the empty log (after the round's settings, as in a worker).
      await client.query('SET plan_cache_mode = force_generic_plan');
      await client.query('BEGIN');
      await client.query(ROUND_SETTINGS);
      await client.query(round);
      await client.query('ROLLBACK');
      await fresh.pool.query(
        `INSERT INTO ${fctx.s}.messages (id, stream_name, stream_position, type, data)
         SELECT gen_random_uuid(), 'q-' || (i % 1000), i / 1000 + 1, 'T', '{}'::jsonb
           FROM generate_series(0, ${LOG - 1}) i`,
      );
      const buffers = await cachedPlanBuffers(client, ROUND_SETTINGS, round);
      // Ten messages read and ten checkpoints created: about a hundred pages, not the log's 700.
      expect(buffers, `${buffers} buffers`).toBeLessThan(300);
    } finally {
      client.release();
      await fresh.close();
    }
  });
});
