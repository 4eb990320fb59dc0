import { createHash } from 'node:crypto';
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

const schemaTags = new Map<string, string>();

/**
 * A short tag of a schema name for names PostgreSQL truncates at 63 bytes (prepared statements,
 * channels): `beckett_<name>_<schema>` cut at 63 bytes named two long schemas sharing a prefix
 * alike (42P05 on a shared connection, or one schema's statement run for the other).
 */
export function schemaTag(schema: string): string {
  let tag = schemaTags.get(schema);
  if (tag === undefined) {
    tag = createHash('sha256').update(schema).digest('hex').slice(0, 16);
    schemaTags.set(schema, tag);
  }
  return tag;
}

/** A query config, named (prepared) when the context allows: unique per schema, whatever its length. */
export function statement(ctx: SqlContext, name: string, text: string, values: unknown[]): pg.QueryConfig {
  return ctx.prepared ? { name: `beckett_${name}_${schemaTag(ctx.schema)}`, text, values } : { text, values };
}

/**
 * BEGIN and COMMIT for a pipeline (pipeline.ts), named when prepared statements are allowed: parsed
 * once per connection instead of at every use. Their text is the same in every schema, so one name
 * serves all.
 */
export function transactionStatements(prepared: boolean): {
  begin: TransactionStatement;
  commit: TransactionStatement;
} {
  return prepared ? NAMED_TRANSACTION : UNNAMED_TRANSACTION;
}
interface TransactionStatement {
  name?: string;
  text: string;
}
const NAMED_TRANSACTION = {
  begin: { name: 'beckett_begin', text: 'BEGIN' },
  commit: { name: 'beckett_commit', text: 'COMMIT' },
};
const UNNAMED_TRANSACTION = { begin: { text: 'BEGIN' }, commit: { text: 'COMMIT' } };

/**
 * Run `fn` on a client of the pool's. A connection lost under it fails the running query; the
 * client's 'error' event (which a checked-out client has no listener for: it would crash the
 * process) is caught here, and a broken client is released as such, never handed out again.
 */
export async function withClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    return await fn(client);
  } catch (err) {
    // A server error leaves the connection usable; anything else (a dropped socket) does not.
    if (!(err instanceof Error && 'severity' in err)) broken ??= err as Error;
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/** Run `fn` in a transaction on a client of its own, committing on success. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query('BEGIN');
    try {
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}
