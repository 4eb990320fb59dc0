import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CourseRuleError, defineCourse, subscribeStudent } from '../../examples/courses/courses.js';
import {
  AccountRuleError,
  account,
  accountStream,
  transfer,
  transferBoundary,
} from '../../examples/transfer/accounts.js';
import { CommandExecutor } from '../../src/consistency/commandExecutor.js';
import type { Decider } from '../../src/consistency/decider.js';
import { InvalidInputError, WrongExpectedVersionError } from '../../src/errors.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('dcb_decider', { poolSize: 8 });
});
afterAll(async () => {
  await db?.close();
});

const counter: Decider<{ count: number }, { by: number }> = {
  initialState: () => ({ count: 0 }),
  evolve: (s, m) => ({ count: s.count + (m.data as { by: number }).by }),
  decide: (cmd) => [{ type: 'incremented', data: { by: cmd.by } }],
};

describe('CommandExecutor', () => {
  it('single stream: loads, decides, appends with the expected version', async () => {
    const ex = new CommandExecutor(db.store);
    const r1 = await ex.execute(counter, { by: 2 }, { stream: 'counter-1' });
    expect(r1).toMatchObject({ state: { count: 0 }, attempts: 1 });
    const r2 = await ex.execute(counter, { by: 3 }, { stream: 'counter-1' });
    expect(r2.state).toEqual({ count: 2 });
    expect((await ex.load(counter, { stream: 'counter-1' })).state).toEqual({ count: 5 });
    expect(await db.store.streamVersion('counter-1')).toBe(2);
  });

  it('retries on version conflicts: 20 concurrent increments all land, some after retrying', async () => {
    const ex = new CommandExecutor(db.store, { maxAttempts: 50, baseDelayMs: 1, maxDelayMs: 20 });
    let decisions = 0;
    const counting = {
      ...counter,
      decide(c: { by: number }, s: { count: number }) {
        decisions++;
        return counter.decide(c, s);
      },
    };
    const results = await Promise.all(
      Array.from({ length: 20 }, () => ex.execute(counting, { by: 1 }, { stream: 'counter-2' })),
    );
    expect((await ex.load(counter, { stream: 'counter-2' })).state).toEqual({ count: 20 });
    expect(await db.store.streamVersion('counter-2')).toBe(20);
    // Every decision past the first of each command was a retry after a conflict.
    expect(decisions - 20).toBe(results.reduce((n, r) => n + r.attempts - 1, 0));
  });

  it('gives up after maxAttempts with the conflict', async () => {
    const ex = new CommandExecutor(db.store, { maxAttempts: 3, baseDelayMs: 1 });
    let decisions = 0;
    // A competing writer lands between every load and append.
    const raced: Decider<{ count: number }, { by: number }> = {
      ...counter,
      async decide(cmd, s) {
        decisions++;
        await db.store.append('counter-3', { type: 'incremented', data: { by: 100 } });
        return counter.decide(cmd, s);
      },
    };
    await expect(ex.execute(raced, { by: 1 }, { stream: 'counter-3' })).rejects.toBeInstanceOf(
      WrongExpectedVersionError,
    );
    expect(decisions).toBe(3);
    expect((await ex.load(counter, { stream: 'counter-3' })).state).toEqual({ count: 300 });
  });

  it('does not retry domain errors', async () => {
    const ex = new CommandExecutor(db.store);
    let decisions = 0;
    const refusing: Decider<object, null> = {
      initialState: () => ({}),
      evolve: (s) => s,
      decide() {
        decisions++;
        throw new AccountRuleError('insufficient_funds', 'no');
      },
    };
    await expect(ex.execute(refusing, null, { stream: 'x-1' })).rejects.toBeInstanceOf(AccountRuleError);
    expect(decisions).toBe(1);
  });

  it('multi-stream transfer commits debit and credit atomically, keeping the total under concurrency', async () => {
    const ex = new CommandExecutor(db.store, { maxAttempts: 100, baseDelayMs: 1, maxDelayMs: 20 });
    for (const id of ['a', 'b', 'c'])
      await ex.execute(
        account,
        { type: 'open', accountId: id, initialBalance: 100 },
        { stream: accountStream(id) },
      );
    const t = { transferId: 't0', from: 'a', to: 'b', amount: 30 };
    await ex.execute(transfer, t, transferBoundary(t));
    const balance = async (id: string) =>
      (await ex.load(account, { stream: accountStream(id) })).state.balance;
    expect([await balance('a'), await balance('b')]).toEqual([70, 130]);

    // Insufficient funds: nothing written to either stream.
    const before = await db.store.streamVersion(accountStream('b'));
    const tooMuch = { transferId: 't1', from: 'a', to: 'b', amount: 1000 };
    await expect(ex.execute(transfer, tooMuch, transferBoundary(tooMuch))).rejects.toMatchObject({
      rule: 'insufficient_funds',
    });
    expect(await db.store.streamVersion(accountStream('b'))).toBe(before);

    // 30 concurrent transfers around the three accounts: money is neither created nor lost, and
    // no account goes below zero.
    const ids = ['a', 'b', 'c'];
    const transfers = Array.from({ length: 30 }, (_, i) => ({
      transferId: `c${i}`,
      from: ids[i % 3]!,
      to: ids[(i + 1) % 3]!,
      amount: 15 + (i % 4) * 10,
    }));
    const results = await Promise.allSettled(
      transfers.map((x) => ex.execute(transfer, x, transferBoundary(x))),
    );
    for (const r of results)
      if (r.status === 'rejected') expect((r.reason as AccountRuleError).rule).toBe('insufficient_funds');
    const balances = await Promise.all(ids.map(balance));
    expect(balances.reduce((a, b) => a + b, 0)).toBe(300);
    for (const b of balances) expect(b).toBeGreaterThanOrEqual(0);
    // Each successful transfer wrote exactly one debit and one credit.
    const { rows } = await db.pool.query<{ type: string; n: number }>(
      `SELECT type, count(*)::int AS n FROM "${db.schema}".messages WHERE type IN ('debited', 'credited') GROUP BY type ORDER BY type`,
    );
    const ok = results.filter((r) => r.status === 'fulfilled').length + 1;
    expect(rows).toEqual([
      { type: 'credited', n: ok },
      { type: 'debited', n: ok },
    ]);
  });

  it('query boundary (DCB): decides on the matching messages, appends with the condition', async () => {
    const ex = new CommandExecutor(db.store);
    const def = defineCourse({ courseId: 'q1', capacity: 1 });
    await ex.execute(def.decider, { courseId: 'q1', capacity: 1 }, def.boundary);
    await expect(
      ex.execute(def.decider, { courseId: 'q1', capacity: 1 }, def.boundary),
    ).rejects.toMatchObject({
      rule: 'course_exists',
    });
    const s1 = subscribeStudent({ courseId: 'q1', studentId: 'x' });
    const r = await ex.execute(s1.decider, { courseId: 'q1', studentId: 'x' }, s1.boundary);
    expect(r.appended).toEqual([
      {
        stream: 'course-q1',
        messages: [expect.objectContaining({ type: 'student_subscribed', tags: ['course:q1', 'student:x'] })],
      },
    ]);
    const s2 = subscribeStudent({ courseId: 'q1', studentId: 'y' });
    const err = await ex
      .execute(s2.decider, { courseId: 'q1', studentId: 'y' }, s2.boundary)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CourseRuleError);
    expect(err).toMatchObject({ rule: 'course_full' });
  });

  it('refuses a decision without a target stream, or for a stream outside the boundary', async () => {
    const ex = new CommandExecutor(db.store);
    const d: Decider<object, string | undefined> = {
      initialState: () => ({}),
      evolve: (s) => s,
      decide: (stream) => [{ type: 'x', data: {}, ...(stream ? { stream } : {}) }],
    };
    await expect(ex.execute(d, undefined, { streams: ['a-1', 'b-1'] })).rejects.toBeInstanceOf(
      InvalidInputError,
    );
    await expect(ex.execute(d, 'c-1', { streams: ['a-1', 'b-1'] })).rejects.toBeInstanceOf(InvalidInputError);
    expect(await db.store.streamVersion('c-1')).toBe(0);
  });
});
