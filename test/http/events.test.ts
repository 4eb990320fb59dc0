import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Beckett, createBeckett } from '../../src/admin/createBeckett.js';
import { setupDb, type TestDb, untilCommittedReadable } from '../helpers/db.js';
import { serveApi, type TestServer } from './server.js';
import { openSse, type SseEvent } from './sse.js';

let db: TestDb;
let beckett: Beckett;
let api: TestServer;
let base: string;

beforeAll(async () => {
  db = await setupDb('api_sse');
  beckett = createBeckett({ pool: db.pool, schema: db.schema });
  api = await serveApi(beckett, { events: { pollMs: 200, batchSize: 7 } });
  base = `${api.base}/api`;
});

afterAll(async () => {
  await api?.close();
  await beckett?.close();
  await db?.close();
});

const messages = (events: SseEvent[]) => events.filter((e) => e.event === 'message');
const positions = (events: SseEvent[]) =>
  messages(events).map((e) => JSON.parse(e.data).globalPosition as number);

describe('GET /api/events', () => {
  it('streams the whole log, says caught-up at the head, and resumes with Last-Event-ID without loss or duplicate', async () => {
    for (let i = 1; i <= 20; i++) await db.store.append(`a-${i % 3}`, { type: 'n', data: { i } });
    // 'caught-up' is the gap-safe head: another test's open transaction on this server holds it back.
    await untilCommittedReadable(db.pool);
    const first = await openSse(`${base}/events?from=start`);
    expect(first.status).toBe(200);
    expect(first.contentType).toContain('text/event-stream');
    const initial = await first.until((e) => e.event === 'caught-up');
    const got = positions(initial);
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    // Every message's id is its log position.
    for (const e of messages(initial)) expect(e.id).toBe(JSON.parse(e.data).logPosition);

    // Live: appended while connected; the client stops after 5 of them, mid-way.
    const writer = (async () => {
      for (let i = 21; i <= 40; i++) await db.store.append(`a-${i % 3}`, { type: 'n', data: { i } });
    })();
    const live = await first.until((e) => e.event === 'message' && JSON.parse(e.data).data.i === 25);
    first.close();
    const lastId = messages(live).at(-1)!.id!;
    await writer;

    const resumed = await openSse(`${base}/events`, { 'last-event-id': lastId });
    const rest = await resumed.until((e) => e.event === 'message' && JSON.parse(e.data).data.i === 40);
    resumed.close();
    const all = [...got, ...positions(live), ...positions(rest)];
    expect(all).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  });

  it('follows one stream from its start, resuming in stream order', async () => {
    await db.store.append('s-1', [
      { type: 'x', data: { k: 1 } },
      { type: 'y', data: { k: 2 } },
    ]);
    await db.store.append('other-1', { type: 'x', data: {} });
    await db.store.append('s-1', { type: 'x', data: { k: 3 } });
    const c = await openSse(`${base}/events?stream=s-1&from=start`);
    const events = await c.until((e) => e.event === 'caught-up');
    c.close();
    expect(messages(events).map((e) => JSON.parse(e.data).data.k)).toEqual([1, 2, 3]);
    const afterFirst = messages(events)[0]!.id!;
    const again = await openSse(`${base}/events?stream=s-1&after=${afterFirst}`);
    const rest = await again.until((e) => e.event === 'caught-up');
    again.close();
    expect(messages(rest).map((e) => JSON.parse(e.data).data.k)).toEqual([2, 3]);
  });

  it('filters by category and types, and by tags', async () => {
    await db.store.append('cat-1', [
      { type: 'keep', data: { n: 1 }, tags: ['t:1'] },
      { type: 'drop', data: { n: 2 } },
    ]);
    await db.store.append('dog-1', { type: 'keep', data: { n: 3 }, tags: ['t:1'] });
    await untilCommittedReadable(db.pool);
    const byCategory = await openSse(`${base}/events?category=cat&types=keep&from=start`);
    const c = await byCategory.until((e) => e.event === 'caught-up');
    byCategory.close();
    expect(messages(c).map((e) => JSON.parse(e.data).data.n)).toEqual([1]);
    const byTag = await openSse(`${base}/events?tags=t:1&from=start`);
    const t = await byTag.until((e) => e.event === 'caught-up');
    byTag.close();
    expect(messages(t).map((e) => JSON.parse(e.data).data.n)).toEqual([1, 3]);
  });

  it('refuses bad options with a problem before the stream starts', async () => {
    const r = await fetch(`${base}/events`, { headers: { 'last-event-id': 'garbage' } });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(((await r.json()) as { detail: string }).detail).toContain('Last-Event-ID');
    const both = await fetch(`${base}/events?stream=a-1&category=a`);
    expect(both.status).toBe(400);
  });
});
