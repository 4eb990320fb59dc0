import {
  BeckettError,
  DatabaseQueryError,
  DatabaseUnreachableError,
  FileAccessError,
  InvalidInputError,
  NotMigratedError,
  toError,
} from '../errors.js';
import { maskUrl, redactSecrets } from './databaseUrl.js';
import { isConnectionError, SqlState, sqlStateOf } from './sqlstate.js';

export interface ErrorContext {
  /** The connection string in use: named (masked) in unreachable errors, never shown in clear. */
  url?: string | undefined;
  /** The schema in use: a missing table there means "run es migrate". */
  schema?: string | undefined;
  /** Map errors of any kind (the CLI), not only database and connection errors (the library). */
  all?: boolean;
}

const FILE_ERRNOS = new Set([
  'EACCES',
  'EPERM',
  'ENOENT',
  'ENOTDIR',
  'EISDIR',
  'EEXIST',
  'ELOOP',
  'ENOSPC',
  'EROFS',
  'EMFILE',
]);

/**
 * The one mapping from what PostgreSQL, node-postgres and Node throw to beckett's error family,
 * by SQLSTATE class and Node error code, never by message text:
 * - connection failures (class 08, shutdowns, ECONNREFUSED, ...), bad credentials (class 28) and an
 *   unknown database (3D000): DatabaseUnreachableError with the URL masked;
 * - undefined table, schema or function (42P01, 3F000, 42883) with a schema: NotMigratedError;
 * - data exceptions (class 22) and program limits (class 54): InvalidInputError;
 * - any other SQLSTATE: DatabaseQueryError (the SQLSTATE kept as `sqlState`);
 * - invalid URLs and ports (ERR_INVALID_URL, ERR_SOCKET_BAD_PORT): InvalidInputError;
 * - file system errors (EACCES, ENOENT, ...): FileAccessError;
 * - with `all` (the CLI), anything else: a BeckettError with the same message.
 * BeckettErrors pass through. Every message has connection-string passwords redacted.
 */
export function toBeckettError(thrown: unknown, ctx: ErrorContext = {}): Error {
  if (thrown instanceof BeckettError) return thrown;
  const err = toError(thrown);
  const message = redactSecrets(ctx.url ? err.message.replaceAll(ctx.url, maskUrl(ctx.url)) : err.message);
  const state = sqlStateOf(thrown);
  const code = (thrown as { code?: unknown } | null)?.code;
  if (
    isConnectionError(thrown) ||
    state?.startsWith('28') ||
    state === SqlState.invalidCatalogName ||
    code === 'ERR_SOCKET_CONNECTION_TIMEOUT'
  ) {
    return new DatabaseUnreachableError(
      ctx.url ? maskUrl(ctx.url) : 'the configured URL',
      message || (typeof code === 'string' ? code : 'connection failed'),
      thrown,
    );
  }
  if (state !== undefined) {
    if (
      ctx.schema !== undefined &&
      (state === SqlState.undefinedTable ||
        state === SqlState.invalidSchemaName ||
        state === SqlState.undefinedFunction)
    )
      return new NotMigratedError(ctx.schema);
    if (state.startsWith('22') || state.startsWith('54'))
      return withCause(new InvalidInputError(`PostgreSQL refused a value: ${message}`), thrown);
    return new DatabaseQueryError(message, state, thrown);
  }
  if (code === 'ERR_INVALID_URL' || code === 'ERR_SOCKET_BAD_PORT')
    return withCause(
      new InvalidInputError(
        `The database URL is not valid: ${message}.`,
        'Use a URL such as postgres://user:password@localhost:5432/app.',
      ),
      thrown,
    );
  if (typeof code === 'string' && FILE_ERRNOS.has(code)) {
    const path = (thrown as { path?: unknown }).path;
    return new FileAccessError(
      message,
      typeof path === 'string' ? path : undefined,
      code === 'EACCES' || code === 'EPERM' ? 'Check the permissions of that path.' : undefined,
      thrown,
    );
  }
  if (ctx.all) return new BeckettError('UNEXPECTED', message, { cause: thrown });
  return err;
}

function withCause<E extends Error>(e: E, cause: unknown): E {
  Object.defineProperty(e, 'cause', { value: cause, enumerable: false, configurable: true, writable: true });
  return e;
}
