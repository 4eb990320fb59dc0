import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueJobs } from '../../src/queues/enqueue.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';
import { spawnWorker } from '../subscriptions/workerProcess.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('qproc', { poolSize: 10 });
  await db.pool.query(
    `CREATE TABLE "${db.schema}".handled (seq bigserial PRIMARY KEY, queue text NOT NULL, job uuid NOT NULL,
       delivery int NOT NULL, pid int NOT NULL)`,
  );
});
afterAll(async () => db.close());

const MAX_DELIVERIES = 3;

/** Two queues: `work` (each job recorded, then a short sleep, then acked) and `poison` (always throws). */
function writeConfig(schema: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'beckett-queues-'));
  const file = join(dir, 'beckett.config.mjs');
  const record = (queue: string) =>
    `await ctx.store.pool.query('INSERT INTO "${schema}".handled (queue, job, delivery, pid) VALUES ($1, $2, $3, $4)', ['${queue}', job.id, job.deliveries, process.pid]);`;
  writeFileSync(
    file,
    `export default {
  database: { schema: '${schema}' },
  queues: {
    work: {
      concurrency: 4,
      visibilityTimeout: 1000,
      maxDeliveries: 50,
      backoff: { initialMs: 10, maxMs: 50 },
      handler: async (job, ctx) => {
        ${record('work')}
        await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
      },
    },
    poison: {
      concurrency: 2,
      visibilityTimeout: 1000,
      maxDeliveries: ${MAX_DELIVERIES},
      backoff: { initialMs: 10, maxMs: 50 },
      handler: async (job, ctx) => {
        ${record('poison')}
        await new Promise((r) => setTimeout(r, Math.random() * 20));
        throw new Error('poisoned delivery ' + job.deliveries);
      },
    },
  },
};
`,
  );
  return file;
}

describe('queue workers in several processes, SIGKILLed while processing', () => {
  it('handles every job at least once, loses none, and dead-letters poison after exactly maxDeliveries', async () => {
    const config = writeConfig(db.schema);
    const work = Array.from({ length: 400 }, (_, i) => ({ message: { type: 'w', data: { i } } }));
    const poison = Array.from({ length: 12 }, (_, i) => ({ message: { type: 'p', data: { i } } }));
    const workIds = await enqueueJobs(db.store, 'work', work);
    const poisonIds = await enqueueJobs(db.store, 'poison', poison);
    const env = { DATABASE_URL: db.url };
    const args = ['--config', config, '--queue', 'work', '--queue', 'poison'];
    const procs = Array.from({ length: 3 }, () => spawnWorker(args, env));
    let kills = 0;
    const handled = async (queue: string) =>
      Number(
        (await db.pool.query(`SELECT count(*) AS n FROM "${db.schema}".handled WHERE queue = $1`, [queue]))
          .rows[0].n,
      );
    // Kill a random worker (SIGKILL: no drain, its deliveries in flight) whenever some progress was
    // made, and start another, until four were killed.
    let last = 0;
    while (kills < 4) {
      await until(async () => (await handled('work')) >= last + 30, 'progress between kills', 60_000);
      last = await handled('work');
      const i = Math.floor(Math.random() * procs.length);
      procs[i]!.kill('SIGKILL');
      await procs[i];
      kills++;
      procs[i] = spawnWorker(args, env);
    }
    await until(
      async () =>
        Number(
          (await db.pool.query(`SELECT (SELECT count(*) FROM "${db.schema}".queue_jobs) + 0 AS n`)).rows[0].n,
        ) === 0,
      'every job acked or dead',
      60_000,
    );
    // A process started by the last kill may still be loading: SIGTERM drains only once it runs.
    await until(() => procs.every((p) => p.stderrText().includes(' running ')), 'every worker running');
    for (const p of procs) p.kill('SIGTERM');
    const exits = await Promise.all(procs);
    for (const [i, e] of exits.entries()) expect(e.exitCode, procs[i]!.stderrText()).toBe(0);

    // At least once: every work job was handled, none is dead or left.
    const seen = await db.pool.query<{ job: string }>(
      `SELECT DISTINCT job FROM "${db.schema}".handled WHERE queue = 'work'`,
    );
    expect(new Set(seen.rows.map((r) => r.job))).toEqual(new Set(workIds));
    const deadWork = await db.pool.query(
      `SELECT id FROM "${db.schema}".queue_dead_letters WHERE queue = 'work'`,
    );
    expect(deadWork.rows).toEqual([]);

    // Poison: every job dead after exactly maxDeliveries deliveries (a killed delivery counts), its
    // handler called at most that often, and one error per delivery in its history.
    const dead = await db.pool.query<{ id: string; deliveries: number; errors: { delivery: number }[] }>(
      `SELECT id, deliveries, errors FROM "${db.schema}".queue_dead_letters WHERE queue = 'poison'`,
    );
    expect(new Set(dead.rows.map((r) => r.id))).toEqual(new Set(poisonIds));
    for (const d of dead.rows) {
      expect(d.deliveries).toBe(MAX_DELIVERIES);
      expect(d.errors.map((e) => e.delivery)).toEqual([1, 2, 3]);
    }
    const calls = await db.pool.query<{ job: string; n: string; max: number }>(
      `SELECT job, count(*) AS n, max(delivery) AS max FROM "${db.schema}".handled WHERE queue = 'poison' GROUP BY job`,
    );
    for (const c of calls.rows) {
      expect(Number(c.n)).toBeLessThanOrEqual(MAX_DELIVERIES);
      expect(c.max).toBeLessThanOrEqual(MAX_DELIVERIES);
    }
    // Spawned processes start slowly on a loaded machine.
  }, 150_000);
});
