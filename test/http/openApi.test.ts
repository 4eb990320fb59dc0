import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Beckett, createBeckett } from '../../src/admin/createBeckett.js';
import { syncRecurringMessages } from '../../src/scheduling/deliverRecurring.js';
import { scheduleMessage } from '../../src/scheduling/scheduleMessage.js';
import type { Worker } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from '../operations/helpers.js';
import { validate } from './jsonSchema.js';
import { serveApi, type TestServer } from './server.js';

/*
 * Every route of the document is called for real, and each answer (success and error) is checked
 * against the schema the document gives for its status: the document cannot drift from the code.
 */

let db: TestDb;
let beckett: Beckett;
let worker: Worker;
let api: TestServer;
let doc: Record<string, any>;
const covered = new Set<string>();

beforeAll(async () => {
  db = await setupDb('api_oas');
  const config = opsConfig(
    db.schema,
    {
      flaky: {
        category: 'order',
        maxRetries: 0,
        handler: (m) => {
          if ((m.data as { fail?: boolean }).fail) throw new Error(`cannot handle ${m.streamName}`);
        },
      },
    },
    {
      recurring: [
        { name: 'nightly', cron: '0 3 * * *', stream: 'reports-daily', message: { type: 'due', data: {} } },
      ],
      retention: { policies: [{ category: 'order', maxCount: 1 }] },
    },
  );
  await db.store.append('order-1', [
    { type: 'placed', data: {} },
    { type: 'paid', data: { fail: true } },
  ]);
  await db.store.append('order-2', { type: 'placed', data: { fail: true } });
  await db.store.append('order-3', { type: 'placed', data: { fail: true } });
  await db.store.append('zeta-1', { type: 'z', data: {} });
  worker = startWorker(db, config);
  await worker.start();
  for (const s of ['order-1', 'order-2', 'order-3'])
    await until(async () => (await checkpoint(db, 'flaky', s))?.status === 'failed', `${s} to fail`);
  await syncRecurringMessages(db.store, config.recurring);
  beckett = createBeckett({ pool: db.pool, schema: db.schema, config });
  api = await serveApi(beckett);
  doc = (await (await fetch(`${api.base}/api/openapi.json`)).json()) as Record<string, any>;
});

afterAll(async () => {
  await api?.close();
  await worker?.stop();
  await beckett?.close();
  await db?.close();
});

/** Call a route and check the answer against the document; returns the parsed body. */
async function call(
  method: 'get' | 'post',
  template: string,
  url: string,
  opts: { body?: unknown; status?: number } = {},
): Promise<any> {
  const r = await fetch(`${api.base}${url}`, {
    method: method.toUpperCase(),
    ...(opts.body !== undefined
      ? { body: JSON.stringify(opts.body), headers: { 'content-type': 'application/json' } }
      : {}),
  });
  const body = await r.json();
  if (opts.status !== undefined) expect(r.status, JSON.stringify(body)).toBe(opts.status);
  const op = doc.paths[template]?.[method];
  expect(op, `${method} ${template} is documented`).toBeDefined();
  const response = op.responses[String(r.status)];
  expect(response, `${method} ${template} documents status ${r.status}`).toBeDefined();
  const type = (r.headers.get('content-type') ?? '').split(';')[0]!;
  const schema = response.content?.[type]?.schema;
  expect(schema, `${method} ${template} ${r.status} documents ${type}`).toBeDefined();
  expect(validate(body, schema, doc), `${method} ${url} ${r.status}`).toEqual([]);
  covered.add(`${method} ${template}`);
  return body;
}

