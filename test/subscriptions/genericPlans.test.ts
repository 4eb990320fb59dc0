import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool } from '../../src/db/pool.js';
import type { SqlContext } from '../../src/db/queryable.js';
import { CompleteBatcher, LONE_COMPLETION_SETTINGS } from '../../src/subscriptions/batchedClaims.js';
import { type ClaimedCheckpoint, completeStatement } from '../../src/subscriptions/claimCheckpoint.js';
import { readerRound } from '../../src/subscriptions/globalReader.js';
import { registerSubscriptions } from '../../src/subscriptions/registerSubscriptions.js';
import { cachedPlanBuffers } from '../helpers/cachedPlanBuffers.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { configWith } from './helpers.js';

/*
 * A worker's hot statements are prepared, and the server chooses at each execution between the
 * generic plan it keeps and a plan made for the parameters. With a large checkpoints table it chose
 * the latter for the completions and the reader's rounds, every time: 0.2 ms and 1.7 ms of planning
 * per statement in bench/worker.throughput, more than they took to run. They are planned once per
 * connection now, and that plan, made while the tables were small, must still be index lookups once
 * they are large. See src/db/planSettings.ts.
 */
let db: TestDb;
beforeAll(async () => {
  db = await setupDb('plans');
});
afterAll(async () => {
  await db?.close();
});

describe('prepared worker statements', () => {
  it('are planned once per connection, and their plans made on small tables stay index lookups', async () => {
    // One connection: the statements are prepared on it, and pg_prepared_statements is per session.
    const pool = createPool(db.url, { max: 1 });
    try {
      const ctx: SqlContext = db.store.sqlContext;
      // No statistics: an ANALYZE would replace the plans made below while the tables were small.
      await pool.query(`ALTER TABLE ${ctx.s}.checkpoints SET (autovacuum_enabled = off)`);
      const config = configWith(db.schema, { planned: { category: 'p', handler: () => undefined } });
      const group = config.groups.get('G')!;
      await registerSubscriptions(pool, ctx, group);
      const completions = new CompleteBatcher(pool, ctx, 'G', 1);
      // A claim under a lease nobody holds: its completion writes nothing, but the statement runs.
      const lone = (stream: string): ClaimedCheckpoint => ({
        group: 'G',
        subscription: 'planned',
        stream,
        streamPosition: 1,
        streamVersion: 2,
        attempts: 0,
        status: 'active',
        leaseId: randomUUID(),
        leaseDeadline: performance.now() + 30_000,
      });
      for (let i = 0; i < 12; i++) {
        await db.store.append(`p-new${i}`, { type: 'T', data: {} });
        const client = await pool.connect();
        try {
          await readerRound(client, ctx, group, 'planner', 100);
        } finally {
          client.release();
        }
        // Not leased by that id: nothing written, but the statement ran.
        expect(await completions.complete(lone(`p-new${i}`), 2)).toBe(false);
      }
      await completions.close();
      const { rows } = await pool.query<{ name: string; generic_plans: string; custom_plans: string }>(
        `SELECT name, generic_plans, custom_plans FROM pg_prepared_statements
          WHERE name LIKE 'beckett_reader_round_%' OR name LIKE 'beckett_complete_checkpoint_%' ORDER BY name`,
      );
      expect(
        rows.map((r) => [
          r.name.split('_').slice(1, -1).join('_'),
          Number(r.custom_plans),
          Number(r.generic_plans),
        ]),
      ).toEqual([
        ['complete_checkpoint', 0, 12],
        ['reader_round', 0, 12],
      ]);
      // The tables grow; the plans made on the small ones stay.
      await pool.query(
        `INSERT INTO ${ctx.s}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position)
         SELECT 'G', 'planned', 'p-' || i, 2, 1 FROM generate_series(1, 20000) i`,
      );
      const client = await pool.connect();
      try {
        const buffers = await cachedPlanBuffers(
          client,
          LONE_COMPLETION_SETTINGS,
          completeStatement(ctx, lone('p-777'), 2),
        );
        // One checkpoint looked up by its key: a few index pages, not the group's hundreds.
        expect(buffers, `${buffers} buffers`).toBeLessThan(30);
      } finally {
        client.release();
      }
    } finally {
      await pool.end();
    }
  });
});
