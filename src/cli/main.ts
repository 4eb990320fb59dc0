import { Command, CommanderError } from 'commander';
import { ExitCode, InvalidInputError } from '../errors.js';
import { commands } from './commands/index.js';

const EXAMPLES = `
Examples:
  $ es migrate                                   create or upgrade the tables (embedded database when no URL)
  $ es append order-1 order_item_added '{"orderId":"1","productId":"p1","quantity":2}'
  $ es read order-1 --json                       one JSON object per line
  $ es worker --group InventoryAllocation        run a subscription group
  $ es dump-migrations --schema beckett 001.sql  the SQL, for your own migration tool

Database: --database-url, then DATABASE_URL, then the config's database.url; with none of them es
starts an embedded PostgreSQL with its data in .beckett/ (es db status | es db stop).
Config: beckett.config.ts (or .mts/.js/.mjs) found from the working directory up, or --config PATH.
Exit codes: 0 ok, 1 unexpected, 2 bad input, 3 config, 4 database unreachable, 5 migration checksum,
6 database ahead of code, 7 version conflict, 8 not found, 9 invalid message, 10 not migrated,
11 unhealthy (es health).`;

export function buildProgram(): Command {
  const program = new Command('es')
    .description('beckett: event store, subscription workers and operations on PostgreSQL')
    .version(process.env.npm_package_version ?? '0.1.0', '-V, --version')
    .option(
      '-c, --config <path>',
      'config file (default: beckett.config.ts found from the working directory up)',
    )
    .option(
      '--database-url <url>',
      'PostgreSQL URL (default: DATABASE_URL, then the config, then the embedded server)',
    )
    .option('--schema <name>', 'schema holding beckett tables (default: the config, then "beckett")')
    .addHelpText('after', EXAMPLES)
    .showHelpAfterError('(run es --help for usage)')
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      writeOut: (s) => process.stdout.write(s),
    });
  for (const register of commands) register(program);
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  return program;
}

/** Parse argv and run the command; resolves to the exit code. Errors propagate to bin/es.js. */
export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  let code = ExitCode.ok as number;
  program.hook('postAction', (_this, action) => {
    const c = (action as Command & { exitCode?: number }).exitCode;
    if (typeof c === 'number') code = c;
  });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.code === 'commander.help'
      )
        return 0;
      // commander already printed the problem.
      return ExitCode.usage;
    }
    throw err;
  }
  return code;
}

/** Commands set their exit code here (0 unless they say otherwise). */
export function setExitCode(cmd: Command, code: number): void {
  (cmd as Command & { exitCode?: number }).exitCode = code;
}

export { InvalidInputError };
