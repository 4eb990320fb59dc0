import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export const ES_BIN = fileURLToPath(new URL('../../bin/es.js', import.meta.url));

/** What a finished `es` run left: text output and its exit code. */
export interface EsResult {
  stdout: string;
  stderr: string;
  /** undefined only when the process was killed by a signal. */
  exitCode: number | undefined;
  signal: string | undefined;
}

/** Spawn the built `es` with the given args; never throws on a non-zero exit. */
export async function es(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; input?: string; timeout?: number } = {},
): Promise<EsResult> {
  const r = await execa('node', [ES_BIN, ...args], {
    reject: false,
    cwd: opts.cwd ?? process.cwd(),
    env: { NO_COLOR: '1', ...opts.env },
    timeout: opts.timeout ?? 60_000,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
  return {
    stdout: String(r.stdout ?? ''),
    stderr: String(r.stderr ?? ''),
    exitCode: r.exitCode,
    signal: r.signal,
  };
}
