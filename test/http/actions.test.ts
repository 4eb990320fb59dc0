import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Beckett, createBeckett } from '../../src/admin/createBeckett.js';
import { message } from '../../src/config/types.js';
import { syncRecurringMessages } from '../../src/scheduling/deliverRecurring.js';
import { scheduleMessage } from '../../src/scheduling/scheduleMessage.js';
import type { Worker } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from '../operations/helpers.js';
import { getJson, postJson, serveApi, type TestServer } from './server.js';

let db: TestDb;
let beckett: Beckett;
let worker: Worker;
let api: TestServer;
let base: string;
const fixed = new Set<string>();

beforeAll(async () => {
  db = await setupDb('api_act');
  const config = opsConfig(
    db.schema,
    {
      flaky: {
        category: 'order',
        maxRetries: 0,
        handler: (m) => {
          if ((m.data as { fail?: boolean }).fail && !fixed.has(m.streamName))
            throw new Error(`cannot handle ${m.streamName}`);
        },
      },
    },
    {
      messages: { placed: message(), paid: message(), Priced: message(z.object({ amount: z.number() })) },
      recurring: [
        { name: 'nightly', cron: '0 3 * * *', stream: 'reports-daily', message: { type: 'due', data: {} } },
      ],
    },
  );
  await db.store.append('order-1', [
    { type: 'placed', data: {} },
    { type: 'paid', data: { fail: true } },
  ]);
  await db.store.append('order-2', { type: 'placed', data: { fail: true } });
  worker = startWorker(db, config);
  await worker.start();
  await until(async () => (await checkpoint(db, 'flaky', 'order-1'))?.status === 'failed', 'order-1 to fail');
  await until(async () => (await checkpoint(db, 'flaky', 'order-2'))?.status === 'failed', 'order-2 to fail');
  await syncRecurringMessages(db.store, config.recurring);
  beckett = createBeckett({ pool: db.pool, schema: db.schema, config });
  api = await serveApi(beckett, { actor: (req) => req.headers['x-user'] as string | undefined });
  base = `${api.base}/api`;
});

afterAll(async () => {
  await api?.close();
  await worker?.stop();
  await beckett?.close();
  await db?.close();
});

const audit = async () => (await getJson(`${base}/audit`)).body.items as Record<string, any>[];

