import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Beckett } from '../admin/createBeckett.js';
import type { FollowOptions } from '../admin/follow.js';
import { InvalidInputError } from '../errors.js';
import { problemOf } from './problem.js';

export interface EventStreamOptions {
  /** Backstop poll when no notification arrives. Default 1000 ms. */
  pollMs?: number;
  /** Messages read per query: with one socket buffer, what a slow client can cost. Default 100. */
  batchSize?: number;
  /** A comment line this often keeps proxies from closing an idle stream. Default 15 s. */
  heartbeatMs?: number;
}

function list(q: URLSearchParams, name: string): string[] | undefined {
  const v = q.get(name);
  return v === null || v === '' ? undefined : v.split(',').filter((s) => s !== '');
}

function fromParam(q: URLSearchParams): FollowOptions['from'] {
  const v = q.get('from');
  if (v === null || v === '' || v === 'end') return 'end';
  if (v === 'start') return 'start';
  if (/^\d+$/.test(v) && Number.isSafeInteger(Number(v))) return Number(v);
  throw new InvalidInputError(`from must be start, end or a global position, got ${JSON.stringify(v)}.`);
}

/** Resolves when the socket can take more (or is gone); leaves no listener behind. */
function drained(res: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
    signal.addEventListener('abort', done);
  });
}

/**
 * GET /api/events: Server-Sent Events of a stream, a category, types and tags, or the whole log.
 * `id:` is the message's log position, so a client that reconnects with Last-Event-ID (or
 * `?after=`) resumes without loss or duplicate; `event: caught-up` marks the head. Backpressure:
 * while the socket's buffer is full the reader waits for 'drain' and reads nothing from the
 * database, so a client that reads nothing costs one batch and one socket buffer.
 */
export async function serveEventStream(
  beckett: Beckett,
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  opts: EventStreamOptions = {},
): Promise<void> {
  const lastEventId = req.headers['last-event-id'];
  const after =
    (typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : null) ?? query.get('after');
  const stream = query.get('stream');
  const category = query.get('category');
  const types = list(query, 'types');
  const tags = list(query, 'tags');
  const abort = new AbortController();
  const signal = abort.signal;
  const write = (text: string) => (signal.aborted ? true : res.write(text));
  // Checked before the headers go out: bad options are a 400 problem, not a broken stream.
  const messages = beckett.admin.follow({
    ...(stream ? { stream } : {}),
    ...(category ? { category } : {}),
    ...(types ? { types } : {}),
    ...(tags ? { tags } : {}),
    ...(after ? { after } : { from: fromParam(query) }),
    signal,
    ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
    ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
    // Called only while this loop waits for the next message: never inside a write.
    onCaughtUp: () => write('event: caught-up\ndata: {}\n\n'),
  });
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
  const stop = () => abort.abort();
  res.on('close', stop);
  req.on('close', stop);
  const heartbeat = setInterval(() => {
    // Only when the buffer is empty: a heartbeat must not grow what a slow client costs.
    if (res.writableLength === 0) write(': keep-alive\n\n');
  }, opts.heartbeatMs ?? 15_000);
  heartbeat.unref();
  write('retry: 1000\n\n');
  try {
    for await (const m of messages) {
      if (signal.aborted) break;
      const more = write(`id: ${m.logPosition}\nevent: message\ndata: ${JSON.stringify(m)}\n\n`);
      if (!more) await drained(res, signal);
    }
  } catch (err) {
    // After the headers: say what went wrong as an event, then end the stream.
    if (!signal.aborted) write(`event: error\ndata: ${JSON.stringify(problemOf(err))}\n\n`);
  } finally {
    clearInterval(heartbeat);
    res.off('close', stop);
    req.off('close', stop);
    abort.abort();
    if (!res.writableEnded) res.end();
  }
}
