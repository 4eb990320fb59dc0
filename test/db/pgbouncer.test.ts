import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { Query } from '../../src/consistency/query.js';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { WrongExpectedVersionError } from '../../src/errors.js';
import { createQueueWorker } from '../../src/queues/queueWorker.js';
import { scheduleChannelFor } from '../../src/scheduling/scheduledMessagesSql.js';
import { scheduleMessage } from '../../src/scheduling/scheduleMessage.js';
import { createSchedulerService } from '../../src/scheduling/schedulerService.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import { channelFor } from '../../src/store/notifications.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';
import { databaseUrl, uniqueSchema, untilCommittedReadable } from '../helpers/db.js';
import { freePortIn, type PgBouncer, startPgBouncer } from '../helpers/pgbouncer.js';
import { until } from '../helpers/until.js';

/*
 * Every feature through PgBouncer in transaction mode (Debian's pgbouncer 1.18, which keeps no
 * named prepared statements): the pool goes through PgBouncer with preparedStatements off, LISTEN
 * goes over the direct URL (listenUrl). Wake-ups are what make the worker and the scheduler move
 * here: their polling backstop is set to a minute, longer than any wait below.
 */
let bouncer: PgBouncer;
let pool: pg.Pool;
let store: MessageStore;
const schema = uniqueSchema('bouncer');
/** Every client the pool opened (PgBouncer gives each round trip whichever server connection). */
const clients: pg.PoolClient[] = [];

beforeAll(async () => {
  bouncer = await startPgBouncer(databaseUrl(), await freePortIn(25410, 25429));
  pool = createPool(bouncer.url, { max: 12, listenUrl: databaseUrl() });
  pool.on('connect', (client) => clients.push(client));
  // Three migrators at once, through PgBouncer: the migration lock is a transaction lock.
  await Promise.all([migrate(pool, schema), migrate(pool, schema), migrate(pool, schema)]);
  store = createMessageStore({ pool, schema, preparedStatements: false });
});

afterAll(async () => {
  await store?.close();
  await pool?.end();
  await bouncer?.stop();
});

/** PgBouncer's admin console (SHOW ... commands, simple queries only). */
async function admin<T>(command: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: bouncer.url.replace(/\/[^/?]*(\?|$)/, '/pgbouncer$1') });
  await client.connect();
  try {
    return (await client.query(command)).rows as T[];
  } finally {
    await client.end();
  }
}

/**
 * Whether a session of `applicationName` is LISTENing on a direct connection: not one of PgBouncer's
 * server connections (those are matched by their local port, from SHOW SERVERS).
 */
async function listensDirectly(applicationName: string, channel: string): Promise<boolean> {
  const servers = await admin<{ local_port: number | string }>('SHOW SERVERS');
  const bouncerPorts = servers.map((s) => Number(s.local_port));
  const direct = new pg.Client({ connectionString: databaseUrl() });
  await direct.connect();
  try {
    const { rows } = await direct.query<{ port: number }>(
      `SELECT client_port AS port FROM pg_stat_activity
        WHERE application_name = $1 AND query = $3 AND NOT (client_port = ANY($2::int[]))`,
      [applicationName, bouncerPorts, `LISTEN "${channel}"`],
    );
    return rows.length > 0;
  } finally {
    await direct.end();
  }
}