describe('the OpenAPI document', () => {
  it('is OpenAPI 3 and every $ref resolves', () => {
    expect(doc.openapi).toMatch(/^3\./);
    const refs = JSON.stringify(doc).match(/#\/components\/schemas\/\w+/g) ?? [];
    for (const r of refs) expect(doc.components.schemas[r.split('/').at(-1)!], r).toBeDefined();
  });

  it('matches the real answers of every route', async () => {
    await call('get', '/api/summary', '/api/summary', { status: 200 });
    await call('get', '/api/health', '/api/health');
    await call('get', '/api/lag', '/api/lag', { status: 200 });
    const cats = await call('get', '/api/categories', '/api/categories?limit=1', { status: 200 });
    expect(cats.next).not.toBeNull();
    await call('get', '/api/categories', '/api/categories?limit=0', { status: 400 });
    await call('get', '/api/categories/{category}/streams', '/api/categories/order/streams', { status: 200 });
    const page = await call('get', '/api/streams/{stream}/messages', '/api/streams/order-1/messages', {
      status: 200,
    });
    await call('get', '/api/messages/{id}', `/api/messages/${page.items[0].id}`, { status: 200 });
    await call('get', '/api/messages/{id}', '/api/messages/nope', { status: 404 });
    await call(
      'get',
      '/api/messages',
      `/api/messages?correlationId=${page.items[0].metadata.correlationId}`,
      { status: 200 },
    );
    await call('get', '/api/log', '/api/log?limit=2', { status: 200 });
    await call('get', '/api/subscriptions', '/api/subscriptions', { status: 200 });
    await call('get', '/api/checkpoints', '/api/checkpoints?status=failed', { status: 200 });
    await call('get', '/api/checkpoints/{id}', `/api/checkpoints/${encodeURIComponent('G/flaky/order-1')}`, {
      status: 200,
    });
    await call('get', '/api/workers', '/api/workers', { status: 200 });
    await call('get', '/api/retention/preview', '/api/retention/preview', { status: 200 });
    const id = await scheduleMessage(
      db.store,
      'later-1',
      { type: 'x', data: {} },
      { at: new Date(Date.now() + 3_600_000) },
    );
    await call('get', '/api/scheduled', '/api/scheduled', { status: 200 });
    await call('post', '/api/scheduled/{id}/cancel', `/api/scheduled/${id}/cancel`, { status: 200 });
    await call('post', '/api/scheduled/{id}/cancel', `/api/scheduled/${id}/cancel`, { status: 404 });
    await call('get', '/api/recurring', '/api/recurring', { status: 200 });
    await call('post', '/api/recurring/{name}/send-now', '/api/recurring/nightly/send-now', { status: 201 });
    await call('post', '/api/streams/{stream}/messages', '/api/streams/x-1/messages', {
      body: { expectedVersion: 'no_stream', messages: [{ type: 't', data: { a: 1 } }] },
      status: 201,
    });
    await call('post', '/api/streams/{stream}/messages', '/api/streams/x-1/messages', {
      body: { expectedVersion: 'no_stream', messages: [{ type: 't', data: {} }] },
      status: 409,
    });
    await call('post', '/api/checkpoints/retry', '/api/checkpoints/retry', {
      body: { ids: ['G/flaky/order-2'] },
      status: 200,
    });
    await call('post', '/api/checkpoints/skip', '/api/checkpoints/skip', {
      body: { ids: ['G/flaky/order-3'] },
      status: 200,
    });
    await call('post', '/api/checkpoints/skip', '/api/checkpoints/skip', {
      body: { ids: ['G/flaky/none'] },
      status: 404,
    });
    await call('post', '/api/checkpoints/release', '/api/checkpoints/release', {
      body: { group: 'G' },
      status: 200,
    });
    await call('post', '/api/subscriptions/{group}/{name}/pause', '/api/subscriptions/G/flaky/pause', {
      status: 200,
    });
    await call('post', '/api/subscriptions/{group}/{name}/resume', '/api/subscriptions/G/flaky/resume', {
      status: 200,
    });
    await call('post', '/api/subscriptions/{group}/{name}/replay', '/api/subscriptions/G/flaky/replay', {
      body: { from: 1, dryRun: true },
      status: 200,
    });
    await call('post', '/api/subscriptions/{group}/{name}/pause', '/api/subscriptions/G/flaky/pause', {
      status: 200,
    });
    await until(
      async () =>
        !(await db.pool.query(`SELECT 1 FROM "${db.schema}".checkpoints WHERE leased_until >= now()`))
          .rowCount,
      'no lease',
    );
    await call('post', '/api/subscriptions/{group}/{name}/reset', '/api/subscriptions/G/flaky/reset', {
      body: { to: 'end' },
      status: 200,
    });
    // A subscription no config declares and no worker runs: forgotten; a declared one: refused.
    await db.pool.query(
      `INSERT INTO "${db.schema}".subscriptions (group_name, name, status, fingerprint) VALUES ('G', 'gone', 'unknown', 'f')`,
    );
    await call('post', '/api/subscriptions/{group}/{name}/forget', '/api/subscriptions/G/gone/forget', {
      status: 200,
    });
    await call('post', '/api/subscriptions/{group}/{name}/forget', '/api/subscriptions/G/flaky/forget', {
      status: 409,
    });
    await call('get', '/api/audit', '/api/audit?limit=3', { status: 200 });

    const enqueued = await call('post', '/api/queues/{queue}/jobs', '/api/queues/emails/jobs', {
      body: {
        jobs: [
          { type: 'welcome', data: { to: 'a@example.com' } },
          { type: 'welcome', data: {}, delay: 60000 },
        ],
      },
      status: 201,
    });
    await call('post', '/api/queues/{queue}/jobs', '/api/queues/emails/jobs', {
      body: { jobs: [{ type: 'welcome', data: {}, when: 'now' }] },
      status: 400,
    });
    // A dead letter, as a worker leaves one after maxDeliveries.
    await db.pool.query(
      `INSERT INTO "${db.schema}".queue_dead_letters (id, queue, type, data, metadata, deliveries, errors, created_at)
       VALUES ('0193f0c2-7a61-7c5e-8d1b-2f0e4b1c9a10', 'emails', 'welcome', '{}', '{}', 3,
               '[{"delivery": 3, "at": "2026-01-01T00:00:00Z", "name": "Error", "message": "smtp down"}]', now())`,
    );
    const queues = await call('get', '/api/queues', '/api/queues', { status: 200 });
    expect(queues.items).toMatchObject([{ queue: 'emails', ready: 1, delayed: 1, dead: 1 }]);
    const jobs = await call('get', '/api/queues/{queue}/jobs', '/api/queues/emails/jobs?limit=10', {
      status: 200,
    });
    expect(jobs.items.map((j: { id: string }) => j.id).sort()).toEqual([...enqueued.ids].sort());
    await call('get', '/api/queues/{queue}/jobs', '/api/queues/no%20such/jobs', { status: 400 });
    const dead = await call('get', '/api/queues/{queue}/dead-letters', '/api/queues/emails/dead-letters', {
      status: 200,
    });
    expect(dead.items[0].errors[0].message).toBe('smtp down');
    const redriven = await call(
      'post',
      '/api/queues/{queue}/dead-letters/redrive',
      '/api/queues/emails/dead-letters/redrive',
      { body: { ids: [dead.items[0].id] }, status: 200 },
    );
    expect(redriven).toEqual({ queue: 'emails', ids: [dead.items[0].id], missing: [] });
    await call(
      'post',
      '/api/queues/{queue}/dead-letters/redrive',
      '/api/queues/emails/dead-letters/redrive',
      {
        body: { ids: [dead.items[0].id] },
        status: 404,
      },
    );
    await call('post', '/api/queues/{queue}/purge', '/api/queues/emails/purge', {
      body: { confirm: 'other' },
      status: 400,
    });
    const purged = await call('post', '/api/queues/{queue}/purge', '/api/queues/emails/purge', {
      body: { confirm: 'emails' },
      status: 200,
    });
    expect(purged).toEqual({ queue: 'emails', deadLetters: false, deleted: 3 });
    // Every action that reached the database is in the audit log (refused input is not).
    const audit = await beckett.admin.audit({ limit: 10 });
    expect(audit.items.map((a) => `${a.action} ${a.result}`).slice(0, 4)).toEqual([
      'purgeQueue ok',
      'redrive error',
      'redrive ok',
      'enqueue ok',
    ]);

    const sse = await fetch(`${api.base}/api/events?from=start`);
    expect(sse.headers.get('content-type')).toContain('text/event-stream');
    expect(doc.paths['/api/events'].get.responses['200'].content['text/event-stream']).toBeDefined();
    await sse.body?.cancel();
    covered.add('get /api/events');
    covered.add('get /api/openapi.json');

    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops as object).map((m) => `${m} ${path}`),
    );
    expect(documented.filter((d) => !covered.has(d))).toEqual([]);
  });
});
