import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { until } from './until.js';

const run = promisify(execFile);

/** Debian's pgbouncer (apt-get install pgbouncer; .ci/run installs it). */
export const PGBOUNCER = '/usr/sbin/pgbouncer';

export interface PgBouncer {
  /** The target's URL with host and port replaced by PgBouncer's. */
  url: string;
  /** PgBouncer's log so far, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A PgBouncer of the test's own in transaction mode on `port` (127.0.0.1), in front of the server
 * of `target`: clients log in without a password (trust, with a userlist) and PgBouncer logs in to
 * the server with the target URL's user and password. Run as the `postgres` user when the test runs
 * as root (PgBouncer refuses root). Fails, not skips, when pgbouncer is not installed.
 */
export async function startPgBouncer(
  target: string,
  port: number,
  settings: Record<string, string | number> = {},
): Promise<PgBouncer> {
  if (!existsSync(PGBOUNCER))
    throw new Error(
      `${PGBOUNCER} is missing: install Debian's pgbouncer (apt-get install -y pgbouncer; .ci/run does it).`,
    );
  const t = new URL(target);
  const user = decodeURIComponent(t.username || 'postgres');
  const password = decodeURIComponent(t.password);
  const dir = mkdtempSync(join(tmpdir(), 'beckett-pgbouncer-'));
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const quote = (v: string) => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  const server = [
    `host=${t.hostname || '127.0.0.1'}`,
    `port=${t.port || 5432}`,
    `user=${quote(user)}`,
    ...(password ? [`password=${quote(password)}`] : []),
  ].join(' ');
  const ini = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    unix_socket_dir: '',
    auth_type: 'trust',
    admin_users: user,
    auth_file: join(dir, 'userlist.txt'),
    pool_mode: 'transaction',
    max_client_conn: 500,
    default_pool_size: 10,
    ignore_startup_parameters: 'extra_float_digits',
    server_reset_query: '',
    logfile: join(dir, 'pgbouncer.log'),
    pidfile: join(dir, 'pgbouncer.pid'),
    ...settings,
  };
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    `[databases]\n* = ${server}\n\n[pgbouncer]\n${Object.entries(ini)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n')}\n`,
  );
  writeFileSync(join(dir, 'userlist.txt'), `"${user}" ""\n`);
  const args = [join(dir, 'pgbouncer.ini')];
  if (asRoot) {
    const [u, g] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
    chownSync(dir, Number(u.stdout.trim()), Number(g.stdout.trim()));
    for (const f of ['pgbouncer.ini', 'userlist.txt']) chmodSync(join(dir, f), 0o644);
    args.unshift('-u', 'postgres');
  }
  const child: ChildProcess = spawn(PGBOUNCER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const log = () => {
    const file = join(dir, 'pgbouncer.log');
    return `${output}${existsSync(file) ? readFileSync(file, 'utf8') : ''}`;
  };
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  try {
    await until(async () => {
      if (exited) throw new Error(`pgbouncer exited at start:\n${log()}`);
      return accepts(port);
    }, `pgbouncer on port ${port}`);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  url.password = '';
  // PgBouncer refuses the `options` startup parameter (the test harness's URL carries one).
  url.searchParams.delete('options');
  return {
    url: url.toString(),
    log,
    async stop() {
      if (exited) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGINT');
      await gone;
    },
  };
}

/**
 * Whether any TCP socket of the machine has `port` as its local port, in any state (Linux's
 * /proc/net/tcp and tcp6): a client connection's port, or one in TIME-WAIT, also makes a server's
 * bind() fail ("Address already in use"), though nothing listens there.
 */
function portInUse(port: number): boolean | undefined {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let seen = false;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(file)) continue;
    seen = true;
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      if (local?.endsWith(hex)) return true;
    }
  }
  return seen ? false : undefined;
}

/**
 * The first port of [from, to] no socket uses (a private range of this repository's tests, below
 * the usual ephemeral range 32768-60999 of client connections).
 */
export async function freePortIn(from: number, to: number): Promise<number> {
  for (let port = from; port <= to; port++) {
    const used = portInUse(port);
    if (used === false || (used === undefined && !(await accepts(port)))) return port;
  }
  throw new Error(`No free port from ${from} to ${to}.`);
}
