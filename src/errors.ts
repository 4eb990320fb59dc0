/**
 * The typed errors of beckett. Each has a stable `code` (for programs), an `exitCode` (for the CLI)
 * and a `hint` telling the user what to do next.
 */

/** CLI exit codes. Stable: scripts and probes depend on them. */
export const ExitCode = {
  ok: 0,
  unexpected: 1,
  usage: 2,
  config: 3,
  databaseUnreachable: 4,
  migrationChecksum: 5,
  databaseAhead: 6,
  conflict: 7,
  notFound: 8,
  validation: 9,
  notMigrated: 10,
  unhealthy: 11,
  transactionIdsAhead: 12,
} as const;

/**
 * The HTTP status of an error by its exit code (the REST API answers with it): stable, like the
 * exit codes. An error may name its own (`opts.httpStatus`).
 */
const HTTP_STATUS_BY_EXIT_CODE: Record<number, number> = {
  [ExitCode.usage]: 400,
  [ExitCode.config]: 500,
  [ExitCode.databaseUnreachable]: 503,
  [ExitCode.migrationChecksum]: 500,
  [ExitCode.databaseAhead]: 500,
  [ExitCode.conflict]: 409,
  [ExitCode.notFound]: 404,
  [ExitCode.validation]: 422,
  [ExitCode.notMigrated]: 503,
  [ExitCode.unhealthy]: 503,
  [ExitCode.transactionIdsAhead]: 503,
};