describe('through PgBouncer in transaction mode', () => {
  it('goes through PgBouncer, in transaction mode', async () => {
    const pools = await admin<{ database: string; pool_mode: string }>('SHOW POOLS');
    const ours = pools.find((r) => r.database === new URL(bouncer.url).pathname.slice(1));
    expect(ours?.pool_mode).toBe('transaction');
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${schema}.schema_migrations`,
    );
    expect(rows[0]!.n).toBeGreaterThan(10);
  });

  it('appends with expected versions, reads, and refuses a wrong version', async () => {
    await store.append('order-1', { type: 'OrderPlaced', data: { n: 1 } }, { expectedVersion: 'no_stream' });
    await store.append('order-1', [{ type: 'OrderPaid', data: { n: 2 } }], { expectedVersion: 1 });
    await expect(
      store.append('order-1', { type: 'OrderPaid', data: {} }, { expectedVersion: 1 }),
    ).rejects.toBeInstanceOf(WrongExpectedVersionError);
    const read = await store.readStream('order-1');
    expect(read.map((m) => m.type)).toEqual(['OrderPlaced', 'OrderPaid']);
    // readAll is gap-safe: another test's open transaction on this server holds it back.
    await untilCommittedReadable(pool);
    const all = await store.readAll();
    expect(all.messages.length).toBeGreaterThanOrEqual(2);
  });

  it('appends with a condition, and refuses one that a later message breaks', async () => {
    const query = Query.of({ types: ['SeatBooked'], tags: ['seat:a1'] });
    const first = await appendWithCondition(
      store,
      [{ stream: 'seat-a1', messages: { type: 'SeatBooked', data: {}, tags: ['seat:a1'] } }],
      { failIfEventsMatch: query },
    );
    expect(first.position.globalPosition).toBeGreaterThan(0);
    await expect(
      appendWithCondition(
        store,
        [{ stream: 'seat-a1', messages: { type: 'SeatBooked', data: {}, tags: ['seat:a1'] } }],
        { failIfEventsMatch: query },
      ),
    ).rejects.toMatchObject({ code: expect.stringMatching(/CONDITION|CONFLICT/) });
  });

  it('runs a worker: every message handled once, in order per stream, woken over the direct LISTEN', async () => {
    const seen = new Map<string, number[]>();
    const config = resolveConfig({
      database: { schema, listenUrl: databaseUrl() },
      groups: {
        G: {
          concurrency: 3,
          subscriptions: {
            s: {
              handler: (m: { streamName: string; streamPosition: number }) => {
                seen.set(m.streamName, [...(seen.get(m.streamName) ?? []), m.streamPosition]);
              },
            },
          },
        },
      },
    });
    expect(config.database.preparedStatements).toBe(false);
    const worker = createWorker({ pool, config, group: 'G', maxPollMs: 60_000 });
    await worker.start();
    try {
      // Appended after the worker started and went idle: only a wake-up brings them in time.
      await until(async () => {
        const { rows } = await pool.query(
          `SELECT 1 FROM ${schema}.subscriptions WHERE group_name = 'G' AND status = 'active'`,
        );
        return rows.length > 0;
      }, 'the subscription to become active');
      await until(
        () => listensDirectly('beckett-listener', channelFor(schema)),
        "the worker's LISTEN on the direct URL",
        10_000,
      );
      for (let i = 1; i <= 5; i++)
        for (const s of ['a', 'b', 'c', 'd']) await store.append(`job-${s}`, { type: 'Job', data: { i } });
      await until(
        () => ['a', 'b', 'c', 'd'].every((s) => (seen.get(`job-${s}`) ?? []).length === 5),
        'every job handled',
        30_000,
      );
      for (const s of ['a', 'b', 'c', 'd']) expect(seen.get(`job-${s}`)).toEqual([1, 2, 3, 4, 5]);
    } finally {
      await worker.stop();
    }
  });

  it('runs a queue worker: every job handled once, each delivery committed through PgBouncer', async () => {
    const handled: number[] = [];
    const config = resolveConfig({
      database: { schema, listenUrl: databaseUrl() },
      queues: {
        bouncerJobs: {
          concurrency: 4,
          handler: (job: { data: { i: number } }) => void handled.push(job.data.i),
        },
      },
    });
    const worker = createQueueWorker({ pool, config, queues: ['bouncerJobs'] });
    await worker.start();
    try {
      for (let i = 1; i <= 20; i++) await store.enqueue('bouncerJobs', { type: 'Job', data: { i } });
      await until(() => worker.stats().completed === 20, 'every job acked', 30_000);
      expect(handled.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(worker.stats()).toMatchObject({ completed: 20, lost: 0, failed: 0 });
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${schema}.queue_jobs`);
      expect(rows[0].n).toBe(0);
    } finally {
      await worker.stop();
    }
  });

  it('delivers a scheduled message, the delivery loop woken over the direct LISTEN', async () => {
    const ac = new AbortController();
    const errors: Error[] = [];
    const loop = createSchedulerService(store, {
      maxWaitMs: 60_000,
      onError: (e: unknown) => errors.push(e as Error),
    })(ac.signal);
    try {
      // Let the loop listen and go to sleep on an empty schedule, then schedule.
      await until(
        () => listensDirectly('beckett-scheduler', scheduleChannelFor(schema)),
        "the scheduler's LISTEN on the direct URL",
        10_000,
      );
      await scheduleMessage(store, 'reminder-1', { type: 'Remind', data: {} }, { delay: 200 });
      await until(async () => (await store.readStream('reminder-1')).length === 1, 'the delivery', 20_000);
      expect(errors).toEqual([]);
    } finally {
      ac.abort();
      await loop;
    }
  });

  // Last: after the worker, the queue worker, the scheduler and the store ran over this pool. A
  // named statement is parsed on one server connection and would be missing (or already there) on
  // the next one PgBouncer hands out; which one a round trip gets is PgBouncer's choice, so the
  // rule is checked where it is made: no client of the pool has parsed a named statement.
  it('prepares no named statement on any connection of the pool (preparedStatements off)', () => {
    expect(clients.length).toBeGreaterThan(0);
    const named = clients.flatMap((c) =>
      Object.keys(
        (c as unknown as { connection: { parsedStatements: Record<string, string> } }).connection
          .parsedStatements,
      ),
    );
    expect(named).toEqual([]);
  });
});
