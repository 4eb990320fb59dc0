import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Debian's PostgreSQL 15 client and server binaries (pg_dump, pg_restore, initdb, pg_ctl). */
export const PG15_BIN = '/usr/lib/postgresql/15/bin';

/** Fail (never skip) with what to install when Debian's PostgreSQL 15 server binaries are missing. */
function assertPg15(tool: string): void {
  if (!existsSync(join(PG15_BIN, tool)))
    throw new Error(
      `${join(PG15_BIN, tool)} is missing: install Debian's postgresql-15 (apt-get install -y postgresql-15; .ci/run does it).`,
    );
}

export interface PrivateCluster {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/** A new folder for a cluster, owned by `postgres` when the test runs as root (initdb refuses root). */
async function clusterFolder(
  prefix: string,
): Promise<{ dir: string; dataDir: string; opts: { uid?: number; gid?: number } }> {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!asRoot) return { dir, dataDir: join(dir, 'data'), opts: {} };
  const [u, g] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  const user = { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
  chownSync(dir, user.uid, user.gid);
  chmodSync(dir, 0o755);
  return { dir, dataDir: join(dir, 'data'), opts: user };
}

/** pg_ctl start on 127.0.0.1:port (socket in `dir`), and the handle that stops it. */
async function startServer(
  dir: string,
  dataDir: string,
  opts: { uid?: number; gid?: number },
  port: number,
  serverArgs: string,
): Promise<PrivateCluster> {
  await run(
    join(PG15_BIN, 'pg_ctl'),
    [
      'start',
      '-w',
      '-D',
      dataDir,
      '-l',
      join(dir, 'log'),
      '-o',
      `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} ${serverArgs}`,
    ],
    opts,
  );
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dataDir,
    async stop() {
      await run(join(PG15_BIN, 'pg_ctl'), ['stop', '-m', 'immediate', '-D', dataDir], opts).catch(
        () => undefined,
      );
    },
  };
}

/**
 * A throwaway PostgreSQL 15 cluster of this test's own (initdb --no-sync, fsync off, trust auth on
 * 127.0.0.1), run as the `postgres` user when the test runs as root. Its counter starts where
 * initdb leaves it, like any new cluster a database is restored into.
 */
export async function startPrivateCluster(
  prefix: string,
  serverArgs = '',
  fixedPort?: number,
): Promise<PrivateCluster> {
  assertPg15('initdb');
  const { dir, dataDir, opts } = await clusterFolder(prefix);
  await run(join(PG15_BIN, 'initdb'), ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '--no-sync'], opts);
  const port = fixedPort ?? (await freePort());
  return startServer(
    dir,
    dataDir,
    opts,
    port,
    `-c fsync=off -c synchronous_commit=off -c full_page_writes=off ${serverArgs}`,
  );
}

/** pg_dump one schema from `from` and pg_restore it into `to` (custom format, no owners). */
export async function dumpAndRestore(from: string, to: string, schema: string): Promise<void> {
  const file = join(mkdtempSync(join(tmpdir(), 'beckett-dump-')), 'dump.pgc');
  await run(join(PG15_BIN, 'pg_dump'), ['-Fc', '-n', schema, '-f', file, '-d', from]);
  await run(join(PG15_BIN, 'pg_restore'), ['--no-owner', '--exit-on-error', '-d', to, file]);
}

/**
 * A streaming replica (hot standby) of `primary` on `port`: pg_basebackup -R (the standby.signal and
 * primary_conninfo it writes) into a new data folder, started with hot_standby on. The primary's
 * initdb (trust) allows replication connections from 127.0.0.1.
 */
export async function startReplica(primary: PrivateCluster, port: number): Promise<PrivateCluster> {
  assertPg15('pg_basebackup');
  const { dir, dataDir, opts } = await clusterFolder('beckett-replica');
  const from = new URL(primary.url);
  await run(
    join(PG15_BIN, 'pg_basebackup'),
    [
      '-D',
      dataDir,
      '-R',
      '-X',
      'stream',
      '--no-sync',
      '--checkpoint=fast',
      '-h',
      '127.0.0.1',
      '-p',
      from.port,
      '-U',
      'postgres',
    ],
    opts,
  );
  return startServer(dir, dataDir, opts, port, '-c hot_standby=on -c fsync=off');
}
