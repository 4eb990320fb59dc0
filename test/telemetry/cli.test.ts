import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerContext } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { ExitCode } from '../../src/errors.js';
import { scheduleMessage } from '../../src/scheduling/scheduleMessage.js';
import type { RecordedMessage } from '../../src/store/types.js';
import { createWorker } from '../../src/subscriptions/workerRuntime.js';
import { ES_BIN, es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
let configFile: string;
beforeAll(async () => {
  db = await setupDb('hcli', { poolSize: 10 });
  const dir = mkdtempSync(join(tmpdir(), 'beckett-health-'));
  configFile = join(dir, 'beckett.config.mjs');
  writeFileSync(
    configFile,
    `export default {
  database: { schema: '${db.schema}' },
  recurring: [
    { name: 'every-second', cron: '* * * * * *', stream: 'beat-1', message: { type: 'beat', data: {} } },
  ],
  groups: {
    G: { subscriptions: { watch: { category: 'hw', handler: async () => {} } } },
  },
};
`,
  );
});
afterAll(async () => db.close());

const env = () => ({ DATABASE_URL: db.url });
const run = (args: string[]) => es(['--config', configFile, ...args], { env: env() });

async function until(check: () => Promise<boolean> | boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('es health', () => {
  it('is unhealthy (11) before any worker ran, and names unknown groups (8)', async () => {
    const r = await run(['health']);
    expect(r.exitCode).toBe(ExitCode.unhealthy);
    expect(r.stdout).toMatch(/G\s+UNHEALTHY.*no worker has run this group yet/);
    const unknown = await run(['health', '--group', 'Nope']);
    expect(unknown.exitCode).toBe(ExitCode.notFound);
    expect(unknown.stderr).toMatch(/Unknown group "Nope".*Known groups: G/);
  });

  it('is healthy with a live worker, and unhealthy on lag over --max-lag or a failed checkpoint', async () => {
    const config = resolveConfig({
      database: { schema: db.schema },
      groups: {
        G: {
          subscriptions: {
            watch: {
              category: 'hw',
              maxRetries: 0,
              handler: async (m: RecordedMessage, ctx: HandlerContext) => {
                if (m.type === 'poison') throw new Error('cannot handle poison');
                if (m.type === 'slow')
                  await new Promise<void>((r) => {
                    const t = setTimeout(r, 60_000);
                    ctx.signal.addEventListener('abort', () => {
                      clearTimeout(t);
                      r();
                    });
                  });
              },
            },
          },
        },
      },
    });
    const worker = createWorker({ pool: db.pool, config, group: 'G', maxPollMs: 100 });
    await worker.start();
    try {
      const ok = await run(['health', '--json']);
      expect(ok.exitCode).toBe(0);
      expect(JSON.parse(String(ok.stdout))).toMatchObject({
        healthy: true,
        groups: [{ name: 'G', healthy: true, liveWorkers: 1, problems: [] }],
      });

      // One slow message holds the stream: the two behind it lag.
      await db.store.append('hw-slow', [
        { type: 'slow', data: {} },
        { type: 'ok', data: {} },
        { type: 'ok', data: {} },
      ]);
      await until(
        async () => (await run(['health', '--group', 'G', '--max-lag', '1'])).exitCode === 11,
        'lag',
      );
      const lagging = await run(['health', '--group', 'G', '--max-lag', '1']);
      expect(lagging.stdout).toMatch(/watch: lag [23] > 1/);
      expect((await run(['health', '--group', 'G', '--max-lag', '100'])).exitCode).toBe(0);

      await db.store.append('hw-poison', { type: 'poison', data: {} });
      await until(
        async () => (await run(['health', '--max-lag', '100'])).exitCode === 11,
        'the failed checkpoint',
      );
      const failed = await run(['health', '--max-lag', '100', '--json']);
      expect(JSON.parse(String(failed.stdout)).groups[0].problems).toEqual(['watch: 1 failed checkpoint']);
    } finally {
      await worker.stop();
    }
    // A stopped worker removes its row: no live heartbeat.
    const gone = await run(['health', '--group', 'G']);
    expect(gone.exitCode).toBe(11);
    expect(gone.stdout).toMatch(/no live worker/);
  });
});

describe('es worker with scheduling and --http-port', () => {
  it('delivers scheduled and recurring messages, serves the probes and drains on SIGTERM', async () => {
    let stderr = '';
    const child = execa(
      'node',
      [ES_BIN, '--config', configFile, 'worker', '--group', 'G', '--http-port', '0'],
      {
        reject: false,
        env: { NO_COLOR: '1', ...env() },
        timeout: 60_000,
      },
    );
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    try {
      await until(
        () => /on port (\d+)/.test(stderr) && /running group G/.test(stderr),
        'the worker to start',
      );
      const port = Number(/on port (\d+)/.exec(stderr)![1]);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(ready.status).toBe(200);
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(await health.json()).toEqual({ status: 'ok', database: 'ok' });

      const id = await scheduleMessage(
        db.store,
        'sched-cli-1',
        { type: 'reminder', data: { n: 1 } },
        { delay: 200 },
      );
      await until(
        async () => (await db.store.readStream('sched-cli-1')).length === 1,
        'the scheduled message',
      );
      expect((await db.store.readStream('sched-cli-1'))[0]!.id).toBe(id);
      await until(async () => (await db.store.readStream('beat-1')).length >= 2, 'two recurring occurrences');

      const list = await run(['schedule', 'list', '--json']);
      expect(list.exitCode).toBe(0);
      const rows: Record<string, string>[] = String(list.stdout)
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      const recurring = rows.find((r) => r.kind === 'recurring')!;
      expect(recurring).toMatchObject({
        name: 'every-second',
        cron: '* * * * * *',
        timezone: 'UTC',
        stream: 'beat-1',
      });
      expect(Date.parse(recurring.nextOccurrenceAt!)).toBeGreaterThan(Date.now() - 5000);

      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/beckett_scheduled_delivered_total [1-9]/);
      expect(metrics).toMatch(/beckett_recurring_delivered_total\{name="every-second"\} [1-9]/);
      expect(metrics).toContain('beckett_subscription_lag{group="G",subscription="watch"}');
    } finally {
      child.kill('SIGTERM');
    }
    const result = await child;
    expect(result.exitCode).toBe(0);
    expect(stderr).toMatch(/stopped/);
  });
});

describe('es worker with OTEL_EXPORTER_OTLP_ENDPOINT', () => {
  it('starts the SDK and exports the handler spans and metrics over OTLP/HTTP', async () => {
    const received: { path: string; body: string }[] = [];
    const collector = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ path: req.url ?? '', body: Buffer.concat(chunks).toString('latin1') });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    const port = (collector.address() as AddressInfo).port;
    let stderr = '';
    const child = execa('node', [ES_BIN, '--config', configFile, 'worker', '--group', 'G'], {
      reject: false,
      env: {
        NO_COLOR: '1',
        ...env(),
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
        OTEL_SERVICE_NAME: 'beckett-otlp-test',
      },
      timeout: 60_000,
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    try {
      await until(() => /running group G/.test(stderr), 'the worker to start');
      await db.store.append('hw-otlp', { type: 'ping', data: {} });
      await until(async () => {
        const { rows } = await db.pool.query(
          `SELECT 1 FROM "${db.schema}".checkpoints WHERE stream_name = 'hw-otlp' AND stream_position = 1`,
        );
        return rows.length === 1;
      }, 'the message to be handled');
    } finally {
      child.kill('SIGTERM');
    }
    expect((await child).exitCode).toBe(0);
    collector.close();
    const traces = received
      .filter((r) => r.path === '/v1/traces')
      .map((r) => r.body)
      .join('');
    const metrics = received
      .filter((r) => r.path === '/v1/metrics')
      .map((r) => r.body)
      .join('');
    // Span names and attribute values travel as plain strings in JSON and in protobuf alike.
    expect(traces).toContain('watch process');
    expect(traces).toContain('hw-otlp');
    expect(traces).toContain('beckett-otlp-test');
    expect(metrics).toContain('beckett.messages.processed');
  });
});
