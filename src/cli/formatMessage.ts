import type { RecordedMessage } from '../store/types.js';

// The ANSI codes chalk writes at level 1 (dim, cyan, bold), without loading chalk for es tail/read.
const styles = {
  dim: (s: string) => `\u001b[2m${s}\u001b[22m`,
  cyan: (s: string) => `\u001b[36m${s}\u001b[39m`,
  bold: (s: string) => `\u001b[1m${s}\u001b[22m`,
};
const plain = { dim: (s: string) => s, cyan: (s: string) => s, bold: (s: string) => s };

/** One human line per message: position, time, stream@position, type, data. */
export function formatMessage(m: RecordedMessage, color: boolean): string {
  const c = color ? styles : plain;
  return [
    c.dim(String(m.globalPosition).padStart(6)),
    c.dim(m.createdAt.toISOString()),
    c.cyan(`${m.streamName}@${m.streamPosition}`),
    c.bold(m.type),
    JSON.stringify(m.data),
  ].join(' ');
}
