import { Chalk } from 'chalk';
import type { RecordedMessage } from '../store/types.js';

const colored = new Chalk({ level: 1 });
const plain = new Chalk({ level: 0 });

/** One human line per message: position, time, stream@position, type, data. */
export function formatMessage(m: RecordedMessage, color: boolean): string {
  const c = color ? colored : plain;
  return [
    c.dim(String(m.globalPosition).padStart(6)),
    c.dim(m.createdAt.toISOString()),
    c.cyan(`${m.streamName}@${m.streamPosition}`),
    c.bold(m.type),
    JSON.stringify(m.data),
  ].join(' ');
}
