#!/usr/bin/env node
// The one top-level error handler: message and hint on stderr, the stack only with DEBUG, and the
// error's exit code.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('es: the build output (dist/) is missing. Run: npm run build\n');
  process.exit(1);
}

try {
  const { run } = await import(entry.href);
  const code = await run(process.argv);
  process.exit(code);
} catch (err) {
  const e = err instanceof Error ? err : new Error(String(err));
  process.stderr.write(`es: ${e.message}\n`);
  if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
  if (process.env.DEBUG && e.stack) process.stderr.write(`${e.stack}\n`);
  process.exit(typeof e.exitCode === 'number' ? e.exitCode : 1);
}
