import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conditionLockKeys, messageLockKeys } from '../../src/consistency/lockKeys.js';
import { Query } from '../../src/consistency/query.js';
import { readForDecision, readStoreByQuery } from '../../src/consistency/readByQuery.js';
import { InvalidInputError, NotFoundError } from '../../src/errors.js';
import type { RecordedMessage } from '../../src/store/types.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('dcb_query', { poolSize: 4 });
  const s = db.store;
  await s.append('course-1', { type: 'course_defined', data: { n: 1 }, tags: ['course:1'] });
  await s.append('course-1', { type: 'student_subscribed', data: { n: 2 }, tags: ['course:1', 'student:a'] });
  await s.append('course-2', { type: 'course_defined', data: { n: 3 }, tags: ['course:2'] });
  await s.append('course-2', { type: 'student_subscribed', data: { n: 4 }, tags: ['course:2', 'student:a'] });
  await s.append('course-2', { type: 'student_subscribed', data: { n: 5 }, tags: ['course:2', 'student:b'] });
  await s.append('misc-1', { type: 'untagged', data: { n: 6 } });
});
afterAll(async () => {
  await db?.close();
});

const ns = (ms: RecordedMessage[]) => ms.map((m) => (m.data as { n: number }).n);

/** Gap-safe reads wait for every older open transaction in the cluster: poll until settled. */
async function readSettled(query: Query, opts: Parameters<typeof readStoreByQuery>[2] = {}, expected = 1) {
  let r = await readStoreByQuery(db.store, query, opts);
  for (let i = 0; i < 600 && r.messages.length < expected; i++) {
    await new Promise((res) => setTimeout(res, 50));
    r = await readStoreByQuery(db.store, query, opts);
  }
  return r;
}

describe('Query', () => {
  it('matches with dcb.events semantics: types OR, tags AND, items OR, no items = all', async () => {
    const cases: [Query, number[]][] = [
      [Query.all(), [1, 2, 3, 4, 5, 6]],
      [Query.of({ types: ['course_defined'] }), [1, 3]],
      [Query.of({ types: ['course_defined', 'untagged'] }), [1, 3, 6]],
      [Query.of({ tags: ['student:a'] }), [2, 4]],
      [Query.of({ tags: ['course:2', 'student:a'] }), [4]],
      [Query.of({ types: ['student_subscribed'], tags: ['course:2'] }), [4, 5]],
      [Query.of({ types: ['course_defined'], tags: ['course:1'] }, { tags: ['student:b'] }), [1, 5]],
      [Query.of({}), [1, 2, 3, 4, 5, 6]],
      [Query.of({ tags: ['course:3'] }), []],
    ];
    for (const [query, expected] of cases) {
      const decided = await readForDecision(db.store, query);
      expect({ query: query.toString(), got: ns(decided.messages) }).toEqual({
        query: query.toString(),
        got: expected,
      });
      // The in-memory matcher agrees with the database.
      const all = await readForDecision(db.store, Query.all());
      expect(ns(all.messages.filter((m) => query.matches(m)))).toEqual(expected);
      if (expected.length > 0) {
        const read = await readSettled(query, {}, expected.length);
        expect(ns(read.messages)).toEqual(expected);
      }
    }
  });

  it('pages with after and limit, continuing from the returned position', async () => {
    const q = Query.of({ types: ['student_subscribed', 'untagged'] });
    const first = await readSettled(q, { limit: 2 }, 2);
    expect(ns(first.messages)).toEqual([2, 4]);
    const rest = await readSettled(q, { after: first.position }, 2);
    expect(ns(rest.messages)).toEqual([5, 6]);
    const byNumber = await readSettled(q, { after: first.position.globalPosition }, 2);
    expect(ns(byNumber.messages)).toEqual([5, 6]);
    const end = await readStoreByQuery(db.store, q, { after: rest.position });
    expect(end.messages).toEqual([]);
    expect(end.position).toEqual(rest.position);
    await expect(readStoreByQuery(db.store, q, { after: 999_999 })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('readByQuery is gap-safe; readForDecision returns what is committed, with its snapshot', async () => {
    const q = Query.of({ tags: ['gap:1'] });
    const open = await db.client();
    await open.query('BEGIN');
    await open.query('SELECT pg_current_xact_id()');
    // Committed after the open transaction started, so it must wait behind it in the log.
    await db.store.append('gap-1', { type: 'later', data: { n: 8 }, tags: ['gap:1'] });
    const safe = await readStoreByQuery(db.store, q);
    expect(safe.messages).toEqual([]);
    const decided = await readForDecision(db.store, q);
    expect(ns(decided.messages)).toEqual([8]);
    expect(decided.snapshot).toMatch(/^\d+:\d+:/);
    await open.query('COMMIT');
    expect(ns((await readSettled(q)).messages)).toEqual([8]);
  });

  it('readForDecision pages within one snapshot, and reads only what an earlier read did not see', async () => {
    const q = Query.of({ tags: ['page:1'] });
    for (let i = 0; i < 5; i++)
      await db.store.append('page-1', { type: 'p', data: { n: 10 + i }, tags: ['page:1'] });
    const all = await readForDecision(db.store, q, { pageSize: 2 });
    expect(ns(all.messages)).toEqual([10, 11, 12, 13, 14]);
    await db.store.append('page-1', { type: 'p', data: { n: 15 }, tags: ['page:1'] });
    const tail = await readForDecision(db.store, q, { since: all.snapshot, pageSize: 2 });
    expect(ns(tail.messages)).toEqual([15]);
  });

  it('refuses malformed queries', () => {
    expect(() => Query.of()).toThrow(InvalidInputError);
    expect(() => Query.of({ tags: [''] })).toThrow(InvalidInputError);
    expect(() => Query.of({ types: 'x' as unknown as string[] })).toThrow(InvalidInputError);
  });

  it('lock keys: a condition and every message it matches share a key', () => {
    const messages = [
      { type: 'a', tags: ['x:1', 'y:2'] },
      { type: 'b', tags: ['x:1'] },
      { type: 'a', tags: [] },
      { type: 'c', tags: ['y:2', 'z:3'] },
    ];
    const queries = [
      Query.all(),
      Query.of({ types: ['a'] }),
      Query.of({ tags: ['x:1'] }),
      Query.of({ types: ['a', 'c'], tags: ['y:2'] }),
      Query.of({ types: ['b'], tags: ['x:1', 'q:9'] }, { tags: ['z:3', 'y:2'] }),
      Query.of({}),
    ];
    for (const q of queries) {
      const locked = new Set(conditionLockKeys(q));
      for (const m of messages) {
        const shares = messageLockKeys(m).some((k) => locked.has(k));
        if (q.matches(m))
          expect({ q: q.toString(), m, shares }).toEqual({ q: q.toString(), m, shares: true });
      }
    }
    // Disjoint conditions take disjoint keys.
    const c1 = conditionLockKeys(Query.of({ types: ['s'], tags: ['course:1'] }));
    const c2 = conditionLockKeys(Query.of({ types: ['s'], tags: ['course:2'] }));
    expect(c1.filter((k) => c2.includes(k))).toEqual([]);
  });
});
