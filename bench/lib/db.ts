import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { ensureEmbedded } from '../../src/db/embedded.js';
import { escapeIdentifier } from '../../src/db/identifier.js';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { REPO_ROOT } from './env.js';

let cachedUrl: string | undefined;

/** DATABASE_URL when set, else the embedded server (project dir `.beckett/bench`), started on demand. */
export async function benchDatabaseUrl(): Promise<string> {
  if (cachedUrl) return cachedUrl;
  const fromEnv = process.env.DATABASE_URL;
  if (fromEnv) {
    cachedUrl = fromEnv;
  } else {
    const server = await ensureEmbedded(join(REPO_ROOT, '.beckett', 'bench'));
    cachedUrl = server.url;
  }
  return cachedUrl;
}

/** Where the benchmark ran, for the header (no password). */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}${process.env.DATABASE_URL ? '' : ' (embedded)'}`;
  } catch {
    return 'database';
  }
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

/** A pool of exactly `size` connections, opened up front so connection setup is not timed. */
export async function openPool(
  url: string,
  size: number,
  applicationName = 'beckett-bench',
): Promise<pg.Pool> {
  const pool = createPool(url, { max: size, applicationName });
  const clients = await Promise.all(Array.from({ length: size }, () => pool.connect()));
  for (const c of clients) c.release();
  return pool;
}

/**
 * A new schema migrated with beckett's migrations. Raw baselines write to its `messages` table
 * directly (never through beckett's functions): the same table shape, with and without beckett's
 * code in between.
 */
export async function migratedSchema(pool: pg.Pool, prefix: string): Promise<string> {
  const schema = uniqueName(prefix);
  await migrate(pool, schema);
  return schema;
}

export async function dropSchemas(pool: pg.Pool, schemas: string[]): Promise<void> {
  for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS ${escapeIdentifier(s)} CASCADE`);
}

/**
 * Wait (up to `maxMs`) until no autovacuum worker runs in this database: a scenario started right
 * after another one's bulk load or run shares the machine with the vacuum and analyze of its tables,
 * whose snapshots also hold back the removal of dead index entries (a queue's claims then step over
 * every finished row). Measured: 1 message per stream at 795/s right after the 10-per-stream
 * scenarios, 1,451/s alone. Returns the milliseconds waited.
 */
export async function autovacuumQuiet(pool: pg.Pool, maxMs = 60_000): Promise<number> {
  const started = performance.now();
  let quietSince: number | undefined;
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE backend_type = 'autovacuum worker' AND datname = current_database()`,
    );
    const now = performance.now();
    if (rows[0]!.n === 0) {
      quietSince ??= now;
      // Quiet for a second: the launcher starts a worker per table it finds due, one after another.
      if (now - quietSince >= 1000) return now - started;
    } else quietSince = undefined;
    if (now - started >= maxMs) return now - started;
    // Polling a server's state: there is no event to await.
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The URL of another database on the same server. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Create a fresh database on the same server (for peers that only work in `public`). */
export async function createDatabase(url: string, prefix: string): Promise<string> {
  const name = uniqueName(prefix);
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${escapeIdentifier(name)}`);
  } finally {
    await c.end();
  }
  return name;
}

export async function dropDatabase(url: string, name: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await c.end();
  }
}

/** Run `n` workers `fn(i)` concurrently and wait for all. */
export async function parallel(n: number, fn: (i: number) => Promise<void>): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, i) => fn(i)));
}
