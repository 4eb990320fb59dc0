import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SubscriptionConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import type { RecordedMessage } from '../../src/store/types.js';
import { readerRound, runReaderRound } from '../../src/subscriptions/globalReader.js';
import { listSubscriptions, registerSubscriptions } from '../../src/subscriptions/registerSubscriptions.js';
import { setupDb, type TestDb, untilCommittedReadable } from '../helpers/db.js';
import { heldAtCommit } from '../helpers/heldAtCommit.js';
import { startWorker, until } from './helpers.js';

/*
 * Two versions of one group's config run side by side, as during a rolling deploy: v2 declares a
 * new message type `T` (so the default `types` of subscription `x` grow) and a new subscription `y`.
 * Every message below is appended while both versions run.
 */

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('roll');
});
afterAll(async () => {
  await db?.close();
});

type Calls = { stream: string; pos: number; type: string }[];
const record = (calls: Calls) => (m: RecordedMessage) => {
  calls.push({ stream: m.streamName, pos: m.streamPosition, type: m.type });
};

function config(schema: string, subscriptions: Record<string, SubscriptionConfig>, types: string[]) {
  return resolveConfig({
    database: { schema },
    messages: Object.fromEntries(types.map((t) => [t, {}])),
    groups: { G: { subscriptions } },
  });
}

