import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from './helpers.js';
import { CALLS_DDL, checkOrder, spawnWorker, writeWorkerConfig } from './workerProcess.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('wrkp');
  await db.pool.query(CALLS_DDL(db.schema));
});
afterAll(async () => {
  await db?.close();
});

async function calls(): Promise<{ stream: string; pos: number; pid: number }[]> {
  const { rows } = await db.pool.query(`SELECT stream, pos, pid FROM "${db.schema}".calls ORDER BY seq`);
  return rows;
}

async function count(sql: string): Promise<number> {
  const { rows } = await db.pool.query(sql);
  return Number(rows[0].n);
}

describe('es worker processes', () => {
  it('2 processes x 4 consumers handle every message of 500 streams once and in order, then drain on SIGTERM', async () => {
    await db.pool.query(`TRUNCATE "${db.schema}".calls`);
    const config = writeWorkerConfig(db.schema, { batchSize: 50 });
    const worker = spawnWorker(
      ['--config', config, '--group', 'G', '--processes', '2', '--concurrency', '4'],
      {
        DATABASE_URL: db.url,
      },
    );
    // Both processes up before the work arrives, so that both take part.
    await until(
      async () => (await count(`SELECT count(*) AS n FROM "${db.schema}".workers`)) === 2,
      'two workers',
      60_000,
    );
    const streams = 500;
    const rounds = 20;
    // Appends keep arriving while the workers run: 20 rounds of one message per stream.
    for (let r = 0; r < rounds; r++) {
      for (let s = 0; s < streams; s += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            db.store.append(`w-${s + i}`, [
              { type: 't', data: { r } },
              { type: 't', data: { r } },
            ]),
          ),
        );
      }
    }
    const total = streams * rounds * 2;
    await until(
      async () => (await count(`SELECT count(*) AS n FROM "${db.schema}".calls`)) >= total,
      'all calls',
      90_000,
    );
    worker.kill('SIGTERM');
    const result = await worker;
    const rows = await calls();
    expect(rows.length).toBe(total);
    const expected = new Map(Array.from({ length: streams }, (_, s) => [`w-${s}`, rounds * 2]));
    expect(checkOrder(rows, expected)).toEqual([]);
    // Exactly once and strictly in order: each stream's calls are 1..n.
    const byStream = new Map<string, number[]>();
    for (const r of rows) byStream.set(r.stream, [...(byStream.get(r.stream) ?? []), r.pos]);
    for (const list of byStream.values())
      expect(list).toEqual(Array.from({ length: rounds * 2 }, (_, i) => i + 1));
    expect(new Set(rows.map((r) => r.pid)).size).toBe(2);
    expect(result.exitCode, worker.stderrText()).toBe(0);
    expect(worker.stderrText()).toContain('draining');
    expect(await count(`SELECT count(*) AS n FROM "${db.schema}".workers`)).toBe(0);
    expect(
      await count(`SELECT count(*) AS n FROM "${db.schema}".checkpoints WHERE leased_by IS NOT NULL`),
    ).toBe(0);
  }, 120_000);

  it('a worker process killed with SIGKILL mid-batch loses nothing; order holds; the transactional projection counts each message once', async () => {
    await db.pool.query(`TRUNCATE "${db.schema}".calls`);
    const config = writeWorkerConfig(db.schema, {
      handlerDelayMs: 3,
      batchSize: 20,
      projection: true,
      category: 'k',
    });
    const worker = spawnWorker(
      ['--config', config, '--group', 'G', '--processes', '2', '--concurrency', '3', '--lease-ms', '5000'],
      { DATABASE_URL: db.url },
    );
    const streams = 60;
    const per = 25;
    for (let s = 0; s < streams; s++)
      await db.store.append(
        `k-${s}`,
        Array.from({ length: per }, (_, i) => ({ type: 't', data: { i } })),
      );
    await until(
      async () =>
        (await count(`SELECT count(*) AS n FROM "${db.schema}".calls WHERE stream LIKE 'k-%'`)) >= 300,
      'work under way',
    );
    // Kill one child while it holds leases, mid-batch.
    const { rows: workers } = await db.pool.query(
      `SELECT w.id, w.pid FROM "${db.schema}".workers w
        WHERE EXISTS (SELECT 1 FROM "${db.schema}".checkpoints c WHERE c.leased_by = w.id) LIMIT 1`,
    );
    expect(workers.length).toBe(1);
    process.kill(workers[0].pid, 'SIGKILL');
    const total = streams * per;
    await until(
      async () =>
        (await count(
          `SELECT count(*) AS n FROM "${db.schema}".checkpoints WHERE stream_name LIKE 'k-%' AND stream_position = ${per}`,
        )) ===
        streams * 2,
      'every checkpoint of both subscriptions caught up',
      60_000,
    );
    worker.kill('SIGTERM');
    const result = await worker;
    expect(worker.stderrText()).toMatch(/exited \(SIGKILL\); restarting/);
    const rows = (await calls()).filter((r) => r.stream.startsWith('k-'));
    const expected = new Map(Array.from({ length: streams }, (_, s) => [`k-${s}`, per]));
    expect(checkOrder(rows, expected)).toEqual([]);
    expect(rows.length).toBeGreaterThanOrEqual(total);
    const { rows: counts } = await db.pool.query(
      `SELECT stream, n FROM "${db.schema}".counts WHERE stream LIKE 'k-%' ORDER BY stream`,
    );
    expect(counts.length).toBe(streams);
    for (const c of counts) expect(c.n).toBe(per);
    // The crash was recovered; the final drain was clean.
    expect(result.exitCode, worker.stderrText()).toBe(0);
  }, 120_000);

  it('fails with exit 8 listing the groups for an unknown group, 3 without config, 10 when not migrated', async () => {
    const config = writeWorkerConfig(db.schema);
    const unknown = spawnWorker(['--config', config, '--group', 'Nope'], { DATABASE_URL: db.url });
    const r1 = await unknown;
    expect(r1.exitCode).toBe(8);
    expect(unknown.stderrText()).toContain('Groups in the config: G');
    const missing = spawnWorker(['--config', '/nonexistent/beckett.config.ts', '--group', 'G'], {
      DATABASE_URL: db.url,
    });
    expect((await missing).exitCode).toBe(3);
    const notMigrated = spawnWorker(['--config', config, '--group', 'G', '--schema', `${db.schema}_none`], {
      DATABASE_URL: db.url,
    });
    expect((await notMigrated).exitCode).toBe(10);
    expect(notMigrated.stderrText()).toContain('es migrate');
  });
});

describe('es worker shutdown', () => {
  it('drains on the first SIGTERM, and stops at once (exit 1) on the second while a handler hangs', async () => {
    const config = writeWorkerConfig(db.schema, { handlerDelayMs: 60_000, category: 'hang', announce: true });
    const worker = spawnWorker(['--config', config, '--group', 'G', '--concurrency', '1'], {
      DATABASE_URL: db.url,
    });
    await db.store.append('hang-1', { type: 't', data: {} });
    await until(
      async () =>
        (await count(`SELECT count(*) AS n FROM "${db.schema}".calls WHERE stream = 'hang-1'`)) === 1,
      'the handler to start',
    );
    worker.kill('SIGTERM');
    await until(() => worker.stderrText().includes('draining'), 'the drain to start');
    // Still draining: the handler has 60 s to go.
    await new Promise((r) => setTimeout(r, 300));
    expect(worker.exitCode).toBeNull();
    const started = Date.now();
    worker.kill('SIGTERM');
    const result = await worker;
    expect(result.exitCode).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
    // Started, never finished.
    expect(
      await count(`SELECT count(*) AS n FROM "${db.schema}".calls WHERE stream = 'hang-1' AND pos > 0`),
    ).toBe(0);
  });
});
