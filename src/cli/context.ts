import type pg from 'pg';
import { loadConfig } from '../config/load.js';
import type { ResolvedConfig } from '../config/types.js';
import { ensureEmbedded } from '../db/embedded.js';
import { assertSafeSchemaName } from '../db/identifier.js';
import { assertReachable, createPool, maskUrl } from '../db/pool.js';
import { SqlState, sqlStateOf } from '../db/sqlstate.js';
import { NotMigratedError } from '../errors.js';
import { createMessageStore, type MessageStore } from '../store/messageStore.js';

/** Options every command accepts (declared on the program). */
export interface GlobalOptions {
  config?: string;
  databaseUrl?: string;
  schema?: string;
}

export interface CommandContext {
  config: ResolvedConfig;
  schema: string;
  url: string;
  /** Where the URL came from, for messages. */
  source: 'flag' | 'env' | 'config' | 'embedded';
  pool: pg.Pool;
  store: MessageStore;
  close(): Promise<void>;
}

/** Which URL to use: --database-url, then DATABASE_URL, then the config; undefined means embedded. */
export function chooseUrl(
  opts: GlobalOptions,
  config: ResolvedConfig,
): { url: string | undefined; source: CommandContext['source'] } {
  if (opts.databaseUrl) return { url: opts.databaseUrl, source: 'flag' };
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, source: 'env' };
  if (config.database.url) return { url: config.database.url, source: 'config' };
  return { url: undefined, source: 'embedded' };
}

/** Load the config, pick the database (starting the embedded one if needed) and open a pool. */
export async function openContext(
  opts: GlobalOptions,
  need: { config?: boolean; poolSize?: number } = {},
): Promise<CommandContext> {
  const config = await loadConfig({
    ...(opts.config ? { path: opts.config } : {}),
    required: need.config ?? false,
  });
  const schema = assertSafeSchemaName(opts.schema ?? config.database.schema);
  let { url, source } = chooseUrl(opts, config);
  if (!url) {
    const server = await ensureEmbedded(config.projectDir);
    url = server.url;
    process.stderr.write(
      `es: using the embedded PostgreSQL (${server.dataDir}, port ${server.port}${server.started ? ', just started' : ''}); set DATABASE_URL or --database-url to use your own server.\n`,
    );
  }
  const pool = createPool(url, {
    max: need.poolSize ?? config.database.poolSize,
    applicationName: 'beckett-cli',
  });
  try {
    await assertReachable(pool, url);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  const store = createMessageStore({
    pool,
    schema,
    messages: config.messages,
    preparedStatements: config.database.preparedStatements,
  });
  let closed = false;
  return {
    config,
    schema,
    url,
    source,
    pool,
    store,
    async close() {
      if (closed) return;
      closed = true;
      await store.close();
      await pool.end().catch(() => undefined);
    },
  };
}

/** Turn "relation does not exist" into the actionable "run es migrate". */
export function explainDatabaseError(err: unknown, schema: string): unknown {
  const state = sqlStateOf(err);
  if (
    state === SqlState.undefinedTable ||
    state === SqlState.invalidSchemaName ||
    state === SqlState.undefinedFunction
  ) {
    return new NotMigratedError(schema);
  }
  return err;
}

/** Run a command body with a context, always closing it and explaining missing tables. */
export async function withContext<T>(
  opts: GlobalOptions,
  need: { config?: boolean; poolSize?: number },
  fn: (ctx: CommandContext) => Promise<T>,
): Promise<T> {
  const ctx = await openContext(opts, need);
  try {
    return await fn(ctx);
  } catch (err) {
    throw explainDatabaseError(err, ctx.schema);
  } finally {
    await ctx.close();
  }
}

export { maskUrl };
