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

export function sqlStateOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
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
export function isConnectionError(err: unknown): boolean {
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
  }
  return false;
}
