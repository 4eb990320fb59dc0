import {
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedHome, ensureEmbedded, stopEmbedded } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { UnsafeDataFolderError } from '../../src/errors.js';
import { ES_BIN, es } from '../helpers/cli.js';
import { databaseUrl, uniqueSchema } from '../helpers/db.js';
import { until } from '../helpers/until.js';

/*
 * Items 3-6 of issue 14: secrets never shown, the embedded server closed to other local users, the
 * worker's HTTP port on loopback by default, and no file written through a symbolic link.
 */

const SECRET = 'sekret-9c2e';
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const mode = (p: string) => statSync(p).mode & 0o777;

function withPassword(url: string, password: string): string {
  const u = new URL(url);
  u.password = password;
  return u.toString();
}

/** The processes whose parent is `pid`, with their argv and environment (Linux /proc). */
async function childrenOf(pid: number): Promise<{ pid: number; argv: string; env: string }[]> {
  const out: { pid: number; argv: string; env: string }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== pid) continue;
      out.push({
        pid: Number(entry),
        argv: readFileSync(`/proc/${entry}/cmdline`, 'utf8'),
        env: readFileSync(`/proc/${entry}/environ`, 'utf8'),
      });
    } catch {
      // The process ended meanwhile.
    }
  }
  return out;
}

/** The local addresses `port` is listened on, from /proc/net/tcp (hex, as the kernel writes them). */
function listeners(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A')
    .map((f) => f[1]!.split(':')[0]!);
}

let pool: pg.Pool;
let schema: string;
let configDir: string;

beforeAll(async () => {
  pool = createPool(databaseUrl(), { max: 2 });
  schema = uniqueSchema('hsec');
  await migrate(pool, schema);
  configDir = mkdtempSync(join(tmpdir(), 'beckett-security-'));
  writeFileSync(
    join(configDir, 'beckett.config.mjs'),
    'export default { groups: { G: { subscriptions: { s: { handler: async () => {} } } } } };\n',
  );
});
afterAll(async () => pool.end());

describe('secrets (item 3)', () => {
  it('es worker --processes passes the URL to its children through the environment, not argv', async () => {
    // Trust authentication ignores the password, so the URL works while carrying a secret; a server
    // that checks passwords (the embedded one) gets its own URL, whose password is the secret.
    const own = decodeURIComponent(new URL(databaseUrl()).password);
    const secret = own || SECRET;
    const url = own ? databaseUrl() : withPassword(databaseUrl(), SECRET);
    const supervisor = execa(
      'node',
      [ES_BIN, '--database-url', url, '--schema', schema, 'worker', '--group', 'G', '--processes', '2'],
      { cwd: configDir, reject: false, env: { NO_COLOR: '1', DATABASE_URL: '' }, timeout: 120_000 },
    );
    let stderr = '';
    supervisor.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    try {
      await until(async () => (await childrenOf(supervisor.pid!)).length === 2, 'two worker children');
      await until(
        () => (stderr.match(/running group G/g) ?? []).length === 2,
        'both children running',
        60_000,
      );
      for (const child of await childrenOf(supervisor.pid!)) {
        expect(child.argv).not.toContain(secret);
        expect(child.argv).not.toContain('--database-url');
        expect(child.env.split('\0')).toContain(`DATABASE_URL=${url}`);
      }
      expect(stderr).not.toContain(secret);
    } finally {
      supervisor.kill('SIGTERM');
      await supervisor;
    }
    expect(stderr).not.toContain(secret);
  }, 120_000);

  it('never prints a password, whatever form the connection string takes, with or without DEBUG', async () => {
    const forms = [
      `postgres://u:${SECRET}@127.0.0.1:1/x`,
      `postgres://u@127.0.0.1:1/x?password=${SECRET}`,
      `postgresql://u:${SECRET}@127.0.0.1:1/x?sslmode=disable`,
      `host=127.0.0.1 port=1 password=${SECRET}`,
      `host=127.0.0.1 password='${SECRET} with spaces'`,
      `postgres://u:${SECRET}@[::1:1/x`,
    ];
    for (const url of forms) {
      for (const debug of [undefined, '1']) {
        const viaFlag = await es(['--database-url', url, 'read', 'order-1'], {
          env: { ...(debug ? { DEBUG: debug } : {}) },
        });
        const viaEnv = await es(['append', 'order-1', 'placed', '{}'], {
          env: { DATABASE_URL: url, ...(debug ? { DEBUG: debug } : {}) },
        });
        for (const r of [viaFlag, viaEnv]) {
          expect([2, 4], r.stderr).toContain(r.exitCode);
          expect(r.stdout + r.stderr, url).not.toContain(SECRET);
        }
      }
    }
  }, 120_000);
});

