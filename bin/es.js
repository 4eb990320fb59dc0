#!/usr/bin/env node
// The one top-level error handler: message and hint on stderr, the stack only with DEBUG (passwords
// redacted either way: see src/cli/formatError.ts), and the error's exit code.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('es: the build output (dist/) is missing. Run: npm run build\n');
  process.exit(1);
}

const main = await import(entry.href);
try {
  const code = await main.run(process.argv);
  process.exit(code);
} catch (err) {
  const { formatError } = await import(new URL('../dist/cli/formatError.js', import.meta.url).href);
  process.stderr.write(formatError(err, Boolean(process.env.DEBUG)));
  process.exit(typeof err?.exitCode === 'number' ? err.exitCode : 1);
}
