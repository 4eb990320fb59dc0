import type { Command } from 'commander';

interface InitFlags {
  force?: boolean;
  json?: boolean;
}

/** Template file -> the path it is written to, relative to the working directory. */
const FILES: [string, string][] = [
  ['beckett.config.ts', 'beckett.config.ts'],
  ['handlers/greet.ts', 'handlers/greet.ts'],
];

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('create beckett.config.ts and an example handler in the working directory')
    .option('--force', 'overwrite files that already exist')
    .option('--json', 'print the written files as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ es init                   beckett.config.ts + handlers/greet.ts
  $ es init --force           overwrite them

Refuses (exit 2) to overwrite an existing file unless --force is given, and always refuses to
write through a symbolic link.`,
    )
    .action(async (opts: InitFlags) => {
      const { existsSync } = await import('node:fs');
      const { readFile } = await import('node:fs/promises');
      const { resolve } = await import('node:path');
      const { writeUserFile } = await import('../writeUserFile.js');
      const { InvalidInputError } = await import('../../errors.js');
      const { print } = await import('../output.js');
      const templates = new URL('../../../templates/', import.meta.url);
      const cwd = process.cwd();
      const existing = FILES.map(([, to]) => to).filter((to) => existsSync(resolve(cwd, to)));
      if (existing.length > 0 && !opts.force) {
        throw new InvalidInputError(
          `Refusing to overwrite ${existing.join(', ')} in ${cwd}.`,
          'Run es init --force to overwrite, or run it in another folder.',
        );
      }
      const written: string[] = [];
      for (const [from, to] of FILES) {
        const text = await readFile(new URL(from, templates), 'utf8');
        await writeUserFile(resolve(cwd, to), text, {
          overwrite: Boolean(opts.force),
          base: cwd,
          flag: '--force',
        });
        written.push(to);
      }
      // The embedded development server keeps its data in .beckett/: not for version control.
      const gitignore = resolve(cwd, '.gitignore');
      const ignored = existsSync(gitignore) ? await readFile(gitignore, 'utf8') : '';
      const ignoresData = ignored
        .split(/\r?\n/)
        .some((l) => ['.beckett', '.beckett/', '/.beckett/'].includes(l.trim()));
      if (!ignoresData) {
        // Through writeUserFile too: a .gitignore that is a symbolic link is refused, not followed.
        await writeUserFile(
          gitignore,
          `${ignored}${ignored === '' || ignored.endsWith('\n') ? '' : '\n'}.beckett/\n`,
          { overwrite: true, base: cwd, flag: '--force' },
        );
        written.push('.gitignore');
      }
      if (opts.json) {
        print(JSON.stringify({ directory: cwd, files: written, overwritten: existing }));
        return;
      }
      for (const f of written)
        print(
          f === '.gitignore'
            ? `${ignored === '' ? 'created' : 'updated'} .gitignore (.beckett/: the embedded server's data)`
            : `${existing.includes(f) ? 'overwrote' : 'created'} ${f}`,
        );
      print(`
Next:
  npx es migrate                                          create the tables
  npx es worker --group Greetings                         run the example subscription
  npx es append person-ada person_arrived '{"name":"Ada"}'
  npx es tail greeting                                    watch what the handler writes`);
    });
}
