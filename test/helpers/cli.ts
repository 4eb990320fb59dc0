import { fileURLToPath } from 'node:url';
import { execa, type Result } from 'execa';

export const ES_BIN = fileURLToPath(new URL('../../bin/es.js', import.meta.url));

/** Spawn the built `es` with the given args; never throws on a non-zero exit. */
export async function es(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; input?: string; timeout?: number } = {},
): Promise<Result> {
  return execa('node', [ES_BIN, ...args], {
    reject: false,
    cwd: opts.cwd ?? process.cwd(),
    env: { NO_COLOR: '1', ...opts.env },
    timeout: opts.timeout ?? 60_000,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
}
