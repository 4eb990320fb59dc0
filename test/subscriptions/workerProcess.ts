import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { ES_BIN } from '../helpers/cli.js';

/**
 * A config for spawned `es worker` processes: group G with `rec` (records every call into
 * <schema>.calls, in call order) and, optionally, `proj`, a transactional projection counting
 * messages per stream in <schema>.counts.
 */
export function writeWorkerConfig(
  schema: string,
  opts: {
    handlerDelayMs?: number;
    batchSize?: number;
    projection?: boolean;
    concurrency?: number;
    category?: string;
    /** Record (stream, -position) when a call starts, before the delay. */
    announce?: boolean;
  } = {},
): string {
  const dir = mkdtempSync(join(tmpdir(), 'beckett-worker-'));
  const delay = opts.handlerDelayMs ?? 0;
  const file = join(dir, 'beckett.config.mjs');
  writeFileSync(
    file,
    `const sleep = (ms) => (ms > 0 ? new Promise((r) => setTimeout(r, ms)) : undefined);
export default {
  database: { schema: '${schema}' },
  groups: {
    G: {
      concurrency: ${opts.concurrency ?? 4},
      subscriptions: {
        rec: {
          category: '${opts.category ?? 'w'}',
          batchSize: ${opts.batchSize ?? 100},
          handler: async (m, ctx) => {
            ${
              opts.announce
                ? `await ctx.store.pool.query('INSERT INTO "${schema}".calls (stream, pos, pid) VALUES ($1, $2, $3)', [m.streamName, -m.streamPosition, process.pid]);`
                : ''
            }
            await sleep(${delay});
            await ctx.store.pool.query(
              'INSERT INTO "${schema}".calls (stream, pos, pid) VALUES ($1, $2, $3)',
              [m.streamName, m.streamPosition, process.pid],
            );
          },
        },
        ${
          opts.projection
            ? `proj: {
          category: '${opts.category ?? 'w'}',
          transactional: true,
          batchSize: ${opts.batchSize ?? 100},
          handler: async (m, ctx) => {
            await sleep(${delay});
            await ctx.client.query(
              'INSERT INTO "${schema}".counts (stream, n) VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = counts.n + 1',
              [m.streamName],
            );
          },
        },`
            : ''
        }
      },
    },
  },
};
`,
  );
  return file;
}

export const CALLS_DDL = (schema: string) => `
  CREATE TABLE "${schema}".calls (seq bigserial PRIMARY KEY, stream text NOT NULL, pos int NOT NULL, pid int NOT NULL);
  CREATE TABLE "${schema}".counts (stream text PRIMARY KEY, n int NOT NULL);`;

/** Start `es worker` in the background; stderr is collected for assertions. */
export function spawnWorker(
  args: string[],
  env: Record<string, string>,
): ResultPromise & { stderrText(): string } {
  let stderr = '';
  const child = execa('node', [ES_BIN, 'worker', ...args], {
    reject: false,
    env: { NO_COLOR: '1', ...env },
    timeout: 120_000,
    stdout: 'pipe',
    stderr: 'pipe',
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return Object.assign(child, { stderrText: () => stderr });
}

/**
 * Check calls per stream: every position 1..n handled, and each call's position at most one past
 * the highest handled before it in that stream (never ahead of a gap; re-deliveries after a crash
 * may repeat earlier positions, in order). Returns problems as strings (empty when all is well).
 */
export function checkOrder(rows: { stream: string; pos: number }[], expected: Map<string, number>): string[] {
  const problems: string[] = [];
  const max = new Map<string, number>();
  for (const { stream, pos } of rows) {
    const m = max.get(stream) ?? 0;
    if (pos > m + 1) problems.push(`${stream}: ${pos} handled before ${m + 1}`);
    max.set(stream, Math.max(m, pos));
  }
  for (const [stream, n] of expected) {
    if ((max.get(stream) ?? 0) !== n)
      problems.push(`${stream}: handled up to ${max.get(stream) ?? 0} of ${n}`);
  }
  return problems;
}
