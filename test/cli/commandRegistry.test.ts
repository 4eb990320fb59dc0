import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Help } from 'commander';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commands } from '../../src/cli/commands/index.js';
import { buildProgram, commandNameIn } from '../../src/cli/main.js';
import { ES_BIN } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';

const RECORDER = fileURLToPath(new URL('../helpers/recordImports.mjs', import.meta.url));

/** The module URLs an `es` run resolved (relative to the package, or a package name). */
async function importsOf(args: string[], env: Record<string, string> = {}): Promise<string[]> {
  const file = join(mkdtempSync(join(tmpdir(), 'es-imports-')), 'imports.txt');
  const r = await execa('node', ['--import', RECORDER, ES_BIN, ...args], {
    reject: false,
    env: { NO_COLOR: '1', ...env, RECORD_IMPORTS: file },
    timeout: 60_000,
  });
  expect(r.exitCode, String(r.stderr)).toBe(0);
  const root = new URL('../../', import.meta.url).href;
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((u) => u.startsWith('file:'))
    .map((u) => u.slice(root.length).replace(/^node_modules\/((?:@[^/]+\/)?[^/]+)\/.*$/, 'package:$1'));
}

describe('the command registry', () => {
  it('lists each command with the usage and summary its module declares', async () => {
    for (const entry of commands) {
      const program = new Command('es');
      (await entry.load())(program);
      const cmd = program.commands.find((c) => c.name() === entry.name);
      expect(cmd, `${entry.name}: its module declares no command of that name`).toBeDefined();
      expect(entry.usage, `usage of ${entry.name}`).toBe(new Help().subcommandTerm(cmd!));
      expect(entry.summary, `summary of ${entry.name}`).toBe(cmd!.description());
    }
  });

  it('prints the same es --help with stubs as with every command loaded', async () => {
    const stubs = await buildProgram(['node', 'es', '--help']);
    const loaded = await buildProgram(['node', 'es', '--help'], true);
    expect(stubs.helpInformation()).toBe(loaded.helpInformation());
    expect(stubs.helpInformation()).toContain('tail [options] <target>');
  });

  it('finds the command word past global options and their values', async () => {
    const program = await buildProgram(['node', 'es']);
    expect(commandNameIn(program, ['--schema', 'read', 'tail', 'x'])).toBe('tail');
    expect(commandNameIn(program, ['-c', 'f.ts', '--json', 'read'])).toBe('read');
    expect(commandNameIn(program, ['--schema=read', 'worker'])).toBe('worker');
    expect(commandNameIn(program, ['help', 'lag'])).toBe('lag');
    expect(commandNameIn(program, ['--help'])).toBeUndefined();
  });
});

describe('what a command loads', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await setupDb('registry');
    await db.store.append('order-1', { type: 'OrderPlaced', data: { orderId: '1' } });
  });
  afterAll(async () => db?.close());

  it('es --help loads no command module, no driver and no UI', async () => {
    const loaded = await importsOf(['--help']);
    expect(loaded).toContain('dist/cli/main.js');
    expect(loaded.filter((u) => u.startsWith('dist/cli/commands/'))).toEqual(['dist/cli/commands/index.js']);
    expect(new Set(loaded.filter((u) => u.startsWith('package:')))).toEqual(new Set(['package:commander']));
  });

  it('es tail loads its own module and pg, not the store, the UI, telemetry or the embedded server', async () => {
    const loaded = await importsOf(
      ['--schema', db.schema, 'tail', 'order-1', '--from', '0', '--count', '1'],
      {
        DATABASE_URL: db.url,
      },
    );
    expect(loaded.filter((u) => u.startsWith('dist/cli/commands/')).sort()).toEqual([
      'dist/cli/commands/index.js',
      'dist/cli/commands/tail.js',
    ]);
    const packages = new Set(loaded.filter((u) => u.startsWith('package:')));
    expect([...packages].sort()).toEqual(['package:commander', 'package:pg']);
    for (const heavy of ['dist/store/messageStore.js', 'dist/db/embedded.js', 'dist/telemetry/tracing.js'])
      expect(loaded).not.toContain(heavy);
  });
});
