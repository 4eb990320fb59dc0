import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureEmbedded, stopEmbedded } from '../../src/db/embedded.js';
import { escapeIdentifier } from '../../src/db/identifier.js';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import type { SqlContext } from '../../src/db/queryable.js';
import { ExitCode, TransactionIdsAheadError } from '../../src/errors.js';
import {
  advanceTransactionCounter,
  planTransactionIdRebase,
  rebaseTransactionIds,
  transactionIdColumns,
} from '../../src/operations/rebaseTransactionIds.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import { readLog } from '../../src/store/readLog.js';
import { transactionIdCounter } from '../../src/store/transactionIdCounter.js';
import type { RecordedMessage } from '../../src/store/types.js';
import { heldBack } from '../../src/subscriptions/globalReader.js';
import { createWorker, type Worker } from '../../src/subscriptions/workerRuntime.js';
import { es } from '../helpers/cli.js';
import { dumpAndRestore, type PrivateCluster, startPrivateCluster } from '../helpers/privateCluster.js';
import { configWith, until } from '../subscriptions/helpers.js';

/*
 * A real dump and restore: the source is a private PostgreSQL 15 cluster whose transaction counter
 * was advanced well past a fresh one's; pg_dump of the schema is restored with pg_restore into a
 * fresh private embedded server, whose counter is far lower than the ids the dump carries.
 */
const schema = 'restored_xids';
const ctx: SqlContext = { schema, s: escapeIdentifier(schema), prepared: false };
const embeddedDir = mkdtempSync(join(tmpdir(), 'beckett-restore-dest-'));
let source: PrivateCluster;
let srcPool: pg.Pool;
let destPool: pg.Pool;
let destUrl: string;
const STREAMS = 12;

function recorder() {
  const calls = new Map<string, number[]>();
  return {
    calls,
    handle: async (m: RecordedMessage) => {
      calls.set(m.streamName, [...(calls.get(m.streamName) ?? []), m.streamPosition]);
    },
    total: () => [...calls.values()].reduce((n, l) => n + l.length, 0),
  };
}

const workerOn = (pool: pg.Pool, rec: ReturnType<typeof recorder>): Worker =>
  createWorker({
    pool,
    config: configWith(schema, { s: { category: 'acct', handler: (m) => rec.handle(m) } }),
    group: 'G',
    maxPollMs: 100,
    onError: () => undefined,
  });

/** The gap-safe log in xid8 order (ids and positions), as every reader pages through it. */
async function readAll(pool: pg.Pool): Promise<{ id: string; globalPosition: number }[]> {
  const { rows } = await pool.query<{ id: string; global_position: string }>(
    `SELECT id, global_position FROM ${ctx.s}.messages
      WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY transaction_id, global_position`,
  );
  return rows.map((r) => ({ id: r.id, globalPosition: Number(r.global_position) }));
}

beforeAll(async () => {
  source = await startPrivateCluster('beckett-restore-src');
  srcPool = createPool(source.url, { max: 4 });
  destUrl = (await ensureEmbedded(embeddedDir)).url;
  destPool = createPool(destUrl, { max: 8 });
});
afterAll(async () => {
  await srcPool?.end();
  await destPool?.end();
  await source?.stop();
  await stopEmbedded(embeddedDir);
});

