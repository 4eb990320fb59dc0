import type { Command } from 'commander';

export function registerDb(program: Command): void {
  const db = program
    .command('db')
    .description('manage the embedded PostgreSQL used when no database URL is given')
    .addHelpText(
      'after',
      `
The embedded server keeps its data in .beckett/ next to your config (or the working directory),
is started on demand by any es command and shared by all of them.

Examples:
  $ es db status
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
}
