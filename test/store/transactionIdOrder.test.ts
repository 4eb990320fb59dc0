import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import { Query } from '../../src/consistency/query.js';
import { readForDecision, readStoreByQuery } from '../../src/consistency/readByQuery.js';
import { ensureEmbedded, stopEmbedded } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { resetSubscription } from '../../src/operations/subscriptionControl.js';
import { tailMessages } from '../../src/operations/tail.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import { logEnd } from '../../src/store/readLog.js';
import { MESSAGE_COLUMNS, type MessageRow, rowToMessage } from '../../src/store/rowToMessage.js';
import { LOG_START, type LogPosition, type RecordedMessage } from '../../src/store/types.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';
import { until } from '../helpers/until.js';
import { burnXidsTo, nextPowerOfTen, nextXid } from '../helpers/xids.js';

/*
 * Every log read across a power of ten of transaction ids: sorted as text, 10000 comes before 9999,
 * so a read ordered by a text cast while its cursor compares xid8 skips and repeats messages.
 * A private embedded server, so the counter is ours to move: it starts near 750, and burning up to
 * just below the next power of ten takes well under a second.
 */
const dir = mkdtempSync(join(tmpdir(), 'beckett-xids-'));
const schema = 'xid_order';
const COUNT = 200;
let pool: pg.Pool;
let store: MessageStore;
let power: bigint;
/** Every message appended, in log order (one transaction each, so also in global position order). */
let written: RecordedMessage[] = [];

beforeAll(async () => {
  const { url } = await ensureEmbedded(dir);
  pool = createPool(url, { max: 6 });
  await migrate(pool, schema);
  store = createMessageStore({ pool, schema });
  const client = await pool.connect();
  try {
    power = nextPowerOfTen((await nextXid(client)) + BigInt(COUNT));
    await burnXidsTo(client, power - BigInt(COUNT / 2));
  } finally {
    client.release();
  }
  const streams = ['a-1', 'a-2', 'b-1'];
  for (let i = 0; i < COUNT; i++) {
    await store.append(streams[i % 3]!, { type: i % 2 ? 'y' : 'x', data: { i }, tags: [`n:${i % 5}`] });
  }
  // Read back by global position (one transaction each, so also the log order), not by a read under test.
  const { rows } = await pool.query<MessageRow>(
    `SELECT ${MESSAGE_COLUMNS} FROM ${store.sqlContext.s}.messages ORDER BY global_position`,
  );
  written = rows.map(rowToMessage);
});
afterAll(async () => {
  await store?.close();
  await pool?.end();
  await stopEmbedded(dir);
});

const ids = (ms: RecordedMessage[]) => ms.map((m) => m.data as { i: number }).map((d) => d.i);
const expected = (keep: (m: RecordedMessage) => boolean) => ids(written.filter(keep));

/** Page through a read with small pages, collecting every message. */
async function pages(
  read: (after: LogPosition) => Promise<{ messages: RecordedMessage[]; position: LogPosition }>,
): Promise<RecordedMessage[]> {
  const all: RecordedMessage[] = [];
  let after: LogPosition = LOG_START;
  for (let n = 0; n < 1000; n++) {
    const r = await read(after);
    if (r.messages.length === 0) return all;
    all.push(...r.messages);
    after = r.position;
  }
  throw new Error('the read never ended');
}

