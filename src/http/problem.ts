import type { ServerResponse } from 'node:http';
import { BeckettError, toError } from '../errors.js';

/** An RFC 9457 problem document, as every REST error is answered. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** The beckett error code (stable: WRONG_EXPECTED_VERSION, NOT_FOUND, MESSAGE_INVALID, ...). */
  code: string;
  hint?: string;
  [extra: string]: unknown;
}

const TITLES: Record<number, string> = {
  400: 'Bad request',
  403: 'Forbidden',
  404: 'Not found',
  405: 'Method not allowed',
  409: 'Conflict',
  413: 'Payload too large',
  415: 'Unsupported media type',
  422: 'Unprocessable content',
  500: 'Internal server error',
  503: 'Service unavailable',
};

/** The problem document of an error: a BeckettError's own status, code and hint; anything else is a 500. */
export function problemOf(thrown: unknown): Problem {
  if (thrown instanceof BeckettError) {
    const extra: Record<string, unknown> = {};
    const e = thrown as BeckettError & Record<string, unknown>;
    // Typed fields a client can act on (the conflict's actual version, a partial result, ...).
    for (const k of ['stream', 'expected', 'actual', 'issues', 'result', 'ids', 'after'])
      if (e[k] !== undefined) extra[k] = e[k];
    return {
      type: `urn:beckett:error:${thrown.code.toLowerCase()}`,
      title: TITLES[thrown.httpStatus] ?? 'Error',
      status: thrown.httpStatus,
      detail: thrown.message,
      code: thrown.code,
      ...(thrown.hint ? { hint: thrown.hint } : {}),
      ...extra,
    };
  }
  // Not one of ours: no internals (stack, driver text) leave the process.
  void toError(thrown);
  return {
    type: 'about:blank',
    title: TITLES[500]!,
    status: 500,
    detail: 'An unexpected error occurred; the server log has the details.',
    code: 'UNEXPECTED',
  };
}

export function sendProblem(res: ServerResponse, problem: Problem): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(problem);
  res.writeHead(problem.status, {
    'content-type': 'application/problem+json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}