describe('the embedded server (item 4)', () => {
  const project = mkdtempSync(join(tmpdir(), 'beckett-embedded-sec-'));
  let home: string;
  let url: string;

  beforeAll(async () => {
    url = (await ensureEmbedded(project)).url;
    home = embeddedHome(project);
  }, 120_000);
  afterAll(async () => {
    await stopEmbedded(project);
  });

  it('has a random superuser password, in a file only its owner reads', async () => {
    const password = decodeURIComponent(new URL(url).password);
    expect(password).not.toBe('beckett');
    expect(password.length).toBeGreaterThanOrEqual(24);
    expect(readFileSync(join(home, 'password'), 'utf8').trim()).toBe(password);
    expect(mode(join(home, 'password'))).toBe(0o600);
    expect(mode(home)).toBe(isRoot ? 0o711 : 0o700);
    expect(mode(join(home, 'postgres'))).toBe(0o700);
    expect(mode(join(home, 'postgres.log'))).toBe(0o600);
    // The old constant password no longer opens it.
    const old = new pg.Client({ connectionString: withPassword(url, 'beckett') });
    const err = await old.connect().then(
      () => undefined,
      (e: unknown) => e,
    );
    await old.end().catch(() => undefined);
    expect((err as { code?: string }).code).toBe('28P01');
  });

  it('replaces the constant password of a data folder made by an older beckett', async () => {
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`ALTER ROLE postgres PASSWORD 'beckett'`);
    await admin.end();
    rmSync(join(home, 'password'));
    const again = await ensureEmbedded(project);
    const password = decodeURIComponent(new URL(again.url).password);
    expect(password).not.toBe('beckett');
    expect(readFileSync(join(home, 'password'), 'utf8').trim()).toBe(password);
    const check = new pg.Client({ connectionString: again.url });
    await check.connect();
    await check.end();
    url = again.url;
  }, 60_000);

  it('es db url masks the password unless --show-password; es db psql gets in', async () => {
    const masked = await es(['db', 'url'], { cwd: project, env: {} });
    expect(masked.exitCode, masked.stderr).toBe(0);
    expect(masked.stdout).toMatch(/^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres$/);
    const shown = await es(['db', 'url', '--show-password'], { cwd: project, env: {} });
    expect(shown.stdout).toBe(url);
    const psql = await es(['db', 'psql', '--', '-Atc', 'select 40 + 2'], { cwd: project, env: {} });
    expect(psql.exitCode, psql.stderr).toBe(0);
    expect(psql.stdout.trim()).toBe('42');
    const status = await es(['db', 'status', '--json'], { cwd: project, env: {} });
    expect(status.stdout).not.toContain(decodeURIComponent(new URL(url).password));
  }, 60_000);

  it('refuses a data folder another user owns (the /tmp fallback included)', async () => {
    // As root in a folder the postgres user cannot enter (mkdtemp makes it 0700), the data lives
    // under the temp directory, at a name anyone can predict and prepare.
    const other = mkdtempSync(join(tmpdir(), 'beckett-prepared-'));
    const prepared = embeddedHome(other);
    mkdirSync(prepared, { recursive: true, mode: 0o755 });
    try {
      chownSync(prepared, 65534, 65534);
      await expect(ensureEmbedded(other)).rejects.toThrow(UnsafeDataFolderError);
      await expect(ensureEmbedded(other)).rejects.toThrow(/belongs to user id 65534/);
      const r = await es(['read', 'order-1'], { cwd: other, env: { DATABASE_URL: undefined } });
      expect(r.exitCode).toBe(4);
      expect(r.stderr).toMatch(/Refusing to use the embedded database folder/);
      expect(existsSync(join(prepared, 'postgres'))).toBe(false);
    } finally {
      rmSync(prepared, { recursive: true, force: true });
    }
  });

  it('refuses a data folder other users can write to', async () => {
    const other = mkdtempSync(join(tmpdir(), 'beckett-writable-'));
    const prepared = embeddedHome(other);
    mkdirSync(prepared, { recursive: true });
    try {
      const { chmodSync } = await import('node:fs');
      chmodSync(prepared, 0o777);
      await expect(ensureEmbedded(other)).rejects.toThrow(/other users can write to the folder \(mode 777\)/);
      expect(existsSync(join(prepared, 'postgres'))).toBe(false);
    } finally {
      rmSync(prepared, { recursive: true, force: true });
    }
  });
});

