/** SQLSTATE codes we act on. Classify by code, never by message text. */
export const SqlState = {
  uniqueViolation: '23505',
  serializationFailure: '40001',
  deadlockDetected: '40P01',
  undefinedTable: '42P01',
  undefinedFunction: '42883',
  invalidSchemaName: '3F000',
  queryCanceled: '57014',
  adminShutdown: '57P01',
  crashShutdown: '57P02',
  cannotConnectNow: '57P03',
  invalidCatalogName: '3D000',
  invalidPassword: '28P01',
  invalidAuthorization: '28000',
  raiseException: 'P0001',
} as const;

/**
 * The SQLSTATE of an error, or of the error it wraps (`cause`): beckett's typed errors keep the
 * driver's error as their cause, so classification sees through them.
 */
export function sqlStateOf(err: unknown, depth = 0): string | undefined {
  if (typeof err !== 'object' || err === null || depth > 4) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  const cause = (err as { cause?: unknown }).cause;
  return cause !== undefined && cause !== err ? sqlStateOf(cause, depth + 1) : undefined;
}

const CONNECTION_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'EPIPE',
]);

/** True when the error means the connection or server went away (retry after a pause). */
export function isConnectionError(err: unknown, depth = 0): boolean {
  const state = sqlStateOf(err);
  if (
    state &&
    (state.startsWith('08') ||
      state === SqlState.adminShutdown ||
      state === SqlState.crashShutdown ||
      state === SqlState.cannotConnectNow)
  )
    return true;
  if (typeof err === 'object' && err !== null) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECTION_ERRNOS.has(code)) return true;
    const message = (err as { message?: unknown }).message;
    // node-postgres raises these without a code when the socket closes under it.
    if (
      typeof message === 'string' &&
      /Connection terminated|Client has encountered a connection error|not queryable/.test(message)
    )
      return true;
    const cause = (err as { cause?: unknown }).cause;
    if (cause !== undefined && cause !== err && depth < 4) return isConnectionError(cause, depth + 1);
  }
  return false;
}

/**
 * True when the server refused a statement and the connection lives on: nothing of it (nor of its
 * implicit transaction) was committed. Anything else thrown by a write (a lost connection, a
 * terminated backend) leaves its outcome unknown: the COMMIT may have succeeded with only its reply
 * lost.
 */
export function isStatementError(err: unknown): boolean {
  return (
    sqlStateOf(err) !== undefined &&
    (err as { severity?: unknown }).severity === 'ERROR' &&
    !isConnectionError(err)
  );
}

const NOT_SENT_ERRNOS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH']);

/** True when the error is a failure to connect: nothing was sent. */
export function isConnectFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && NOT_SENT_ERRNOS.has(code);
}
