import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Beckett, createBeckett } from '../../src/admin/createBeckett.js';
import type { Worker } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from '../operations/helpers.js';
import { getJson, serveApi, type TestServer } from './server.js';

let db: TestDb;
let beckett: Beckett;
let worker: Worker;
let api: TestServer;
let base: string;

beforeAll(async () => {
  db = await setupDb('api_read');
  const config = opsConfig(db.schema, {
    flaky: {
      category: 'order',
      maxRetries: 0,
      handler: (m) => {
        if ((m.data as { fail?: boolean }).fail) throw new Error(`cannot handle ${m.streamName}`);
      },
    },
  });
  await db.store.append('order-1', [
    { type: 'placed', data: { n: 1 } },
    { type: 'paid', data: { fail: true } },
  ]);
  await db.store.append('order-2', { type: 'placed', data: {} });
  for (const c of ['alpha', 'beta', 'betamax', 'gamma'])
    await db.store.append(`${c}-1`, { type: 't', data: {} });
  worker = startWorker(db, config);
  await worker.start();
  await until(async () => (await checkpoint(db, 'flaky', 'order-1'))?.status === 'failed', 'order-1 to fail');
  beckett = createBeckett({ pool: db.pool, schema: db.schema, config });
  api = await serveApi(beckett);
  base = `${api.base}/api`;
});

afterAll(async () => {
  await api?.close();
  await worker?.stop();
  await beckett?.close();
  await db?.close();
});

describe('GET routes', () => {
  it('pages categories with a prefix search and a cursor', async () => {
    const all = await getJson(`${base}/categories`);
    expect(all.status).toBe(200);
    expect(all.body.items.map((c: { category: string }) => c.category)).toEqual([
      'alpha',
      'beta',
      'betamax',
      'gamma',
      'order',
    ]);
    expect(all.body.items.find((c: { category: string }) => c.category === 'order')).toMatchObject({
      lastGlobalPosition: 3,
    });
    const first = await getJson(`${base}/categories?limit=2`);
    expect(first.body.items.map((c: { category: string }) => c.category)).toEqual(['alpha', 'beta']);
    const second = await getJson(`${base}/categories?limit=2&after=${first.body.next}`);
    expect(second.body.items.map((c: { category: string }) => c.category)).toEqual(['betamax', 'gamma']);
    const search = await getJson(`${base}/categories?search=bet`);
    expect(search.body.items.map((c: { category: string }) => c.category)).toEqual(['beta', 'betamax']);
    expect(search.body.next).toBeNull();
  });

  it('estimates the messages of each category from the statistics, once analyzed', async () => {
    await db.pool.query(`ANALYZE "${db.schema}".messages`);
    const all = await getJson(`${base}/categories`);
    const estimates = Object.fromEntries(
      all.body.items.map((c: { category: string; estimatedMessages: number }) => [
        c.category,
        c.estimatedMessages,
      ]),
    );
    // Small enough for ANALYZE to see every row: 'order' is a common value, the others share the rest.
    expect(estimates).toEqual({ alpha: 1, beta: 1, betamax: 1, gamma: 1, order: 3 });
  });

  it('lists the streams of a category and a stream page by page', async () => {
    const streams = await getJson(`${base}/categories/order/streams`);
    expect(streams.body.items).toMatchObject([
      { stream: 'order-1', version: 2 },
      { stream: 'order-2', version: 1 },
    ]);
    const page = await getJson(`${base}/streams/order-1/messages?limit=1`);
    expect(page.body.items).toHaveLength(1);
    expect(page.body.items[0]).toMatchObject({
      stream: 'order-1',
      type: 'placed',
      position: 1,
      data: { n: 1 },
    });
    expect(page.body.next).toBe('2');
    const rest = await getJson(`${base}/streams/order-1/messages?from=${page.body.next}`);
    expect(rest.body.items.map((m: { type: string }) => m.type)).toEqual(['paid']);
    expect(rest.body.next).toBeNull();
  });

  it('shows a message with its neighbours and links, and finds by position', async () => {
    const [first, second] = (await getJson(`${base}/streams/order-1/messages`)).body.items;
    const detail = await getJson(`${base}/messages/${second.id}`);
    expect(detail.body.message.id).toBe(second.id);
    expect(detail.body.previous).toBe(first.id);
    expect(detail.body.next).toBeNull();
    expect(detail.body.correlated.map((m: { id: string }) => m.id)).toContain(second.id);
    const found = await getJson(`${base}/messages?globalPosition=${first.globalPosition}`);
    expect(found.body.items.map((m: { id: string }) => m.id)).toEqual([first.id]);
    const missing = await getJson(`${base}/messages/00000000-0000-7000-8000-000000000000`);
    expect(missing.status).toBe(404);
    expect(missing.type).toContain('application/problem+json');
    expect(missing.body).toMatchObject({ status: 404, code: 'NOT_FOUND' });
  });

  it('reads the gap-safe log after a log position', async () => {
    const first = await getJson(`${base}/log?limit=2`);
    expect(first.body.items).toHaveLength(2);
    const rest = await getJson(`${base}/log?after=${first.body.next}&limit=100`);
    expect(rest.body.items.map((m: { globalPosition: number }) => m.globalPosition)).toEqual([3, 4, 5, 6, 7]);
    expect(rest.body.next).toBeNull();
    const bad = await getJson(`${base}/log?after=nonsense`);
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('INVALID_INPUT');
  });

  it('shows the failed checkpoint in the summary, the lists and its own page', async () => {
    const summary = await getJson(`${base}/summary`);
    expect(summary.body).toMatchObject({ failed: 1, retrying: 0, liveWorkers: 1, blocking: null, head: 7 });
    const failed = await getJson(`${base}/checkpoints?status=failed`);
    expect(failed.body.items.map((c: { id: string }) => c.id)).toEqual(['G/flaky/order-1']);
    const one = await getJson(`${base}/checkpoints/${encodeURIComponent('G/flaky/order-1')}`);
    expect(one.body).toMatchObject({ id: 'G/flaky/order-1', status: 'failed', position: 1 });
    expect(one.body.lastError.message).toBe('cannot handle order-1');
    expect(one.body.attemptHistory[0].message).toBe('cannot handle order-1');
    const subs = await getJson(`${base}/subscriptions`);
    expect(subs.body.groups[0].subscriptions[0]).toMatchObject({ name: 'flaky', failed: 1 });
    const workers = await getJson(`${base}/workers`);
    expect(workers.body.items).toHaveLength(1);
    expect(workers.body.items[0].live).toBe(true);
  });

  it('answers unknown routes, bad parameters and wrong methods with problem+json', async () => {
    expect((await getJson(`${base}/nope`)).status).toBe(404);
    const limit = await getJson(`${base}/categories?limit=100000`);
    expect(limit.status).toBe(400);
    expect(limit.body.detail).toContain('limit');
    const r = await fetch(`${base}/summary`, { method: 'POST' });
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('GET');
    expect((await fetch(`${api.base}/elsewhere`)).status).toBe(404);
  });
});
