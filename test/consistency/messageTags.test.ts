import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { Query } from '../../src/consistency/query.js';
import { readByQuery } from '../../src/consistency/readByQuery.js';
import { migrate } from '../../src/db/migrate.js';
import { loadMigrations } from '../../src/db/migrations.js';
import { createPool } from '../../src/db/pool.js';
import { AppendConditionFailedError } from '../../src/errors.js';
import { createMessageStore } from '../../src/store/messageStore.js';
import { databaseUrl, setupDb, type TestDb, uniqueSchema } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('dcb_tags', { poolSize: 4 });
});
afterAll(async () => {
  await db?.close();
});

/** message_tags as it is, and as messages.tags says it must be: one row per (message, distinct tag). */
async function tagRows(schema: string, pool = db.pool) {
  const actual = await pool.query<{ r: string }>(
    `SELECT t.global_position || ' ' || t.tag || ' ' || t.type || ' ' || (t.transaction_id = m.transaction_id) AS r
       FROM "${schema}".message_tags t LEFT JOIN "${schema}".messages m USING (global_position)
      ORDER BY 1`,
  );
  const expected = await pool.query<{ r: string }>(
    `SELECT DISTINCT m.global_position || ' ' || g.tag || ' ' || m.type || ' true' AS r
       FROM "${schema}".messages m CROSS JOIN LATERAL unnest(m.tags) AS g(tag) ORDER BY 1`,
  );
  return { actual: actual.rows.map((r) => r.r), expected: expected.rows.map((r) => r.r) };
}

describe('message_tags', () => {
  it('holds one row per message and distinct tag for every write path, and loses them on delete', async () => {
    const m = (n: number, tags: string[]) => ({ type: `t${n}`, data: { n }, tags });
    await db.store.append('tags-1', m(1, ['a:1', 'b:2']), { expectedVersion: 'no_stream' }); // single INSERT
    await db.store.append('tags-1', [m(2, ['a:1']), m(3, ['a:1', 'a:1'])]); // append_to_stream, any
    await db.store.append('tags-2', m(4, [])); // untagged
    await db.store.appendMultiple([
      { stream: 'tags-3', messages: m(5, ['c:3']) },
      { stream: 'tags-4', messages: [m(6, ['c:3', 'd:4']), m(7, [])], expectedVersion: 'no_stream' },
    ]);
    await appendWithCondition(db.store, [{ stream: 'tags-5', messages: m(8, ['e:5']), expectedVersion: 0 }], {
      failIfEventsMatch: Query.of({ tags: ['e:5'] }),
    }); // the function's own single-message insert
    await appendWithCondition(db.store, [
      { stream: 'tags-6', messages: [m(9, ['f:6']), m(10, ['f:6', 'g:7'])] },
      { stream: 'tags-7', messages: m(11, ['f:6']) },
    ]); // append_to_stream per stream
    const before = await tagRows(db.schema);
    expect(before.actual).toEqual(before.expected);
    expect(before.actual).toHaveLength(12);

    await db.pool.query(`DELETE FROM "${db.schema}".messages WHERE stream_name IN ('tags-1', 'tags-6')`);
    const after = await tagRows(db.schema);
    expect(after.actual).toEqual(after.expected);
    expect(after.actual).toHaveLength(5);
  });

  it('is filled from the existing messages when the migration runs, and conditions then see them', async () => {
    const schema = uniqueSchema('dcb_tags_upgrade');
    const pool = createPool(databaseUrl(), { max: 2 });
    try {
      const all = loadMigrations();
      await migrate(
        pool,
        schema,
        all.filter((x) => x.version < 7),
      );
      await pool.query(
        `SELECT * FROM "${schema}".append_to_stream('old-1', 0, ARRAY[gen_random_uuid()], ARRAY['seat_taken'],
           ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], ARRAY['course:c1' || chr(31) || 'student:s1'])`,
      );
      const upgraded = (await migrate(pool, schema)).applied.map((x) => x.version);
      expect(upgraded).toEqual(all.filter((x) => x.version >= 7).map((x) => x.version));
      const rows = await tagRows(schema, pool);
      expect(rows.actual).toEqual(rows.expected);
      expect(rows.actual).toHaveLength(2);

      const store = createMessageStore({ pool, schema });
      const query = Query.of({ types: ['seat_taken'], tags: ['student:s1'] });
      // Gap-safe: on a shared server a transaction of another test file can hold it back a while.
      let found: string[] = [];
      await until(async () => {
        found = (await readByQuery(pool, store.sqlContext, query)).messages.map((x) => x.streamName);
        return found.length > 0;
      }, 'the migrated message to be readable');
      expect(found).toEqual(['old-1']);
      const err = await appendWithCondition(
        store,
        [{ stream: 'new-1', messages: { type: 'seat_taken', data: {}, tags: ['student:s1'] } }],
        { failIfEventsMatch: query },
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppendConditionFailedError);
      await store.close();
    } finally {
      await pool.end();
    }
  });

  it('hashes lock keys per schema, in the database, the same for every writer', async () => {
    const id = async (schema: string, key: string) =>
      (
        await db.pool.query<{ id: string }>(
          `SELECT hashtextextended('beckett.dcb:"' || $1 || '":' || $2, 0)::text AS id`,
          [schema, key],
        )
      ).rows[0]!.id;
    const { rows } = await db.pool.query<{ id: string }>(`SELECT "${db.schema}".lock_id($1)::text AS id`, [
      't=seat_taken\u001fg=course:c1',
    ]);
    expect(rows[0]!.id).toBe(await id(db.schema, 't=seat_taken\u001fg=course:c1'));
    expect(await id(db.schema, 'k')).not.toBe(await id('other', 'k'));
    expect(await id(db.schema, 'k')).not.toBe(await id(db.schema, 'k2'));
    // A fixed value: a change of the hash would let old and new writers take different locks.
    expect(await id('beckett', 't=seat_taken\u001fg=course:c1')).toBe('-3328533395354814405');
  });
});
