import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { Query } from '../../src/consistency/query.js';
import { createPool } from '../../src/db/pool.js';
import { createMessageStore } from '../../src/store/messageStore.js';
import type { LogPosition } from '../../src/store/types.js';
import { setupDb, type TestDb } from '../helpers/db.js';

/*
 * Group-committed batches take their rows from unnest() of array parameters, which the server
 * estimates at 100 rows. With small batches (two or three appends, a few writers), the plan made
 * for the arrays looked cheaper than the generic one, so the server planned the batch statement
 * afresh at every execution: at 3 writers, 0 generic plans of about 3,300. A batch's statement is
 * planned once per connection now (src/db/planSettings.ts).
 */
let db: TestDb;
beforeAll(async () => {
  db = await setupDb('bplans');
});
afterAll(async () => {
  await db?.close();
});

/** Plans of the prepared statements of one connection whose text matches `like`. */
async function plans(pool: import('pg').Pool, like: string) {
  const { rows } = await pool.query<{ generic_plans: string; custom_plans: string }>(
    `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE $1`,
    [like],
  );
  return rows.map((r) => ({ generic: Number(r.generic_plans), custom: Number(r.custom_plans) }));
}

describe('a batch of appends', () => {
  it('plain: its INSERT is planned once per connection, however small the batches', async () => {
    const pool = createPool(db.url, { max: 1 });
    const store = createMessageStore({ pool, schema: db.schema });
    try {
      // Three writers: a lone append, then batches of two; tagged and untagged, one type and two.
      for (let v = 0; v < 12; v++)
        await Promise.all(
          ['a', 'b', 'c'].map((w) =>
            store.append(
              `plan-${w}`,
              { type: v % 2 ? 'Odd' : `Even-${w}`, data: { v }, ...(v % 3 ? { tags: [`w:${w}`] } : {}) },
              { expectedVersion: v },
            ),
          ),
        );
      expect(await store.streamVersion('plan-c')).toBe(12);
      const batches = await plans(pool, '%unnest($1::uuid[]%');
      expect(batches.filter((p) => p.generic + p.custom > 0).length).toBeGreaterThan(1);
      for (const p of batches) expect(p).toMatchObject({ custom: 0 });
      expect(batches.reduce((n, p) => n + p.generic, 0)).toBeGreaterThanOrEqual(10);
    } finally {
      await store.close();
      await pool.end();
    }
  });

  it('conditional: its INSERT is planned once per connection, however small the batches', async () => {
    // One connection: pg_prepared_statements is per session.
    const pool = createPool(db.url, { max: 1 });
    const store = createMessageStore({ pool, schema: db.schema });
    try {
      const last = new Map<string, LogPosition>();
      const one = async (stream: string, version: number) => {
        const tag = `stream:${stream}`;
        const after = last.get(stream);
        const r = await appendWithCondition(
          store,
          [{ stream, messages: { type: 'Seat', data: { version }, tags: [tag] }, expectedVersion: version }],
          { failIfEventsMatch: Query.of({ types: ['Seat'], tags: [tag] }), ...(after ? { after } : {}) },
        );
        last.set(stream, r.position);
      };
      // Three writers: a lone append, then batches of two.
      for (let v = 0; v < 12; v++) await Promise.all(['a', 'b', 'c'].map((w) => one(`seat-${w}`, v)));
      expect(await store.streamVersion('seat-c')).toBe(12);
      const batches = await plans(pool, '%INSERT INTO%WITH ORDINALITY%');
      expect(batches.length).toBeGreaterThan(0);
      for (const p of batches) expect(p).toMatchObject({ custom: 0 });
      expect(batches.reduce((n, p) => n + p.generic, 0)).toBeGreaterThanOrEqual(10);
    } finally {
      await store.close();
      await pool.end();
    }
  });
});
