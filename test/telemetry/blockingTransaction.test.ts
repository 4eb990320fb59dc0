import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHealth } from '../../src/host/checkHealth.js';
import { startWorkerExtras } from '../../src/host/workerExtras.js';
import { lagSnapshot } from '../../src/operations/lagSnapshot.js';
import { type BlockingTransaction, describeBlocker, oldestOpenTransaction } from '../../src/store/readLog.js';
import { BeckettMetrics } from '../../src/telemetry/metrics.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { startPrivateCluster } from '../helpers/privateCluster.js';
import { until } from '../helpers/until.js';
import { configWith } from '../subscriptions/helpers.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('blocker');
});
afterAll(async () => {
  await db?.close();
});

/** A second connection, under its own application name, holding a transaction id open. */
async function holder(
  applicationName: string,
  statements: string[],
): Promise<{ pid: number; end(): Promise<void> }> {
  const c = new pg.Client({ connectionString: db.url, application_name: applicationName });
  c.on('error', () => undefined);
  await c.connect();
  const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  await c.query('BEGIN');
  for (const sql of statements) await c.query(sql);
  return {
    pid,
    async end() {
      await c.query('ROLLBACK');
      await c.end();
    },
  };
}

// Other files' short transactions may be older for a moment: wait until ours is the oldest.
async function blockerIs(pid: number): Promise<BlockingTransaction> {
  let b: BlockingTransaction | undefined;
  await until(async () => {
    b = await oldestOpenTransaction(db.pool, 0, db.schema);
    return b?.pid === pid;
  }, `pid ${pid} is the oldest open transaction`);
  return b!;
}

describe('the transaction holding readers back', () => {
  it('is named as foreign in es lag, es health and /metrics when another application holds it', async () => {
    // Reading beckett's tables does not make a report beckett's own.
    const h = await holder('reporting-job', [
      `SELECT count(*) FROM ${db.store.sqlContext.s}.messages`,
      "SELECT pg_current_xact_id(), 'nightly report'",
    ]);
    const extras = await startWorkerExtras({
      pool: db.pool,
      store: db.store,
      config: configWith(db.schema, { s: { handler: () => undefined } }),
      httpPort: 0,
      httpHost: '127.0.0.1',
      scheduler: false,
      otlp: false,
      metrics: new BeckettMetrics(),
      blockingAfterSeconds: 0,
    });
    try {
      expect(await blockerIs(h.pid)).toMatchObject({ own: false, applicationName: 'reporting-job' });
      const snap = await lagSnapshot(db.pool, db.store.sqlContext, { blockingAfterSeconds: 0 });
      const health = await checkHealth(db.pool, db.store.sqlContext, {});
      for (const b of [snap.blocking, health.blocking])
        if (b?.pid === h.pid) {
          expect(b).toMatchObject({
            own: false,
            applicationName: 'reporting-job',
            state: 'idle in transaction',
          });
          expect(b.query).toContain('nightly report');
        }
      const text = await (await fetch(`http://127.0.0.1:${extras.httpPort}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('beckett_blocking_transaction_age_seconds{'));
      expect(line).toContain(`pid="${h.pid}"`);
      expect(line).toContain('origin="foreign"');
      expect(line).toContain('application_name="reporting-job"');
      expect(line).toContain('nightly report');
    } finally {
      await h.end();
      await extras.close();
    }
  });

  it("is named as beckett's own when it writes to the schema, whatever its application name", async () => {
    const h = await holder('orders-api', [
      `INSERT INTO ${db.store.sqlContext.s}.messages (id, stream_name, stream_position, type, data)
       VALUES (gen_random_uuid(), 'held-1', 1, 't', '{}')`,
    ]);
    try {
      expect(await blockerIs(h.pid)).toMatchObject({ own: true, applicationName: 'orders-api' });
    } finally {
      await h.end();
    }
    const beckett = await holder('beckett', ["SELECT pg_current_xact_id(), 'a handler'"]);
    try {
      expect(await blockerIs(beckett.pid)).toMatchObject({ own: true });
    } finally {
      await beckett.end();
    }
  });

  it('names a prepared transaction left behind, which no backend shows', async () => {
    // The shared server allows no prepared transactions: a private cluster that does.
    const cluster = await startPrivateCluster('beckett-prepared', '-c max_prepared_transactions=2');
    const c = new pg.Client({ connectionString: cluster.url });
    await c.connect();
    try {
      await c.query('BEGIN');
      await c.query('SELECT pg_current_xact_id()');
      await c.query("PREPARE TRANSACTION 'forgotten-2pc'");
      const b = await oldestOpenTransaction(c, 0, 'beckett');
      expect(b).toMatchObject({
        pid: 0,
        state: 'prepared',
        own: false,
        query: "PREPARE TRANSACTION 'forgotten-2pc'",
      });
      expect(describeBlocker(b!)).toContain('ROLLBACK PREPARED');
      await c.query("ROLLBACK PREPARED 'forgotten-2pc'");
      expect(await oldestOpenTransaction(c, 0, 'beckett')).toBeUndefined();
    } finally {
      await c.end();
      await cluster.stop();
    }
  });
});
