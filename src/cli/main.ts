import { Command, CommanderError, Help } from 'commander';
import { ExitCode } from '../errors.js';
import { type CommandEntry, commands } from './commands/index.js';

const EXAMPLES = `
Examples:
  $ es migrate                                   create or upgrade the tables (embedded database when no URL)
  $ es append order-1 order_item_added '{"orderId":"1","productId":"p1","quantity":2}'
  $ es read order-1 --json                       one JSON object per line
  $ es worker --group InventoryAllocation        run a subscription group
  $ es dump-migrations --schema beckett 001.sql  the SQL, for your own migration tool

Database: --database-url, then DATABASE_URL, then the config's database.url; with none of them es
starts an embedded PostgreSQL with its data in .beckett/ (es db status | es db stop).
Replica and pooler: --read-url (BECKETT_READ_URL, database.readUrl) sends es tail, es read, the
dashboard's message pages and es worker's catch-up reads to a streaming replica; behind PgBouncer in transaction mode set BECKETT_LISTEN_URL (database.listenUrl)
to a direct URL of the primary, for LISTEN.
Config: beckett.config.ts (or .mts/.js/.mjs) found from the working directory up, or --config PATH.
Exit codes: 0 ok, 1 unexpected, 2 bad input, 3 config, 4 database unreachable, 5 migration checksum,
6 database ahead of code, 7 version conflict, 8 not found, 9 invalid message, 10 not migrated,
11 unhealthy (es health), 12 transaction ids ahead of the server (a restored database:
es db rebase-xids).`;

function rootProgram(): Command {
  return new Command('es')
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
    .option(
      '--read-url <url>',
      'a hot standby of the primary for es tail, es read, the dashboard and catch-up (default: BECKETT_READ_URL, then the config)',
    )
    .option('--schema <name>', 'schema holding beckett tables (default: the config, then "beckett")')
    .addHelpText('after', EXAMPLES)
    .showHelpAfterError('(run es --help for usage)')
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      writeOut: (s) => process.stdout.write(s),
    });
}

/**
 * The command `args` (argv without node and the script) runs: the first word that is not an option
 * or an option's value (`es help tail` names tail). Undefined for `es --help` and the like.
 */
export function commandNameIn(program: Command, args: string[]): string | undefined {
  const takesValue = new Set(
    program.options
      .filter((o) => o.required || o.optional)
      .flatMap((o) => [o.short, o.long].filter((f): f is string => Boolean(f))),
  );
  let sawHelp = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') return undefined;
    if (arg.startsWith('-')) {
      if (takesValue.has(arg)) i++;
      continue;
    }
    if (arg === 'help' && !sawHelp) {
      sawHelp = true;
      continue;
    }
    return arg;
  }
  return sawHelp ? 'help' : undefined;
}

/** A stand-in listed by `es --help`; it loads its module only if it ever runs (see buildProgram). */
function addStub(program: Command, entry: CommandEntry, stubs: Map<Command, string>): void {
  const stub = program
    .command(entry.name)
    .description(entry.summary)
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(() => {
      throw new Error(`es: the ${entry.name} command ran before its module was loaded`);
    });
  stubs.set(stub, entry.usage);
}

/**
 * The program with the command that `argv` runs fully declared (its module imported) and every
 * other one as a stub (name and summary, for `es --help`); `loadAll` declares every command.
 */
export async function buildProgram(argv: string[] = process.argv, loadAll = false): Promise<Command> {
  const program = rootProgram();
  const wanted = loadAll ? undefined : commandNameIn(program, argv.slice(2));
  const stubs = new Map<Command, string>();
  for (const entry of commands) {
    if (loadAll || entry.name === wanted) (await entry.load())(program);
    else addStub(program, entry, stubs);
  }
  program.configureHelp({
    subcommandTerm(cmd: Command): string {
      return stubs.get(cmd) ?? Help.prototype.subcommandTerm.call(this, cmd);
    },
  });
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  return program;
}

/** Parse argv and run the command; resolves to the exit code. Errors propagate to bin/es.js. */
export async function run(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
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
    const { toBeckettError } = await import('../db/toBeckettError.js');
    throw toBeckettError(err, { all: true, url: process.env.DATABASE_URL });
  }
  return code;
}

/** Commands set their exit code here (0 unless they say otherwise). */
export function setExitCode(cmd: Command, code: number): void {
  (cmd as Command & { exitCode?: number }).exitCode = code;
}
