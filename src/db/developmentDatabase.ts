import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { CONFIG_FILES } from '../config/load.js';
import { InvalidInputError } from '../errors.js';
import { ensureEmbedded } from './embedded.js';

/**
 * The folder whose `.beckett/` holds the project's embedded server: the folder of the nearest
 * beckett config file above `cwd` (up to the package root), as `es` picks it, else `cwd`. Found
 * without loading the config.
 */
export function projectDirOf(cwd: string = process.cwd()): string {
  let dir = resolve(cwd);
  for (;;) {
    if (CONFIG_FILES.some((f) => existsSync(join(dir, f)))) return dir;
    const parent = dirname(dir);
    if (existsSync(join(dir, 'package.json')) || parent === dir) return resolve(cwd);
    dir = parent;
  }
}

/** Servers this process started, so each start is announced once. */
const announced = new Set<string>();

/**
 * The database a store made without a URL uses: `DATABASE_URL` when set; otherwise, outside
 * production, the project's embedded PostgreSQL, the very server (and password file) `es` uses,
 * started if it is not running (announced once with process.emitWarning, as the library never
 * prints). With NODE_ENV=production and no URL it throws: production names its database.
 */
export async function developmentDatabaseUrl(opts: { projectDir?: string } = {}): Promise<string> {
  const fromEnv = process.env.DATABASE_URL;
  if (fromEnv) return fromEnv;
  if (process.env.NODE_ENV === 'production') {
    throw new InvalidInputError(
      'No database URL: with NODE_ENV=production beckett does not start the embedded PostgreSQL.',
      'Set DATABASE_URL, or give createMessageStore a connectionString or a pool.',
    );
  }
  const server = await ensureEmbedded(opts.projectDir ?? projectDirOf());
  if (server.started && !announced.has(server.dataDir)) {
    announced.add(server.dataDir);
    process.emitWarning(
      `started the embedded PostgreSQL (${server.dataDir}, port ${server.port}) because no database URL was given; set DATABASE_URL to use your own server.`,
      { type: 'BeckettNotice', code: 'BECKETT_EMBEDDED_STARTED' },
    );
  }
  return server.url;
}
