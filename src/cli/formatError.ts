import { redactSecrets } from '../db/databaseUrl.js';
import { toBeckettError } from '../db/toBeckettError.js';

/**
 * What bin/es.js prints for an error: the message, the hint, and with DEBUG the stack (and its
 * cause's), every line with connection-string passwords redacted. Its own module: loaded only when
 * a command fails.
 */
export function formatError(thrown: unknown, debug: boolean): string {
  const e = toBeckettError(thrown, { all: true, url: process.env.DATABASE_URL });
  const lines = [`es: ${e.message}`];
  const hint = (e as { hint?: unknown }).hint;
  if (typeof hint === 'string' && hint) lines.push(`hint: ${hint}`);
  if (debug) {
    if (e.stack) lines.push(e.stack);
    const cause = (e as { cause?: unknown }).cause;
    if (cause instanceof Error && cause.stack) lines.push(`caused by: ${cause.stack}`);
  }
  return `${redactSecrets(lines.join('\n'))}\n`;
}
