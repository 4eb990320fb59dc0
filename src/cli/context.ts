import { basename } from 'node:path';
import type pg from 'pg';
import { EXAMPLE_CONFIG, loadConfig } from '../config/load.js';
import type { ResolvedConfig } from '../config/types.js';
import { maskUrl } from '../db/databaseUrl.js';
import { assertSafeSchemaName, escapeIdentifier } from '../db/identifier.js';
import type { SqlContext } from '../db/queryable.js';
import { toBeckettError } from '../db/toBeckettError.js';
import type { MessageStore } from '../store/messageStore.js';

/** Options every command accepts (declared on the program). */
export interface GlobalOptions {
  config?: string;
  databaseUrl?: string;
  readUrl?: string;
  schema?: string;
}

/** What a command that only queries needs (es tail): no message store is built or imported. */
export interface QueryContext {
  config: ResolvedConfig;
  schema: string;
  url: string;
  /** Where the URL came from, for messages. */
  source: 'flag' | 'env' | 'config' | 'embedded';
  /** The primary's pool; the replica's for a context opened with `replica` when a read URL is set. */
  pool: pg.Pool;
  sql: SqlContext;
  /** The pool reads on (`store.replica` reads): the read replica when one is given, else `pool`. */
  readPool: pg.Pool;
  /** `pool` is on the read replica (a `replica` context with a read URL): see assertReadsFromReplica. */
  replicaOnly: boolean;
  close(): Promise<void>;
}

export interface CommandContext extends QueryContext {
  store: MessageStore;
}

/** The read replica's URL: --read-url, then BECKETT_READ_URL, then the config's database.readUrl. */
export function chooseReadUrl(opts: GlobalOptions, config: ResolvedConfig): string | undefined {
  return opts.readUrl || process.env.BECKETT_READ_URL || config.database.readUrl || undefined;
}

/** The direct URL for LISTEN (behind PgBouncer): the config's database.listenUrl, or BECKETT_LISTEN_URL. */
export function chooseListenUrl(config: ResolvedConfig): string | undefined {
  return config.database.listenUrl || undefined;
}

/** Say that the example config is in use (a clone of beckett's repository with no config of its own). */
export function noteExampleConfig(config: ResolvedConfig): void {
  if (config.path && basename(config.path) === EXAMPLE_CONFIG)
    process.stderr.write(
      `es: no beckett.config.ts here: using ${EXAMPLE_CONFIG} (copy it to beckett.config.ts to make it yours, or run npx es init).\n`,
    );
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

/**
 * pg asks at load time whether it runs in a Cloudflare Worker. On Node 20, which has no `navigator`,
 * its check builds a fetch Response, which loads undici: about a third of pg's load time. Node 21+
 * defines `navigator`; the CLI gives Node 20 the same answer while pg loads, then removes it.
 */
export async function importPool(): Promise<typeof import('../db/pool.js')> {
  const g = globalThis as { navigator?: unknown };
  const had = 'navigator' in g;
  if (!had) g.navigator = { userAgent: `Node.js/${process.versions.node.split('.')[0]}` };
  try {
    return await import('../db/pool.js');
  } finally {
    if (!had) delete g.navigator;
  }
}

/** Load the config, pick the database (starting the embedded one if needed) and open a pool. */
export async function openContext(
  opts: GlobalOptions,
  need: Parameters<typeof openQueryContext>[1] = {},
): Promise<CommandContext> {
  const ctx = await openQueryContext(opts, need);
  const { createMessageStore } = await import('../store/messageStore.js');
  const store = createMessageStore({
    pool: ctx.pool,
    ...(ctx.readPool !== ctx.pool ? { readPool: ctx.readPool } : {}),
    schema: ctx.schema,
    messages: ctx.config.messages,
    preparedStatements: ctx.config.database.preparedStatements,
  });
  return {
    ...ctx,
    store,
    async close() {
      await store.close();
      await ctx.close();
    },
  };
}

/** openContext without the message store. */
export async function openQueryContext(
  opts: GlobalOptions,
  need: {
    config?: boolean;
    /** Connections; a function of the loaded config to size it from there. Default: the config's, or 10. */
    poolSize?: number | ((config: ResolvedConfig) => number);
    /**
     * The command only reads (es tail): with a read URL, its one pool is on the replica (LISTEN
     * still goes to the primary, a standby cannot LISTEN). Otherwise a read URL opens a second
     * pool, `readPool`, for `store.replica`.
     */
    replica?: boolean;
    /** Server settings for every session of the command's pool, from the loaded config. */
    settings?: (config: ResolvedConfig) => Record<string, string | number>;
  } = {},
): Promise<QueryContext> {
  const config = await loadConfig({
    ...(opts.config ? { path: opts.config } : {}),
    required: need.config ?? false,
    // A command that needs a config (es worker) run in a clone of the repository takes the example
    // beside it; the others run on the defaults there, as anywhere without a config.
    example: need.config ?? false,
  });
  if (!opts.config) noteExampleConfig(config);
  const schema = assertSafeSchemaName(opts.schema ?? config.database.schema);
  // BECKETT_LISTEN_URL acts as database.listenUrl would: a pooler in front, so no named statements
  // unless the config asks for them next to its own listenUrl.
  if (process.env.BECKETT_LISTEN_URL && !config.database.listenUrl) {
    const urls: typeof import('../db/databaseUrl.js') = await import('../db/databaseUrl.js');
    urls.assertDatabaseUrl(process.env.BECKETT_LISTEN_URL, 'BECKETT_LISTEN_URL');
    config.database.listenUrl = process.env.BECKETT_LISTEN_URL;
    config.database.preparedStatements = false;
  }
  let { url, source } = chooseUrl(opts, config);
  if (!url) {
    const { ensureEmbedded } = await import('../db/embedded.js');
    const server = await ensureEmbedded(config.projectDir);
    url = server.url;
    // Said once per server start, not by every command (es db status shows it any time).
    if (server.started)
      process.stderr.write(
        `es: started the embedded PostgreSQL (${server.dataDir}, port ${server.port}); set DATABASE_URL or --database-url to use your own server.\n`,
      );
  }
  const { assertReachable, createPool } = await importPool();
  const readUrl = chooseReadUrl(opts, config);
  const listenUrl = chooseListenUrl(config);
  const open = (at: string, max: number) => {
    const p = createPool(at, {
      max,
      applicationName: 'beckett-cli',
      ...(need.settings ? { settings: need.settings(config) } : {}),
      // LISTEN on the primary: directly when the primary's URL goes through a pooler.
      ...(listenUrl || at !== url ? { listenUrl: listenUrl ?? url } : {}),
    });
    return p;
  };
  const max =
    (typeof need.poolSize === 'function' ? need.poolSize(config) : need.poolSize) ??
    config.database.poolSize ??
    10;
  const replicaOnly = need.replica === true && readUrl !== undefined;
  const pool = open(replicaOnly ? readUrl : url, max);
  const readPool = readUrl && !replicaOnly ? open(readUrl, max) : pool;
  try {
    await assertReachable(pool, replicaOnly ? readUrl : url);
    if (readPool !== pool && readUrl) {
      await assertReachable(readPool, readUrl);
      const { assertReplicaOf } = await import('../db/serverIdentity.js');
      await assertReplicaOf(pool, readPool);
    }
  } catch (err) {
    await pool.end().catch(() => undefined);
    if (readPool !== pool) await readPool.end().catch(() => undefined);
    throw err;
  }
  let closed = false;
  return {
    config,
    schema,
    url,
    source,
    pool,
    readPool,
    replicaOnly,
    sql: { schema, s: escapeIdentifier(schema), prepared: config.database.preparedStatements },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end().catch(() => undefined);
      if (readPool !== pool) await readPool.end().catch(() => undefined);
    },
  };
}

