import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Beckett } from '../admin/createBeckett.js';
import { BeckettError, ExitCode, InvalidInputError, ReadOnlyError } from '../errors.js';
import type { PositionOrTime } from '../operations/replay.js';
import type { JobToEnqueue } from '../queues/enqueue.js';
import { type EventStreamOptions, serveEventStream } from './eventStream.js';
import { openApiDocument } from './openApi.js';
import { problemOf, sendJson, sendProblem } from './problem.js';

export interface ApiHandlerOptions {
  /** Refuse every POST with 403 (and hide nothing else). Default false. */
  readOnly?: boolean;
  /** Who acts, for the audit log (a user name from the host's auth). Default 'api'. */
  actor?: (req: IncomingMessage) => string | undefined;
  /** CSRF check for POSTs, supplied by the dashboard layer: false answers 403. */
  checkCsrf?: (req: IncomingMessage) => boolean;
  /** Unexpected errors (answered as a bare 500): log them here. */
  onError?: (err: unknown, req: IncomingMessage) => void;
  /** Largest request body accepted, in bytes. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Server-Sent Events tuning (poll interval, batch size, heartbeat). */
  events?: EventStreamOptions;
}

/** Handles the request when it is one of the API's; resolves false when the path is not under /api. */
export type ApiHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

type Query = URLSearchParams;
interface Route {
  method: 'GET' | 'POST';
  /** Path segments after /api; ':name' captures one segment, '*rest' captures the rest. */
  path: string[];
  action?: boolean;
  run(ctx: RouteContext): Promise<void>;
}

interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: Query;
  body: () => Promise<Record<string, unknown>>;
  actor: string;
}

function intParam(q: Query, name: string, min = 0): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min)
    throw new InvalidInputError(
      `Query parameter ${name} must be an integer from ${min}, got ${JSON.stringify(v)}.`,
    );
  return n;
}

function textParam(q: Query, name: string): string | undefined {
  const v = q.get(name);
  return v === null || v === '' ? undefined : v;
}

function listParam(q: Query, name: string): string[] | undefined {
  const v = textParam(q, name);
  return v === undefined ? undefined : v.split(',').filter((s) => s !== '');
}

function positionOrTime(v: unknown, name: string): PositionOrTime | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return { position: v };
  if (typeof v === 'string' && /^\d+$/.test(v)) return { position: Number(v) };
  if (typeof v === 'string' && !Number.isNaN(Date.parse(v))) return { time: new Date(v) };
  throw new InvalidInputError(`${name} must be a global position or an ISO time, got ${JSON.stringify(v)}.`);
}

function checkpointTargetOf(body: Record<string, unknown>) {
  if ('ids' in body) return { ids: body.ids as string[] };
  return body as { group?: string; subscription?: string; status?: 'retry' | 'failed' };
}

/** A job of POST /api/queues/:queue/jobs: { type, data, metadata?, id?, key?, delay? }. */
function jobOf(raw: unknown, i: number): JobToEnqueue {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new InvalidInputError(`jobs[${i}] must be an object { type, data, metadata?, id?, key?, delay? }.`);
  const { type, data, metadata, id, key, delay, ...rest } = raw as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0)
    throw new InvalidInputError(
      `jobs[${i}] has unknown field(s) ${unknown.join(', ')}: a job is { type, data, metadata?, id?, key?, delay? }.`,
    );
  return {
    message: { type, data, ...(metadata !== undefined ? { metadata } : {}) } as JobToEnqueue['message'],
    ...(id !== undefined ? { id: id as string } : {}),
    ...(key !== undefined ? { key: key as string } : {}),
    ...(delay !== undefined ? { delay: delay as number } : {}),
  };
}

const ok = (res: ServerResponse, value: unknown, status = 200) => sendJson(res, status, value);

