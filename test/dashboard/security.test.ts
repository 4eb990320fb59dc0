import { readdirSync, readFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Beckett, createBeckett } from '../../src/admin/createBeckett.js';
import { assertSafeBind, authFromEnv, isLoopbackHost } from '../../src/dashboard/auth.js';
import { createDashboardHandler } from '../../src/dashboard/createDashboardHandler.js';
import { type DashboardServer, startDashboardServer } from '../../src/dashboard/startDashboardServer.js';
import { ASSETS_DIR } from '../../src/dashboard/staticAssets.js';
import { ExitCode, InvalidInputError } from '../../src/errors.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from '../operations/helpers.js';

const TOKEN = 'a-token-of-24-characters';
const PASSWORD = 'correct horse battery';

let db: TestDb;
let beckett: Beckett;
const servers: DashboardServer[] = [];

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: any;
}

/** A raw HTTP request (fetch may not set Host). */
function call(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: `${u.pathname}${u.search}`,
        method: opts.method ?? 'GET',
        headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...opts.headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function serve(opts: Parameters<typeof startDashboardServer>[0] extends infer O ? Partial<O> : never) {
  const s = await startDashboardServer({ beckett, port: 0, ...opts });
  servers.push(s);
  return s;
}

beforeAll(async () => {
  db = await setupDb('dash_security');
  const config = opsConfig(db.schema, {
    shipping: {
      category: 'order',
      maxRetries: 0,
      handler: () => {
        throw new Error('down');
      },
    },
  });
  await db.store.append('order-1', { type: 'OrderPlaced', data: {} });
  const worker = startWorker(db, config);
  await worker.start();
  await until(
    async () => (await checkpoint(db, 'shipping', 'order-1'))?.status === 'failed',
    'order-1 to fail',
  );
  await worker.stop();
  beckett = createBeckett({ pool: db.pool, schema: db.schema, config });
});

afterAll(async () => {
  for (const s of servers) await s.close();
  await beckett?.close();
  await db?.close();
});

describe('binding', () => {
  it('refuses a non-loopback host without credentials, naming the variables to set', async () => {
    const err = await serve({ host: '0.0.0.0' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).exitCode).toBe(ExitCode.usage);
    expect((err as Error).message).toContain('0.0.0.0 without credentials');
    expect((err as InvalidInputError).hint).toContain('BECKETT_DASHBOARD_TOKEN');
    expect(() => assertSafeBind('::', undefined)).toThrow(InvalidInputError);
    expect(() => assertSafeBind('192.168.1.5', { token: TOKEN })).not.toThrow();
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]'])
      expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com']) expect(isLoopbackHost(h)).toBe(false);
  });

  it('refuses weak or half-given credentials, without printing them', async () => {
    const weak = await serve({ host: '0.0.0.0', auth: { token: 'short-secret' } }).catch((e: unknown) => e);
    expect((weak as Error).message).toMatch(/12 characters; it needs at least 16/);
    expect((weak as Error).message).not.toContain('short-secret');
    expect(() => authFromEnv({ BECKETT_DASHBOARD_USER: 'ops' })).toThrow(/BECKETT_DASHBOARD_PASSWORD is not/);
    expect(authFromEnv({ BECKETT_DASHBOARD_TOKEN: TOKEN })).toEqual({ token: TOKEN });
    expect(authFromEnv({})).toBeUndefined();
  });
});

describe('token and basic auth', () => {
  it('asks for the token, accepts it as a bearer, and turns ?token= into an HttpOnly cookie', async () => {
    const s = await serve({ auth: { token: TOKEN } });
    expect((await call(s.url)).status).toBe(401);
    expect(
      (await call(`${s.url}api/summary`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } }))
        .status,
    ).toBe(401);
    const ok = await call(`${s.url}api/summary`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(ok.body.failed).toBe(1);
    const login = await call(`${s.url}?token=${TOKEN}#/`);
    expect(login.status).toBe(303);
    expect(login.headers.location).toBe('/');
    const cookie = String(login.headers['set-cookie']);
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Strict');
    const page = await call(s.url, { headers: { cookie: cookie.split(';')[0]! } });
    expect(page.status).toBe(200);
    expect(page.text).toContain('<meta name="beckett-csrf"');
  });

  it('checks basic credentials and challenges the browser', async () => {
    const s = await serve({ auth: { user: 'ops', password: PASSWORD } });
    const none = await call(s.url);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toContain('Basic realm=');
    const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
    expect(
      (await call(s.url, { headers: { authorization: basic('ops', 'wrong password!!!!!') } })).status,
    ).toBe(401);
    expect((await call(s.url, { headers: { authorization: basic('root', PASSWORD) } })).status).toBe(401);
    expect((await call(s.url, { headers: { authorization: basic('ops', PASSWORD) } })).status).toBe(200);
  });

  it('without credentials answers only requests that name a loopback host (no DNS rebinding)', async () => {
    const s = await serve({});
    const evil = await call(`${s.url}api/summary`, { headers: { host: `evil.example:${s.port}` } });
    expect(evil.status).toBe(403);
    expect(evil.body.code).toBe('HOST_NOT_ALLOWED');
    expect((await call(`${s.url}api/summary`, { headers: { host: `localhost:${s.port}` } })).status).toBe(
      200,
    );
  });
});

