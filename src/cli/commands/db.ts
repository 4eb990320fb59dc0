import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

export function registerDb(program: Command): void {
  const db = program
    .command('db')
    .description('the embedded PostgreSQL used when no database URL is given; repair a restored database')
    .addHelpText(
      'after',
      `
The embedded server keeps its data in .beckett/ next to your config (or the working directory),
is started on demand by any es command and shared by all of them.

Its superuser password is random, kept in the data folder's "password" file (mode 0600); the
server listens on 127.0.0.1 only. es refuses a data folder that another user owns or can write to.

Examples:
  $ es db status
  $ es db url                     the URL with the password masked
  $ es db url --show-password     the full URL, for your own tools (keep it private)
  $ es db psql                    psql on the embedded server (password passed privately)
  $ es db rebase-xids             after restoring a dump into another cluster (dry run; --yes applies)
  $ es db stop`,
    );
  db.command('status')
    .description('say whether the embedded server runs, where, and its URL')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const { embeddedStatus } = await import('../../db/embedded.js');
      const { loadConfig } = await import('../../config/load.js');
      const globals = program.opts<{ config?: string }>();
      const config = await loadConfig(globals.config ? { path: globals.config } : {});
      const s = await embeddedStatus(config.projectDir);
      const { maskUrl } = await import('../../db/pool.js');
      const url = s.url ? maskUrl(s.url) : undefined;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ ...s, url })}\n`);
        return;
      }
      if (s.running) process.stdout.write(`running  port ${s.port}  data ${s.dataDir}\nurl      ${url}\n`);
      else process.stdout.write(`stopped  data ${s.dataDir}${s.initialised ? '' : ' (not created yet)'}\n`);
    });
  db.command('url')
    .description('start the embedded server if needed and print its URL (password masked)')
    .option('--show-password', 'print the password too (anyone who reads it is a superuser)')
    .action(async (opts: { showPassword?: boolean }) => {
      const { ensureEmbedded } = await import('../../db/embedded.js');
      const { loadConfig } = await import('../../config/load.js');
      const { maskUrl } = await import('../../db/databaseUrl.js');
      const globals = program.opts<{ config?: string }>();
      const config = await loadConfig(globals.config ? { path: globals.config } : {});
      const server = await ensureEmbedded(config.projectDir);
      process.stdout.write(`${opts.showPassword ? server.url : maskUrl(server.url)}\n`);
    });
  db.command('psql')
    .description('run psql on the embedded server (start it if needed); arguments go to psql')
    .argument('[args...]', 'psql arguments, after --, such as -- -c "select 1"')
    .action(async (args: string[]) => {
      const { ensureEmbedded } = await import('../../db/embedded.js');
      const { loadConfig } = await import('../../config/load.js');
      const { BeckettError, ExitCode } = await import('../../errors.js');
      const { spawn } = await import('node:child_process');
      const globals = program.opts<{ config?: string }>();
      const config = await loadConfig(globals.config ? { path: globals.config } : {});
      const server = await ensureEmbedded(config.projectDir);
      const url = new URL(server.url);
      // The password goes through the environment (PGPASSWORD), never on psql's command line.
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn(
          'psql',
          ['-h', url.hostname, '-p', url.port, '-U', url.username, '-d', 'postgres', ...args],
          {
            stdio: 'inherit',
            env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) },
          },
        );
        child.on('error', (err: NodeJS.ErrnoException) =>
          reject(
            err.code === 'ENOENT'
              ? new BeckettError('PSQL_NOT_FOUND', 'psql is not installed (or not on PATH).', {
                  exitCode: ExitCode.unexpected,
                  hint: 'Install the PostgreSQL client (for example apt install postgresql-client), or use es db url --show-password with your own tool.',
                })
              : err,
          ),
        );
        child.on('exit', (c) => resolve(c ?? 1));
      });
      if (code !== 0) {
        const { setExitCode } = await import('../main.js');
        setExitCode(db.commands.find((c) => c.name() === 'psql')!, code);
      }
    });
  db.command('stop')
    .description('stop the embedded server (its data stays)')
    .action(async () => {
      const { stopEmbedded } = await import('../../db/embedded.js');
      const { loadConfig } = await import('../../config/load.js');
      const globals = program.opts<{ config?: string }>();
      const config = await loadConfig(globals.config ? { path: globals.config } : {});
      const stopped = await stopEmbedded(config.projectDir);
      process.stdout.write(
        stopped ? 'stopped the embedded PostgreSQL\n' : 'the embedded PostgreSQL was not running\n',
      );
    });
  db.command('rebase-xids')
    .description('repair a database restored into another cluster: rebase stored transaction ids')
    .option('--yes', 'apply (without it: a dry run saying what would change)')
    .option('--json', 'print the plan or the result as JSON')
    .addHelpText(
      'after',
      `
