import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import type { MessageStoreOptions } from '../../src/store/messageStore.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';

export const databaseUrl = (): string => inject('databaseUrl');

/** A fresh, unique schema name for one test file (left behind for inspection when a test fails). */
export function uniqueSchema(prefix = 't'): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
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

/** Create a migrated schema for a test file. */
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
