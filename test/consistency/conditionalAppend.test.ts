import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CourseRuleError,
  defineCourse,
  STUDENT_LIMIT,
  subscribeStudent,
} from '../../examples/courses/courses.js';
import { CommandExecutor } from '../../src/consistency/commandExecutor.js';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { appendLocks } from '../../src/consistency/lockKeys.js';
import { Query } from '../../src/consistency/query.js';
import { readForDecision } from '../../src/consistency/readByQuery.js';
import {
  AppendConditionFailedError,
  InvalidInputError,
  WrongExpectedVersionError,
} from '../../src/errors.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import type { LogPosition, RecordedMessage } from '../../src/store/types.js';
import { databaseUrl, setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('dcb_append', { poolSize: 12 });
});
afterAll(async () => {
  await db?.close();
});

const subscribed = (course: string, student: string) => ({
  type: 'student_subscribed',
  data: { courseId: course, studentId: student },
  tags: [`course:${course}`, `student:${student}`],
});
const onCourse = (course: string) => Query.of({ types: ['student_subscribed'], tags: [`course:${course}`] });

const logPositionOf = (m: RecordedMessage): LogPosition => ({
  transactionId: m.transactionId,
  globalPosition: m.globalPosition,
});

async function count(sql: string, values: unknown[] = []): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(sql.replaceAll('$S', db.schema), values);
  return Number(rows[0]?.n ?? 0);
}

/** Wait (polling, bounded) until the backend of `client` waits for an advisory lock. */
async function waitUntilBlockedOnAdvisoryLock(client: pg.Client): Promise<void> {
  const pid = (client as unknown as { processID: number }).processID;
  for (let i = 0; i < 400; i++) {
    const { rows } = await db.pool.query<{ waiting: boolean }>(
      `SELECT coalesce(bool_or(wait_event_type = 'Lock' AND wait_event = 'advisory'), false) AS waiting
         FROM pg_stat_activity WHERE pid = $1`,
      [pid],
    );
    if (rows[0]?.waiting) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`backend ${pid} never waited for an advisory lock`);
}

