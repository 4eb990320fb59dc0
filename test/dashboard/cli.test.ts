import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { ES_BIN, es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
let configFile: string;

beforeAll(async () => {
  db = await setupDb('dash_cli', { poolSize: 4 });
  const dir = mkdtempSync(join(tmpdir(), 'beckett-dashboard-'));
  configFile = join(dir, 'beckett.config.mjs');
  writeFileSync(
    configFile,
    `export default {
  database: { schema: '${db.schema}' },
  groups: { G: { subscriptions: { watch: { category: 'order', handler: async () => {} } } } },
};
`,
  );
  await db.store.append('order-1', { type: 'OrderPlaced', data: {} });
});
afterAll(async () => db?.close());

/** Start a long-running `es` command; resolves once `ready` matches its output. */
function spawnEs(args: string[], env: Record<string, string>, ready: RegExp) {
  let out = '';
  const child = execa('node', [ES_BIN, '--config', configFile, ...args], {
    reject: false,
    env: { NO_COLOR: '1', DATABASE_URL: db.url, ...env },
    timeout: 60_000,
  });
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return {
    child,
    output: () => out,
    match: async () => {
      await until(() => ready.test(out) || child.exitCode !== null, `es ${args.join(' ')} to start`);
      const m = ready.exec(out);
      if (!m) throw new Error(`es ${args.join(' ')} did not start:\n${out}`);
      return m;
    },
  };
}

describe('es dashboard', () => {
  it('refuses a non-loopback --host without credentials (exit 2), before touching the database', async () => {
    const r = await es(['dashboard', '--host', '0.0.0.0'], {
      env: { DATABASE_URL: 'postgres://nobody:secret@127.0.0.1:1/none' },
    });
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stderr).toMatch(/Refusing to serve the dashboard on 0\.0\.0\.0 without credentials/);
    expect(r.stderr).toMatch(/hint: Set BECKETT_DASHBOARD_TOKEN/);
    const weak = await es(['dashboard', '--host', '0.0.0.0'], {
      env: { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', BECKETT_DASHBOARD_TOKEN: 'tooshort' },
    });
    expect(weak.exitCode).toBe(ExitCode.usage);
    expect(weak.stderr).toMatch(/8 characters; it needs at least 16/);
    expect(weak.stderr).not.toContain('tooshort');
    const badPath = await es(['dashboard', '--base-path', '/a b'], { env: { DATABASE_URL: db.url } });
    expect(badPath.exitCode).toBe(ExitCode.usage);
    expect(badPath.stderr).toMatch(/Invalid dashboard base path/);
  });

  it('serves the pages and the API, read-only when asked, and stops on SIGTERM', async () => {
    const run = spawnEs(
      ['dashboard', '--port', '0', '--read-only', '--base-path', '/beckett'],
      {},
      /beckett dashboard on (http:\/\/127\.0\.0\.1:\d+\/beckett\/) \(read-only\)/,
    );
    try {
      const [, url] = await run.match();
      const page = await fetch(url!);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<meta name="beckett-read-only" content="true"');
      const summary = await fetch(`${url}api/summary`);
      expect(summary.status).toBe(200);
      expect(await summary.json()).toMatchObject({ failed: 0 });
      const post = await fetch(`${url}api/subscriptions/G/watch/pause`, { method: 'POST' });
      expect(post.status).toBe(403);
    } finally {
      run.child.kill('SIGTERM');
    }
    expect((await run.child).exitCode).toBe(0);
  });

  it('is served by es worker --http-port --dashboard beside the probes', async () => {
    const run = spawnEs(
      ['worker', '--group', 'G', '--http-port', '0', '--dashboard'],
      {},
      /and \/dashboard\/ on port (\d+)/,
    );
    try {
      const [, port] = await run.match();
      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/dashboard/`)).status).toBe(200);
      await until(
        async () =>
          ((await (await fetch(`${base}/dashboard/api/summary`)).json()) as { liveWorkers: number })
            .liveWorkers === 1,
        'the worker to show',
      );
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/metrics`)).status).toBe(200);
      const pause = await fetch(`${base}/dashboard/api/subscriptions/G/watch/pause`, { method: 'POST' });
      expect(pause.status).toBe(200);
      const audit = (await (await fetch(`${base}/dashboard/api/audit`)).json()) as { items: unknown[] };
      expect(audit.items[0]).toMatchObject({ action: 'pause', actor: 'dashboard', result: 'ok' });
    } finally {
      run.child.kill('SIGTERM');
    }
    expect((await run.child).exitCode).toBe(0);
    const bare = await es(['worker', '--group', 'G', '--dashboard'], { env: { DATABASE_URL: db.url } });
    expect(bare.exitCode).toBe(ExitCode.usage);
    expect(bare.stderr).toMatch(/--dashboard is served on --http-port/);
  });
});
