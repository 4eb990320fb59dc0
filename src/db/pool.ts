import pg from 'pg';
import { DatabaseUnreachableError, toError } from '../errors.js';
import { isConnectionError, SqlState, sqlStateOf } from './sqlstate.js';

// bigint (int8) columns: positions fit comfortably in a JS number.
pg.types.setTypeParser(20, (v) => Number(v));

/** The URL with its password replaced by `***`, for messages and logs. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/(\/\/[^:/@]+:)[^@]*@/, '$1***@');
  }
}

export interface PoolOptions {
  max?: number;
  applicationName?: string;
}

/** A pool that fails fast on an unreachable server; errors on idle clients never crash the process. */
export function createPool(url: string, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName ?? 'beckett',
  });
  // A server restart kills idle connections; the pool replaces them on the next checkout.
  pool.on('error', () => undefined);
  return pool;
}

/** Check the database answers, turning connection failures into a clear, masked error. */
export async function assertReachable(pool: pg.Pool, url: string): Promise<void> {
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    throw toReachabilityError(err, url);
  }
}

export function toReachabilityError(err: unknown, url: string): Error {
  const state = sqlStateOf(err);
  const e = toError(err);
  if (
    isConnectionError(err) ||
    state === SqlState.invalidCatalogName ||
    state === SqlState.invalidPassword ||
    state === SqlState.invalidAuthorization
  ) {
    const reason = (e.message || (e as NodeJS.ErrnoException).code || 'connection failed').replaceAll(
      url,
      maskUrl(url),
    );
    return new DatabaseUnreachableError(maskUrl(url), reason, err);
  }
  return e;
}
