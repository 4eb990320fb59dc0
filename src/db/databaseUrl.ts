import { InvalidInputError } from '../errors.js';
import { quoteValue } from '../validation/quoteValue.js';

/*
 * Connection strings carry passwords, in the user part (postgres://u:secret@h), as a query
 * parameter (?password=secret) or as a libpq key=value pair (password=secret). Everything that
 * prints or logs a URL or an error goes through maskUrl / redactSecrets, so none of those forms
 * is ever shown.
 */

const MASK = '***';

/** The URL with its password replaced by `***`, whatever form the string takes. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = MASK;
    for (const key of [...u.searchParams.keys()])
      if (/pass|secret|token|key/i.test(key)) u.searchParams.set(key, MASK);
    return u.toString().replaceAll(encodeURIComponent(MASK), MASK);
  } catch {
    return redactSecrets(url);
  }
}

/** Any text (an error message, a log line) with connection-string passwords replaced by `***`. */
export function redactSecrets(text: string): string {
  return (
    text
      // scheme://user:password@host
      .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)\S*@/gi, `$1${MASK}@`)
      // ?password=... / &password=... / libpq password=... / password='quoted value'
      .replace(
        /(\b(?:password|passwd|pgpassword|sslpassword)\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;]*)/gi,
        `$1${MASK}`,
      )
  );
}

/**
 * Check a connection string before any connection is tried: a postgres:// (or postgresql://) URL
 * with a valid host and port. libpq key=value strings are refused (node-postgres reads them as a
 * host name). The message never repeats the string itself, only its masked form.
 */
export function assertDatabaseUrl(url: unknown, where = 'The database URL'): asserts url is string {
  const refuse = (why: string) =>
    new InvalidInputError(
      `${where} ${typeof url === 'string' && /^postgres(ql)?:\/\//i.test(url) ? `(${quoteValue(maskUrl(url))}) ` : ''}is not valid: ${why}.`,
      'Use a URL such as postgres://user@localhost:5432/app (--database-url or DATABASE_URL); give the password in the URL or in PGPASSWORD.',
    );
  if (typeof url !== 'string' || url.trim() === '') throw refuse('it is empty');
  if (!/^postgres(ql)?:\/\//i.test(url))
    throw refuse(
      /^\s*\w+\s*=/.test(url)
        ? 'key=value connection strings are not supported, use a postgres:// URL'
        : 'it must start with postgres:// or postgresql://',
    );
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw refuse(
      'it cannot be parsed as a URL (check the host, the port and %-encode special characters in the password)',
    );
  }
  if (u.port !== '' && (Number(u.port) < 1 || Number(u.port) > 65535))
    throw refuse('the port must be 1-65535');
  if (u.hostname === '' && !u.searchParams.has('host')) throw refuse('it names no host');
}