/**
 * For a context whose one pool is on the read replica (es tail --read-url): check on a direct
 * connection to the primary that the replica is a standby of it (src/db/serverIdentity.ts). A
 * primary that cannot be reached leaves nothing to compare with: 'unverified' (the tail reads on).
 */
export async function assertReadsFromReplica(
  ctx: QueryContext,
): Promise<'verified' | 'unverified' | 'primary'> {
  if (!ctx.replicaOnly) return 'primary';
  const { assertPoolReplicatesListenTarget } = await import('../db/serverIdentity.js');
  let how: 'verified' | 'unverified' = 'verified';
  await assertPoolReplicatesListenTarget(ctx.pool, () => {
    how = 'unverified';
  });
  return how;
}

/** The one mapping (src/db/toBeckettError.ts): "relation does not exist" becomes "run es migrate". */
export function explainDatabaseError(err: unknown, schema: string, url?: string): Error {
  return toBeckettError(err, { schema, url, all: true });
}

/**
 * Commands that read the gap-safe log refuse a restored database whose transaction ids are ahead of
 * the server's counter (they would see nothing new): exit 12, with the repair in the hint.
 */
export async function assertLogReadable(ctx: QueryContext): Promise<void> {
  const { assertTransactionIdsBehindCounter } = await import('../store/transactionIdCounter.js');
  await assertTransactionIdsBehindCounter(ctx.pool, {
    schema: ctx.schema,
    s: escapeIdentifier(ctx.schema),
    prepared: false,
  });
}

/**
 * Run a command body with the admin API over the command's context (actions audited as 'cli'): the
 * commands that act on the database go through it, so they share every rule with REST and the
 * dashboard.
 */
export async function withAdmin<T>(
  opts: GlobalOptions,
  need: { config?: boolean; poolSize?: number; readsLog?: boolean },
  fn: (admin: import('../admin/createBeckett.js').AdminApi, ctx: CommandContext) => Promise<T>,
): Promise<T> {
  const { createBeckett } = await import('../admin/createBeckett.js');
  return withContext(opts, need, async (ctx) => {
    const beckett = createBeckett({ pool: ctx.pool, schema: ctx.schema, config: ctx.config, actor: 'cli' });
    try {
      return await fn(beckett.admin, ctx);
    } finally {
      await beckett.close();
    }
  });
}

/** Run a command body with a context, always closing it and explaining missing tables. */
export async function withContext<T>(
  opts: GlobalOptions,
  need: { config?: boolean; poolSize?: number; readsLog?: boolean; replica?: boolean },
  fn: (ctx: CommandContext) => Promise<T>,
): Promise<T> {
  return runIn(await openContext(opts, need), need, fn);
}

/** withContext without the message store, for commands that only query. */
export async function withQueryContext<T>(
  opts: GlobalOptions,
  need: { config?: boolean; poolSize?: number; readsLog?: boolean; replica?: boolean },
  fn: (ctx: QueryContext) => Promise<T>,
): Promise<T> {
  return runIn(await openQueryContext(opts, need), need, fn);
}

async function runIn<C extends QueryContext, T>(
  ctx: C,
  need: { readsLog?: boolean },
  fn: (ctx: C) => Promise<T>,
): Promise<T> {
  try {
    if (need.readsLog) await assertLogReadable(ctx);
    return await fn(ctx);
  } catch (err) {
    throw explainDatabaseError(err, ctx.schema, ctx.url);
  } finally {
    await ctx.close();
  }
}

export { maskUrl };
