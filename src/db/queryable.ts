import type pg from 'pg';

/** Anything that runs a query: a pool, or a client (possibly inside a transaction). */
export type Queryable = pg.Pool | pg.PoolClient | pg.Client;

/** Per-schema SQL context passed to every query module. */
export interface SqlContext {
  /** Unquoted schema name (validated). */
  schema: string;
  /** Escaped schema name, for SQL text. */
  s: string;
  /** Use named prepared statements (turn off behind PgBouncer in transaction mode). */
  prepared: boolean;
}

/** A query config, named (prepared) when the context allows. */
export function statement(ctx: SqlContext, name: string, text: string, values: unknown[]): pg.QueryConfig {
  return ctx.prepared ? { name: `beckett_${name}_${ctx.schema}`, text, values } : { text, values };
}

/** Run `fn` in a transaction on a client of its own, committing on success. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