describe('appendWithCondition', () => {
  it('appends when nothing matches, and refuses (writing nothing) when a match exists after the position', async () => {
    const store = db.store;
    const first = await appendWithCondition(
      store,
      [{ stream: 'course-a1', messages: subscribed('a1', 's1') }],
      {
        failIfEventsMatch: onCourse('a1'),
      },
    );
    expect(first.streams.get('course-a1')).toMatchObject({ streamVersion: 1 });

    // "after" undefined: no matching message may exist at all.
    await expect(
      appendWithCondition(store, [{ stream: 'course-a1', messages: subscribed('a1', 's2') }], {
        failIfEventsMatch: onCourse('a1'),
      }),
    ).rejects.toBeInstanceOf(AppendConditionFailedError);
    expect(await count(`SELECT count(*) AS n FROM "$S".messages WHERE stream_name = 'course-a1'`)).toBe(1);

    // After what the decision read, the existing message no longer counts.
    const read = await readForDecision(store, onCourse('a1'));
    expect(read.messages).toHaveLength(1);
    await appendWithCondition(store, [{ stream: 'course-a1', messages: subscribed('a1', 's2') }], {
      failIfEventsMatch: onCourse('a1'),
      after: read,
    });
    // The same read again is stale now (the message just appended matches): as a read snapshot,
    // as the log position of the last message read, and as its global position.
    const seen = logPositionOf(read.messages[0]!);
    for (const after of [read, seen, seen.globalPosition]) {
      await expect(
        appendWithCondition(store, [{ stream: 'course-a1', messages: subscribed('a1', 's3') }], {
          failIfEventsMatch: onCourse('a1'),
          after,
        }),
      ).rejects.toBeInstanceOf(AppendConditionFailedError);
    }
    // A matching message on another course or of another type does not count.
    await appendWithCondition(
      store,
      [
        { stream: 'course-a2', messages: subscribed('a2', 's3') },
        { stream: 'notes-a1', messages: { type: 'note_added', data: {}, tags: ['course:a1'] } },
      ],
      { failIfEventsMatch: onCourse('a1'), after: await readForDecision(store, onCourse('a1')) },
    );
    expect(await count(`SELECT count(*) AS n FROM "$S".messages`)).toBe(4);
  });

  it('refuses to run its check inside a REPEATABLE READ transaction', async () => {
    const c = await db.client();
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await expect(
      appendWithCondition(
        db.store,
        [{ stream: 'course-rr', messages: subscribed('rr', 's1') }],
        {
          failIfEventsMatch: onCourse('rr'),
        },
        { db: c },
      ),
    ).rejects.toBeInstanceOf(InvalidInputError);
    await c.query('ROLLBACK');
  });

  it('checks expected versions of several streams atomically', async () => {
    const store = db.store;
    await store.append('acct-x', { type: 'opened', data: {} });
    const err = await appendWithCondition(store, [
      { stream: 'acct-y', messages: { type: 'credited', data: {} }, expectedVersion: 'no_stream' },
      { stream: 'acct-x', messages: { type: 'debited', data: {} }, expectedVersion: 5 },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongExpectedVersionError);
    expect(err).toMatchObject({ stream: 'acct-x', expected: 5, actual: 1 });
    expect(
      await count(`SELECT count(*) AS n FROM "$S".messages WHERE stream_name IN ('acct-x', 'acct-y')`),
    ).toBe(1);
    const ok = await appendWithCondition(store, [
      { stream: 'acct-y', messages: { type: 'credited', data: {} }, expectedVersion: 'no_stream' },
      { stream: 'acct-x', messages: [{ type: 'debited', data: {} }], expectedVersion: 1 },
    ]);
    expect(ok.streams.get('acct-x')?.streamVersion).toBe(2);
    const one = await appendWithCondition(store, [
      { stream: 'acct-x', messages: { type: 'debited', data: {} }, expectedVersion: 1 },
    ]).catch((e: unknown) => e);
    expect(one).toBeInstanceOf(WrongExpectedVersionError);
    expect(one).toMatchObject({ stream: 'acct-x', expected: 1, actual: 2 });
    expect(ok.streams.get('acct-y')?.streamVersion).toBe(1);
  });

  it('sees a match with a lower global position that commits after the decision was read', async () => {
    const store = db.store;
    const q = onCourse('late');
    // T0 gets its transaction id first; T1 then inserts (lower position, higher transaction id);
    // T0 inserts (higher position) and commits. The decider reads T0's message only: T1 is open.
    const t0 = await db.client();
    const t1 = await db.client();
    await t0.query('BEGIN');
    await t0.query('SELECT pg_current_xact_id()');
    await t1.query('BEGIN');
    const low = await appendWithCondition(
      store,
      [{ stream: 'course-late-1', messages: subscribed('late', 'x') }],
      undefined,
      {
        db: t1,
      },
    );
    const high = await appendWithCondition(
      store,
      [{ stream: 'course-late-0', messages: subscribed('late', 'y') }],
      undefined,
      {
        db: t0,
      },
    );
    expect(low.position.globalPosition).toBeLessThan(high.position.globalPosition);
    await t0.query('COMMIT');
    const read = await readForDecision(store, q);
    expect(read.messages.map((m) => m.data)).toEqual([{ courseId: 'late', studentId: 'y' }]);
    await t1.query('COMMIT');
    // "global_position > after" alone would miss T1's message; the read snapshot does not, nor the
    // log position (transaction_id, global_position) a gap-safe read would have stopped at.
    // Both ways of appending: append_with_condition() ('any') and the pipelined single INSERT.
    const seen = logPositionOf(read.messages[0]!);
    for (const expectedVersion of ['any', 'no_stream'] as const) {
      for (const after of [read, seen, seen.globalPosition]) {
        await expect(
          appendWithCondition(
            store,
            [{ stream: 'course-late-2', messages: subscribed('late', 'z'), expectedVersion }],
            { failIfEventsMatch: q, after },
          ),
        ).rejects.toBeInstanceOf(AppendConditionFailedError);
      }
    }
    // A multi-tag item and a type-only item see it too; items that do not match it do not.
    const multi = Query.of({ types: ['student_subscribed'], tags: ['course:late', 'student:x'] });
    const typeOnly = Query.of({ types: ['student_subscribed'] });
    for (const failIfEventsMatch of [multi, typeOnly])
      await expect(
        appendWithCondition(
          store,
          [{ stream: 'course-late-2', messages: subscribed('late', 'z'), expectedVersion: 'no_stream' }],
          { failIfEventsMatch, after: read },
        ),
      ).rejects.toBeInstanceOf(AppendConditionFailedError);
    const ok = await appendWithCondition(
      store,
      [{ stream: 'course-late-2', messages: subscribed('late', 'z'), expectedVersion: 'no_stream' }],
      {
        failIfEventsMatch: Query.of(
          { types: ['student_subscribed'], tags: ['course:late', 'student:nobody'] },
          { types: ['course_defined'] },
          { tags: ['course:other'] },
        ),
        after: read,
      },
    );
    expect(ok.streams.get('course-late-2')?.streamVersion).toBe(1);
  });

  it('does not block appends with disjoint conditions; serialises overlapping ones before checking', async () => {
    const store = db.store;
    const holder = await db.client();
    const waiter = await db.client();
    await holder.query('BEGIN');
    await appendWithCondition(
      store,
      [{ stream: 'course-h1', messages: subscribed('h1', 's1') }],
      {
        failIfEventsMatch: onCourse('h1'),
      },
      { db: holder },
    );

    // Disjoint (another course, another student): completes while the holder's transaction is open.
    await appendWithCondition(store, [{ stream: 'course-h2', messages: subscribed('h2', 'hs2') }], {
      failIfEventsMatch: Query.of(
        { types: ['student_subscribed'], tags: ['course:h2'] },
        { types: ['student_subscribed'], tags: ['student:hs2'] },
      ),
    });
    // Plain writers of other messages of the same type do not block either (shared locks).
    await appendWithCondition(store, [{ stream: 'course-h3', messages: subscribed('h3', 's3') }]);

    // Overlapping: waits for the holder's locks, then sees its commit and fails.
    let settled = false;
    const overlapping = appendWithCondition(
      store,
      [{ stream: 'course-h1', messages: subscribed('h1', 's9') }],
      { failIfEventsMatch: onCourse('h1') },
      { db: waiter },
    ).finally(() => {
      settled = true;
    });
    overlapping.catch(() => undefined);
    await waitUntilBlockedOnAdvisoryLock(waiter);
    expect(settled).toBe(false);
    await holder.query('COMMIT');
    await expect(overlapping).rejects.toBeInstanceOf(AppendConditionFailedError);
    expect(await count(`SELECT count(*) AS n FROM "$S".messages WHERE 'course:h1' = ANY(tags)`)).toBe(1);
  });

  it('a writer whose new message matches a held condition waits for it', async () => {
    const store = db.store;
    const holder = await db.client();
    const writer = await db.client();
    await holder.query('BEGIN');
    // The holder checks "nothing tagged course:w1 of any type" (a tag-only item).
    await appendWithCondition(
      store,
      [{ stream: 'course-w1', messages: { type: 'course_defined', data: {}, tags: ['course:w1'] } }],
      {
        failIfEventsMatch: Query.of({ tags: ['course:w1'] }),
      },
      { db: holder },
    );
    let settled = false;
    const write = appendWithCondition(
      store,
      [{ stream: 'course-w1-x', messages: subscribed('w1', 'q') }],
      undefined,
      {
        db: writer,
      },
    ).finally(() => {
      settled = true;
    });
    await waitUntilBlockedOnAdvisoryLock(writer);
    expect(settled).toBe(false);
    await holder.query('COMMIT');
    await write;
  });
});

describe('one message at an exact version (the single INSERT guarded by the condition)', () => {
  it('waits for an overlapping holder, then sees its commit; disjoint appends pass meanwhile', async () => {
    const store = db.store;
    const holder = await db.client();
    const waiter = await db.client();
    await holder.query('BEGIN');
    await appendWithCondition(
      store,
      [{ stream: 'course-g1', messages: subscribed('g1', 's1'), expectedVersion: 'no_stream' }],
      { failIfEventsMatch: onCourse('g1') },
      { db: holder },
    );
    // Disjoint, exact version: completes while the holder's transaction is open.
    const other = await appendWithCondition(
      store,
      [{ stream: 'course-g2', messages: subscribed('g2', 's2'), expectedVersion: 'no_stream' }],
      { failIfEventsMatch: onCourse('g2') },
    );
    expect(other.streams.get('course-g2')).toMatchObject({ streamVersion: 1 });
    expect(other.position.globalPosition).toBe(other.streams.get('course-g2')?.globalPosition);

    let settled = false;
    const overlapping = appendWithCondition(
      store,
      [{ stream: 'course-g1-b', messages: subscribed('g1', 's9'), expectedVersion: 'no_stream' }],
      { failIfEventsMatch: onCourse('g1') },
      { db: waiter },
    ).finally(() => {
      settled = true;
    });
    overlapping.catch(() => undefined);
    await waitUntilBlockedOnAdvisoryLock(waiter);
    expect(settled).toBe(false);
    await holder.query('COMMIT');
    await expect(overlapping).rejects.toBeInstanceOf(AppendConditionFailedError);
    expect(await count(`SELECT count(*) AS n FROM "$S".messages WHERE 'course:g1' = ANY(tags)`)).toBe(1);
    expect(await count(`SELECT count(*) AS n FROM "$S".message_tags WHERE tag = 'course:g1'`)).toBe(1);
  });

  it('a wrong expected version writes nothing and names the actual version', async () => {
    const store = db.store;
    await appendWithCondition(store, [
      { stream: 'course-v1', messages: subscribed('v1', 'a'), expectedVersion: 0 },
    ]);
    const behind = await appendWithCondition(
      store,
      [{ stream: 'course-v1', messages: subscribed('v1', 'b'), expectedVersion: 3 }],
      { failIfEventsMatch: onCourse('nothing') },
    ).catch((e: unknown) => e);
    expect(behind).toBeInstanceOf(WrongExpectedVersionError);
    expect(behind).toMatchObject({ stream: 'course-v1', expected: 3, actual: 1 });
    const taken = await appendWithCondition(store, [
      { stream: 'course-v1', messages: subscribed('v1', 'c'), expectedVersion: 'no_stream' },
    ]).catch((e: unknown) => e);
    expect(taken).toBeInstanceOf(WrongExpectedVersionError);
    expect(taken).toMatchObject({ stream: 'course-v1', expected: 'no_stream', actual: 1 });
    const next = await appendWithCondition(store, [
      { stream: 'course-v1', messages: subscribed('v1', 'd'), expectedVersion: 1 },
    ]);
    expect(next.streams.get('course-v1')?.streamVersion).toBe(2);
    expect(await count(`SELECT count(*) AS n FROM "$S".messages WHERE stream_name = 'course-v1'`)).toBe(2);
  });

  it('refuses REPEATABLE READ, and works without named prepared statements (PgBouncer)', async () => {
    const c = await db.client();
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await expect(
      appendWithCondition(
        db.store,
        [{ stream: 'course-rr1', messages: subscribed('rr1', 's1'), expectedVersion: 'no_stream' }],
        { failIfEventsMatch: onCourse('rr1') },
        { db: c },
      ),
    ).rejects.toBeInstanceOf(InvalidInputError);
    await c.query('ROLLBACK');
    expect(await count(`SELECT count(*) AS n FROM "$S".messages WHERE stream_name = 'course-rr1'`)).toBe(0);

    const unnamed = createMessageStore({ pool: db.pool, schema: db.schema, preparedStatements: false });
    const first = await appendWithCondition(
      unnamed,
      [{ stream: 'course-pb', messages: subscribed('pb', 's1'), expectedVersion: 'no_stream' }],
      { failIfEventsMatch: onCourse('pb') },
    );
    await expect(
      appendWithCondition(
        unnamed,
        [{ stream: 'course-pb', messages: subscribed('pb', 's2'), expectedVersion: 1 }],
        { failIfEventsMatch: onCourse('pb') },
      ),
    ).rejects.toBeInstanceOf(AppendConditionFailedError);
    await appendWithCondition(
      unnamed,
      [{ stream: 'course-pb', messages: subscribed('pb', 's2'), expectedVersion: 1 }],
      { failIfEventsMatch: onCourse('pb'), after: first.position },
    );
    expect(await count(`SELECT count(*) AS n FROM "$S".messages WHERE stream_name = 'course-pb'`)).toBe(2);
  });

  it('20 rounds of 10 appenders released at once on one condition: exactly one wins each round', async () => {
    // Ten stores on pools of their own: ten transactions race in the database (one store would
    // group-commit them, see the next test).
    const stores = Array.from({ length: 10 }, () =>
      createMessageStore({ connectionString: databaseUrl(), schema: db.schema, poolSize: 1 }),
    );
    const gate = await db.client();
    try {
      await raceRounds(stores, gate);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('one store group-commits concurrent appends, never two whose conditions conflict', async () => {
    const store = db.makeStore();
    // Both of the store's statement slots wait for a holder's lock, so the ten conflicting appends
    // below queue up together; they must still run one at a time: exactly one wins.
    const holder = await db.client();
    await holder.query('BEGIN');
    await appendWithCondition(
      store,
      [{ stream: 'pool-blocker', messages: subscribed('blocker', 'h'), expectedVersion: 'no_stream' }],
      { failIfEventsMatch: onCourse('blocker') },
      { db: holder },
    );
    const blocked = [1, 2].map((i) =>
      appendWithCondition(
        store,
        [
          {
            stream: `pool-blocked-${i}`,
            messages: subscribed('blocker', `b${i}`),
            expectedVersion: 'no_stream',
          },
        ],
        { failIfEventsMatch: onCourse('blocker') },
      ),
    );
    for (const b of blocked) b.catch(() => undefined);
    const ids = appendLocks(onCourse('blocker'), []).keys;
    await until(async () => (await queuedAppends(ids)) === 2, 'both slots waiting for the holder');
    const query = onCourse('one-pool');
    const racing = Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        appendWithCondition(
          store,
          [
            {
              stream: `pool-claim-${i}`,
              messages: subscribed('one-pool', `s${i}`),
              expectedVersion: 'no_stream',
            },
          ],
          { failIfEventsMatch: query },
        ),
      ),
    );
    await holder.query('COMMIT');
    for (const b of blocked) await expect(b).rejects.toBeInstanceOf(AppendConditionFailedError);
    const results = await racing;
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(
      results.filter((r) => r.status === 'rejected' && r.reason instanceof AppendConditionFailedError),
    ).toHaveLength(9);
    // Thirty disjoint ones (plus a stale version and a repeated position among them): batches
    // form (appends share a transaction), and each append keeps its own outcome.
    const disjoint = Array.from({ length: 30 }, (_, i) =>
      appendWithCondition(
        store,
        [{ stream: `pool-own-${i}`, messages: subscribed(`own${i}`, 'x'), expectedVersion: 'no_stream' }],
        { failIfEventsMatch: onCourse(`own${i}`) },
      ),
    );
    const stale = appendWithCondition(
      store,
      [{ stream: 'pool-own-0', messages: subscribed('own-stale', 'x'), expectedVersion: 4 }],
      { failIfEventsMatch: onCourse('own-stale') },
    );
    // Handled from the start: it may fail before the others are all appended.
    stale.catch(() => undefined);
    const ok = await Promise.all(disjoint);
    await expect(stale).rejects.toBeInstanceOf(WrongExpectedVersionError);
    expect(new Set(ok.map((r) => r.position.globalPosition)).size).toBe(30);
    const transactions = new Set(ok.map((r) => r.position.transactionId));
    expect(transactions.size).toBeLessThan(30);
    expect(
      await count(
        `SELECT count(DISTINCT transaction_id) AS n FROM "$S".messages WHERE stream_name LIKE 'pool-own-%'`,
      ),
    ).toBe(transactions.size);
    expect(await count(`SELECT count(*) AS n FROM "$S".message_tags WHERE tag LIKE 'course:own%'`)).toBe(30);
  });
});

async function raceRounds(stores: MessageStore[], gate: pg.Client): Promise<void> {
  for (let round = 0; round < 20; round++) {
    // Even rounds: tagged messages and a tag query; odd rounds: untagged, a type-only query.
    const tagged = round % 2 === 0;
    const type = tagged ? 'student_subscribed' : `seat_claimed_${round}`;
    const query = tagged ? onCourse(`race${round}`) : Query.of({ types: [type] });
    // The gate holds the messages table: all ten appends queue behind it (or behind the one that
    // holds the condition's lock while it waits for the table), then run at once.
    await gate.query('BEGIN');
    await gate.query(`LOCK TABLE "${db.schema}".messages IN SHARE MODE`);
    const racing = Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        appendWithCondition(
          stores[i]!,
          [
            {
              stream: `claim-${round}-${i}`,
              messages: tagged ? subscribed(`race${round}`, `s${i}`) : { type, data: { i } },
              expectedVersion: 'no_stream',
            },
          ],
          { failIfEventsMatch: query },
        ),
      ),
    );
    const ids = appendLocks(query, []).keys;
    await until(async () => (await queuedAppends(ids)) === 10, 'ten appends queued behind the gate');
    await gate.query('COMMIT');
    const results = await racing;
    const won = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter(
      (r) => r.status === 'rejected' && r.reason instanceof AppendConditionFailedError,
    ).length;
    expect({ round, won, refused }).toEqual({ round, won: 1, refused: 9 });
    expect(
      await count(`SELECT count(*) AS n FROM "$S".messages WHERE stream_name LIKE $1`, [`claim-${round}-%`]),
    ).toBe(1);
  }
}

