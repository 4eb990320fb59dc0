import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimCheckpoint } from '../../src/subscriptions/claimCheckpoint.js';
import { heldBack, runReaderRound, tryLockReader } from '../../src/subscriptions/globalReader.js';
import { registerSubscriptions } from '../../src/subscriptions/registerSubscriptions.js';
import { fingerprintOf } from '../../src/subscriptions/subscriptionDefinition.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { configWith, delay, startWorker, until } from './helpers.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('wrkv');
});
afterAll(async () => {
  await db?.close();
});

describe('log visibility, reader exclusivity, crashed leases', () => {
  it('a long-open transaction delays messages committed after it, never skips the one it commits late', async () => {
    const seen: string[] = [];
    const config = configWith(db.schema, {
      lot: { category: 'lot', handler: (m) => void seen.push(`${m.streamName}@${m.streamPosition}`) },
    });
    const w = startWorker(db, config);
    await w.start();
    const t1 = await db.client();
    await t1.query('BEGIN');
    await t1.query('SELECT pg_current_xact_id()');
    // Committed after T1 began: its global position is lower than T1's message will get...
    await db.store.append('lot-b', { type: 't', data: {} });
    // ...and T1's append takes a higher position but commits later: the classic skipped message.
    await db.store.withTransaction(t1 as unknown as pg.PoolClient).append('lot-a', { type: 't', data: {} });
    await delay(700);
    expect(seen).toEqual([]);
    // The worker can say why it sees nothing.
    const ctx = { schema: db.schema, s: `"${db.schema}"`, prepared: false };
    expect(await heldBack(db.pool, ctx, 0)).toMatch(
      /^\d+ committed messages wait behind transaction pid \d+/,
    );
    await t1.query('COMMIT');
    await until(() => seen.length >= 2, 'both messages');
    await w.stop();
    expect(seen.sort()).toEqual(['lot-a@1', 'lot-b@1']);
  });

  it('picks up messages held back by an open transaction as soon as it ends, without a notification or the slow poll', async () => {
    const seen: string[] = [];
    const config = configWith(db.schema, {
      held: { category: 'held', handler: (m) => void seen.push(`${m.streamName}@${m.streamPosition}`) },
    });
    // The polling backstop is a minute: only the reader's own "held back" retry can bring these in.
    const w = startWorker(db, config, { maxPollMs: 60_000 });
    await w.start();
    try {
      await until(async () => {
        const { rows } = await db.pool.query(
          `SELECT 1 FROM ${db.schema}.subscriptions WHERE group_name = 'G' AND status = 'active'`,
        );
        return rows.length > 0;
      }, 'the subscription to become active');
      // A transaction that writes nothing here but holds a transaction id (a report, another
      // schema's work, a transactional handler elsewhere): its end sends no notification.
      const holder = await db.client();
      await holder.query('BEGIN');
      await holder.query('SELECT pg_current_xact_id()');
      // Idle long enough for the reader's wait to have grown to 10 s (20 ms doubling per idle round).
      await until(() => w.stats().readerRounds >= 9, 'the reader to go idle');
      const rounds = w.stats().readerRounds;
      await db.store.append('held-1', { type: 't', data: {} });
      // The append's notification wakes the reader, which reads nothing final yet.
      await until(() => w.stats().readerRounds > rounds, 'a reader round after the append');
      expect(seen).toEqual([]);
      await holder.query('COMMIT');
      await until(() => seen.length >= 1, "the held message, well before the idle reader's next poll", 8_000);
      expect(seen).toEqual(['held-1@1']);
    } finally {
      await w.stop();
    }
  });

  it('runs one global reader per group at a time: a second one finds the group locked', async () => {
    const config = configWith(db.schema, { rx: { category: 'rx', handler: () => undefined } });
    const group = config.groups.get('G')!;
    const ctx = { schema: db.schema, s: `"${db.schema}"`, prepared: false };
    await registerSubscriptions(db.pool, ctx, group);
    await db.store.append('rx-1', { type: 't', data: {} });
    const holder = await db.client();
    await holder.query('BEGIN');
    expect(await tryLockReader(holder, ctx, 'G')).toBe(true);
    const blocked = await runReaderRound(db.pool, ctx, group, 'second');
    expect(blocked).toMatchObject({ locked: true, dispatched: 0 });
    await holder.query('ROLLBACK');
    // Unlocked, it dispatches (once the append is below every open transaction in the cluster).
    await until(async () => {
      const round = await runReaderRound(db.pool, ctx, group, 'second');
      expect(round.locked).toBe(false);
      return round.dispatched >= 1;
    }, 'the second reader to dispatch');
  });

  it('reclaims the checkpoint of a crashed worker once its lease expires, and not before', async () => {
    const seen: number[] = [];
    const config = configWith(db.schema, {
      cr: { category: 'cr', handler: (m) => void seen.push(m.streamPosition) },
    });
    const group = config.groups.get('G')!;
    const ctx = { schema: db.schema, s: `"${db.schema}"`, prepared: false };
    await registerSubscriptions(db.pool, ctx, group);
    await db.store.append('cr-1', [
      { type: 't', data: {} },
      { type: 't', data: {} },
    ]);
    await until(async () => {
      await runReaderRound(db.pool, ctx, group, 'test');
      const { rows } = await db.pool.query(
        `SELECT stream_version FROM "${db.schema}".checkpoints WHERE subscription_name = 'cr'`,
      );
      return rows[0]?.stream_version === 2;
    }, 'dispatch');
    // A worker that claims and then dies: its lease is never renewed or released.
    const ghost = await claimCheckpoint(db.pool, ctx, {
      group: 'G',
      subscriptions: ['cr'],
      batchSizes: [100],
      fingerprints: [fingerprintOf(group.subscriptions.get('cr')!)],
      workerId: 'ghost',
      leaseMs: 2000,
    });
    const claimedAt = Date.now();
    expect(ghost?.stream).toBe('cr-1');
    const w = startWorker(db, config, { concurrency: 2 });
    await w.start();
    // Well inside the lease, idle consumers have polled several times and must not have taken it.
    await delay(Math.max(0, claimedAt + 1200 - Date.now()));
    expect(seen).toEqual([]);
    await until(() => seen.length >= 2, 'the expired lease to be reclaimed', 10_000);
    await w.stop();
    expect(seen).toEqual([1, 2]);
  });

  it('delivers unmapped types per onUnmappedType and fails the stream for "fail"', async () => {
    const skip: string[] = [];
    const raw: string[] = [];
    const config = configWith(
      db.schema,
      {
        sk: {
          category: 'um',
          types: ['known', 'stranger'],
          onUnmappedType: 'skip',
          handler: (m) => void skip.push(m.type),
        },
        rw: {
          category: 'um',
          types: ['known', 'stranger'],
          onUnmappedType: 'raw',
          handler: (m) => void raw.push(m.type),
        },
        fl: {
          category: 'um',
          types: ['known', 'stranger'],
          onUnmappedType: 'fail',
          maxRetries: 0,
          handler: () => undefined,
        },
      },
      { messages: { known: {} } },
    );
    const w = startWorker(db, config);
    await w.start();
    await db.store.append('um-1', [
      { type: 'known', data: {} },
      { type: 'stranger', data: {} },
      { type: 'known', data: {} },
    ]);
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT status FROM "${db.schema}".checkpoints WHERE subscription_name = 'fl' AND stream_name = 'um-1'`,
      );
      return skip.length >= 2 && raw.length >= 3 && rows[0]?.status === 'failed';
    }, 'all three policies');
    await w.stop();
    expect(skip).toEqual(['known', 'known']);
    expect(raw).toEqual(['known', 'stranger', 'known']);
    const { rows } = await db.pool.query(
      `SELECT stream_position, last_error FROM "${db.schema}".checkpoints WHERE subscription_name = 'fl'`,
    );
    expect(rows[0].stream_position).toBe(1);
    expect(rows[0].last_error.type).toBe('UnmappedMessageTypeError');
  });
  it('a typed reader moves past messages none of its subscriptions wants, without dispatching them', async () => {
    const config = configWith(db.schema, { ty: { types: ['wanted'], handler: () => undefined } });
    const group = config.groups.get('G')!;
    const ctx = { schema: db.schema, s: `"${db.schema}"`, prepared: false };
    await registerSubscriptions(db.pool, ctx, group);
    for (let i = 0; i < 5; i++)
      await db.store.append(
        `noise-${i}`,
        Array.from({ length: 100 }, () => ({ type: 'noise', data: {} })),
      );
    const { rows: top } = await db.pool.query(
      `SELECT max(transaction_id::text::bigint) AS tx FROM "${db.schema}".messages WHERE type = 'noise'`,
    );
    // One round with a batch far smaller than the noise: it still ends past all of it.
    await until(async () => {
      const round = await runReaderRound(db.pool, ctx, group, 'test', 50);
      expect(round.dispatched).toBe(0);
      const { rows } = await db.pool.query(
        `SELECT log_transaction_id::text::bigint AS tx FROM "${db.schema}".subscriptions WHERE name = 'ty'`,
      );
      return Number(rows[0].tx) > Number(top[0].tx);
    }, 'the reader to pass the noise');
    await db.store.append('sig-1', { type: 'wanted', data: {} });
    await until(
      async () => (await runReaderRound(db.pool, ctx, group, 'test', 50)).dispatched === 1,
      'dispatch',
    );
    const { rows } = await db.pool.query(
      `SELECT stream_name, stream_version, stream_position FROM "${db.schema}".checkpoints WHERE subscription_name = 'ty'`,
    );
    expect(rows).toEqual([{ stream_name: 'sig-1', stream_version: 1, stream_position: 0 }]);
  });
});
