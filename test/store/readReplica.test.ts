import { execa } from 'execa';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBeckett } from '../../src/admin/createBeckett.js';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { replay } from '../../src/operations/replay.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import { LOG_START } from '../../src/store/types.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';
import { ES_BIN } from '../helpers/cli.js';
import { setupDb } from '../helpers/db.js';
import { freePortIn } from '../helpers/pgbouncer.js';
import { type PrivateCluster, startPrivateCluster, startReplica } from '../helpers/privateCluster.js';
import { until } from '../helpers/until.js';
import { configWith } from '../subscriptions/helpers.js';

/*
 * A real streaming replica: a private PostgreSQL 15 primary and a hot standby made from it with
 * pg_basebackup -R (always private PG15 clusters, whatever DATABASE_URL says). Reads of
 * `store.replica` go to the standby; appends stay on the primary.
 */
let primary: PrivateCluster;
let replica: PrivateCluster;
let pool: pg.Pool;
let readPool: pg.Pool;
let store: MessageStore;
const schema = 'beckett';

beforeAll(async () => {
  primary = await onFreePort(25430, 25449, (port) => startPrivateCluster('beckett-primary', '', port));
  replica = await onFreePort(25450, 25469, (port) => startReplica(primary, port));
  pool = createPool(primary.url, { max: 6 });
  readPool = createPool(replica.url, { max: 4 });
  await migrate(pool, schema);
  store = createMessageStore({ pool, readPool, schema });
}, 120_000);

/**
 * Start a server on the first free port of a range, and on the next one if the start fails: a port
 * nothing answered on can still be taken before the server binds it (seen once in CI: "could not
 * bind IPv4 address: Address already in use").
 */
async function onFreePort<T>(from: number, to: number, start: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePortIn(from, to);
    try {
      return await start(port);
    } catch (err) {
      if (attempt >= 3 || port >= to) throw err;
      from = port + 1;
    }
  }
}

afterAll(async () => {
  await store?.close();
  await pool?.end();
  await readPool?.end();
  await replica?.stop();
  await primary?.stop();
});

/** Stop and restart WAL replay on the standby: a replica that lags, on demand. */
const pauseReplay = () => readPool.query('SELECT pg_wal_replay_pause()');
const resumeReplay = () => readPool.query('SELECT pg_wal_replay_resume()');

