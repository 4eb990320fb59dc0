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
} as const;

export class BeckettError extends Error {
  readonly code: string;
  readonly exitCode: number;
  readonly hint: string | undefined;
  constructor(
    code: string,
    message: string,
    opts: { exitCode?: number; hint?: string; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = opts.exitCode ?? ExitCode.unexpected;
    this.hint = opts.hint;
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
