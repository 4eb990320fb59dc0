import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandExecutor } from '../../src/consistency/commandExecutor.js';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import type { Decider } from '../../src/consistency/decider.js';
import { Query } from '../../src/consistency/query.js';
import { loadSnapshot } from '../../src/consistency/snapshots.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('dcb_snap', { poolSize: 4 });
});
afterAll(async () => {
  await db?.close();
});

interface Tally {
  total: number;
}

/** A tally decider with snapshots every 5 messages, counting how many messages it folds. */
function tally(stateVersion: number, name = 'tally') {
  const seen = { evolved: 0 };
  const decider: Decider<Tally, number> = {
    name,
    initialState: () => ({ total: 0 }),
    evolve(s, m) {
      seen.evolved++;
      return { total: s.total + (m.data as { n: number }).n };
    },
    decide: (n) => [{ type: 'added', data: { n }, tags: ['tally:1'] }],
    snapshots: { every: 5, stateVersion },
  };
  return { decider, seen };
}

async function snapshotRows(key: string) {
  const { rows } = await db.pool.query<{ state_version: number; position: number; state: Tally }>(
    `SELECT state_version, position, state FROM "${db.schema}".snapshots WHERE key = $1 ORDER BY state_version`,
    [key],
  );
  return rows;
}

describe('snapshots', () => {
  it('stream boundary: saved every N messages, loaded with only the tail', async () => {
    const ex = new CommandExecutor(db.store);
    const t = tally(1);
    for (let i = 1; i <= 7; i++) await db.store.append('tally-1', { type: 'added', data: { n: i } });
    const first = await ex.load(t.decider, { stream: 'tally-1' });
    expect(first).toMatchObject({ state: { total: 28 }, folded: 7, messageCount: 7, fromSnapshot: false });
    expect(await snapshotRows('tally|stream:tally-1')).toEqual([
      { state_version: 1, position: 7, state: { total: 28 } },
    ]);

    await db.store.append('tally-1', [{ type: 'added', data: { n: 100 } }]);
    t.seen.evolved = 0;
    const second = await ex.load(t.decider, { stream: 'tally-1' });
    expect(second).toMatchObject({
      state: { total: 128 },
      folded: 1,
      messageCount: 8,
      fromSnapshot: true,
      version: 8,
    });
    expect(t.seen.evolved).toBe(1);
    // Fewer than `every` new messages: the snapshot stays where it was.
    expect((await snapshotRows('tally|stream:tally-1'))[0]?.position).toBe(7);

    // The executor appends with the version it loaded (snapshot + tail).
    await ex.execute(t.decider, 1, { stream: 'tally-1' });
    expect(await db.store.streamVersion('tally-1')).toBe(9);
  });

  it('the snapshot is really used (a doctored snapshot shows), and ignored after a state schema change', async () => {
    const ex = new CommandExecutor(db.store);
    for (let i = 0; i < 6; i++) await db.store.append('tally-2', { type: 'added', data: { n: 1 } });
    const v1 = tally(1);
    expect((await ex.load(v1.decider, { stream: 'tally-2' })).state).toEqual({ total: 6 });
    // Doctor the stored state: a load that trusts the snapshot must show it.
    await db.pool.query(`UPDATE "${db.schema}".snapshots SET state = '{"total": 1000}' WHERE key = $1`, [
      'tally|stream:tally-2',
    ]);
    expect((await ex.load(v1.decider, { stream: 'tally-2' })).state).toEqual({ total: 1000 });

    // State schema version 2: the old snapshot is ignored; the state is rebuilt from the messages.
    const v2 = tally(2);
    const rebuilt = await ex.load(v2.decider, { stream: 'tally-2' });
    expect(rebuilt).toMatchObject({ state: { total: 6 }, folded: 6, fromSnapshot: false });
    expect(v2.seen.evolved).toBe(6);
    const rows = await snapshotRows('tally|stream:tally-2');
    expect(rows.map((r) => [r.state_version, r.state.total])).toEqual([
      [1, 1000],
      [2, 6],
    ]);
    expect(await loadSnapshot(db.pool, db.store.sqlContext, 'tally|stream:tally-2', 3)).toBeUndefined();
  });

  it('query boundary: the tail is what the snapshot read did not see, including late commits of lower positions', async () => {
    const ex = new CommandExecutor(db.store);
    const boundary = { query: Query.of({ types: ['added'], tags: ['tally:q'] }) };
    const t = tally(1, 'qtally');
    const add = (n: number) => ({ type: 'added', data: { n }, tags: ['tally:q'] });
    // A transaction inserts first (lower position) and commits only after the snapshot is taken.
    const late = await db.client();
    await late.query('BEGIN');
    await appendWithCondition(db.store, [{ stream: 'tq-late', messages: add(1000) }], undefined, {
      db: late,
    });
    for (let i = 1; i <= 5; i++) await db.store.append(`tq-${i}`, add(i));
    const first = await ex.load(t.decider, boundary);
    expect(first).toMatchObject({ state: { total: 15 }, folded: 5, fromSnapshot: false });
    await late.query('COMMIT');
    await db.store.append('tq-6', add(6));
    t.seen.evolved = 0;
    const second = await ex.load(t.decider, boundary);
    expect(second).toMatchObject({ state: { total: 1021 }, folded: 2, messageCount: 7, fromSnapshot: true });
    expect(t.seen.evolved).toBe(2);
    // Deciding on a snapshot-based state still appends under the condition.
    await ex.execute({ ...t.decider, decide: (n: number) => [{ ...add(n), stream: 'tq-7' }] }, 7, boundary);
    expect((await ex.load(t.decider, boundary)).state).toEqual({ total: 1028 });
  });
});
