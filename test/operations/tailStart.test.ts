import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tailMessages } from '../../src/operations/tail.js';
import type { RecordedMessage } from '../../src/store/types.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('tail_start');
});
afterAll(async () => {
  await db?.close();
});

describe('es tail from the end', () => {
  it('never prints a message committed before it started, even one not yet final then', async () => {
    // An older transaction holds a transaction id: 'old' commits after it took its id, so 'old' is
    // visible but not yet final when the tail starts (the end of the final log is before it).
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('SELECT pg_current_xact_id()');
    await db.store.append('cart-1', { type: 'old', data: {} });

    const abort = new AbortController();
    const seen: RecordedMessage[] = [];
    const started = (async () => {
      for await (const m of tailMessages(db.pool, db.store.sqlContext, {
        target: { category: 'cart' },
        pollMs: 50,
        signal: abort.signal,
      }))
        seen.push(m);
    })();
    try {
      // The tail has taken its start once it is polling: give it that first read, then let the
      // old transaction end and append a new message.
      await until(async () => {
        const { rows } = await db.pool.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE query LIKE '%pg_snapshot_xmin%' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`,
          [db.schema],
        );
        return rows[0].n > 0 || seen.length > 0;
      }, 'the tail read its start');
      await holder.query('ROLLBACK');
      await db.store.append('cart-1', { type: 'new', data: {} });
      await until(() => seen.length >= 1, 'the new message');
    } finally {
      abort.abort();
      await started;
    }
    expect(seen.map((m) => m.type)).toEqual(['new']);
  });
});

describe('es tail from a position', () => {
  it('prints a message at or after the position written by a transaction older than the first one seen', async () => {
    await db.store.append('bin-1', { type: 'before', data: {} });
    const from = (await db.store.readStream('bin-1'))[0]!.globalPosition + 1;
    // The holder takes its transaction id first, then 'b' commits (a younger id, past the position):
    // the holder's own message will sort before 'b' in the log however late it commits.
    const holder = await db.pool.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT pg_current_xact_id()');
    await db.store.append('bin-2', { type: 'b', data: {} });

    const abort = new AbortController();
    const seen: RecordedMessage[] = [];
    const started = (async () => {
      for await (const m of tailMessages(db.pool, db.store.sqlContext, {
        target: { category: 'bin' },
        from: { position: from },
        pollMs: 50,
        signal: abort.signal,
        onCaughtUp: () => seen.push({ type: '(caught up)' } as RecordedMessage),
      }))
        seen.push(m);
    })();
    try {
      await until(() => seen.length > 0, 'the tail to read its start');
      await db.store.withTransaction(holder).append('bin-3', { type: 'c', data: {} });
      await holder.query('COMMIT');
      await until(() => seen.filter((m) => m.type !== '(caught up)').length >= 2, 'both messages');
    } finally {
      holder.release();
      abort.abort();
      await started;
    }
    expect(
      seen
        .filter((m) => m.type !== '(caught up)')
        .map((m) => m.type)
        .sort(),
    ).toEqual(['b', 'c']);
  });

  it('prints the first messages of a log that was empty when it started', async () => {
    const { store, pool } = await setupDb('tail_empty');
    const holder = await pool.connect();
    try {
      // An open transaction older than the first append: that append is visible but not final
      // while the tail takes its start.
      await holder.query('BEGIN');
      await holder.query('SELECT pg_current_xact_id()');
      const abort = new AbortController();
      const seen: string[] = [];
      let caughtUp = false;
      const started = (async () => {
        for await (const m of tailMessages(pool, store.sqlContext, {
          target: { all: true },
          from: { position: 0 },
          pollMs: 50,
          signal: abort.signal,
          onCaughtUp: () => {
            caughtUp = true;
          },
        }))
          seen.push(m.type);
      })();
      await store.append('first-1', [
        { type: 'one', data: {} },
        { type: 'two', data: {} },
      ]);
      await until(() => caughtUp, 'the tail to start');
      await holder.query('COMMIT');
      await until(() => seen.length >= 2, 'the first messages').finally(() => abort.abort());
      await started;
      expect(seen).toEqual(['one', 'two']);
    } finally {
      holder.release();
      await store.close();
      await pool.end();
    }
  });
});
