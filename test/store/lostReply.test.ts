import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandExecutor } from '../../src/consistency/commandExecutor.js';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import type { Decider } from '../../src/consistency/decider.js';
import { Query } from '../../src/consistency/query.js';
import { createPool } from '../../src/db/pool.js';
import { AppendOutcomeUnknownError, MessageIdConflictError } from '../../src/errors.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import { uuidv7 } from '../../src/store/uuidv7.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { ReplyDropProxy } from '../helpers/replyDropProxy.js';

/*
 * A reply lost after COMMIT: the proxy forwards the request, swallows the reply and cuts the
 * connection once the server is done (committed). The append must never be reported as a
 * conflict nor rerun; it is AppendOutcomeUnknownError, and a retry with the same ids returns the
 * original result.
 */

let db: TestDb;
let proxy: ReplyDropProxy;
let pool: pg.Pool;
let store: MessageStore;

beforeAll(async () => {
  db = await setupDb('lost_reply');
  const target = new URL(db.url);
  proxy = await ReplyDropProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
  pool = createPool(proxy.urlFor(db.url), { max: 6 });
  store = createMessageStore({ pool, schema: db.schema });
});
afterAll(async () => {
  await store.close();
  await pool.end();
  await proxy.close();
  await db.close();
});

const rows = async (stream: string) =>
  (
    await db.pool.query<{ id: string; stream_position: number; global_position: number }>(
      `SELECT id::text, stream_position, global_position FROM "${db.schema}".messages WHERE stream_name = $1 ORDER BY stream_position`,
      [stream],
    )
  ).rows;

