import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import { message, type ResolvedRecurringMessage } from '../../src/config/types.js';
import { deliverDueRecurring, syncRecurringMessages } from '../../src/scheduling/deliverRecurring.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

/*
 * Recurring delivery appends with "any" inside its transaction. An exact-version append that takes
 * the stream's next position first makes that append fail: the delivery must try again, and never
 * move a schedule past an occurrence it did not append.
 */

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('recur_race', { poolSize: 10 });
});
afterAll(async () => db.close());

const recurring = (name: string, stream: string): ResolvedRecurringMessage => ({
  name,
  cron: '0 0 1 1 *',
  timezone: 'UTC',
  stream,
  message: { type: 'tick', data: { source: 'cron' } },
});

async function dueNow(name: string): Promise<Date> {
  const { rows } = await db.pool.query<{ next_occurrence_at: Date }>(
    `UPDATE "${db.schema}".recurring_messages SET next_occurrence_at = date_trunc('second', now()) - interval '1 minute'
      WHERE name = $1 RETURNING next_occurrence_at`,
    [name],
  );
  return rows[0]!.next_occurrence_at;
}

const schedule = async (name: string) =>
  (
    await db.pool.query<{ next_occurrence_at: Date; last_error: string | null }>(
      `SELECT next_occurrence_at, last_error FROM "${db.schema}".recurring_messages WHERE name = $1`,
      [name],
    )
  ).rows[0]!;

it('an exact-version append taking the position first: the occurrence is appended after it', async () => {
  const r = recurring('race', 'ticks-race');
  await syncRecurringMessages(db.store, [r]);
  const occurrence = await dueNow('race');
  await db.store.append('ticks-race', { type: 'seed', data: {} });
  // A decider's append at version 1 writes position 2 and holds its transaction open.
  const other = await db.pool.connect();
  try {
    await other.query('BEGIN');
    await db.store
      .withTransaction(other)
      .append('ticks-race', { type: 'decided', data: {} }, { expectedVersion: 1 });
    const delivery = deliverDueRecurring(db.store, [r]);
    // The delivery's append waits for position 2's writer.
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`,
        [`%"${db.schema}".append_to_stream%`],
      );
      return rows.length > 0;
    }, 'the delivery waiting for position 2');
    await other.query('COMMIT');
    const result = await delivery;
    expect(result).toMatchObject({ delivered: 1, failed: 0 });
  } finally {
    other.release();
  }
  const read = await db.store.readStream('ticks-race');
  expect(read.map((m) => [m.streamPosition, m.type])).toEqual([
    [1, 'seed'],
    [2, 'decided'],
    [3, 'tick'],
  ]);
  expect((await schedule('race')).next_occurrence_at.getTime()).toBeGreaterThan(occurrence.getTime());
});

it('never moves a schedule past an occurrence it could not append', async () => {
  const store = db.makeStore({ messages: { tick: message(z.object({ n: z.number() })) } });
  const r = recurring('refused', 'ticks-refused');
  await syncRecurringMessages(store, [r]);
  const occurrence = await dueNow('refused');
  const result = await deliverDueRecurring(store, [r]);
  expect(result).toMatchObject({ delivered: 0, failed: 1 });
  const after = await schedule('refused');
  expect(after.next_occurrence_at.getTime()).toBe(occurrence.getTime());
  expect(after.last_error).toMatch(/tick/);
  expect(await store.readStream('ticks-refused')).toEqual([]);
  // Retried later (with a backoff), not at once: the next pass claims nothing.
  expect(await deliverDueRecurring(store, [r])).toMatchObject({ claimed: 0 });
});