function routes(beckett: Beckett, opts: ApiHandlerOptions): Route[] {
  const a = beckett.admin;
  const get = (path: string, run: Route['run']): Route => ({ method: 'GET', path: split(path), run });
  const post = (path: string, run: Route['run']): Route => ({
    method: 'POST',
    path: split(path),
    action: true,
    run,
  });
  return [
    get('summary', async ({ res }) => ok(res, await a.summary())),
    get('health', async ({ res, query }) => {
      const maxLag = intParam(query, 'maxLag');
      const group = textParam(query, 'group');
      const h = await a.health({ ...(group ? { group } : {}), ...(maxLag !== undefined ? { maxLag } : {}) });
      ok(res, h, h.healthy ? 200 : 503);
    }),
    get('lag', async ({ res }) => ok(res, await a.lag())),
    get('categories', async ({ res, query }) => {
      const search = textParam(query, 'search');
      const after = textParam(query, 'after');
      const limit = intParam(query, 'limit', 1);
      ok(
        res,
        await a.categories({
          ...(search ? { search } : {}),
          ...(after ? { after } : {}),
          ...(limit ? { limit } : {}),
        }),
      );
    }),
    get('categories/:category/streams', async ({ res, query, params }) => {
      const after = textParam(query, 'after');
      const limit = intParam(query, 'limit', 1);
      ok(
        res,
        await a.streams(params.category!, { ...(after ? { after } : {}), ...(limit ? { limit } : {}) }),
      );
    }),
    get('streams/:stream/messages', async ({ res, query, params }) => {
      const from = intParam(query, 'from', 1);
      const limit = intParam(query, 'limit', 1);
      const direction = textParam(query, 'direction');
      if (direction !== undefined && direction !== 'forward' && direction !== 'backward')
        throw new InvalidInputError(
          `direction must be forward or backward, got ${JSON.stringify(direction)}.`,
        );
      ok(
        res,
        await a.streamMessages(params.stream!, {
          ...(from ? { from } : {}),
          ...(limit ? { limit } : {}),
          ...(direction ? { direction } : {}),
        }),
      );
    }),
    post('streams/:stream/messages', async ({ res, params, body, actor }) => {
      const b = await body();
      const messages = b.messages;
      if (!Array.isArray(messages) || messages.length === 0)
        throw new InvalidInputError(
          'The body needs messages: a non-empty array of { type, data, metadata?, id?, tags? }.',
        );
      const expectedVersion = b.expectedVersion as never;
      ok(
        res,
        await a.append(params.stream!, messages, {
          actor,
          ...(b.expectedVersion !== undefined ? { expectedVersion } : {}),
        }),
        201,
      );
    }),
    get('messages/:id', async ({ res, params }) => ok(res, await a.message(params.id!))),
    get('messages', async ({ res, query }) => {
      const correlationId = textParam(query, 'correlationId');
      const causationId = textParam(query, 'causationId');
      const globalPosition = intParam(query, 'globalPosition', 1);
      ok(
        res,
        await a.findMessages({
          ...(correlationId ? { correlationId } : {}),
          ...(causationId ? { causationId } : {}),
          ...(globalPosition ? { globalPosition } : {}),
        }),
      );
    }),
    get('log', async ({ res, query }) => {
      const after = textParam(query, 'after');
      const limit = intParam(query, 'limit', 1);
      const category = textParam(query, 'category');
      const types = listParam(query, 'types');
      ok(
        res,
        await a.log({
          ...(after ? { after } : {}),
          ...(limit ? { limit } : {}),
          ...(category ? { category } : {}),
          ...(types ? { types } : {}),
        }),
      );
    }),
    get('subscriptions', async ({ res }) => ok(res, await a.subscriptions())),
    post('subscriptions/:group/:name/pause', async ({ res, params, actor }) =>
      ok(res, await a.pause(params.group!, params.name!, { actor })),
    ),
    post('subscriptions/:group/:name/resume', async ({ res, params, actor }) =>
      ok(res, await a.resume(params.group!, params.name!, { actor })),
    ),
    post('subscriptions/:group/:name/reset', async ({ res, params, body, actor }) => {
      const to = (await body()).to ?? 'start';
      if (to !== 'start' && to !== 'beginning' && to !== 'end')
        throw new InvalidInputError(
          `to must be "start" or "end", got ${JSON.stringify(to)}.`,
          'To handle a range again, use POST .../replay with { from, to }.',
        );
      ok(res, await a.reset(params.group!, params.name!, to === 'end' ? 'end' : 'beginning', { actor }));
    }),
    post('subscriptions/:group/:name/forget', async ({ res, params, actor }) =>
      ok(res, await a.forget(params.group!, params.name!, { actor })),
    ),
    post('subscriptions/:group/:name/replay', async ({ res, params, body, actor }) => {
      const b = await body();
      const from = positionOrTime(b.from, 'from');
      const to = positionOrTime(b.to, 'to');
      ok(
        res,
        await a.replay(
          {
            group: params.group!,
            subscription: params.name!,
            ...(from ? { from } : {}),
            ...(to ? { to } : {}),
            ...(b.stream !== undefined ? { stream: b.stream as string } : {}),
            ...(b.types !== undefined ? { types: b.types as string[] } : {}),
          },
          { actor, ...(b.dryRun === true ? { dryRun: true } : {}) },
        ),
      );
    }),
    get('checkpoints', async ({ res, query }) => {
      const status = textParam(query, 'status');
      const group = textParam(query, 'group');
      const subscription = textParam(query, 'subscription');
      const after = textParam(query, 'after');
      const limit = intParam(query, 'limit', 1);
      ok(
        res,
        await a.checkpoints({
          ...(status ? { status: status as never } : {}),
          ...(group ? { group } : {}),
          ...(subscription ? { subscription } : {}),
          ...(after ? { after } : {}),
          ...(limit ? { limit } : {}),
        }),
      );
    }),
    post('checkpoints/retry', async ({ res, body, actor }) =>
      ok(res, await a.retry(checkpointTargetOf(await body()), { actor })),
    ),
    post('checkpoints/skip', async ({ res, body, actor }) =>
      ok(res, await a.skip(checkpointTargetOf(await body()), { actor })),
    ),
    post('checkpoints/release', async ({ res, body, actor }) =>
      ok(res, await a.release(checkpointTargetOf(await body()), { actor })),
    ),
    get('checkpoints/*id', async ({ res, params }) => ok(res, await a.checkpoint(params.id!))),
    get('scheduled', async ({ res, query }) => {
      const after = textParam(query, 'after');
      const limit = intParam(query, 'limit', 1);
      ok(res, await a.scheduled({ ...(after ? { after } : {}), ...(limit ? { limit } : {}) }));
    }),
    post('scheduled/:id/cancel', async ({ res, params, actor }) =>
      ok(res, await a.cancelScheduled(params.id!, { actor })),
    ),
    get('recurring', async ({ res }) => ok(res, await a.recurring())),
    post('recurring/:name/send-now', async ({ res, params, actor }) =>
      ok(res, await a.sendRecurringNow(params.name!, { actor }), 201),
    ),
    get('queues', async ({ res }) => ok(res, await a.queues())),
    get('queues/:queue/jobs', async ({ res, params, query }) => {
      const limit = intParam(query, 'limit', 1);
      ok(res, await a.queueJobs(params.queue!, limit ? { limit } : {}));
    }),
    post('queues/:queue/jobs', async ({ res, params, body, actor }) => {
      const b = await body();
      if (!Array.isArray(b.jobs) || b.jobs.length === 0)
        throw new InvalidInputError(
          'The body needs jobs: a non-empty array of { type, data, metadata?, id?, key?, delay? }.',
        );
      const jobs = (b.jobs as unknown[]).map((j, i) => jobOf(j, i));
      ok(res, await a.enqueue(params.queue!, jobs, { actor }), 201);
    }),
    get('queues/:queue/dead-letters', async ({ res, params, query }) => {
      const limit = intParam(query, 'limit', 1);
      ok(res, await a.deadLetters(params.queue!, limit ? { limit } : {}));
    }),
    post('queues/:queue/dead-letters/redrive', async ({ res, params, body, actor }) => {
      const b = await body();
      ok(
        res,
        await a.redrive(
          params.queue!,
          {
            ...(b.all !== undefined ? { all: b.all === true } : {}),
            ...(b.ids !== undefined ? { ids: b.ids as string[] } : {}),
          },
          { actor },
        ),
      );
    }),
    post('queues/:queue/purge', async ({ res, params, body, actor }) => {
      const b = await body();
      ok(
        res,
        await a.purgeQueue(
          params.queue!,
          { deadLetters: b.deadLetters === true, confirm: b.confirm as string },
          { actor },
        ),
      );
    }),
    get('workers', async ({ res }) => ok(res, await a.workers())),
    get('retention/preview', async ({ res }) => ok(res, await a.retentionPreview())),
    get('events', async ({ req, res, query }) => serveEventStream(beckett, req, res, query, opts.events)),
    get('openapi.json', async ({ res }) => ok(res, openApiDocument())),
    get('audit', async ({ res, query }) => {
      const after = textParam(query, 'after');
      const limit = intParam(query, 'limit', 1);
      const checkpoint = textParam(query, 'checkpoint');
      ok(
        res,
        await a.audit({
          ...(after ? { after } : {}),
          ...(limit ? { limit } : {}),
          ...(checkpoint ? { checkpoint } : {}),
        }),
      );
    }),
  ];
}