export class BeckettError extends Error {
  readonly code: string;
  readonly exitCode: number;
  /** The HTTP status the REST API answers this error with (400, 403, 404, 409, 422, 503, 500). */
  readonly httpStatus: number;
  readonly hint: string | undefined;
  constructor(
    code: string,
    message: string,
    opts: { exitCode?: number; httpStatus?: number; hint?: string; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = opts.exitCode ?? ExitCode.unexpected;
    this.httpStatus = opts.httpStatus ?? HTTP_STATUS_BY_EXIT_CODE[this.exitCode] ?? 500;
    this.hint = opts.hint;
  }
}

/** An operator action refused because the admin API (or the dashboard) runs read-only. */
export class ReadOnlyError extends BeckettError {
  constructor(action: string) {
    super('READ_ONLY', `Refused: ${action} is an action, and this admin API is read-only.`, {
      exitCode: ExitCode.usage,
      httpStatus: 403,
      hint: 'Start it without --read-only (readOnly: false) to act.',
    });
  }
}

/** An admin read ran past its statement timeout (a query too costly for the data loaded). */
export class QueryTimeoutError extends BeckettError {
  constructor(timeoutMs: number, cause?: unknown) {
    super('QUERY_TIMEOUT', `The query was cancelled after its statement timeout of ${timeoutMs} ms.`, {
      exitCode: ExitCode.unexpected,
      httpStatus: 503,
      hint: 'Narrow the request (a filter, a smaller limit) or raise statementTimeoutMs.',
      cause,
    });
  }
}

/** Bad input from the user: a flag, an argument, a stream name. */
export class InvalidInputError extends BeckettError {
  constructor(message: string, hint?: string) {
    super('INVALID_INPUT', message, { exitCode: ExitCode.usage, ...(hint ? { hint } : {}) });
  }
}

/** The config file is missing, fails to load, or fails validation. */
export class ConfigError extends BeckettError {
  constructor(message: string, hint?: string, cause?: unknown) {
    super('CONFIG_INVALID', message, { exitCode: ExitCode.config, ...(hint ? { hint } : {}), cause });
  }
}

export class DatabaseUnreachableError extends BeckettError {
  constructor(maskedUrl: string, reason: string, cause?: unknown) {
    super('DATABASE_UNREACHABLE', `Cannot connect to the database at ${maskedUrl}: ${reason}`, {
      exitCode: ExitCode.databaseUnreachable,
      hint: 'Check that PostgreSQL is running and the URL is right (--database-url or DATABASE_URL). Without a URL, es starts an embedded server.',
      cause,
    });
  }
}

export class NotMigratedError extends BeckettError {
  constructor(schema: string) {
    super('NOT_MIGRATED', `The schema "${schema}" has not been migrated.`, {
      exitCode: ExitCode.notMigrated,
      hint: `Run: es migrate --schema ${schema}`,
    });
  }
}

export class MigrationChecksumError extends BeckettError {
  constructor(version: number, name: string) {
    super(
      'MIGRATION_CHECKSUM_MISMATCH',
      `Migration ${version} (${name}) was changed after it was applied: its checksum differs from the one recorded.`,
      {
        exitCode: ExitCode.migrationChecksum,
        hint: 'Applied migrations must not change. Restore the original file and add a new numbered migration instead.',
      },
    );
  }
}

export class DatabaseAheadError extends BeckettError {
  constructor(schema: string, unknownVersions: number[]) {
    super(
      'DATABASE_AHEAD',
      `The schema "${schema}" has migrations this version of beckett does not know: ${unknownVersions.join(', ')}.`,
      {
        exitCode: ExitCode.databaseAhead,
        hint: 'The database was migrated by a newer beckett. Upgrade beckett before running this command.',
      },
    );
  }
}

/** An append's expected version did not match the stream's actual version. */
export class WrongExpectedVersionError extends BeckettError {
  readonly stream: string;
  readonly expected: ExpectedVersionDescription;
  readonly actual: number;
  constructor(stream: string, expected: ExpectedVersionDescription, actual: number) {
    super(
      'WRONG_EXPECTED_VERSION',
      `Wrong expected version for stream "${stream}": expected ${describeExpected(expected)}, ${actual < 0 ? 'but another writer appended to it at the same time' : `actual version is ${actual}${actual === 0 ? ' (no stream)' : ''}`}.`,
      {
        exitCode: ExitCode.conflict,
        hint: 'Reload the stream and decide again, or append with expected version "any".',
      },
    );
    this.stream = stream;
    this.expected = expected;
    this.actual = actual;
  }
}

export type ExpectedVersionDescription = number | 'any' | 'no_stream' | 'stream_exists';

function describeExpected(e: ExpectedVersionDescription): string {
  if (e === 'no_stream') return 'no stream (version 0)';
  if (e === 'stream_exists') return 'an existing stream';
  return String(e);
}

/** A conditional (DCB) append found a message matching its `failIfEventsMatch` query. */
export class AppendConditionFailedError extends BeckettError {
  readonly after: number | undefined;
  constructor(after: number | undefined) {
    super(
      'APPEND_CONDITION_FAILED',
      `Append condition failed: a message matching the query exists${after === undefined ? '' : ` after position ${after}`}.`,
      { exitCode: ExitCode.conflict, hint: 'Read the query again and decide with the new messages.' },
    );
    this.after = after;
  }
}

/** A payload failed its message type's schema. */
export class MessageValidationError extends BeckettError {
  readonly type: string;
  readonly issues: readonly { message: string; path?: readonly PropertyKey[] | undefined }[];
  constructor(type: string, issues: readonly { message: string; path?: readonly unknown[] | undefined }[]) {
    const described = issues
      .map((i) => {
        const path = (i.path ?? [])
          .map((p) => (typeof p === 'object' && p !== null && 'key' in p ? String(p.key) : String(p)))
          .join('.');
        return path ? `${path}: ${i.message}` : i.message;
      })
      .join('; ');
    super('MESSAGE_INVALID', `Message of type "${type}" is invalid: ${described}`, {
      exitCode: ExitCode.validation,
      hint: `Fix the payload to match the schema declared for "${type}" in the config.`,
    });
    this.type = type;
    this.issues = issues as MessageValidationError['issues'];
  }
}

export class NotFoundError extends BeckettError {
  constructor(what: string, hint?: string) {
    super('NOT_FOUND', what, { exitCode: ExitCode.notFound, ...(hint ? { hint } : {}) });
  }
}

/** Coerce anything thrown into an Error, once. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  if (typeof thrown === 'string') return new Error(thrown);
  try {
    return new Error(JSON.stringify(thrown));
  } catch {
    return new Error(String(thrown));
  }
}

/**
 * Stored transaction ids are ahead of the server's counter: the database was restored (pg_dump,
 * logical copy) into another cluster. Gap-safe reads compare stored ids with the server's running
 * transactions, so every reader would see nothing new until the counter caught up.
 */
export class TransactionIdsAheadError extends BeckettError {
  readonly storedMax: string;
  readonly counter: string;
  constructor(schema: string, storedMax: string, counter: string) {
    super(
      'TRANSACTION_IDS_AHEAD',
      `The schema "${schema}" stores transaction id ${storedMax}, but this server's next transaction id is ${counter}: the database was restored into another cluster, and readers of the log would see no new message until the server's counter passes ${storedMax}.`,
      {
        exitCode: ExitCode.transactionIdsAhead,
        hint: `Stop the workers and run: es db rebase-xids --schema ${schema} (add --yes to apply).`,
      },
    );
    this.storedMax = storedMax;
    this.counter = counter;
  }
}

/** PostgreSQL refused a statement for a reason no other beckett error names (its SQLSTATE is kept). */
export class DatabaseQueryError extends BeckettError {
  readonly sqlState: string | undefined;
  /** The driver's fields, kept so callers can still tell which constraint or detail it was. */
  readonly constraint: string | undefined;
  readonly detail: string | undefined;
  readonly table: string | undefined;
  constructor(message: string, sqlState: string | undefined, cause?: unknown) {
    super('DATABASE_ERROR', `PostgreSQL refused the statement: ${message}`, {
      exitCode: ExitCode.unexpected,
      hint: 'Run with DEBUG=1 for the stack; if the schema was changed by hand, run es migrate.',
      cause,
    });
    this.sqlState = sqlState;
    const driver = (typeof cause === 'object' && cause !== null ? cause : {}) as Record<string, unknown>;
    const field = (k: string) => (typeof driver[k] === 'string' ? (driver[k] as string) : undefined);
    this.constraint = field('constraint');
    this.detail = field('detail');
    this.table = field('table');
  }
}

/** A file or folder could not be read or written (a path the user gave, or the project's files). */
export class FileAccessError extends BeckettError {
  readonly path: string | undefined;
  constructor(message: string, path: string | undefined, hint?: string, cause?: unknown) {
    super('FILE_ACCESS', message, { exitCode: ExitCode.usage, ...(hint ? { hint } : {}), cause });
    this.path = path;
  }
}

/** The embedded server's data folder is not safe to use (another user owns it or can write to it). */
export class UnsafeDataFolderError extends BeckettError {
  readonly path: string;
  constructor(path: string, reason: string) {
    super('EMBEDDED_UNSAFE', `Refusing to use the embedded database folder ${path}: ${reason}.`, {
      exitCode: ExitCode.databaseUnreachable,
      hint: `Remove or fix ${path} yourself (it must belong to you and be writable by you only), or use your own server with --database-url.`,
    });
    this.path = path;
  }
}

/**
 * The connection was lost after an append was sent and before its reply came: it may have been
 * committed or not. Retry it with the same message ids (the store returns the original result if it
 * was committed), or read the stream.
 */
export class AppendOutcomeUnknownError extends BeckettError {
  /** The streams the append wrote to. */
  readonly streams: readonly string[];
  /** The ids of the messages it sent (retry with these). */
  readonly ids: readonly string[];
  /** The ids it sent per stream, in each stream's order. */
  readonly idsByStream: ReadonlyMap<string, readonly string[]>;
  constructor(appends: readonly { stream: string; ids: readonly string[] }[], cause: unknown) {
    const streams = appends.map((a) => a.stream);
    super(
      'APPEND_OUTCOME_UNKNOWN',
      `The connection was lost before the append to ${streams.map((s) => `"${s}"`).join(', ')} was confirmed: it may or may not have been written.`,
      {
        exitCode: ExitCode.unexpected,
        hint: 'Retry the append with the same message ids: if it was written, the retry returns its original result.',
        cause,
      },
    );
    this.streams = streams;
    this.ids = appends.flatMap((a) => a.ids);
    this.idsByStream = new Map(appends.map((a) => [a.stream, a.ids]));
  }
}

/**
 * Message ids of an append are already stored, but not as this append would write them (another
 * stream, other positions, or only some of them): not a retry of the same append.
 */
export class MessageIdConflictError extends BeckettError {
  readonly ids: readonly string[];
  constructor(ids: readonly string[], detail: string) {
    // The first ids only (an append of a thousand messages would make a line of 37,000 characters);
    // `ids` holds them all.
    const named =
      ids.length <= 3 ? ids.join(', ') : `${ids.slice(0, 3).join(', ')} and ${ids.length - 3} more`;
    const what = ids.length > 1 ? `Message ids ${named} are` : `Message id ${named} is`;
    super('MESSAGE_ID_CONFLICT', `${what} already stored ${detail}.`, {
      exitCode: ExitCode.conflict,
      hint: 'Message ids are unique in the store: give new messages new ids (or leave them out), and retry an append only with its own ids, stream and expected version.',
    });
    this.ids = ids;
  }
}

/** A write on a message store after its close(). */
export class StoreClosedError extends BeckettError {
  constructor() {
    super('STORE_CLOSED', 'The message store is closed: it takes no more appends.', {
      exitCode: ExitCode.unexpected,
      hint: 'Close the store once, when the process is done writing (create a new one to write again).',
    });
  }
}