describe('a read replica', () => {
  it('is a hot standby that refuses pg_current_xact_id() and writes', async () => {
    const { rows } = await readPool.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
    expect(rows[0]!.r).toBe(true);
    await expect(readPool.query('SELECT pg_current_xact_id()')).rejects.toMatchObject({ code: '25006' });
    // Appends of the replica view go to the primary.
    await expect(store.replica.append('x-1', { type: 'X', data: {} })).resolves.toMatchObject({
      streamVersion: 1,
    });
  });

  it('serves reads once the standby has replayed the append; the primary sees it at once', async () => {
    await until(async () => (await store.replica.readStream('x-1')).length === 1, 'x-1 on the replica');
    await pauseReplay();
    try {
      await store.append('order-1', { type: 'OrderPlaced', data: { n: 1 } });
      // Read-your-writes: the lagging replica does not have it yet, the primary does.
      expect(await store.replica.readStream('order-1')).toEqual([]);
      expect(await store.replica.streamVersion('order-1')).toBe(0);
      expect((await store.readStream('order-1')).map((m) => m.type)).toEqual(['OrderPlaced']);
    } finally {
      await resumeReplay();
    }
    await until(
      async () => (await store.replica.readStream('order-1')).length === 1,
      'order-1 on the replica',
    );
    const all = await store.replica.readAll();
    expect(all.messages.map((m) => m.streamName)).toEqual(['x-1', 'order-1']);
  });

  it('reads the log gap-safe: a transaction held open on the primary holds the replica reader back', async () => {
    const start = (await store.replica.readAll()).position;
    // T1 takes its transaction id and position first, and stays open on the primary.
    const t1 = await pool.connect();
    try {
      await t1.query('BEGIN');
      await store.withTransaction(t1).append('late-1', { type: 'Late', data: {} });
      // T2 commits after it; wait until the standby has replayed T2 (a plain read sees it).
      await store.append('early-1', { type: 'Early', data: {} });
      await until(async () => (await store.replica.readStream('early-1')).length === 1, 'early-1 replayed');
      // The standby's snapshot xmin is still T1's: the gap-safe read stops before T2.
      const held = await store.replica.readAll({ after: start });
      expect(held.messages).toEqual([]);
      expect(held.position).toEqual(start);
      await t1.query('COMMIT');
    } finally {
      t1.release();
    }
    // Once T1's commit is replayed, the reader gets both, T1 first (log order), none skipped.
    await until(async () => (await store.replica.readAll({ after: start })).messages.length === 2, 'both');
    const after = await store.replica.readAll({ after: start });
    expect(after.messages.map((m) => m.streamName)).toEqual(['late-1', 'early-1']);
    const late = after.messages[0]!;
    const early = after.messages[1]!;
    expect(late.globalPosition).toBeLessThan(early.globalPosition);
    expect(BigInt(late.transactionId)).toBeLessThan(BigInt(early.transactionId));
    // Same answer on the primary, read from the start of the log.
    const fromStart = await store.readAll({ after: LOG_START });
    expect(fromStart.messages.slice(-2).map((m) => m.id)).toEqual(after.messages.map((m) => m.id));
  });

  it('es tail --read-url reads from the replica and is woken by a LISTEN on the primary', async () => {
    const child = execa(
      'node',
      [ES_BIN, '--schema', schema, '--read-url', replica.url, 'tail', 'tail-1', '--count', '2'],
      { reject: false, env: { NO_COLOR: '1', DATABASE_URL: primary.url }, timeout: 100_000 },
    );
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
    });
    let err = '';
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
    });
    // Each wait names what the tail printed so far (a CI run once timed the whole test out here).
    // The "following" line comes once the tail's start is read from the replica: appended after it,
    // both messages are new to the tail (a CI run once appended before that read had run).
    const said = () => `; es tail printed stdout ${JSON.stringify(out)} stderr ${JSON.stringify(err)}`;
    await until(() => err.includes('following stream tail-1'), 'es tail to start', 40_000).catch((e: Error) =>
      Promise.reject(new Error(e.message + said())),
    );
    await until(
      async () => {
        const { rows } = await pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = 'beckett-tail' AND query LIKE 'LISTEN%'`,
        );
        return rows.length > 0;
      },
      'es tail to LISTEN on the primary',
      40_000,
    ).catch(async (e: Error) => {
      const { rows } = await pool.query(
        `SELECT application_name, state, left(query, 80) AS query FROM pg_stat_activity WHERE backend_type = 'client backend'`,
      );
      throw new Error(`${e.message}${said()}; primary sessions ${JSON.stringify(rows)}`);
    });
    await store.append('tail-1', [
      { type: 'First', data: {} },
      { type: 'Second', data: {} },
    ]);
    const r = await child;
    expect(r.exitCode, said()).toBe(0);
    expect(
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => l.trim().split(/\s+/)[3]),
    ).toEqual(['First', 'Second']);
  }, 150_000);

  it("the admin API's message pages read from the replica; lag and actions stay on the primary", async () => {
    const beckett = createBeckett({ pool, readPool, schema });
    try {
      await store.append('dash-0', { type: 'Shown', data: {} });
      await until(async () => (await store.replica.readStream('dash-0')).length === 1, 'replica caught up');
      await pauseReplay();
      try {
        await store.append('dash-1', { type: 'Shown', data: {} });
        // The replica has not replayed it: the message store's pages do not show it yet...
        expect((await beckett.admin.streamMessages('dash-1')).items).toEqual([]);
        expect((await beckett.admin.streams('dash')).items.map((i) => i.stream)).toEqual(['dash-0']);
        // ...while what reads the primary does (the lag view's head is past it).
        const head = (await beckett.admin.lag()).head;
        const onPrimary = await store.readStream('dash-1');
        expect(head).toBeGreaterThanOrEqual(onPrimary[0]!.globalPosition);
      } finally {
        await resumeReplay();
      }
      await until(
        async () => (await beckett.admin.streamMessages('dash-1')).items.length === 1,
        'dash-1 on the message pages once replayed',
      );
    } finally {
      await beckett.close();
    }
  });

  it('a worker reads catch-up from the replica, and from the primary what the replica has not replayed', async () => {
    const handled = new Map<string, number[]>();
    const config = configWith(schema, {
      catchUp: {
        category: 'cu',
        batchSize: 5,
        handler: (m) => {
          const list = handled.get(m.streamName) ?? [];
          list.push(m.streamPosition);
          handled.set(m.streamName, list);
        },
      },
    });
    const batch = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({ type: 'Happened', data: { n: from + i } }));
    const count = () => [...handled.values()].reduce((a, l) => a + l.length, 0);
    // History: 30 messages in each of two streams, six batches each, all replayed by the replica.
    await store.append('cu-1', batch(1, 30));
    await store.append('cu-2', batch(1, 30));
    await until(async () => (await store.replica.readStream('cu-2')).length === 30, 'replica caught up');
    const errors: Error[] = [];
    const worker = createWorker({
      pool,
      readPool,
      config,
      group: 'G',
      maxPollMs: 200,
      onError: (e) => errors.push(e),
    });
    await worker.start();
    try {
      await until(async () => count() === 60, 'history handled', 30_000);
      expect(worker.stats().replicaBatches).toBeGreaterThanOrEqual(2);
      expect(worker.stats().replicaMisses).toBe(0);
      // The replica stops replaying: 30 more messages of cu-1 are on the primary only. A batch read
      // from the replica would come back empty, and the checkpoint would move past them unhandled.
      await pauseReplay();
      try {
        await store.append('cu-1', batch(31, 30));
        await until(async () => count() === 90, 'what the replica lacks, handled from the primary', 30_000);
        expect(worker.stats().replicaMisses).toBeGreaterThanOrEqual(1);
      } finally {
        await resumeReplay();
      }
      const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
      expect(handled.get('cu-1')).toEqual(upTo(60));
      expect(handled.get('cu-2')).toEqual(upTo(30));
      // A bounded replay of cu-2's #3..#20: read from the replica, and not past the range's end.
      const cu2 = await store.readStream('cu-2');
      const misses = worker.stats().replicaMisses;
      await replay(pool, store.sqlContext, {
        group: 'G',
        subscription: 'catchUp',
        stream: 'cu-2',
        from: { position: cu2[2]!.globalPosition },
        to: { position: cu2[19]!.globalPosition },
      });
      await until(async () => count() === 108, 'the replay handled', 30_000);
      expect(handled.get('cu-2')).toEqual([...upTo(30), ...upTo(20).slice(2)]);
      expect(worker.stats().replicaMisses).toBe(misses);
      expect(errors).toEqual([]);
    } finally {
      await worker.stop();
    }
  });

  it('a read URL that is not a standby of the primary is refused: another cluster, a promoted copy', async () => {
    const config = configWith(schema, { s: { category: 'ref', handler: () => undefined } });
    const start = (read: pg.Pool) =>
      createWorker({ pool, readPool: read, config, group: 'G', maxPollMs: 200 }).start();
    // Another cluster (the test server): answers the same queries with other data.
    const foreign = await setupDb('rr_foreign');
    // A standby promoted: same system identifier, but it takes writes of its own now.
    const promoted = await onFreePort(25470, 25489, (port) => startReplica(primary, port));
    const promotedPool = createPool(promoted.url, { max: 2 });
    try {
      await expect(start(foreign.pool)).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
        message: expect.stringMatching(/not a replica of the primary: its system identifier/),
      });
      // A worker reading catch-up from that standby while it is one.
      const handled: number[] = [];
      const errors: Error[] = [];
      const catchUp = configWith(schema, {
        pr: { category: 'pr', batchSize: 2, handler: (m) => void handled.push(m.streamPosition) },
      });
      const running = createWorker({
        pool,
        readPool: promotedPool,
        config: catchUp,
        group: 'G',
        maxPollMs: 200,
        heartbeatMs: 100,
        onError: (e) => errors.push(e),
      });
      await store.append(
        'pr-1',
        Array.from({ length: 6 }, () => ({ type: 'Happened', data: {} })),
      );
      await until(
        async () =>
          (await promotedPool.query("SELECT 1 FROM beckett.messages WHERE stream_name = 'pr-1'")).rowCount ===
          6,
        'pr-1 on the standby',
      );
      await running.start();
      try {
        await until(() => handled.length === 6, 'pr-1 handled');
        expect(running.stats().replicaBatches).toBeGreaterThanOrEqual(1);
        await promotedPool.query('SELECT pg_promote()');
        // The next heartbeat finds it promoted: said once, and no batch is read there any more.
        await until(() => errors.some((e) => /accepts writes/.test(e.message)), 'the promotion reported');
        const batches = running.stats().replicaBatches;
        await store.append(
          'pr-1',
          Array.from({ length: 6 }, () => ({ type: 'Happened', data: {} })),
        );
        await until(() => handled.length === 12, 'pr-1 handled from the primary');
        expect(running.stats().replicaBatches).toBe(batches);
      } finally {
        await running.stop();
      }
      await until(async () => {
        const { rows } = await promotedPool.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
        return rows[0]!.r === false;
      }, 'the standby promoted');
      await expect(start(promotedPool)).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
        message: expect.stringMatching(/accepts writes/),
      });
      // The primary's cluster, another database of it.
      await pool.query('CREATE DATABASE rr_other');
      const otherUrl = new URL(primary.url);
      otherUrl.pathname = '/rr_other';
      const otherDb = createPool(otherUrl.toString(), { max: 2 });
      try {
        await expect(start(otherDb)).rejects.toMatchObject({
          code: 'CONFIG_INVALID',
          message: expect.stringMatching(/names the database "rr_other"/),
        });
      } finally {
        await otherDb.end();
      }
      // The primary itself, and the real standby, are fine.
      for (const read of [pool, readPool]) {
        const w = createWorker({ pool, readPool: read, config, group: 'G', maxPollMs: 200 });
        await w.start();
        await w.stop();
      }
      // The CLI says so, with the config exit code, before reading anything.
      const r = await execa(ES_BIN, ['--schema', schema, '--read-url', foreign.url, 'read', 'ref-1'], {
        reject: false,
        env: { NO_COLOR: '1', DATABASE_URL: primary.url },
      });
      expect(r.exitCode, r.stderr).toBe(3);
      expect(r.stderr).toMatch(/not a replica of the primary/);
      // es tail --read-url reads only there: it checks on a connection of its own to the primary.
      const t = await execa(
        ES_BIN,
        [
          '--schema',
          foreign.schema,
          '--read-url',
          foreign.url,
          'tail',
          'ref-1',
          '--from',
          '0',
          '--count',
          '1',
        ],
        { reject: false, env: { NO_COLOR: '1', DATABASE_URL: primary.url }, timeout: 30_000 },
      );
      expect(t.exitCode, t.stderr).toBe(3);
      expect(t.stderr).toMatch(/not a replica of the primary/);
    } finally {
      await promotedPool.end();
      await promoted.stop();
      await foreign.close();
    }
  }, 60_000);
});