function split(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

function match(route: Route, segments: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  for (let i = 0; i < route.path.length; i++) {
    const p = route.path[i]!;
    if (p.startsWith('*')) {
      if (i >= segments.length) return undefined;
      params[p.slice(1)] = segments.slice(i).join('/');
      return params;
    }
    const s = segments[i];
    if (s === undefined) return undefined;
    if (p.startsWith(':')) params[p.slice(1)] = s;
    else if (p !== s) return undefined;
  }
  return segments.length === route.path.length ? params : undefined;
}

async function readBody(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes)
      throw new BeckettError('PAYLOAD_TOO_LARGE', `The request body is larger than ${maxBytes} bytes.`, {
        exitCode: ExitCode.usage,
        httpStatus: 413,
        hint: 'Append fewer messages per request.',
      });
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  if (type !== 'application/json')
    throw new BeckettError(
      'UNSUPPORTED_MEDIA_TYPE',
      `The request body must be application/json, got ${JSON.stringify(type || 'none')}.`,
      {
        exitCode: ExitCode.usage,
        httpStatus: 415,
        hint: 'Send the header content-type: application/json.',
      },
    );
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new InvalidInputError(`The request body is not valid JSON: ${(err as Error).message}.`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InvalidInputError('The request body must be a JSON object.');
  return value as Record<string, unknown>;
}

/**
 * The REST API over the admin API, for a Node HTTP server: paths relative to the mount point
 * (`/api/...`; strip any base path before calling). Errors are problem+json with the error's
 * `httpStatus`; every POST is an audited action (403 when read-only or when the CSRF check fails).
 */
export function createApiHandler(beckett: Beckett, opts: ApiHandlerOptions = {}): ApiHandler {
  const table = routes(beckett, opts);
  const maxBody = opts.maxBodyBytes ?? 1024 * 1024;
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const raw = url.pathname.split('/').filter((s) => s !== '');
    if (raw[0] !== 'api') return false;
    try {
      let segments: string[];
      try {
        segments = raw.slice(1).map(decodeURIComponent);
      } catch {
        throw new InvalidInputError(
          `The path ${JSON.stringify(url.pathname)} is not validly percent-encoded.`,
        );
      }
      const found = table.filter((r) => match(r, segments) !== undefined);
      const method = req.method === 'HEAD' ? 'GET' : req.method;
      const route = found.find((r) => r.method === method);
      if (!route) {
        if (found.length > 0) {
          res.setHeader('allow', [...new Set(found.map((r) => r.method))].join(', '));
          sendProblem(res, {
            type: 'about:blank',
            title: 'Method not allowed',
            status: 405,
            detail: `${req.method} is not allowed on ${url.pathname}.`,
            code: 'METHOD_NOT_ALLOWED',
          });
        } else
          sendProblem(res, {
            type: 'about:blank',
            title: 'Not found',
            status: 404,
            detail: `No API route ${url.pathname}.`,
            code: 'NOT_FOUND',
            hint: 'GET /api/openapi.json lists every route.',
          });
        return true;
      }
      if (route.action) {
        if (opts.readOnly || beckett.readOnly) throw new ReadOnlyError(`${req.method} ${url.pathname}`);
        if (opts.checkCsrf && !opts.checkCsrf(req))
          throw new BeckettError('CSRF', 'Refused: the request carries no valid CSRF token.', {
            exitCode: ExitCode.usage,
            httpStatus: 403,
            hint: 'Reload the page and try again.',
          });
      }
      await route.run({
        req,
        res,
        params: match(route, segments)!,
        query: url.searchParams,
        body: () => readBody(req, maxBody),
        actor: opts.actor?.(req) ?? 'api',
      });
    } catch (err) {
      const problem = problemOf(err);
      if (problem.status === 500) opts.onError?.(err, req);
      sendProblem(res, problem);
    }
    return true;
  };
}
