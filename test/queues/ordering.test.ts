import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job, QueueConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { enqueueJobs } from '../../src/queues/enqueue.js';
import { createQueueWorker, type QueueWorker } from '../../src/queues/queueWorker.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
const workers: QueueWorker[] = [];
beforeAll(async () => {
  db = await setupDb('qorder', { poolSize: 30 });
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await db.close();
});

async function start(queues: Record<string, QueueConfig>, n = 1): Promise<void> {
  const config = resolveConfig({ database: { schema: db.schema }, queues });
  for (let i = 0; i < n; i++) {
    const w = createQueueWorker({ pool: db.pool, config, queues: Object.keys(queues), workerId: `w${i}` });
    workers.push(w);
    await w.start();
  }
}

describe('per-key ordering', () => {
  it('runs one job per key at a time, in enqueue order, across workers', async () => {
    const done: Record<string, number[]> = {};
    const inFlight = new Map<string, number>();
    let overlaps = 0;
    await start(
      {
        ordered: {
          concurrency: 8,
          handler: async (job: Job) => {
            const key = job.key!;
            inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
            if (inFlight.get(key)! > 1) overlaps++;
            await new Promise((r) => setTimeout(r, Math.random() * 5));
            done[key] = [...(done[key] ?? []), (job.data as { n: number }).n];
            inFlight.set(key, inFlight.get(key)! - 1);
          },
        },
      },
      2,
    );
    const keys = ['a', 'b', 'c', 'd', 'e'];
    // Interleaved across keys, in several enqueues (and transactions).
    for (let n = 0; n < 12; n++)
      await enqueueJobs(
        db.store,
        'ordered',
        keys.map((key) => ({ key, message: { type: 'step', data: { n } } })),
      );
    await until(() => keys.every((k) => done[k]?.length === 12), 'every keyed job done');
    for (const k of keys) expect(done[k]).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(overlaps).toBe(0);
    // The last acks commit after the handlers returned: then every key's row is gone.
    await until(async () => {
      const left = await db.pool.query(
        `SELECT (SELECT count(*) FROM "${db.schema}".queue_keys WHERE queue = 'ordered')
              + (SELECT count(*) FROM "${db.schema}".queue_jobs WHERE queue = 'ordered') AS n`,
      );
      return Number(left.rows[0].n) === 0;
    }, 'no key row and no job left');
  });

  it('a stuck key and a poisoned key hold back only their own later jobs', async () => {
    let releaseStuck!: () => void;
    const stuckMayFinish = new Promise<void>((r) => {
      releaseStuck = r;
    });
    const done: string[] = [];
    await start({
      keyed: {
        concurrency: 4,
        maxDeliveries: 2,
        backoff: { initialMs: 10, maxMs: 20 },
        handler: async (job: Job) => {
          const { name } = job.data as { name: string };
          if (name === 'stuck-0') await stuckMayFinish;
          if (name === 'poison-0') throw new Error('poisoned');
          done.push(name);
        },
      },
    });
    const jobs = [];
    for (let n = 0; n < 3; n++)
      for (const key of ['stuck', 'poison', 'ok1', 'ok2'])
        jobs.push({ key, message: { type: 'j', data: { name: `${key}-${n}` } } });
    await enqueueJobs(db.store, 'keyed', jobs);
    // Every other key finishes, and the poisoned key moves on once its head is dead, while the
    // stuck key's head still runs.
    await until(
      () => ['ok1', 'ok2'].every((k) => [0, 1, 2].every((n) => done.includes(`${k}-${n}`))),
      'the healthy keys done while one key is stuck',
    );
    await until(() => done.includes('poison-2'), 'the poisoned key moved on after its dead letter');
    expect(done.indexOf('poison-1')).toBeLessThan(done.indexOf('poison-2'));
    expect(done.filter((d) => d.startsWith('stuck'))).toEqual([]);
    const dead = await db.pool.query(
      `SELECT data, deliveries FROM "${db.schema}".queue_dead_letters WHERE queue = 'keyed'`,
    );
    expect(dead.rows).toEqual([{ data: { name: 'poison-0' }, deliveries: 2 }]);
    releaseStuck();
    await until(() => done.includes('stuck-2'), 'the stuck key resumes in order');
    expect(done.filter((d) => d.startsWith('stuck'))).toEqual(['stuck-0', 'stuck-1', 'stuck-2']);
  });
});
