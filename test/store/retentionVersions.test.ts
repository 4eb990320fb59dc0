import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { WrongExpectedVersionError } from '../../src/errors.js';
import { applyRetention } from '../../src/retention/applyRetention.js';
import type { ExpectedVersion } from '../../src/store/types.js';
import { setupDb, type TestDb } from '../helpers/db.js';

/*
 * Retention deletes positions: a stream keeps its head, but its first messages (and, by age, any
 * message older than its successors) go. Every expected version must still be checked against the
 * stream's real head, by every write path, and no deleted position may be written again.
 */

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('ret_versions', { poolSize: 10 });
});
afterAll(async () => db.close());

const policy = (p: Record<string, unknown>) =>
  resolveConfig({ retention: { policies: [p] } }).retention.policies;

/** A stream at version 5 whose positions 1-4 retention deleted. */
async function trimmedStream(stream: string): Promise<void> {
  for (let i = 1; i <= 5; i++) await db.store.append(stream, { type: 'placed', data: { i } });
  await applyRetention(db.pool, db.store.sqlContext, policy({ stream, maxCount: 1 }), { force: true });
  expect((await db.store.readStream(stream)).map((m) => m.streamPosition)).toEqual([5]);
}

const positions = async (stream: string) => (await db.store.readStream(stream)).map((m) => m.streamPosition);

/** Every way of appending one or two messages with an expected version. */
const writers: Record<string, (stream: string, expected: ExpectedVersion) => Promise<unknown>> = {
  'append, one message': (s, e) => db.store.append(s, { type: 'x', data: {} }, { expectedVersion: e }),
  'append, one tagged message': (s, e) =>
    db.store.append(s, { type: 'x', data: {}, tags: ['k:1'] }, { expectedVersion: e }),
  'append, two messages': (s, e) =>
    db.store.append(
      s,
      [
        { type: 'x', data: {} },
        { type: 'y', data: {} },
      ],
      { expectedVersion: e },
    ),
  'append, group-committed': async (s, e) => {
    // Concurrent appends to other streams put this one in a batch statement (the first two run
    // alone).
    const others = Array.from({ length: 8 }, (_, i) =>
      db.store.append(`${s}.other${i}`, { type: 'x', data: {} }),
    );
    const mine = db.store.append(s, { type: 'x', data: {} }, { expectedVersion: e });
    const [result] = await Promise.allSettled([mine, ...others]);
    if (result!.status === 'rejected') throw result!.reason;
  },
  appendMultiple: (s, e) =>
    db.store.appendMultiple([{ stream: s, messages: { type: 'x', data: {} }, expectedVersion: e }]),
  'conditional append, one message': (s, e) =>
    appendWithCondition(db.store, [{ stream: s, messages: { type: 'x', data: {} }, expectedVersion: e }]),
  'conditional append, two messages': (s, e) =>
    appendWithCondition(db.store, [
      {
        stream: s,
        messages: [
          { type: 'x', data: {} },
          { type: 'y', data: {} },
        ],
        expectedVersion: e,
      },
    ]),
  'SQL function append_to_stream': (s, e) =>
    db.pool.query(
      `SELECT * FROM "${db.schema}".append_to_stream($1, $2, ARRAY[gen_random_uuid()], ARRAY['x'], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], ARRAY[''])`,
      [s, e === 'no_stream' ? 0 : e],
    ),
};

describe('expected versions after retention', () => {
  let n = 0;
  for (const [name, write] of Object.entries(writers)) {
    it(`${name}: no_stream and a deleted version fail against the head; the head version appends`, async () => {
      const stream = `trim${++n}-1`;
      await trimmedStream(stream);
      for (const expected of ['no_stream', 0, 3, 4] as const) {
        const err = await write(stream, expected).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, `expected version ${expected}`).toBeDefined();
        if (!(err instanceof WrongExpectedVersionError))
          expect((err as { code?: string }).code, `expected version ${expected}`).toBe('BKV01');
      }
      expect(await positions(stream)).toEqual([5]);
      await write(stream, 5);
      expect((await positions(stream))[0]).toBe(5);
      expect(await positions(stream)).not.toContain(1);
    });
  }

  it('a version whose successor retention deleted by age is not the head', async () => {
    const stream = 'aged-1';
    for (let i = 1; i <= 3; i++) await db.store.append(stream, { type: 'placed', data: { i } });
    // Position 2 was written by a transaction that started before position 1's: older by created_at.
    await db.pool.query(
      `UPDATE "${db.schema}".messages SET created_at = now() - interval '2 days' WHERE stream_name = $1 AND stream_position = 2`,
      [stream],
    );
    await applyRetention(db.pool, db.store.sqlContext, policy({ stream, maxAge: '1d' }), { force: true });
    expect(await positions(stream)).toEqual([1, 3]);
    for (const write of Object.values(writers)) {
      await expect(write(stream, 1)).rejects.toBeTruthy();
    }
    expect(await positions(stream)).toEqual([1, 3]);
  });
});
