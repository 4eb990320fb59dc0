import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Beckett, createBeckett } from '../../src/admin/createBeckett.js';
import { QueryTimeoutError, ReadOnlyError } from '../../src/errors.js';
import type { Worker } from '../../src/subscriptions/workerRuntime.js';
import { es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from '../operations/helpers.js';

let db: TestDb;
let beckett: Beckett;
let worker: Worker;

beforeAll(async () => {
  db = await setupDb('admin_api');
  const config = opsConfig(db.schema, {
    flaky: {
      category: 'order',
      maxRetries: 0,
      handler: (m) => {
        if ((m.data as { fail?: boolean }).fail) throw new Error(`cannot handle ${m.streamName}`);
      },
    },
  });
  for (let i = 1; i <= 3; i++) await db.store.append(`order-${i}`, { type: 'placed', data: { fail: true } });
  worker = startWorker(db, config);
  await worker.start();
  for (let i = 1; i <= 3; i++)
    await until(
      async () => (await checkpoint(db, 'flaky', `order-${i}`))?.status === 'failed',
      `order-${i} to fail`,
    );
  beckett = createBeckett({
    pool: db.pool,
    schema: db.schema,
    config,
    actor: 'tester',
    statementTimeoutMs: 300,
  });
});

afterAll(async () => {
  await worker?.stop();
  await beckett?.close();
  await db?.close();
});

describe('admin API', () => {
  it('cancels a read that runs past its statement timeout (QueryTimeoutError, HTTP 503)', async () => {
    const locker = await db.client();
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE "${db.schema}".messages IN ACCESS EXCLUSIVE MODE`);
    try {
      const started = Date.now();
      const err = await beckett.admin.categories().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QueryTimeoutError);
      expect((err as QueryTimeoutError).httpStatus).toBe(503);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await locker.query('ROLLBACK');
    }
    expect((await beckett.admin.categories()).items.map((c) => c.category)).toEqual(['order']);
  });

  it('records every action with its actor, pages the audit log newest first', async () => {
    await beckett.admin.pause('G', 'flaky');
    await beckett.admin.resume('G', 'flaky', { actor: 'grace' });
    // An id that matches nothing: the action fails, and is recorded as failed.
    await expect(beckett.admin.retry({ ids: ['G/flaky/ghost'] })).rejects.toMatchObject({ httpStatus: 404 });
    const first = await beckett.admin.audit({ limit: 2 });
    expect(first.items.map((e) => [e.actor, e.action, e.result])).toEqual([
      ['tester', 'retry', 'error'],
      ['grace', 'resume', 'ok'],
    ]);
    const second = await beckett.admin.audit({ limit: 2, after: first.next! });
    expect(second.items.map((e) => [e.actor, e.action])).toEqual([['tester', 'pause']]);
    expect(second.next).toBeNull();
  });

  it('a read-only handle refuses actions and still reads', async () => {
    const ro = createBeckett({ pool: db.pool, schema: db.schema, readOnly: true });
    try {
      await expect(ro.admin.pause('G', 'flaky')).rejects.toBeInstanceOf(ReadOnlyError);
      await expect(ro.admin.retry({ ids: ['G/flaky/order-2'] })).rejects.toMatchObject({ httpStatus: 403 });
      expect((await ro.admin.summary()).failed).toBe(3);
    } finally {
      await ro.close();
    }
  });

  it('es retry goes through the admin API: audited as cli, exit 8 for an unknown id', async () => {
    const r = await es(['--schema', db.schema, 'retry', 'G/flaky/order-2', 'G/flaky/ghost'], {
      env: { DATABASE_URL: db.url },
    });
    expect(r.exitCode).toBe(8);
    expect(r.stdout).toContain('retried G/flaky/order-2');
    expect(r.stderr).toContain('No checkpoint G/flaky/ghost.');
    const [last] = (await beckett.admin.audit({ limit: 1 })).items;
    expect(last).toMatchObject({
      actor: 'cli',
      action: 'retry',
      result: 'error',
      target: { checkpoints: ['G/flaky/order-2', 'G/flaky/ghost'] },
    });
  });
});
