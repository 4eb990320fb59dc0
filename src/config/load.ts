import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, toError } from '../errors.js';
import type { ResolvedConfig } from './types.js';
import { resolveConfig } from './validate.js';

export const CONFIG_FILES = [
  'beckett.config.ts',
  'beckett.config.mts',
  'beckett.config.js',
  'beckett.config.mjs',
];

/** `beckett` inside a user's config resolves to this very package, wherever it is installed. */
function selfEntry(): string {
  const js = fileURLToPath(new URL('../index.js', import.meta.url));
  return existsSync(js) ? js : fileURLToPath(new URL('../index.ts', import.meta.url));
}

/** Loads TypeScript configs, and the TS modules they import, with jiti. */
async function loadWithJiti(filepath: string): Promise<unknown> {
  const { createJiti } = await import('jiti');
  const jiti = createJiti(import.meta.url, {
    alias: { beckett: selfEntry() },
    moduleCache: true,
    fsCache: false,
  });
  const mod = (await jiti.import(filepath)) as Record<string, unknown> | undefined;
  // Without a default export there is no config: refuse rather than run on the defaults.
  if (typeof mod !== 'object' || mod === null || !('default' in mod) || mod.default === undefined) {
    throw new ConfigError(
      `${filepath} has no default export.`,
      'End the file with: export default defineConfig({ ... })',
    );
  }
  return mod.default;
}

export interface LoadConfigOptions {
  /** An explicit file (`--config PATH`); otherwise searched upwards from `cwd`. */
  path?: string;
  cwd?: string;
  /** Throw when no config file is found (the worker needs one). Default false. */
  required?: boolean;
  /**
   * With no config file found, use `beckett.config.example.ts` when it is in `cwd` (a clone of
   * beckett's repository, where `es demo` ran). The CLI says so. Default false.
   */
  example?: boolean;
}

/** The example config beside this package's sources (and in a clone of its repository). */
export const EXAMPLE_CONFIG = 'beckett.config.example.ts';

/**
 * The first config file from `cwd` up: each folder's CONFIG_FILES in order, stopping after the
 * folder holding package.json (the project's root), as cosmiconfig's 'project' search did.
 */
function searchConfig(cwd: string): string | undefined {
  let dir = cwd;
  for (;;) {
    for (const name of CONFIG_FILES) {
      const file = join(dir, name);
      if (isFile(file)) return file;
    }
    if (existsSync(join(dir, 'package.json')) || existsSync(join(dir, 'package.yaml'))) return undefined;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** A file with nothing but white space is an empty config: the defaults. */
async function loadFile(file: string): Promise<unknown> {
  try {
    if ((await readFile(file, 'utf8')).trim() === '') return {};
    return await loadWithJiti(file);
  } catch (err) {
    throw loadFailure(file, err);
  }
}

/**
 * Find and load `beckett.config.ts` (or `.mts/.js/.mjs`), then validate it. With no file found and
 * `required` unset, returns the defaults.
 */
export async function loadConfig(opts: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const cwd = resolve(opts.cwd ?? process.cwd());
  let file: string | undefined;
  if (opts.path) {
    file = resolve(cwd, opts.path);
    if (!existsSync(file)) {
      throw new ConfigError(
        `Config file not found: ${file}`,
        'Check the --config path, or run npx es init to create beckett.config.ts.',
      );
    }
  } else {
    file = searchConfig(cwd);
    const example = join(cwd, EXAMPLE_CONFIG);
    if (!file && opts.example && existsSync(example)) file = example;
  }
  if (!file) {
    if (opts.required) {
      throw new ConfigError(
        `No beckett config found in ${cwd} or its parent folders (looked for ${CONFIG_FILES.join(', ')}).`,
        existsSync(join(cwd, EXAMPLE_CONFIG))
          ? `To use the example config here, pass --config ${EXAMPLE_CONFIG}; to create your own, run npx es init.`
          : 'Run npx es init to create one, or pass --config PATH.',
      );
    }
    return resolveConfig({}, { projectDir: cwd });
  }
  const config = await loadFile(file);
  return resolveConfig(config ?? {}, { path: file, projectDir: dirname(file) });
}

function loadFailure(where: string, err: unknown): ConfigError {
  if (err instanceof ConfigError) return err;
  const e = toError(err);
  return new ConfigError(
    `Could not load the config ${where}: ${e.message}`,
    'Fix the error above in the config file (or a module it imports).',
    err,
  );
}
