import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureEmbedded, stopEmbedded } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import { delay, until } from './helpers.js';
import { CALLS_DDL, checkOrder, spawnWorker, writeWorkerConfig } from './workerProcess.js';

// A private embedded server, so restarting it disturbs nobody else's tests.
const dir = mkdtempSync(join(tmpdir(), 'beckett-restart-'));
const schema = 'restart_test';
let url: string;
let pool: pg.Pool;
let store: MessageStore;

beforeAll(async () => {
  url = (await ensureEmbedded(dir)).url;
  pool = createPool(url, { max: 4 });
  await migrate(pool, schema);
  await pool.query(CALLS_DDL(schema));
  store = createMessageStore({ pool, schema });
});
afterAll(async () => {
  await store?.close();
  await pool?.end();
  await stopEmbedded(dir);
});

async function appendRound(streams: number, per: number): Promise<void> {
  for (let s = 0; s < streams; s++)
    await store.append(
      `w-${s}`,
      Array.from({ length: per }, () => ({ type: 't', data: {} })),
    );
}

describe('database restart', () => {
  it('workers carry on after the database restarts mid-run, losing nothing', async () => {
    const config = writeWorkerConfig(schema, { handlerDelayMs: 2, batchSize: 10, concurrency: 3 });
    const worker = spawnWorker(['--config', config, '--group', 'G', '--lease-ms', '3000'], {
      DATABASE_URL: url,
    });
    await appendRound(20, 10);
    let before = 0;
    await until(async () => {
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${schema}.calls`);
      before = rows[0].n;
      return before >= 50;
    }, 'work under way');
    await stopEmbedded(dir);
    // The restart hits the worker mid-run, not after it finished the first round.
    expect(before).toBeLessThan(200);
    await delay(1000);
    const again = await ensureEmbedded(dir);
    expect(again.url).toBe(url);
    await appendRound(20, 10);
    const diagnose = async () =>
      JSON.stringify(
        (
          await pool.query(
            `SELECT stream_name, stream_version, stream_position, status, attempts, leased_by, leased_until, last_error->>'message' AS error
               FROM ${schema}.checkpoints WHERE stream_position < 20 ORDER BY stream_name`,
          )
        ).rows,
      );
    await until(
      async () => {
        const { rows } = await pool.query(
          `SELECT count(*)::int AS n FROM ${schema}.checkpoints WHERE stream_position = 20`,
        );
        return rows[0].n === 20;
      },
      'every stream handled after the restart',
      45_000,
    ).catch(async (err) => {
      throw new Error(`${err.message}\n${await diagnose()}\n${worker.stderrText()}`);
    });
    worker.kill('SIGTERM');
    const result = await worker;
    const { rows } = await pool.query(`SELECT stream, pos FROM ${schema}.calls ORDER BY seq`);
    expect(checkOrder(rows, new Map(Array.from({ length: 20 }, (_, s) => [`w-${s}`, 20])))).toEqual([]);
    expect(result.exitCode, worker.stderrText()).toBe(0);
    expect(worker.stderrText()).toMatch(/ECONNREFUSED|terminating connection/);
  }, 90_000);
});