The log is read in transaction-id order. A dump restored into another cluster (pg_dump/pg_restore,
a logical copy, a move to a new server) keeps the ids of the old cluster; when the new server's
counter is lower, readers see no new message until it catches up, and workers and log-reading
commands refuse to start (exit 12). This command rewrites every stored transaction id (messages,
tags, subscription positions) below the server's counter, keeping the log's order: restored
messages first, then those written since the restore, then everything written afterwards. When
the ids do not fit below the counter, it advances the counter first (about 100k ids a second).
Decider snapshots with a query boundary are dropped (the next decision reads the query again).

Stop the workers first: appends wait while it runs. Running it again does nothing.

Examples:
  $ es db rebase-xids --database-url postgres://localhost/app          what would change
  $ es db rebase-xids --database-url postgres://localhost/app --yes    apply`,
    )
    .action(async (opts: { yes?: boolean; json?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { withContext } = await import('../context.js');
      const { escapeIdentifier } = await import('../../db/identifier.js');
      const { planTransactionIdRebase, rebaseTransactionIds } = await import(
        '../../operations/rebaseTransactionIds.js'
      );
      const { print, warn } = await import('../output.js');
      await withContext(globals, { poolSize: 2 }, async (ctx) => {
        const sql = { schema: ctx.schema, s: escapeIdentifier(ctx.schema), prepared: false };
        if (!opts.yes) {
          const plan = await planTransactionIdRebase(ctx.pool, sql);
          if (opts.json) return print(JSON.stringify({ ...plan, applied: false }));
          if (!plan.ahead) return print(nothingToDo(ctx.schema, plan));
          print(
            `schema ${ctx.schema}: stored transaction ids reach ${plan.storedMax}, this server's counter is ${plan.counter}: readers of the log see nothing new.`,
          );
          print(
            `  restored log ends at global position ${plan.restoredEnd ?? '(none recognised)'}; ${plan.messagesSinceRestore} message(s) written since the restore will follow it`,
          );
          print(
            `  ${plan.distinctIds} distinct transaction id(s) to rewrite below the counter${plan.toBurn > 0 ? `, after advancing the counter by about ${plan.toBurn}` : ''}`,
          );
          print('  decider snapshots with a query boundary are dropped (rebuilt by the next decision)');
          print('Stop the workers, then run again with --yes.');
          return;
        }
        const result = await rebaseTransactionIds(ctx.pool, sql, {
          onBurn: (n) => {
            if (!opts.json) warn(`es: advancing the server's transaction counter by ${n} first`);
          },
        });
        if (opts.json) return print(JSON.stringify(result));
        if (!result.applied) return print(nothingToDo(ctx.schema, result));
        print(
          `schema ${ctx.schema}: rebased ${result.messages} message(s), ${result.tags} tag row(s) and ${result.cursors} subscription position(s) below the counter (${result.distinctIds} transaction ids); dropped ${result.snapshotsDropped} decider snapshot(s)${result.burned > 0 ? `; advanced the counter by ${result.burned}` : ''}. Workers can start.`,
        );
      });
    });
}

function nothingToDo(schema: string, p: { storedMax: string | null; counter: string }): string {
  return p.storedMax === null
    ? `schema ${schema} stores no transaction ids yet: nothing to do.`
    : `schema ${schema}: stored transaction ids (up to ${p.storedMax}) are below this server's counter (${p.counter}): nothing to do.`;
}
