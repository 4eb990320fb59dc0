import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerContext } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { listScheduledMessages } from '../../src/scheduling/scheduleMessage.js';
import type { RecordedMessage } from '../../src/store/types.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('hctx', { poolSize: 20 });
});
afterAll(async () => db.close());

async function until(check: () => Promise<boolean> | boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('ctx.schedule in handlers run by the worker', () => {
  it('a retried handler schedules once; a transactional handler that throws schedules nothing', async () => {
    const calls = { direct: 0, tx: 0 };
    const config = resolveConfig({
      database: { schema: db.schema },
      groups: {
        S: {
          subscriptions: {
            direct: {
              category: 'direct',
              backoff: { initialMs: 1, maxMs: 5 },
              handler: async (m: RecordedMessage, ctx: HandlerContext) => {
                calls.direct += 1;
                await ctx.schedule!(m.streamName, { type: 'reminder', data: {} }, { delay: 60_000 });
                if (calls.direct < 3) throw new Error(`attempt ${ctx.attempt} fails after scheduling`);
              },
            },
            tx: {
              category: 'txn',
              transactional: true,
              backoff: { initialMs: 1, maxMs: 5 },
              handler: async (m: RecordedMessage, ctx: HandlerContext) => {
                calls.tx += 1;
                // Same derived id every attempt: a row surviving attempt 1's rollback would keep attempt 1's data.
                await ctx.schedule!(
                  m.streamName,
                  { type: 'reminder', data: { attempt: ctx.attempt } },
                  { delay: 60_000 + ctx.attempt },
                );
                if (ctx.attempt < 3) throw new Error('rolled back with the checkpoint');
              },
            },
          },
        },
      },
    });
    const errors: Error[] = [];
    const worker = createWorker({
      pool: db.pool,
      config,
      group: 'S',
      maxPollMs: 100,
      onError: (e) => errors.push(e),
    });
    await worker.start();
    try {
      await db.store.append('direct-1', { type: 'go', data: {} });
      await db.store.append('txn-1', { type: 'go', data: {} });
      await until(() => calls.direct >= 3 && calls.tx >= 3, 'three attempts of each');
      await until(async () => {
        const { rows } = await db.pool.query(
          `SELECT 1 FROM "${db.schema}".checkpoints WHERE stream_position = 1 AND stream_name IN ('direct-1', 'txn-1')`,
        );
        return rows.length === 2;
      }, 'both checkpoints to advance');
    } finally {
      await worker.stop();
    }
    expect(errors).toEqual([]);
    const direct = await listScheduledMessages(db.store, { stream: 'direct-1' });
    expect(direct.length).toBe(1);
    const [cause] = await db.store.readStream('direct-1');
    expect(direct[0]!.metadata).toMatchObject({ causationId: cause!.id, correlationId: cause!.id });
    const tx = await listScheduledMessages(db.store, { stream: 'txn-1' });
    expect(tx.map((t) => t.data)).toEqual([{ attempt: 3 }]);
  });
});