describe('POST actions', () => {
  it('retries a failed checkpoint that then flows again, and records who did it', async () => {
    fixed.add('order-1');
    const r = await postJson(`${base}/checkpoints/retry`, { ids: ['G/flaky/order-1'] }, { 'x-user': 'ada' });
    expect(r.status).toBe(200);
    expect(r.body.changed.map((c: { id: string }) => c.id)).toEqual(['G/flaky/order-1']);
    await until(
      async () => (await checkpoint(db, 'flaky', 'order-1'))?.stream_position === 2,
      'order-1 to flow',
    );
    const [last] = await audit();
    expect(last).toMatchObject({
      actor: 'ada',
      action: 'retry',
      target: { checkpoints: ['G/flaky/order-1'] },
      result: 'ok',
    });
    const history = (await getJson(`${base}/checkpoints/${encodeURIComponent('G/flaky/order-1')}`)).body
      .history;
    expect(history.map((h: { action: string }) => h.action)).toEqual(['retry']);
  });

  it('answers an unknown checkpoint id with 404 carrying the partial result, and audits the failure', async () => {
    const r = await postJson(`${base}/checkpoints/skip`, { ids: ['G/flaky/order-2', 'G/flaky/nope'] });
    expect(r.status).toBe(404);
    expect(r.type).toContain('application/problem+json');
    expect(r.body.detail).toBe('No checkpoint G/flaky/nope.');
    expect(r.body.result.changed.map((c: { id: string }) => c.id)).toEqual(['G/flaky/order-2']);
    expect(await checkpoint(db, 'flaky', 'order-2')).toMatchObject({ stream_position: 1, status: 'active' });
    const [last] = await audit();
    expect(last).toMatchObject({ actor: 'api', action: 'skip', result: 'error' });
    expect(last!.detail.code).toBe('NOT_FOUND');
  });

  it('pauses and resumes a subscription, 404 for an unknown one', async () => {
    const paused = await postJson(`${base}/subscriptions/G/flaky/pause`, {});
    expect(paused.body).toEqual({ group: 'G', subscription: 'flaky', changed: true });
    const again = await postJson(`${base}/subscriptions/G/flaky/pause`, {});
    expect(again.body.changed).toBe(false);
    expect((await getJson(`${base}/subscriptions`)).body.groups[0].subscriptions[0].status).toBe('paused');
    expect((await postJson(`${base}/subscriptions/G/flaky/resume`, {})).body.changed).toBe(true);
    const unknown = await postJson(`${base}/subscriptions/G/ghost/pause`, {});
    expect(unknown.status).toBe(404);
    expect(unknown.body.detail).toContain('Unknown subscription "ghost"');
  });

  it('replays a range (a dry run is not an action)', async () => {
    const dry = await postJson(`${base}/subscriptions/G/flaky/replay`, { from: 1, to: 1, dryRun: true });
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({ dryRun: true, messages: 1 });
    const before = (await audit()).length;
    const done = await postJson(`${base}/subscriptions/G/flaky/replay`, { from: 1, to: 1 });
    expect(done.body).toMatchObject({ dryRun: false, messages: 1 });
    const entries = await audit();
    expect(entries.length).toBe(before + 1);
    expect(entries[0]).toMatchObject({ action: 'replay', result: 'ok' });
    // The worker handles order-1's first message again; the next tests start once it is done (its
    // lease would otherwise show among the leased checkpoints there).
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT 1 FROM "${db.schema}".checkpoints
          WHERE group_name = 'G' AND subscription_name = 'flaky' AND stream_name = 'order-1'
            AND stream_position = 2 AND replay_ranges IS NULL`,
      );
      return rows.length === 1;
    }, 'the replay of order-1 to be handled');
  });

  it('appends with an expected version: 201, 409 on a conflict, 422 on a schema failure', async () => {
    const ok = await postJson(`${base}/streams/price-1/messages`, {
      expectedVersion: 'no_stream',
      messages: [{ type: 'Priced', data: { amount: 3 } }],
    });
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ stream: 'price-1', streamVersion: 1 });
    expect(ok.body.ids).toHaveLength(1);
    const conflict = await postJson(`${base}/streams/price-1/messages`, {
      expectedVersion: 0,
      messages: [{ type: 'Priced', data: { amount: 4 } }],
    });
    expect(conflict.status).toBe(409);
    expect(conflict.body).toMatchObject({ code: 'WRONG_EXPECTED_VERSION', actual: 1 });
    const invalid = await postJson(`${base}/streams/price-1/messages`, {
      messages: [{ type: 'Priced', data: { amount: 'three' } }],
    });
    expect(invalid.status).toBe(422);
    expect(invalid.body.code).toBe('MESSAGE_INVALID');
    expect(await db.store.streamVersion('price-1')).toBe(1);
  });

  it('cancels a scheduled message (404 once gone) and sends a recurring one now', async () => {
    const id = await scheduleMessage(
      db.store,
      'later-1',
      { type: 'x', data: {} },
      { at: new Date(Date.now() + 3_600_000) },
    );
    expect((await getJson(`${base}/scheduled`)).body.items.map((s: { id: string }) => s.id)).toEqual([id]);
    expect((await postJson(`${base}/scheduled/${id}/cancel`, {})).body).toEqual({ id, cancelled: true });
    expect((await postJson(`${base}/scheduled/${id}/cancel`, {})).status).toBe(404);
    const recurring = await getJson(`${base}/recurring`);
    expect(recurring.body.items[0].nextOccurrences).toHaveLength(5);
    const sent = await postJson(`${base}/recurring/nightly/send-now`, {});
    expect(sent.status).toBe(201);
    const [m] = await db.store.readStream('reports-daily');
    expect(m).toMatchObject({ id: sent.body.id, type: 'due' });
  });

  it('releases a lease', async () => {
    // A consumer stuck on a checkpoint it claimed to retry (listed as leased: it needs attention;
    // a lease on a caught-up checkpoint holds no work back and is not listed, see migration 0025).
    await db.pool.query(
      `UPDATE "${db.schema}".checkpoints SET leased_by = 'stuck', leased_until = now() + interval '1 hour',
              status = 'retry', next_attempt_at = now() + interval '1 hour'
        WHERE group_name = 'G' AND subscription_name = 'flaky' AND stream_name = 'order-2'`,
    );
    const leased = await getJson(`${base}/checkpoints?status=leased`);
    expect(leased.body.items.map((c: { id: string }) => c.id)).toEqual(['G/flaky/order-2']);
    const r = await postJson(`${base}/checkpoints/release`, { ids: ['G/flaky/order-2'] });
    expect(r.body.released).toMatchObject([{ id: 'G/flaky/order-2', leasedBy: 'stuck' }]);
    expect((await getJson(`${base}/checkpoints?status=leased`)).body.items).toEqual([]);
  });

  it('refuses every action when read-only, and a failed CSRF check', async () => {
    const ro = await serveApi(beckett, { readOnly: true });
    try {
      const r = await postJson(`${ro.base}/api/checkpoints/retry`, { ids: ['G/flaky/order-2'] });
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('READ_ONLY');
      expect((await getJson(`${ro.base}/api/summary`)).status).toBe(200);
    } finally {
      await ro.close();
    }
    const csrf = await serveApi(beckett, { checkCsrf: (req) => req.headers['x-beckett-csrf'] === 'good' });
    try {
      expect((await postJson(`${csrf.base}/api/subscriptions/G/flaky/pause`, {})).status).toBe(403);
      const ok = await postJson(
        `${csrf.base}/api/subscriptions/G/flaky/resume`,
        {},
        { 'x-beckett-csrf': 'good' },
      );
      expect(ok.status).toBe(200);
    } finally {
      await csrf.close();
    }
  });

  it('refuses a body that is not JSON', async () => {
    const r = await fetch(`${base}/checkpoints/retry`, {
      method: 'POST',
      body: 'ids=1',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(r.status).toBe(415);
  });
});