describe('log order across a power of ten of transaction ids', () => {
  it('wrote across the power of ten, one transaction per message', () => {
    expect(written).toHaveLength(COUNT);
    const xids = written.map((m) => BigInt(m.transactionId));
    expect(xids[0]!).toBeLessThan(power);
    expect(xids[COUNT - 1]!).toBeGreaterThanOrEqual(power);
    expect(new Set(xids).size).toBe(COUNT);
  });

  it('readAll and readCategory return every message once, in order, page by page', async () => {
    const all = await pages((after) => store.readAll({ after, limit: 7 }));
    expect(ids(all)).toEqual(expected(() => true));
    const typed = await pages((after) => store.readAll({ after, limit: 7, types: ['y'] }));
    expect(ids(typed)).toEqual(expected((m) => m.type === 'y'));
    const category = await pages((after) => store.readCategory('a', { after, limit: 7 }));
    expect(ids(category)).toEqual(expected((m) => m.streamName.startsWith('a-')));
    const both = await pages((after) => store.readCategory('a', { after, limit: 7, types: ['x'] }));
    expect(ids(both)).toEqual(expected((m) => m.streamName.startsWith('a-') && m.type === 'x'));
  });

  it('readByQuery and readForDecision return every match once, in order, page by page', async () => {
    const query = Query.of({ tags: ['n:1'] }, { types: ['y'] });
    const matches = (m: RecordedMessage) => m.tags.includes('n:1') || m.type === 'y';
    const byQuery = await pages((after) => readStoreByQuery(store, query, { after, limit: 7 }));
    expect(ids(byQuery)).toEqual(expected(matches));
    const all = await pages((after) => readStoreByQuery(store, Query.all(), { after, limit: 7 }));
    expect(ids(all)).toEqual(expected(() => true));
    const decision = await readForDecision(store, query, { pageSize: 7 });
    expect(ids(decision.messages)).toEqual(expected(matches));
    const everything = await readForDecision(store, Query.all(), { pageSize: 7 });
    expect(ids(everything.messages)).toEqual(expected(() => true));
  });

  it("logEnd is the last message's place, so reading from it finds nothing older", async () => {
    const last = written[COUNT - 1]!;
    expect(await logEnd(pool, store.sqlContext)).toEqual({
      transactionId: last.transactionId,
      globalPosition: last.globalPosition,
    });
  });

  it('es tail starts where asked and prints every later message once', async () => {
    const tail = async (from: 'end' | { position: number } | { time: Date }) => {
      const got: RecordedMessage[] = [];
      for await (const m of tailMessages(pool, store.sqlContext, {
        target: { category: 'a' },
        from,
        follow: false,
        batchSize: 7,
      }))
        got.push(m);
      return got;
    };
    // From a position below the power of ten: everything of the category from there on.
    const start = written[10]!.globalPosition;
    expect(ids(await tail({ position: start }))).toEqual(
      expected((m) => m.streamName.startsWith('a-') && m.globalPosition >= start),
    );
    const time = written[20]!.createdAt;
    expect(ids(await tail({ time }))).toEqual(
      expected((m) => m.streamName.startsWith('a-') && m.createdAt >= time),
    );
    expect(await tail('end')).toEqual([]);
  });

  it('a subscription handles every message once, in order, and a reset to the end starts after the last', async () => {
    const seen: number[] = [];
    const config = resolveConfig({
      database: { schema },
      groups: {
        G: {
          subscriptions: {
            all: { handler: (m: RecordedMessage) => void seen.push((m.data as { i: number }).i) },
          },
        },
      },
    });
    const errors: Error[] = [];
    const worker = createWorker({
      pool,
      config,
      group: 'G',
      concurrency: 1,
      maxPollMs: 50,
      readerBatchSize: 7,
      onError: (e, where) =>
        errors.push(new Error(`${where}: ${e.message} ${(e as { detail?: string }).detail}`)),
    });
    await worker.start();
    try {
      await until(() => seen.length >= COUNT, 'every message handled');
      // Single consumer, one stream at a time: per stream, in order, each once.
      for (const stream of ['a-1', 'a-2', 'b-1']) {
        const want = expected((m) => m.streamName === stream);
        expect(seen.filter((i) => want.includes(i))).toEqual(want);
      }
      expect([...seen].sort((a, b) => a - b)).toEqual(expected(() => true));
      const reset = await resetSubscription(pool, store.sqlContext, {
        group: 'G',
        subscription: 'all',
        to: 'end',
      });
      expect(reset.position).toBe(written[COUNT - 1]!.globalPosition);
    } finally {
      await worker.stop();
    }
    expect(errors).toEqual([]);
  });
});
