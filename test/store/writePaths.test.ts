import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { message } from '../../src/config/types.js';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { Query } from '../../src/consistency/query.js';
import { StoreClosedError } from '../../src/errors.js';
import { deliverDueRecurring, syncRecurringMessages } from '../../src/scheduling/deliverRecurring.js';
import { deliverDueMessages } from '../../src/scheduling/deliverScheduled.js';
import { scheduleMessage } from '../../src/scheduling/scheduleMessage.js';
import type { MessageStore } from '../../src/store/messageStore.js';
import { channelFor } from '../../src/store/notifications.js';
import { uuidv7 } from '../../src/store/uuidv7.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

/*
 * Every way the library writes a message, and the invariants each must keep:
 * - content: its data and metadata are stored as given (each path's own way of copying them);
 * - tags: its message_tags rows commit with it;
 * - locks: it holds its lock keys (shared) before its position is drawn, so it waits for a
 *   conditional append holding one of them exclusively;
 * - validation: a payload its type's schema refuses is not written;
 * - notification: subscribers get a wake-up after it commits (SQL writers rely on polling; a
 *   caller's transaction notifies after its own commit);
 * - idempotency: written again with the same id, it is stored once.
 */

let db: TestDb;
let store: MessageStore;
let listener: pg.Client;
let wakeUps = 0;

beforeAll(async () => {
  db = await setupDb('write_paths', { poolSize: 20 });
  store = db.makeStore({ messages: { checked: message(z.object({ n: z.number() })) } });
  listener = await db.client();
  listener.on('notification', () => wakeUps++);
  await listener.query(`LISTEN "${channelFor(db.schema)}"`);
});
afterAll(async () => {
  await store.close();
  await db.close();
});

interface Msg {
  id: string;
  type: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  tags: string[];
}

/** Concurrent appends to other streams, so that the append that follows them is group-committed. */
function fillers(kind: 'plain' | 'gated'): Promise<unknown>[] {
  return Array.from({ length: 6 }, (_, i) => {
    const stream = `filler-${uuidv7()}`;
    const m = { type: `filler${i}`, data: {} };
    return kind === 'plain'
      ? store.append(stream, m, { expectedVersion: 'no_stream' })
      : appendWithCondition(store, [{ stream, messages: m, expectedVersion: 0 }], {
          failIfEventsMatch: Query.of({ types: [`filler-never-${i}`] }),
        });
  });
}

async function afterFillers<T>(kind: 'plain' | 'gated', write: () => Promise<T>): Promise<T> {
  const others = fillers(kind);
  const mine = write();
  const [result] = await Promise.allSettled([mine, ...others]);
  if (result!.status === 'rejected') throw result!.reason;
  return mine;
}

const nothingMatches = { failIfEventsMatch: Query.of({ types: ['never-written'] }) };

/** Due now, the same occurrence every time (so a second delivery is the same message). */
async function occurrenceDue(name: string): Promise<void> {
  await db.pool.query(
    `UPDATE "${db.schema}".recurring_messages SET next_occurrence_at = '2020-01-01T00:00:00Z', retry_at = NULL WHERE name = $1`,
    [name],
  );
}

interface WritePath {
  name: string;
  write(stream: string, m: Msg): Promise<unknown>;
  /** Carries the message's metadata (recurring messages come from the config, without it). Default true. */
  metadata?: boolean;
  /** Carries tags (recurring messages come from the config, without tags). Default true. */
  tags?: boolean;
  /** Validates payloads against their type's schema (SQL callers cannot). Default true. */
  validates?: boolean;
  /** Sends the wake-up itself (SQL writers rely on polling; a caller's transaction notifies after its commit). Default true. */
  notifies?: boolean;
}

const paths: WritePath[] = [
  { name: 'append, exact version', write: (s, m) => store.append(s, m, { expectedVersion: 'no_stream' }) },
  {
    name: 'append, exact version, untagged',
    write: (s, m) => store.append(s, { ...m, tags: [] }, { expectedVersion: 'no_stream' }),
    tags: false,
  },
  {
    name: 'append, exact version, group-committed',
    write: (s, m) => afterFillers('plain', () => store.append(s, m, { expectedVersion: 'no_stream' })),
  },
  { name: 'append, any version', write: (s, m) => store.append(s, m) },
  {
    name: 'append, several messages',
    write: (s, m) => store.append(s, [m, { type: 'second', data: {} }]),
  },
  {
    name: 'append, several messages, exact version',
    write: (s, m) => store.append(s, [m, { type: 'second', data: {} }], { expectedVersion: 'no_stream' }),
  },
  { name: 'appendMultiple', write: (s, m) => store.appendMultiple([{ stream: s, messages: m }]) },
  {
    name: 'conditional append',
    write: (s, m) =>
      appendWithCondition(store, [{ stream: s, messages: m, expectedVersion: 0 }], nothingMatches),
  },
  {
    name: 'conditional append, group-committed',
    write: (s, m) =>
      afterFillers('gated', () =>
        appendWithCondition(store, [{ stream: s, messages: m, expectedVersion: 0 }], nothingMatches),
      ),
  },
  {
    name: 'conditional append, append_with_condition()',
    write: (s, m) => appendWithCondition(store, [{ stream: s, messages: m }], nothingMatches),
  },
  {
    name: 'handler ctx.store',
    write: (s, m) => store.causedBy({ id: uuidv7(), metadata: {} }).append(s, m),
  },
  {
    name: 'handler ctx.store, transactional',
    notifies: false,
    write: async (s, m) => {
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        await store.withTransaction(client).causedBy({ id: uuidv7(), metadata: {} }).append(s, m);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      } finally {
        client.release();
      }
    },
  },
  {
    name: 'scheduled delivery',
    write: async (s, m) => {
      await scheduleMessage(store, s, m, { at: new Date(Date.now() - 1000) });
      const r = await deliverDueMessages(store);
      if (r.failed > 0) throw new Error('delivery failed');
      return r;
    },
  },
  {
    name: 'recurring delivery',
    tags: false,
    metadata: false,
    write: async (s, m) => {
      const r = {
        name: s,
        cron: '0 0 1 1 *',
        timezone: 'UTC',
        stream: s,
        message: { type: m.type, data: m.data },
      };
      await syncRecurringMessages(store, [r]);
      await occurrenceDue(s);
      const result = await deliverDueRecurring(store, [r]);
      if (result.failed > 0) throw new Error('recurring delivery failed');
      return result;
    },
  },
  {
    name: 'SQL function append_to_stream()',
    validates: false,
    notifies: false,
    write: (s, m) =>
      db.pool.query(
        `SELECT * FROM "${db.schema}".append_to_stream($1, -1, ARRAY[$2::uuid], ARRAY[$3], ARRAY[$4::jsonb], ARRAY[$6::jsonb], ARRAY[$5])`,
        [s, m.id, m.type, JSON.stringify(m.data), m.tags.join('\u001f'), JSON.stringify(m.metadata)],
      ),
  },
];