describe('rolling deploy: two configs of one group side by side', () => {
  it('hands every message of a new type to the new definition and never demotes what a live worker runs', async () => {
    const v1x: Calls = [];
    const v2x: Calls = [];
    const v2y: Calls = [];
    const v1 = () => config(db.schema, { x: { category: 'ord', handler: record(v1x) } }, ['A']);
    const v2 = config(
      db.schema,
      {
        x: { category: 'ord', handler: record(v2x) },
        y: { category: 'inv', handler: record(v2y) },
      },
      ['A', 'T'],
    );
    const opts = { concurrency: 2, heartbeatMs: 1000 };
    const old1 = startWorker(db, v1(), opts);
    await old1.start();
    const new1 = startWorker(db, v2, opts);
    await new1.start();
    // An old process restarts in the middle of the deploy (a crash, a scale-up of the old set).
    const old2 = startWorker(db, v1(), opts);
    await old2.start();
    const warnings: string[] = [];
    const old3 = startWorker(db, v1(), { ...opts, onWarning: (w) => warnings.push(w) });
    await old3.start();

    const streams = 10;
    for (let i = 1; i <= 4; i++) {
      for (let s = 1; s <= streams; s++) {
        await db.store.append(`ord-${s}`, { type: i % 2 ? 'A' : 'T', data: { i } });
        await db.store.append(`inv-${s}`, { type: 'A', data: { i } });
      }
    }
    const ofType = (calls: Calls, t: string) => calls.filter((c) => c.type === t).length;
    await until(
      () => ofType(v2x, 'T') >= 20 && v2y.length >= 40,
      `v2 to handle every T (${ofType(v2x, 'T')}/20) and every message of y (${v2y.length}/40)`,
      40_000,
    ).catch(() => undefined);
    // The new process stops last: an old one that re-registers after it stopped rightly marks y,
    // in no live process's config then, unknown (the test saw that once under load).
    await Promise.all([old1.stop(), old2.stop(), old3.stop()]);
    await new1.stop();

    expect({ t: ofType(v2x, 'T'), y: v2y.length }).toEqual({ t: 20, y: 40 });
    // The old definition of x never acted after the new one registered: no message appended since
    // then reached it, and every A went to v2.
    expect(v1x).toEqual([]);
    expect(ofType(v2x, 'A')).toBe(20);
    const subs = await listSubscriptions(db.pool, db.schema, 'G');
    expect(subs.map((s) => [s.name, s.status])).toEqual([
      ['x', 'active'],
      ['y', 'active'],
    ]);
    expect(warnings.join('\n')).toMatch(/"x".*newer definition/);
    expect([...old1.errors, ...old2.errors, ...old3.errors, ...new1.errors]).toEqual([]);
  });

  it('a reader round of the old definition in flight when the new one takes over does not advance past what the new one wants', async () => {
    const schema = db.schema;
    const ctx = { schema, s: `"${schema}"`, prepared: false };
    const v1 = config(schema, { z: { category: 'zz', handler: () => undefined } }, ['A']).groups.get('G')!;
    const v2 = config(schema, { z: { category: 'zz', handler: () => undefined } }, ['A', 'T']).groups.get(
      'G',
    )!;
    await registerSubscriptions(db.pool, ctx, v1);
    await runReaderRound(db.pool, ctx, v1, 'old');
    await db.store.append('zz-1', { type: 'T', data: {} });
    // (Gap-safe reads stop at any open transaction of the cluster, other test files': past them.)
    await untilCommittedReadable(db.pool);
    // Barrier: the new definition's registration has taken z over and not committed (the row is
    // locked) when the old round reads its position and skips the T message it does not want...
    const op = heldAtCommit(db.pool);
    const taking = registerSubscriptions(op.pool, ctx, v2);
    await op.atCommit;
    const reader = await db.pool.connect();
    const readerPid = (await reader.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const oldRound = readerRound(reader, ctx, v1, 'old', 1000).finally(() => reader.release());
    await until(async () => {
      const { rows } = await db.pool.query('SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted', [
        readerPid,
      ]);
      return rows.length > 0;
    }, 'the old reader round to wait to move its position');
    // ...and the takeover commits while the round waits to move past it.
    op.release();
    expect((await taking).tookOver.map((t) => t.name)).toEqual(['z']);
    expect(await oldRound).toMatchObject({ locked: false, dispatched: 0 });
    // The new definition's reader dispatches the T message (rounds repeat: on a shared server a
    // transaction open elsewhere can hold the gap-safe read back for a while).
    await until(
      async () => {
        await runReaderRound(db.pool, ctx, v2, 'new');
        const { rows } = await db.pool.query(
          `SELECT stream_version FROM "${schema}".checkpoints WHERE subscription_name = 'z' AND stream_name = 'zz-1'`,
        );
        return rows[0]?.stream_version === 1;
      },
      'the new definition to dispatch zz-1#1',
      10_000,
    );
  });

  it('rolls back: the older definition takes over once no live process runs the newer one', async () => {
    const v1calls: Calls = [];
    const v2calls: Calls = [];
    const v1 = config(db.schema, { rb: { category: 'rb', handler: record(v1calls) } }, ['A']);
    const v2 = config(db.schema, { rb: { category: 'rb', handler: record(v2calls) } }, ['A', 'T']);
    const opts = { concurrency: 1, heartbeatMs: 100 };
    const first = startWorker(db, v1, opts);
    await first.start();
    await first.stop();
    const newer = startWorker(db, v2, opts);
    await newer.start();
    const warnings: string[] = [];
    const older = startWorker(db, v1, { ...opts, onWarning: (w) => warnings.push(w) });
    await older.start();
    await db.store.append('rb-1', { type: 'A', data: {} });
    await until(() => v2calls.length >= 1, 'the newer definition to handle rb-1');
    expect(v1calls).toEqual([]);
    await newer.stop();
    // The newer definition's last process stopped cleanly: at its next heartbeat the older one takes over.
    await until(() => warnings.some((w) => /now runs it/.test(w)), 'the older definition to take over');
    await db.store.append('rb-1', { type: 'A', data: {} });
    await until(() => v1calls.length >= 1, 'the older definition to handle rb-1#2');
    await older.stop();
    expect(v1calls.map((c) => c.pos)).toEqual([2]);
    expect(v2calls.map((c) => c.pos)).toEqual([1]);
  });

  it('a changed category: checkpoints the old definition dispatched never reach the new handler', async () => {
    const schema = db.schema;
    const ctx = { schema, s: `"${schema}"`, prepared: false };
    const calls: Calls = [];
    const v1 = config(schema, { cat: { category: 'olda', handler: () => undefined } }, ['A']);
    const v2 = config(schema, { cat: { category: 'newb', handler: record(calls) } }, ['A']);
    await registerSubscriptions(db.pool, ctx, v1.groups.get('G')!);
    await db.store.append('olda-1', { type: 'A', data: {} });
    // The old definition dispatched olda-1 (a lagging checkpoint) and then its processes went away.
    await until(async () => {
      await runReaderRound(db.pool, ctx, v1.groups.get('G')!, 'old');
      const { rows } = await db.pool.query(
        `SELECT 1 FROM "${schema}".checkpoints WHERE subscription_name = 'cat' AND stream_name = 'olda-1'`,
      );
      return rows.length > 0;
    }, 'the old definition to dispatch olda-1');
    const w = startWorker(db, v2, { concurrency: 1 });
    await w.start();
    await db.store.append('newb-1', { type: 'A', data: {} });
    await until(() => calls.length >= 1, 'the new definition to handle newb-1');
    await until(async () => {
      const { rows } = await db.pool.query(
        `SELECT stream_position FROM "${schema}".checkpoints WHERE subscription_name = 'cat' AND stream_name = 'olda-1'`,
      );
      return rows[0]?.stream_position === 1;
    }, 'the olda-1 checkpoint to be passed');
    await w.stop();
    expect(calls.map((c) => c.stream)).toEqual(['newb-1']);
  });
});