describe('the worker HTTP port (item 5)', () => {
  async function servedOn(extra: string[]): Promise<string[]> {
    const worker = execa(
      'node',
      [ES_BIN, '--schema', schema, 'worker', '--group', 'G', '--http-port', '0', ...extra],
      { cwd: configDir, reject: false, env: { NO_COLOR: '1', DATABASE_URL: databaseUrl() }, timeout: 60_000 },
    );
    let stderr = '';
    worker.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    try {
      await until(() => /on port (\d+)/.test(stderr), 'the HTTP port', 30_000);
      return listeners(Number(/on port (\d+)/.exec(stderr)![1]));
    } finally {
      worker.kill('SIGTERM');
      await worker;
    }
  }

  it('binds 127.0.0.1 by default', async () => {
    expect(await servedOn([])).toEqual(['0100007F']);
  }, 60_000);

  it('binds another address only when --http-host says so', async () => {
    expect(await servedOn(['--http-host', '0.0.0.0'])).toEqual(['00000000']);
  }, 60_000);
});

describe('files (item 6)', () => {
  it('es init refuses to write through a symbolic link, even with --force', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'beckett-init-link-'));
    const victim = join(mkdtempSync(join(tmpdir(), 'beckett-victim-')), 'victim.txt');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(dir, 'beckett.config.ts'));
    const r = await es(['init', '--force'], { cwd: dir });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/beckett\.config\.ts: it is a symbolic link/);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(readlinkSync(join(dir, 'beckett.config.ts'))).toBe(victim);

    // A linked folder on the way is refused too.
    const dir2 = mkdtempSync(join(tmpdir(), 'beckett-init-linkdir-'));
    const elsewhere = mkdtempSync(join(tmpdir(), 'beckett-elsewhere-'));
    symlinkSync(elsewhere, join(dir2, 'handlers'));
    const r2 = await es(['init'], { cwd: dir2 });
    expect(r2.exitCode).toBe(2);
    expect(r2.stderr).toMatch(/handlers is a symbolic link/);
    expect(existsSync(join(elsewhere, 'greet.ts'))).toBe(false);
  });

  it('es dump-migrations FILE refuses to overwrite without --force, and never follows a link', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'beckett-dump-sec-'));
    const file = join(dir, '001.sql');
    writeFileSync(file, 'keep me\n');
    const refused = await es(['dump-migrations', '--schema', 'shop', file]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/Refusing to overwrite .*001\.sql/);
    expect(refused.stderr).toMatch(/--force/);
    expect(readFileSync(file, 'utf8')).toBe('keep me\n');
    const forced = await es(['dump-migrations', '--schema', 'shop', file, '--force']);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(readFileSync(file, 'utf8')).toContain('CREATE TABLE "shop".messages');

    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(dir, 'link.sql'));
    const linked = await es(['dump-migrations', '--schema', 'shop', join(dir, 'link.sql'), '--force']);
    expect(linked.exitCode).toBe(2);
    expect(linked.stderr).toMatch(/symbolic link/);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(join(dir, 'link.sql')).isSymbolicLink()).toBe(true);
  });
});
