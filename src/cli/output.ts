import { redactSecrets } from '../db/databaseUrl.js';
import type { RecordedMessage } from '../store/types.js';

/** One JSON object per line, for scripts. */
export function messageToJson(m: RecordedMessage): string {
  return JSON.stringify({
    globalPosition: m.globalPosition,
    streamName: m.streamName,
    streamPosition: m.streamPosition,
    type: m.type,
    id: m.id,
    data: m.data,
    metadata: m.metadata,
    tags: m.tags,
    createdAt: m.createdAt.toISOString(),
  });
}

export function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** A line on stderr (worker logs, progress), with connection-string passwords redacted. */
export function warn(line: string): void {
  process.stderr.write(`${redactSecrets(line)}\n`);
}

/** Human output uses color only on a terminal, and never when NO_COLOR is set. */
export function useColor(): boolean {
  return Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
}

/** Plain fixed-width table (no color), for human output. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}