describe('a reply lost after COMMIT', () => {
  it('group commit: the lost batch is reported as unknown outcome, never as a conflict; retries return the original results', async () => {
    const ids = Array.from({ length: 10 }, () => uuidv7());
    // The first two run alone; the others form a batch, whose reply is lost.
    proxy.dropReplyTo('lost-9');
    const dropped = proxy.dropped;
    const results = await Promise.allSettled(
      ids.map((id, i) =>
        store.append(`lost-${i}`, { id, type: 'opened', data: { i } }, { expectedVersion: 'no_stream' }),
      ),
    );
    expect(proxy.dropped).toBe(dropped + 1);
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ i, reason: r.reason }] : []));
    expect(failed.map((f) => f.i)).toContain(9);
    for (const f of failed) expect(f.reason).toBeInstanceOf(AppendOutcomeUnknownError);
    // Committed, once each.
    for (let i = 0; i < 10; i++) expect((await rows(`lost-${i}`)).map((r) => r.id)).toEqual([ids[i]]);
    // Retried with the same ids: the original results, nothing written twice.
    for (const { i } of failed) {
      const retried = await store.append(
        `lost-${i}`,
        { id: ids[i], type: 'opened', data: { i } },
        { expectedVersion: 'no_stream' },
      );
      const [stored] = await rows(`lost-${i}`);
      expect(retried).toEqual({ streamVersion: 1, globalPosition: stored!.global_position });
    }
    // An id stored elsewhere is not a retry: a typed error, nothing written.
    await expect(
      store.append('lost-other', { id: ids[9], type: 'opened', data: {} }, { expectedVersion: 'no_stream' }),
    ).rejects.toBeInstanceOf(MessageIdConflictError);
    await expect(
      store.append('lost-9', { id: ids[9], type: 'opened', data: {} }, { expectedVersion: 1 }),
    ).rejects.toBeInstanceOf(MessageIdConflictError);
    expect(await rows('lost-other')).toEqual([]);
  });

  it('a lone append, "any" appends, multi-stream and conditional appends: unknown outcome, then the original result', async () => {
    const cases: { marker: string; run: (ids: string[]) => Promise<unknown>; streams: string[] }[] = [
      {
        marker: 'alone-1',
        streams: ['alone-1'],
        run: ([a]) =>
          store.append('alone-1', { id: a, type: 'x', data: {} }, { expectedVersion: 'no_stream' }),
      },
      {
        marker: 'anyway-1',
        streams: ['anyway-1'],
        run: ([a, b]) =>
          store.append('anyway-1', [
            { id: a, type: 'x', data: {} },
            { id: b, type: 'y', data: {} },
          ]),
      },
      {
        marker: 'multi-2',
        streams: ['multi-1', 'multi-2'],
        run: ([a, b]) =>
          store.appendMultiple([
            { stream: 'multi-1', messages: { id: a, type: 'x', data: {} }, expectedVersion: 'no_stream' },
            { stream: 'multi-2', messages: { id: b, type: 'x', data: {} } },
          ]),
      },
      {
        marker: 'gated-1',
        streams: ['gated-1'],
        run: ([a]) =>
          appendWithCondition(
            store,
            [
              {
                stream: 'gated-1',
                messages: { id: a, type: 'seat', data: {}, tags: ['seat:1'] },
                expectedVersion: 0,
              },
            ],
            { failIfEventsMatch: Query.of({ types: ['seat'], tags: ['seat:1'] }) },
          ),
      },
    ];
    for (const c of cases) {
      const ids = [uuidv7(), uuidv7()];
      proxy.dropReplyTo(c.marker);
      const err = await c.run(ids).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, c.marker).toBeInstanceOf(AppendOutcomeUnknownError);
      // Committed or not (the multi-stream append lost the reply to a statement before its COMMIT),
      // the retry leaves each message stored once.
      const retried = await c.run(ids);
      expect(retried, c.marker).toBeDefined();
      const stored = (await Promise.all(c.streams.map(rows))).flat().map((r) => r.id);
      expect(stored.sort(), c.marker).toEqual(ids.slice(0, stored.length).sort());
      expect(stored.length, c.marker).toBe(c.marker === 'anyway-1' ? 2 : c.streams.length);
    }
  });

  it('conditional appends whose group-committed round trip carries the wake-up: unknown outcome, then the original results', async () => {
    // A new store owes its first wake-up at once: its first round trip carries it (BEGIN, the
    // locks, the gated INSERT, COMMIT, the NOTIFY). The first append runs alone, the nine queued
    // behind it in batches; the reply of the first is lost after its COMMIT.
    const carrying = createMessageStore({ pool, schema: db.schema });
    const ids = Array.from({ length: 10 }, () => uuidv7());
    const append = (i: number) =>
      appendWithCondition(
        carrying,
        [
          {
            stream: `carried-${i}`,
            messages: { id: ids[i], type: 'seat', data: { i }, tags: [`carried-seat:${i}`] },
            expectedVersion: 0,
          },
        ],
        { failIfEventsMatch: Query.of({ types: ['seat'], tags: [`carried-seat:${i}`] }) },
      );
    try {
      proxy.dropReplyTo('carried-0');
      const dropped = proxy.dropped;
      const results = await Promise.allSettled(ids.map((_, i) => append(i)));
      expect(proxy.dropped).toBe(dropped + 1);
      const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ i, reason: r.reason }] : []));
      expect(failed.map((f) => f.i)).toEqual([0]);
      expect(failed[0]!.reason).toBeInstanceOf(AppendOutcomeUnknownError);
      for (let i = 0; i < 10; i++) expect((await rows(`carried-${i}`)).map((r) => r.id)).toEqual([ids[i]]);
      // Retried with the same id: the original result, nothing written twice.
      const retried = await append(0);
      const [stored] = await rows('carried-0');
      expect(retried.streams.get('carried-0')).toEqual({
        streamVersion: 1,
        globalPosition: stored!.global_position,
      });
    } finally {
      await carrying.close();
    }
  });

  it('CommandExecutor retries an unknown outcome with the same ids: each command runs once', async () => {
    const decider: Decider<number, { note: string }> = {
      initialState: () => 0,
      evolve: (n) => n + 1,
      decide: (cmd) => [{ type: 'Deposited', data: { note: cmd.note } }],
    };
    const executor = new CommandExecutor(store, { baseDelayMs: 1 });
    proxy.dropReplyTo('drop-this-reply');
    const dropped = proxy.dropped;
    const results = await Promise.allSettled(
      Array.from({ length: 24 }, (_, i) =>
        executor.execute(decider, { note: i === 20 ? 'drop-this-reply' : 'ok' }, { stream: `acct-${i}` }),
      ),
    );
    expect(proxy.dropped).toBe(dropped + 1);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    for (let i = 0; i < 24; i++) expect((await rows(`acct-${i}`)).length, `acct-${i}`).toBe(1);
  });
});
