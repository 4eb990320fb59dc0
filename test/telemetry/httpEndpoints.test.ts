import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import { InvalidInputError } from '../../src/errors.js';
import { startHttpEndpoints } from '../../src/host/httpEndpoints.js';
import { startWorkerExtras } from '../../src/host/workerExtras.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';
import { BeckettMetrics } from '../../src/telemetry/metrics.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('http', { poolSize: 20 });
});
afterAll(async () => db.close());

const get = async (port: number, path: string) => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
};

describe('startHttpEndpoints', () => {
  it('answers /metrics, /healthz and /readyz from its callbacks', async () => {
    let ready = false;
    let healthy = true;
    const server = await startHttpEndpoints({
      port: 0,
      host: '127.0.0.1',
      metrics: async () => 'beckett_up 1\n',
      health: async () => {
        if (!healthy) throw new Error('database down');
        return { ok: true, checks: { database: 'ok' } };
      },
      ready: () => ({ ok: ready, checks: {} }),
    });
    try {
      const m = await get(server.port, '/metrics');
      expect(m).toMatchObject({ status: 200, body: 'beckett_up 1\n' });
      expect(m.type).toMatch(/^text\/plain; version=0.0.4/);
      expect(await get(server.port, '/healthz')).toMatchObject({ status: 200 });
      expect(JSON.parse((await get(server.port, '/healthz')).body)).toEqual({ status: 'ok', database: 'ok' });
      expect((await get(server.port, '/readyz')).status).toBe(503);
      ready = true;
      expect((await get(server.port, '/readyz')).status).toBe(200);
      healthy = false;
      const h = await get(server.port, '/healthz');
      expect(h.status).toBe(503);
      expect(JSON.parse(h.body)).toEqual({ status: 'unavailable', error: 'database down' });
      expect((await get(server.port, '/nope')).status).toBe(404);
    } finally {
      await server.close();
    }
    await expect(fetch(`http://127.0.0.1:${server.port}/healthz`)).rejects.toThrow();
  });
});

describe('startWorkerExtras', () => {
  it('serves lag from the database, handler counters and readiness around a running worker', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const config = resolveConfig({
      database: { schema: db.schema },
      groups: {
        H: {
          concurrency: 1,
          subscriptions: {
            Slow: {
              category: 'slow',
              handler: async () => {
                await gate;
              },
            },
          },
        },
      },
    });
    const metrics = new BeckettMetrics();
    const extras = await startWorkerExtras({
      pool: db.pool,
      store: db.store,
      config,
      group: 'H',
      httpPort: 0,
      httpHost: '127.0.0.1',
      metrics,
      otlp: false,
    });
    const port = extras.httpPort!;
    const worker = createWorker({
      pool: db.pool,
      config,
      group: 'H',
      maxPollMs: 100,
      services: extras.services,
    });
    try {
      expect((await get(port, '/readyz')).status).toBe(503);
      await worker.start();
      extras.setReady(true);
      expect((await get(port, '/readyz')).status).toBe(200);
      expect(JSON.parse((await get(port, '/healthz')).body)).toEqual({ status: 'ok', database: 'ok' });
      await db.store.append(
        'slow-1',
        [1, 2, 3].map((n) => ({ type: 'tick', data: { n } })),
      );
      const deadline = Date.now() + 20_000;
      let text = '';
      while (Date.now() < deadline) {
        text = (await get(port, '/metrics')).body;
        if (/beckett_subscription_lag\{group="H",subscription="Slow"\} 3/.test(text)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(text).toMatch(/beckett_subscription_lag\{group="H",subscription="Slow"\} 3/);
      expect(text).toContain('beckett_checkpoints_failed{group="H",subscription="Slow"} 0');
      release();
      while (Date.now() < deadline) {
        text = (await get(port, '/metrics')).body;
        if (/beckett_subscription_lag\{group="H",subscription="Slow"\} 0/.test(text)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(text).toContain('beckett_subscription_lag{group="H",subscription="Slow"} 0');
      expect(text).toContain('# TYPE beckett_messages_processed_total counter');
      extras.setReady(false);
      expect((await get(port, '/readyz')).status).toBe(503);
    } finally {
      release();
      await worker.stop();
      await extras.close();
    }
  });

  it('refuses a port in use with a clear error', async () => {
    const a = await startHttpEndpoints({
      port: 0,
      host: '127.0.0.1',
      metrics: async () => '',
      health: async () => ({ ok: true, checks: {} }),
      ready: () => ({ ok: true, checks: {} }),
    });
    try {
      const config = resolveConfig({ database: { schema: db.schema } });
      const err = await startWorkerExtras({
        pool: db.pool,
        store: db.store,
        config,
        httpPort: a.port,
        httpHost: '127.0.0.1',
        otlp: false,
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect((err as Error).message).toMatch(new RegExp(`--http-port ${a.port}: EADDRINUSE`));
    } finally {
      await a.close();
    }
  });
});