const stored = async (stream: string) =>
  (
    await db.pool.query<{
      id: string;
      type: string;
      data: unknown;
      metadata: Record<string, unknown>;
      tags: string[];
    }>(
      `SELECT m.id::text, m.type, m.data, m.metadata,
              coalesce((SELECT array_agg(t.tag ORDER BY t.tag) FROM "${db.schema}".message_tags t
                         WHERE t.global_position = m.global_position), '{}') AS tags
         FROM "${db.schema}".messages m WHERE m.stream_name = $1 ORDER BY m.stream_position`,
      [stream],
    )
  ).rows;

/** Whether a backend waits for the advisory lock of `key`. */
async function waitsForLock(key: string): Promise<boolean> {
  const { rows } = await db.pool.query(
    `SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 1
        AND ((l.classid::bigint << 32) | l.objid::bigint) = "${db.schema}".lock_id($1)`,
    [key],
  );
  return rows.length > 0;
}

describe('every write path keeps every invariant', () => {
  for (const [i, path] of paths.entries()) {
    it(path.name, async () => {
      const type = `wp${i}`;
      const stream = `wp${i}-1`;
      const m: Msg = {
        id: uuidv7(),
        type,
        data: { i, payload: `data of ${i}` },
        metadata: { origin: `metadata of ${i}` },
        tags: [`path:${i}`, 'all:paths'],
      };
      // Locks: a conditional append on this type holds its key; the write must wait for it.
      const holder = await db.pool.connect();
      let written: Promise<unknown>;
      try {
        await holder.query('BEGIN');
        await holder.query(`SELECT pg_advisory_xact_lock("${db.schema}".lock_id($1))`, [`t=${type}\u001f*`]);
        const before = wakeUps;
        written = path.write(stream, m);
        written.catch(() => undefined);
        await until(
          () => waitsForLock(`t=${type}\u001f*`),
          `${path.name} waiting for the condition's lock`,
          10_000,
        );
        expect(await stored(stream)).toEqual([]);
        await holder.query('COMMIT');
        await written;
        // Notification after commit.
        if (path.notifies !== false)
          await until(() => wakeUps > before, `a wake-up after ${path.name}`, 5_000);
      } finally {
        await holder.query('ROLLBACK').catch(() => undefined);
        holder.release();
      }
      // Tags rows with the message.
      const rows = await stored(stream);
      const mine = rows.filter((r) => r.type === type);
      expect(mine).toHaveLength(1);
      if (path.tags !== false)
        expect(mine[0]).toMatchObject({ id: m.id, type, tags: ['all:paths', `path:${i}`] });
      // Content: data and metadata as given (the store adds its own metadata keys beside them).
      expect(mine[0]!.data).toEqual(m.data);
      if (path.metadata !== false) expect(mine[0]!.metadata).toMatchObject(m.metadata);
      // Idempotency: the same message again is stored once.
      await path.write(stream, m).catch(() => undefined);
      expect(await stored(stream)).toEqual(rows);
      // Validation: a payload the type's schema refuses is not written.
      if (path.validates !== false) {
        const bad: Msg = {
          id: uuidv7(),
          type: 'checked',
          data: { n: 'not a number' },
          metadata: {},
          tags: [],
        };
        await expect(path.write(`wp${i}-bad`, bad)).rejects.toBeTruthy();
        expect(await stored(`wp${i}-bad`)).toEqual([]);
      }
    });
  }
});

describe('the writer lives as long as the store', () => {
  it('close() settles every append taken, then refuses new ones', async () => {
    const s = db.makeStore();
    const pending = Array.from({ length: 30 }, (_, i) =>
      s.append(`closing-${i}`, { type: 'x', data: {} }, { expectedVersion: 'no_stream' }),
    );
    const gated = appendWithCondition(
      s,
      [{ stream: 'closing-gated', messages: { type: 'x', data: {} }, expectedVersion: 0 }],
      nothingMatches,
    );
    await s.close();
    const settled = await Promise.allSettled([...pending, gated]);
    expect(settled.filter((r) => r.status === 'rejected')).toEqual([]);
    await expect(s.append('closing-late', { type: 'x', data: {} })).rejects.toBeInstanceOf(StoreClosedError);
    await expect(
      appendWithCondition(s, [{ stream: 'closing-late', messages: { type: 'x', data: {} } }], nothingMatches),
    ).rejects.toBeInstanceOf(StoreClosedError);
  });
});