describe('a database restored into another cluster', () => {
  it('is detected by readers, and es db rebase-xids makes new and old messages readable in order', async () => {
    // The source: a cluster that has run many more transactions than the destination.
    await migrate(srcPool, schema);
    const src: MessageStore = createMessageStore({ pool: srcPool, schema });
    // The first messages take ids as low as the destination's own new ones will be, so only their
    // positions tell restored from new.
    for (let s = 1; s <= STREAMS; s++) await src.append(`acct-${s}`, { type: 't', data: { i: 0 } });
    await advanceTransactionCounter(srcPool, 20_000);
    // Many one-message transactions (more distinct ids than a fresh cluster's counter holds),
    // some with tags, crossing a power of ten of transaction ids on the way.
    const per = 90;
    for (let i = 2; i <= per; i++)
      for (let s = 1; s <= STREAMS; s++)
        await src.append(`acct-${s}`, {
          type: 't',
          data: { i },
          ...(i % 10 === 0 ? { tags: [`acct:${s}`] } : {}),
        });
    const rec = recorder();
    const before = workerOn(srcPool, rec);
    await before.start();
    await until(() => rec.total() === per * STREAMS, 'the source worker handles every message', 60_000);
    await before.stop();
    // Old messages nobody handled yet when the dump was taken.
    for (let s = 1; s <= STREAMS; s++) await src.append(`acct-${s}`, { type: 't', data: { i: per + 1 } });
    const sourceOrder = (await readAll(srcPool)).map((m) => m.id);
    expect(sourceOrder).toHaveLength((per + 1) * STREAMS);
    await src.close();

    await dumpAndRestore(source.url, destUrl, schema);
    const dest = createMessageStore({ pool: destPool, schema });
    // Written after the restore, before any repair.
    const fresh: number[] = [];
    for (let s = 1; s <= 3; s++)
      fresh.push((await dest.append(`acct-${s}`, { type: 't', data: { fresh: 1 } })).globalPosition);

    // Restored messages whose ids are below the new server's counter, among the new ones' ids.
    const { rows: low } = await destPool.query(
      `SELECT count(*)::int AS n FROM ${ctx.s}.messages WHERE transaction_id < pg_snapshot_xmax(pg_current_snapshot())`,
    );
    expect(low[0].n).toBeGreaterThan(3);
    const counter = await transactionIdCounter(destPool, ctx);
    expect(counter.ahead).toBe(true);
    expect(BigInt(counter.storedMax!)).toBeGreaterThan(20_000n);
    // Blind: after the subscription's stored cursor, the log shows none of the new messages.
    const { rows: cursor } = await destPool.query(
      `SELECT log_transaction_id::text AS tx, log_position AS pos FROM ${ctx.s}.subscriptions`,
    );
    const after = { transactionId: cursor[0].tx, globalPosition: Number(cursor[0].pos) };
    expect((await readLog(destPool, ctx, { after })).messages).toEqual([]);

    // A worker already running when its database moved says why it reads nothing.
    expect(await heldBack(destPool, ctx, 0)).toContain('es db rebase-xids');

    // A worker refuses to start, with its own error and exit code.
    const rec2 = recorder();
    const blind = workerOn(destPool, rec2);
    const refused = await blind.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    await blind.stop();
    expect(refused).toBeInstanceOf(TransactionIdsAheadError);
    expect((refused as TransactionIdsAheadError).exitCode).toBe(ExitCode.transactionIdsAhead);

    // Commands that read the log refuse too, naming the repair.
    const env = { DATABASE_URL: destUrl };
    // es tail checks beside its first read: following a stream with nothing to print, it still ends.
    for (const args of [
      ['lag', '--json'],
      ['tail', 'acct', '--from', '1', '--no-follow'],
      ['tail', 'nothing-1'],
      ['health'],
    ]) {
      const r = await es([...args, '--schema', schema], { env, timeout: 20_000 });
      expect(r.exitCode, `es ${args.join(' ')}: ${r.stderr}`).toBe(ExitCode.transactionIdsAhead);
      expect(r.stderr).toContain('es db rebase-xids');
    }

    // The dry run says what it will do, and changes nothing.
    const dry = await es(['db', 'rebase-xids', '--schema', schema, '--json'], { env });
    expect(dry.exitCode, dry.stderr).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan).toMatchObject({ ahead: true, applied: false, messagesSinceRestore: 3 });
    expect(plan.distinctIds).toBeGreaterThan(per * STREAMS);
    expect(plan.toBurn).toBeGreaterThan(0);
    expect(await planTransactionIdRebase(destPool, ctx)).toMatchObject({ ahead: true });
    const told = await es(['db', 'rebase-xids', '--schema', schema], { env });
    expect(told.stdout).toContain('3 message(s) written since the restore will follow it');
    expect(told.stdout).toContain('run again with --yes');

    const applied = await es(['db', 'rebase-xids', '--schema', schema, '--yes', '--json'], { env });
    expect(applied.exitCode, applied.stderr).toBe(0);
    const result = JSON.parse(applied.stdout);
    expect(result.applied).toBe(true);
    expect(result.burned).toBeGreaterThan(0);
    expect(result.messages).toBe((per + 1) * STREAMS + 3);
    expect(result.cursors).toBe(1);
    expect((await transactionIdCounter(destPool, ctx)).ahead).toBe(false);
    // Nothing left for a second run.
    expect((await rebaseTransactionIds(destPool, ctx)).applied).toBe(false);
    expect((await es(['lag', '--json', '--schema', schema], { env })).exitCode).toBe(0);

    // The whole log in its old order, then what was written since the restore.
    const destLog = await readAll(destPool);
    expect(destLog.slice(0, sourceOrder.length).map((m) => m.id)).toEqual(sourceOrder);
    expect(destLog.slice(sourceOrder.length).map((m) => m.globalPosition)).toEqual(fresh);

    // The subscription carries on where it stopped: the unhandled old messages, then the new ones,
    // then messages written after the repair.
    const resumed = workerOn(destPool, rec2);
    await resumed.start();
    for (let s = 1; s <= STREAMS; s++) await dest.append(`acct-${s}`, { type: 't', data: { late: 1 } });
    const expected = (s: number) => (s <= 3 ? [per + 1, per + 2, per + 3] : [per + 1, per + 2]);
    await until(
      () =>
        [...Array(STREAMS).keys()].every(
          (i) => rec2.calls.get(`acct-${i + 1}`)?.length === expected(i + 1).length,
        ),
      'the subscription handles the restored, new and later messages',
      30_000,
    );
    await resumed.stop();
    for (let s = 1; s <= STREAMS; s++) expect(rec2.calls.get(`acct-${s}`)).toEqual(expected(s));
    await dest.close();
  });

  it('knows every transaction-id column of the migrated schema', async () => {
    // A new xid8 or pg_snapshot column must be taught to the repair (it refuses unknown ones).
    await migrate(destPool, 'xid_columns');
    expect(await transactionIdColumns(destPool, 'xid_columns')).toEqual([
      'message_tags.transaction_id',
      'messages.transaction_id',
      'snapshots.read_snapshot',
      'subscriptions.log_transaction_id',
    ]);
  });
});
