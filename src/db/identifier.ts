import { InvalidInputError } from '../errors.js';
import { quoteValue } from '../validation/quoteValue.js';

const SAFE_IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** A schema name is only accepted if it needs no quoting: lower case letters, digits and `_`. */
export function assertSafeSchemaName(name: string): string {
  if (typeof name !== 'string' || !SAFE_IDENTIFIER.test(name)) {
    throw new InvalidInputError(
      `Invalid schema name ${quoteValue(name)}: use 1-63 lower case letters, digits or "_", starting with a letter or "_".`,
      'Example: --schema beckett',
    );
  }
  return name;
}

/** Quote an identifier for SQL (the one place identifiers enter SQL text). */
export function escapeIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