describe('CSRF and read-only', () => {
  const retry = { ids: ['G/shipping/order-1'] };

  it('refuses a browser POST without the page token and accepts it with the token', async () => {
    const s = await serve({});
    const browserHeaders = { origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' };
    const forged = await call(`${s.url}api/checkpoints/retry`, {
      method: 'POST',
      headers: browserHeaders,
      body: retry,
    });
    expect(forged.status).toBe(403);
    expect(forged.body.code).toBe('CSRF');
    const wrong = await call(`${s.url}api/checkpoints/retry`, {
      method: 'POST',
      headers: { ...browserHeaders, 'x-beckett-csrf': 'not-the-token' },
      body: retry,
    });
    expect(wrong.status).toBe(403);
    expect((await checkpoint(db, 'shipping', 'order-1'))?.status).toBe('failed');
    const page = await call(s.url);
    const token = /name="beckett-csrf" content="([^"]+)"/.exec(page.text)?.[1];
    expect(token).toBeTruthy();
    const tokenFromApi = await call(`${s.url}api/csrf`);
    expect(tokenFromApi.body.token).toBe(token);
    const ok = await call(`${s.url}api/checkpoints/skip`, {
      method: 'POST',
      headers: { origin: s.url.slice(0, -1), 'sec-fetch-site': 'same-origin', 'x-beckett-csrf': token! },
      body: { ids: ['G/shipping/no-such-stream'] },
    });
    // Past the CSRF check: the admin API answers (no such checkpoint).
    expect(ok.status).toBe(404);
    expect(ok.body.code).toBe('NOT_FOUND');
  });

  it('lets a client that is no browser (curl) or that sends a bearer token POST without the page token', async () => {
    const open = await serve({});
    const curl = await call(`${open.url}api/checkpoints/skip`, {
      method: 'POST',
      body: { ids: ['G/shipping/none'] },
    });
    expect(curl.status).toBe(404);
    const locked = await serve({ auth: { token: TOKEN } });
    const bearer = await call(`${locked.url}api/checkpoints/skip`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, origin: 'http://elsewhere.example' },
      body: { ids: ['G/shipping/none'] },
    });
    expect(bearer.status).toBe(404);
    // A token in a cookie rides along by itself: that needs the CSRF token.
    const cookie = await call(`${locked.url}api/checkpoints/skip`, {
      method: 'POST',
      headers: { cookie: `beckett_dashboard_token=${TOKEN}` },
      body: { ids: ['G/shipping/none'] },
    });
    expect(cookie.status).toBe(403);
  });

  it('refuses every POST in read-only mode and says so in the page', async () => {
    const s = await serve({ readOnly: true });
    const page = await call(s.url);
    expect(page.text).toContain('<meta name="beckett-read-only" content="true"');
    for (const path of [
      'checkpoints/retry',
      'checkpoints/skip',
      'subscriptions/G/shipping/pause',
      'streams/x-1/messages',
    ]) {
      const r = await call(`${s.url}api/${path}`, { method: 'POST', body: retry });
      expect(r.status, path).toBe(403);
      expect(r.body.code).toBe('READ_ONLY');
    }
    expect((await checkpoint(db, 'shipping', 'order-1'))?.status).toBe('failed');
  });
});

describe('serving', () => {
  it('mounts under a base path in a server of your own and passes other paths on', async () => {
    const handler = createDashboardHandler({ beckett, basePath: '/ops/beckett' });
    const server = createServer((req, res) => {
      void handler(req, res, () => res.writeHead(200, { 'content-type': 'text/plain' }).end('my app'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect((await call(`${origin}/`)).text).toBe('my app');
      const redirect = await call(`${origin}/ops/beckett`);
      expect(redirect.status).toBe(308);
      expect(redirect.headers.location).toBe('/ops/beckett/');
      const page = await call(`${origin}/ops/beckett/`);
      expect(page.text).toContain('<base href="/ops/beckett/"');
      expect(page.headers['content-security-policy']).toContain("default-src 'self'");
      expect((await call(`${origin}/ops/beckett/api/summary`)).body.failed).toBe(1);
      expect((await call(`${origin}/ops/beckett/app.js`)).headers['content-type']).toContain('javascript');
      // Only the files read at start are served: no request path reaches the file system.
      expect((await call(`${origin}/ops/beckett/..%2f..%2fpackage.json`)).status).toBe(404);
      expect((await call(`${origin}/ops/beckett/../../package.json`)).text).toBe('my app');
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('ships every asset itself (no URL to another host in any file), each script a valid module', async () => {
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
      );
    const all = files(ASSETS_DIR);
    expect(all.length).toBeGreaterThan(5);
    for (const f of all) {
      const text = readFileSync(f, 'utf8').replace('http://www.w3.org/2000/svg', '');
      expect(text, f).not.toMatch(/https?:\/\//);
      expect(text, f).not.toMatch(/(src|href)=["']\/\//);
    }
    // Each script parses as a module (one node process compiles them all).
    const scripts = all.filter((f) => f.endsWith('.js'));
    const check = await execa(
      'node',
      [
        '--experimental-vm-modules',
        '--no-warnings',
        '-e',
        `const vm = require('node:vm'); const fs = require('node:fs');
         for (const f of JSON.parse(process.argv[1])) {
           try { new vm.SourceTextModule(fs.readFileSync(f, 'utf8'), { identifier: f }); }
           catch (e) { console.error(f + ': ' + e.message); process.exitCode = 1; }
         }`,
        JSON.stringify(scripts),
      ],
      { reject: false },
    );
    expect(check.stderr).toBe('');
    expect(check.exitCode).toBe(0);
  });
});
