import type { Command } from 'commander';
import type { CommandContext, GlobalOptions } from '../context.js';

/** The schema `es demo` fills when none is given. */
const DEMO_SCHEMA = 'beckett_demo';

/**
 * With no --schema and no config file, a fresh clone has run `es demo` (schema beckett_demo) and
 * nothing else: show that instead of an empty "beckett" schema.
 */
async function pickSchema(ctx: CommandContext, given: string | undefined): Promise<string> {
  if (given || ctx.config.path || ctx.schema === DEMO_SCHEMA) return ctx.schema;
  const { rows } = await ctx.pool.query<{ ours: string | null; demo: string | null }>(
    `SELECT to_regclass(quote_ident($1) || '.messages')::text AS ours,
            to_regclass(quote_ident($2) || '.messages')::text AS demo`,
    [ctx.schema, DEMO_SCHEMA],
  );
  return rows[0]?.ours === null && rows[0]?.demo !== null ? DEMO_SCHEMA : ctx.schema;
}

interface DashboardFlags {
  port: string;
  host: string;
  readOnly?: boolean;
  basePath: string;
}

export function registerDashboard(program: Command): void {
  program
    .command('dashboard')
    .description('serve the web dashboard: browse messages, watch lag, retry and skip failed checkpoints')
    .option('-p, --port <port>', 'port to listen on (0 picks a free one)', '7890')
    .option(
      '--host <address>',
      'address to listen on; anything but loopback needs credentials (see below)',
      '127.0.0.1',
    )
    .option('--read-only', 'hide every action and refuse every POST (403)')
    .option('--base-path <path>', 'serve under this path, e.g. /beckett behind a reverse proxy', '/')
    .addHelpText(
      'after',
      `
Examples:
  $ es dashboard                                   http://127.0.0.1:7890/
  $ es dashboard --read-only --port 8080
  $ BECKETT_DASHBOARD_TOKEN=$(openssl rand -hex 24) es dashboard --host 0.0.0.0
      then open http://HOST:7890/?token=THE_TOKEN once (it becomes a cookie), or send
      "Authorization: Bearer THE_TOKEN" from scripts
  $ BECKETT_DASHBOARD_USER=ops BECKETT_DASHBOARD_PASSWORD=... es dashboard --host 0.0.0.0

Safety: the dashboard listens on 127.0.0.1 only unless --host says otherwise, and refuses (exit 2)
a non-loopback --host unless BECKETT_DASHBOARD_TOKEN, or BECKETT_DASHBOARD_USER and
BECKETT_DASHBOARD_PASSWORD, are set (16 characters at least). Every POST from a browser needs the
page's CSRF token. Every action is recorded in the audit log (its page shows it). The pages load
nothing from outside the package: they work offline.
The REST API the pages use is served at <base-path>api (see the README for curl examples).
With --read-url (or database.readUrl), the message store's pages (categories, streams, messages,
the log, finding messages) read from that streaming replica; lag, subscriptions, checkpoints,
queues and every action stay on the primary.
The same dashboard is served by es worker --http-port ... --dashboard.`,
    )
    .action(async (opts: DashboardFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parseNonNegativeInt } = await import('../parse.js');
      const { InvalidInputError } = await import('../../errors.js');
      const port = parseNonNegativeInt(opts.port, '--port');
      if (port > 65535) throw new InvalidInputError(`--port must be 0-65535, got ${opts.port}.`);
      const { authFromEnv, assertAuth, assertSafeBind } = await import('../../dashboard/auth.js');
      const { normalizeBasePath } = await import('../../dashboard/createDashboardHandler.js');
      let basePath: string;
      try {
        basePath = normalizeBasePath(opts.basePath);
      } catch (err) {
        throw new InvalidInputError((err as Error).message);
      }
      // Refuse an unsafe bind before touching the database.
      const auth = authFromEnv();
      if (auth) assertAuth(auth);
      assertSafeBind(opts.host, auth);
      const { openContext, explainDatabaseError } = await import('../context.js');
      const { createBeckett } = await import('../../admin/createBeckett.js');
      const { startDashboardServer } = await import('../../dashboard/startDashboardServer.js');
      const { print, warn } = await import('../output.js');
      const ctx = await openContext(globals, { poolSize: 6 });
      const schema = await pickSchema(ctx, globals.schema).catch(() => ctx.schema);
      if (schema !== ctx.schema)
        warn(
          `es dashboard: schema ${ctx.schema} is empty, showing ${schema} (es demo's); choose with --schema.`,
        );
      const beckett = createBeckett({
        pool: ctx.pool,
        // --read-url / database.readUrl: the message store's pages read from the replica.
        ...(ctx.readPool !== ctx.pool ? { readPool: ctx.readPool } : {}),
        schema,
        config: ctx.config,
        actor: 'dashboard',
      });
      try {
        await beckett.admin.summary();
      } catch (err) {
        await beckett.close();
        await ctx.close();
        throw explainDatabaseError(err, schema, ctx.url);
      }
      const server = await startDashboardServer({
        beckett,
        port,
        host: opts.host,
        basePath,
        readOnly: opts.readOnly ?? false,
        ...(auth ? { auth } : {}),
      }).catch(async (err) => {
        await beckett.close();
        await ctx.close();
        throw err;
      });
      print(`beckett dashboard on ${server.url}${opts.readOnly ? ' (read-only)' : ''}`);
      if (auth)
        warn(
          `es dashboard: requests need ${auth.token ? 'the token' : ''}${auth.token && auth.user ? ' or ' : ''}${auth.user ? `basic auth as ${auth.user}` : ''}.`,
        );
      warn('es dashboard: press Ctrl-C to stop.');
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await server.close();
      await beckett.close();
      await ctx.close();
    });
}
