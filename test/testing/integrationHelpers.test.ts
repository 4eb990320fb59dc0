import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { account } from '../../examples/transfer/accounts.js';
import { CommandExecutor } from '../../src/consistency/commandExecutor.js';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { Query } from '../../src/consistency/query.js';
import { AppendConditionFailedError, WrongExpectedVersionError } from '../../src/errors.js';
import { createFaultyStore } from '../../src/testing/faultyStore.js';
import { createInMemoryStore } from '../../src/testing/inMemoryStore.js';
import { createProjectionHarness } from '../../src/testing/projectionHarness.js';
import { FailedCheckpointsError, waitForCaughtUp } from '../../src/testing/waitForCaughtUp.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { configWith, startWorker } from '../subscriptions/helpers.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('testkit');
});
afterAll(async () => db.close());

describe('createFaultyStore', () => {
  it('a version conflict: CommandExecutor decides again and appends once', async () => {
    const faulty = createFaultyStore(db.store);
    const stream = `account-${randomUUID()}`;
    const executor = new CommandExecutor(faulty.store, { baseDelayMs: 1 });
    await executor.execute(account, { type: 'open', accountId: 'a', initialBalance: 0 }, { stream });
    faulty.failNext('append', { kind: 'conflict' }, { kind: 'conflict' });
    const r = await executor.execute(account, { type: 'deposit', accountId: 'a', amount: 5 }, { stream });
    expect(r.attempts).toBe(3);
    expect(faulty.pending()).toBe(0);
    expect((await db.store.readStream(stream)).map((m) => m.type)).toEqual(['account_opened', 'deposited']);
    // Out of attempts: the conflict surfaces and nothing is written.
    faulty.failNext('append', ...Array.from({ length: 5 }, () => ({ kind: 'conflict' as const })));
    await expect(
      executor.execute(account, { type: 'deposit', accountId: 'a', amount: 1 }, { stream }),
    ).rejects.toBeInstanceOf(WrongExpectedVersionError);
    expect(await db.store.streamVersion(stream)).toBe(2);
    expect(faulty.calls.filter((c) => c.fault).map((c) => c.streams)).toEqual(
      Array.from({ length: 7 }, () => [stream]),
    );
  });

  it('a lost reply: written, then an outcome-unknown error; a retry with the same ids returns the original result (in memory)', async () => {
    const stream = `order-${randomUUID()}`;
    const pgFaulty = createFaultyStore(db.store);
    pgFaulty.failNext('append', { kind: 'lostReply' });
    const id = randomUUID();
    await expect(pgFaulty.store.append(stream, { id, type: 'placed', data: {} })).rejects.toMatchObject({
      code: 'APPEND_OUTCOME_UNKNOWN',
      streams: [stream],
      ids: [id],
    });
    expect((await db.store.readStream(stream)).map((m) => m.id)).toEqual([id]);
    pgFaulty.failNext('any', { kind: 'lostConnection' });
    await expect(pgFaulty.store.append(stream, { type: 'paid', data: {} })).rejects.toMatchObject({
      code: 'APPEND_OUTCOME_UNKNOWN',
    });
    expect(await db.store.streamVersion(stream)).toBe(1);

    const mem = createFaultyStore(createInMemoryStore());
    mem.failNext('appendMultiple', { kind: 'lostReply' });
    const appends = [
      { stream, messages: { id, type: 'placed', data: {} }, expectedVersion: 'no_stream' as const },
    ];
    await expect(mem.store.appendMultiple(appends)).rejects.toMatchObject({ code: 'APPEND_OUTCOME_UNKNOWN' });
    const retried = await mem.store.appendMultiple(appends);
    expect(retried.get(stream)).toEqual({ streamVersion: 1, globalPosition: 1 });
    expect(await mem.store.streamVersion(stream)).toBe(1);
  });

  it('conditions, slow appends, and library functions writing through the store', async () => {
    const faulty = createFaultyStore(db.store);
    const q = Query.where({ tags: [`k:${randomUUID()}`] });
    faulty.failNext('prepareMessages', { kind: 'conditionFailed' });
    await expect(
      appendWithCondition(
        faulty.store,
        [{ stream: `c-${randomUUID()}`, messages: { type: 't', data: {} } }],
        {
          failIfEventsMatch: q,
        },
      ),
    ).rejects.toBeInstanceOf(AppendConditionFailedError);
    const stream = `slow-${randomUUID()}`;
    faulty.failNext('append', { kind: 'delay', ms: 300 });
    const started = Date.now();
    const slow = faulty.store.append(stream, { type: 't', data: {} });
    // A second writer overtakes the slow one.
    await faulty.store.append(stream, { type: 'first', data: {} });
    await slow;
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect((await db.store.readStream(stream)).map((m) => m.type)).toEqual(['first', 't']);
    // causedBy stores share the queue; other methods pass through untouched.
    const [cause] = await db.store.readStream(stream);
    faulty.failNext('any', { kind: 'error', error: new RangeError('boom') });
    await expect(faulty.store.causedBy(cause!).append(stream, { type: 'x', data: {} })).rejects.toThrow(
      'boom',
    );
    expect(faulty.store.schema).toBe(db.schema);
  });
});

