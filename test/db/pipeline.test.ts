import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPipelinedEach } from '../../src/db/pipeline.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

/*
 * The shared pipeline (src/db/pipeline.ts) sends a named statement's Parse inline, before its Bind,
 * the first time the statement runs on a connection, and records it as parsed only once the server
 * has confirmed that Parse.
 */

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('pipeline');
  await db.pool.query(`CREATE TABLE "${db.schema}".done_marks (id int)`);
  await db.pool.query(`CREATE TABLE "${db.schema}".barrier (id int)`);
});
afterAll(async () => {
  await db?.close();
});

async function freshClient(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

const parsedOn = (c: pg.Client) =>
  (c as unknown as { connection: { parsedStatements: Record<string, string> } }).connection.parsedStatements;

async function preparedOnServer(c: pg.Client): Promise<string[]> {
  const { rows } = await c.query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name');
  return rows.map((r) => r.name);
}

describe('the pipeline', () => {
  it("commits what comes before a new named statement while that statement's Parse waits for a lock", async () => {
    // The interleaving: a table the named statement reads is locked (DDL, a barrier); the
    // pipeline's first statements (a completion and its COMMIT, say) must not wait for it.
    const holder = await db.client();
    const c = await freshClient();
    try {
      await holder.query('BEGIN');
      await holder.query(`LOCK TABLE "${db.schema}".barrier IN ACCESS EXCLUSIVE MODE`);
      const running = runPipelinedEach(c, [
        { text: 'BEGIN' },
        { text: `INSERT INTO "${db.schema}".done_marks VALUES (1)` },
        { text: 'COMMIT' },
        { name: 'pipeline_reads_barrier', text: `SELECT count(*) FROM "${db.schema}".barrier` },
      ]);
      running.catch(() => undefined);
      await until(
        async () =>
          Number((await db.pool.query(`SELECT count(*) AS n FROM "${db.schema}".done_marks`)).rows[0].n) ===
          1,
        'the statements before the blocked Parse to commit',
        10_000,
      );
      expect(parsedOn(c).pipeline_reads_barrier).toBeUndefined();
      await holder.query('COMMIT');
      const results = await running;
      expect(results[3]).toEqual([['0']]);
      expect(parsedOn(c).pipeline_reads_barrier).toBeDefined();
      // Parsed once: the next run binds it without a Parse (a second Parse of the name would fail).
      expect(await runPipelinedEach(c, [{ name: 'pipeline_reads_barrier', text: 'unused' }])).toEqual([
        [['0']],
      ]);
      expect(await preparedOnServer(c)).toEqual(['pipeline_reads_barrier']);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await c.end();
    }
  });

  it('after an error, records only the Parses the server completed', async () => {
    const c = await freshClient();
    try {
      await expect(
        runPipelinedEach(c, [
          { name: 'pipeline_a', text: 'SELECT 1' },
          { text: 'SELECT 1 / 0' },
          { name: 'pipeline_c', text: 'SELECT 3' },
        ]),
      ).rejects.toThrow(/division by zero/);
      expect(Object.keys(parsedOn(c))).toEqual(['pipeline_a']);
      expect(await preparedOnServer(c)).toEqual(['pipeline_a']);
      // The skipped one is parsed next time; the completed one is not parsed again.
      expect(
        await runPipelinedEach(c, [
          { name: 'pipeline_a', text: 'SELECT 1' },
          { name: 'pipeline_c', text: 'SELECT 3' },
          { name: 'pipeline_c', text: 'SELECT 3' },
        ]),
      ).toEqual([[['1']], [['3']], [['3']]]);
      expect(await preparedOnServer(c)).toEqual(['pipeline_a', 'pipeline_c']);
      // A Parse that fails is not recorded either.
      await expect(runPipelinedEach(c, [{ name: 'pipeline_bad', text: 'SELEC 1' }])).rejects.toThrow(
        /syntax/,
      );
      expect(parsedOn(c).pipeline_bad).toBeUndefined();
      expect(await runPipelinedEach(c, [{ name: 'pipeline_bad', text: 'SELECT 4' }])).toEqual([[['4']]]);
    } finally {
      await c.end();
    }
  });
});
