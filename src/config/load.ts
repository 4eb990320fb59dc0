import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
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
  return jiti.import(filepath, { default: true });
}

export interface LoadConfigOptions {
  /** An explicit file (`--config PATH`); otherwise searched upwards from `cwd`. */
  path?: string;
  cwd?: string;
  /** Throw when no config file is found (the worker needs one). Default false. */
  required?: boolean;
}

/**
 * Find and load `beckett.config.ts` (or `.mts/.js/.mjs`) with cosmiconfig, then validate it.
 * With no file found and `required` unset, returns the defaults.
 */
export async function loadConfig(opts: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const cwd = resolve(opts.cwd ?? process.cwd());
  const { cosmiconfig } = await import('cosmiconfig');
  const explorer = cosmiconfig('beckett', {
    searchPlaces: CONFIG_FILES,
    searchStrategy: 'project',
    loaders: { '.ts': loadWithJiti, '.mts': loadWithJiti, '.js': loadWithJiti, '.mjs': loadWithJiti },
    cache: false,
  });
  let result: { filepath: string; config: unknown; isEmpty?: boolean } | null;
  if (opts.path) {
    const file = resolve(cwd, opts.path);
    if (!existsSync(file)) {
      throw new ConfigError(
        `Config file not found: ${file}`,
        'Check the --config path, or run es init to create beckett.config.ts.',
      );
    }
    result = await explorer.load(file).catch((err: unknown) => {
      throw loadFailure(file, err);
    });
  } else {
    result = await explorer.search(cwd).catch((err: unknown) => {
      throw loadFailure(cwd, err);
    });
  }
  if (!result) {
    if (opts.required) {
      throw new ConfigError(
        `No beckett config found in ${cwd} or its parent folders (looked for ${CONFIG_FILES.join(', ')}).`,
        'Run es init to create one, or pass --config PATH.',
      );
    }
    return resolveConfig({}, { projectDir: cwd });
  }
  return resolveConfig(result.config ?? {}, { path: result.filepath, projectDir: dirname(result.filepath) });
}

function loadFailure(where: string, err: unknown): ConfigError {
  const e = toError(err);
  return new ConfigError(
    `Could not load the config ${where}: ${e.message}`,
    'Fix the error above in the config file (or a module it imports).',
    err,
  );
}