describe('waitForCaughtUp', () => {
  it('resolves once every message appended before it is handled; throws on a failed checkpoint', async () => {
    const handled: string[] = [];
    const config = configWith(db.schema, {
      slowish: {
        category: 'wfc',
        handler: async (m) => {
          await new Promise((r) => setTimeout(r, 5));
          handled.push(`${m.streamName}#${m.streamPosition}`);
        },
      },
    });
    const w = startWorker(db, config, { concurrency: 2 });
    await w.start();
    try {
      for (let s = 0; s < 10; s++)
        await db.store.append(
          `wfc-${s}`,
          [1, 2, 3].map((i) => ({ type: 't', data: { i } })),
        );
      // The worker alone: its pool and schema (not the default `beckett`) come with it.
      expect(w.pool).toBe(db.pool);
      expect(w.schema).toBe(db.schema);
      const lag = await waitForCaughtUp(w, { timeoutMs: 20_000 });
      // Checked right after it resolved: nothing left to do, every message handled.
      expect(handled).toHaveLength(30);
      expect(lag.subscriptions.map((s) => s.lag)).toEqual([0]);
      await db.store.append('wfc-0', { type: 't', data: {} });
      await waitForCaughtUp({ pool: db.pool, group: 'G', schema: db.schema });
      expect(handled).toHaveLength(31);
    } finally {
      await w.stop();
    }
    const failing = configWith(db.schema, {
      slowish: { category: 'wfc', handler: () => undefined },
      poison: {
        category: 'wfp',
        maxRetries: 0,
        handler: () => {
          throw new Error('poison');
        },
      },
    });
    const w2 = startWorker(db, failing);
    await w2.start();
    try {
      await db.store.append('wfp-1', { type: 't', data: {} });
      await expect(waitForCaughtUp(w2)).rejects.toBeInstanceOf(FailedCheckpointsError);
      await expect(waitForCaughtUp(w2, { allowFailed: true, timeoutMs: 300 })).rejects.toThrow(
        /did not catch up within 300 ms: .*poison active, lag 1/,
      );
    } finally {
      await w2.stop();
    }
    // After stop the worker still names its pool and schema: the failed checkpoint is still there.
    await expect(waitForCaughtUp(w2)).rejects.toBeInstanceOf(FailedCheckpointsError);
  });
});

describe('createProjectionHarness', () => {
  it('runs a transactional handler in its own transaction: its rows and appends commit together or not at all', async () => {
    const table = `${db.schema}.balances`;
    await db.pool.query(`CREATE TABLE ${table} (account text PRIMARY KEY, balance int NOT NULL)`);
    const harness = createProjectionHarness(
      async (m, ctx) => {
        const d = m.data as { amount: number };
        await ctx.client!.query(
          `INSERT INTO ${table} VALUES ($1, $2) ON CONFLICT (account) DO UPDATE SET balance = balances.balance + $2`,
          [m.streamName, d.amount],
        );
        await ctx.store.append(`audit-${m.streamName.split('-')[1]}`, { type: 'projected', data: d });
        if (d.amount < 0) throw new RangeError('negative deposit');
      },
      { store: db.store },
    );
    const account = `acct-${randomUUID().slice(0, 8)}`;
    const audit = `audit-${account.split('-')[1]}`;
    const ok = await harness.run([{ stream: account, type: 'deposited', data: { amount: 5 } }], {
      stream: account,
      type: 'deposited',
      data: { amount: 7 },
    });
    expect(ok.error).toBeUndefined();
    expect((await db.pool.query(`SELECT balance FROM ${table} WHERE account = $1`, [account])).rows).toEqual([
      { balance: 12 },
    ]);
    const audited = await db.store.readStream(audit);
    expect(audited.map((m) => m.data)).toEqual([{ amount: 5 }, { amount: 7 }]);
    expect(audited[1]!.metadata.causationId).toBe(ok.messages[1]!.id);
    const bad = await harness.run([], { stream: account, type: 'deposited', data: { amount: -1 } });
    expect(bad.error).toBeInstanceOf(RangeError);
    // Rolled back: neither the row change nor the append survived.
    expect((await db.pool.query(`SELECT balance FROM ${table} WHERE account = $1`, [account])).rows).toEqual([
      { balance: 12 },
    ]);
    expect(await db.store.streamVersion(audit)).toBe(2);
    expect(bad.messages[0]!.streamPosition).toBe(3);
  });
});
