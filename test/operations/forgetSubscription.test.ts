import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResolvedConfig } from '../../src/config/types.js';
import { BeckettError, NotFoundError } from '../../src/errors.js';
import { forgetSubscription } from '../../src/operations/forgetSubscription.js';
import {
  lockGroupRegistrations,
  registerSubscriptions,
} from '../../src/subscriptions/registerSubscriptions.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { opsConfig, until } from './helpers.js';

/*
 * A subscription that no config declares any more is marked unknown and kept with its checkpoints
 * (a worker of an older version may bring it back). Forgetting deletes it, and must never delete
 * one that something still runs or is about to run again.
 */

let db: TestDb;
let v1: ResolvedConfig;
let v2: ResolvedConfig;
const handler = () => undefined;

beforeAll(async () => {
  db = await setupDb('ops_forget', { poolSize: 6 });
  v1 = opsConfig(db.schema, {
    keep: { category: 'a', handler },
    old: { category: 'b', handler },
    old2: { category: 'c', handler },
  });
  v2 = opsConfig(db.schema, { keep: { category: 'a', handler } });
});
afterAll(async () => db?.close());

const s = () => `"${db.schema}"`;
const count = async (sql: string) => Number((await db.pool.query(sql)).rows[0].n);
const checkpointsOf = (name: string) =>
  count(`SELECT count(*) AS n FROM ${s()}.checkpoints WHERE subscription_name = '${name}'`);
const statusOf = async (name: string) =>
  (await db.pool.query(`SELECT status FROM ${s()}.subscriptions WHERE name = $1`, [name])).rows[0]?.status;

/** v1 registered, checkpoints for every subscription, then v2 (without old, old2): both unknown. */
async function deployBothVersions(): Promise<void> {
  await registerSubscriptions(db.pool, db.store.sqlContext, v1.groups.get('G')!);
  await db.pool.query(
    `INSERT INTO ${s()}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position)
     SELECT 'G', n, 'x-' || i, 2, 2 FROM unnest(ARRAY['keep', 'old', 'old2']) n, generate_series(1, 30) i
     ON CONFLICT DO NOTHING`,
  );
  const r = await registerSubscriptions(db.pool, db.store.sqlContext, v2.groups.get('G')!);
  expect(r.demoted.sort()).toEqual(['old', 'old2']);
}

const notForgettable = (p: Promise<unknown>, message: RegExp) =>
  expect(p).rejects.toSatisfy(
    (e: unknown) =>
      e instanceof BeckettError && e.code === 'SUBSCRIPTION_NOT_FORGETTABLE' && message.test(e.message),
  );

describe('forgetSubscription', () => {
  it('refuses a declared, active, live or leased subscription, then forgets an unknown one with its checkpoints', async () => {
    await deployBothVersions();
    const ctx = db.store.sqlContext;
    const forget = (subscription: string, config?: ResolvedConfig) =>
      forgetSubscription(db.pool, ctx, { group: 'G', subscription, ...(config ? { config } : {}) });

    await notForgettable(forget('old', v1), /declared in the config/);
    await notForgettable(forget('keep'), /is initializing/);
    // A live runner of another config version still runs it (as during a rolling deploy).
    await db.pool.query(
      `INSERT INTO ${s()}.subscription_runners (worker_id, group_name, subscription_name, fingerprint, alive_until)
       VALUES ('w-old', 'G', 'old', 'f', now() + interval '1 minute')`,
    );
    await notForgettable(forget('old'), /run by 1 live worker/);
    await db.pool.query(`UPDATE ${s()}.subscription_runners SET alive_until = now() - interval '1 second'`);
    await db.pool.query(
      `UPDATE ${s()}.checkpoints SET leased_by = 'w-old', lease_id = gen_random_uuid(), leased_until = now() + interval '1 minute'
        WHERE subscription_name = 'old' AND stream_name = 'x-1'`,
    );
    await notForgettable(forget('old'), /1 checkpoint\(s\) leased/);
    await db.pool.query(`UPDATE ${s()}.checkpoints SET leased_until = now() - interval '1 second'`);
    expect(await checkpointsOf('old')).toBe(30);

    await expect(forget('old', v2)).resolves.toEqual({ group: 'G', subscription: 'old', checkpoints: 30 });
    expect(await statusOf('old')).toBeUndefined();
    expect(await checkpointsOf('old')).toBe(0);
    expect(
      await count(
        `SELECT (SELECT count(*) FROM ${s()}.subscription_definitions WHERE subscription_name = 'old')
              + (SELECT count(*) FROM ${s()}.subscription_runners WHERE subscription_name = 'old') AS n`,
      ),
    ).toBe(0);
    // The others are untouched.
    expect(await checkpointsOf('keep')).toBe(30);
    expect(await checkpointsOf('old2')).toBe(30);
    await expect(forget('old')).rejects.toBeInstanceOf(NotFoundError);
    await expect(forgetSubscription(db.pool, ctx, { group: 'G', subscription: '' })).rejects.toThrow(
      /subscription must be a non-empty string/,
    );
  });

  it('waits for a registration in flight that brings the subscription back, then refuses', async () => {
    // A worker whose config declares old2 again registers: under the group's registration lock it
    // reads old2 (unknown), then records its definition (a row referencing the subscription) and
    // takes it over. A forget between the read and the write would delete the subscription under
    // it (its insert then fails on the foreign key, and the worker does not start).
    expect(await statusOf('old2')).toBe('unknown');
    const registration = await db.pool.connect();
    let settled = false;
    let forgetting: Promise<unknown> | undefined;
    try {
      await registration.query('BEGIN');
      await lockGroupRegistrations(registration, db.store.sqlContext, 'G');
      const { rows } = await registration.query(
        `SELECT status FROM ${s()}.subscriptions WHERE group_name = 'G' AND name = 'old2'`,
      );
      expect(rows[0].status).toBe('unknown');

      forgetting = forgetSubscription(db.pool, db.store.sqlContext, { group: 'G', subscription: 'old2' });
      forgetting.then(
        () => {
          settled = true;
        },
        () => {
          settled = true;
        },
      );
      // The forget either waits on the registration's lock, or (without it) has already finished.
      await until(
        async () =>
          settled ||
          (
            await db.pool.query(
              `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%'
                  AND datname = current_database() AND pid <> $1`,
              [(registration as unknown as { processID: number }).processID],
            )
          ).rowCount! > 0,
        'the forget to wait on the registration',
      );
      await registration.query(
        `INSERT INTO ${s()}.subscription_definitions (group_name, subscription_name, fingerprint, definition)
         VALUES ('G', 'old2', 'v3', '{}')`,
      );
      await registration.query(
        `UPDATE ${s()}.subscriptions SET status = 'active', fingerprint = 'v3' WHERE group_name = 'G' AND name = 'old2'`,
      );
      await registration.query('COMMIT');
    } finally {
      registration.release();
    }
    await notForgettable(forgetting!, /is active/);
    expect(await statusOf('old2')).toBe('active');
    expect(await checkpointsOf('old2')).toBe(30);
  });
});