/** Backends waiting for this schema's messages table, or for one of the advisory locks of `keys`. */
async function queuedAppends(keys: string[]): Promise<number> {
  return count(
    `SELECT count(DISTINCT l.pid) AS n FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
      WHERE NOT l.granted
        AND ((l.locktype = 'relation' AND c.relname = 'messages' AND c.relnamespace = '"$S"'::regnamespace)
          OR (l.locktype = 'advisory' AND l.objsubid = 1
              AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY(
                    SELECT "$S".lock_id(k) FROM unnest($1::text[]) AS k)))`,
    [keys],
  );
}

describe('course capacity race', () => {
  it('50 rounds of 10 concurrent subscribers for 3 seats: exactly 3 win, never more', async () => {
    const store = db.makeStore();
    const executor = new CommandExecutor(store, { maxAttempts: 200, baseDelayMs: 1, maxDelayMs: 20 });
    const capacity = 3;
    let retries = 0;
    for (let round = 0; round < 50; round++) {
      const courseId = `r${round}`;
      const def = defineCourse({ courseId, capacity });
      await executor.execute(def.decider, { courseId, capacity }, def.boundary);
      // A barrier in decide(): every contender's first decision is made on the same state, so
      // all ten appends race for the same seat.
      let decisions = 0;
      let arrived = 0;
      let release!: () => void;
      const barrier = new Promise<void>((r) => {
        release = r;
      });
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, async (_, i) => {
          const cmd = { courseId, studentId: `r${round}s${i}` };
          const { decider, boundary } = subscribeStudent(cmd);
          let first = true;
          const racing = {
            ...decider,
            async decide(c: typeof cmd, s: Parameters<typeof decider.decide>[1]) {
              decisions++;
              if (first) {
                first = false;
                if (++arrived === 10) release();
                await barrier;
              }
              return decider.decide(c, s);
            },
          };
          return executor.execute(racing, cmd, boundary);
        }),
      );
      const won = results.filter((r) => r.status === 'fulfilled').length;
      const lost = results.filter(
        (r) =>
          r.status === 'rejected' && r.reason instanceof CourseRuleError && r.reason.rule === 'course_full',
      ).length;
      expect({ round, won, lost }).toEqual({ round, won: capacity, lost: 10 - capacity });
      const stored = await count(
        `SELECT count(*) AS n FROM "$S".messages WHERE type = 'student_subscribed' AND tags @> ARRAY[$1]`,
        [`course:${courseId}`],
      );
      expect(stored).toBe(capacity);
      retries += decisions - 10;
    }
    // The race really happened: in every round, the nine appends that lost the first seat failed
    // their condition and were retried.
    expect(retries).toBeGreaterThanOrEqual(50 * 9);
  });

  it('one student racing for 14 courses gets exactly the limit', async () => {
    const store = db.makeStore();
    const executor = new CommandExecutor(store, { maxAttempts: 200, baseDelayMs: 1, maxDelayMs: 20 });
    for (let round = 0; round < 5; round++) {
      const studentId = `busy${round}`;
      const courses = Array.from({ length: 14 }, (_, i) => `b${round}c${i}`);
      for (const courseId of courses) {
        const def = defineCourse({ courseId, capacity: 5 });
        await executor.execute(def.decider, { courseId, capacity: 5 }, def.boundary);
      }
      const results = await Promise.allSettled(
        courses.map((courseId) => {
          const { decider, boundary } = subscribeStudent({ courseId, studentId });
          return executor.execute(decider, { courseId, studentId }, boundary);
        }),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(STUDENT_LIMIT);
      const refused = results
        .filter((r) => r.status === 'rejected')
        .map((r) => (r.reason as CourseRuleError).rule);
      expect(refused).toEqual(Array(14 - STUDENT_LIMIT).fill('student_limit'));
      expect(
        await count(`SELECT count(*) AS n FROM "$S".messages WHERE tags @> ARRAY[$1]`, [
          `student:${studentId}`,
        ]),
      ).toBe(STUDENT_LIMIT);
    }
  });
});

describe('appendWithCondition on a store bound to a transaction', () => {
  it("runs in that transaction: a rollback leaves nothing, for the pipelined single append and the function's shapes", async () => {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const bound = db.store.withTransaction(client);
      const query = Query.of({ types: ['TxBound'], tags: ['tx:1'] });
      // One message, exact version: the pipelined gated INSERT.
      await appendWithCondition(
        bound,
        [
          {
            stream: 'txb-1',
            expectedVersion: 'no_stream',
            messages: { type: 'TxBound', data: {}, tags: ['tx:1'] },
          },
        ],
        { failIfEventsMatch: query },
      );
      // Two streams: append_with_condition().
      await appendWithCondition(bound, [
        { stream: 'txb-2', messages: { type: 'TxBound', data: {} } },
        { stream: 'txb-3', messages: { type: 'TxBound', data: {} } },
      ]);
      // Inside the transaction, it is there.
      const inside = await client.query(
        `SELECT count(*)::int AS n FROM "${db.schema}".messages WHERE stream_name LIKE 'txb-%'`,
      );
      expect(inside.rows[0].n).toBe(3);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    for (const s of ['txb-1', 'txb-2', 'txb-3']) expect(await db.store.streamVersion(s)).toBe(0);
  });
});
