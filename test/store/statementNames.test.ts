import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { createMessageStore } from '../../src/store/messageStore.js';
import { channelFor } from '../../src/store/notifications.js';
import { databaseUrl, uniqueSchema } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let pool: pg.Pool;
const schemas: string[] = [];

beforeAll(async () => {
  // Two 63-byte schema names that differ only in their last byte: PostgreSQL truncates statement
  // names at 63 bytes, so `beckett_<name>_<schema>` named both schemas' statements alike.
  const base = uniqueSchema('long').padEnd(62, 'x');
  schemas.push(`${base}a`, `${base}b`);
  // One connection: both stores prepare their statements on it.
  pool = createPool(databaseUrl(), { max: 1 });
  for (const s of schemas) await migrate(pool, s);
});

afterAll(async () => {
  for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => undefined);
  await pool.end();
});

it('prepared statement names are unique per schema, however long the schema name', async () => {
  for (const schema of schemas) {
    const store = createMessageStore({ pool, schema });
    await store.append('order-1', { type: 'placed', data: { schema } }, { expectedVersion: 'no_stream' });
    await store.append('order-1', { type: 'paid', data: { schema } });
    const read = await store.readStream('order-1');
    // Each store read its own schema's messages (not the other schema's statement).

    expect(read.map((m) => (m.data as { schema: string }).schema)).toEqual([schema, schema]);
  }
});

it('wake-ups of a schema with a long name reach its listeners', async () => {
  const schema = schemas[0]!;
  const listener = new pg.Client({ connectionString: databaseUrl() });
  await listener.connect();
  try {
    let woken = 0;
    listener.on('notification', () => woken++);
    await listener.query(`LISTEN "${channelFor(schema)}"`);
    const store = createMessageStore({ pool, schema });
    await store.append('order-2', { type: 'placed', data: {} });
    await until(() => woken > 0, 'a wake-up on the long schema', 5_000);
  } finally {
    await listener.end();
  }
});
