import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import type { MessageStoreOptions } from '../../src/store/messageStore.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import { until } from './until.js';

export const databaseUrl = (): string => inject('databaseUrl');

let fileFailed = false;
const createdSchemas: string[] = [];

/** Called by test/setupFile.ts when a test of this file fails: its schemas are then kept. */
export function markFileFailed(): void {
  fileFailed = true;
}

/**
 * Drop every schema this file made with uniqueSchema(), unless one of its tests failed (then they
 * stay for inspection). Run by test/setupFile.ts after the file's own afterAll hooks.
 */
export async function dropCreatedSchemas(): Promise<void> {
  if (fileFailed || createdSchemas.length === 0) return;
  const client = new pg.Client({ connectionString: databaseUrl() });
  client.on('error', () => undefined);
  try {
    await client.connect();
    // Best effort: a schema still locked by a straggler is left, never waited on for long.
    await client.query(`SET lock_timeout = '5s'`);
    for (const s of createdSchemas.splice(0)) {
      await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(s)} CASCADE`).catch(() => undefined);
    }
  } catch {
    // The server may be gone (a restart test); the schemas stay.
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A fresh, unique schema name, dropped after the file (kept for inspection when a test fails). */
export function uniqueSchema(prefix = 't'): string {
  const schema = `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  createdSchemas.push(schema);
  return schema;
}

export interface TestDb {
  url: string;
  schema: string;
  pool: pg.Pool;
  store: MessageStore;
  /** A new store on the same schema (its own options, same pool). */
  makeStore(opts?: Omit<MessageStoreOptions, 'pool' | 'schema'>): MessageStore;
  /** A plain client of its own, for tests that hold transactions open. */
  client(): Promise<pg.Client>;
  close(): Promise<void>;
}

/** Create a migrated schema for a test file (dropped after the file unless one of its tests failed). */
export async function setupDb(prefix = 't', opts: { poolSize?: number } = {}): Promise<TestDb> {
  const url = databaseUrl();
  const schema = uniqueSchema(prefix);
  const pool = createPool(url, { max: opts.poolSize ?? 20 });
  await migrate(pool, schema);
  const store = createMessageStore({ pool, schema });
  const clients: pg.Client[] = [];
  return {
    url,
    schema,
    pool,
    store,
    makeStore: (o = {}) => createMessageStore({ ...o, pool, schema }),
    async client() {
      const c = new pg.Client({ connectionString: url });
      c.on('error', () => undefined);
      await c.connect();
      clients.push(c);
      return c;
    },
    async close() {
      await store.close();
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await pool.end();
    },
  };
}

/**
 * Wait until every transaction committed before this call is readable by the gap-safe reads
 * (readAll, readCategory, SSE, workers): the cluster's oldest running transaction id has passed a
 * fresh one taken now. Another test's open transaction, in any schema or database of the same
 * server, holds gap-safe reads back until it ends; assertions about "the head" wait for this first.
 */
export async function untilCommittedReadable(pool: pg.Pool, ms = 60_000): Promise<void> {
  const { rows } = await pool.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x');
  const x = rows[0]!.x;
  await until(
    async () =>
      (
        await pool.query<{ ok: boolean }>('SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8 AS ok', [
          x,
        ])
      ).rows[0]!.ok,
    `transactions before ${x} to end`,
    ms,
  );
}
