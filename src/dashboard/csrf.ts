import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AuthOutcome } from './auth.js';

/** The header the dashboard's pages send with every POST. */
export const CSRF_HEADER = 'x-beckett-csrf';

/** A fresh token per dashboard handler: the page carries it in a meta tag. */
export function newCsrfToken(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * Whether the request could have been sent by a browser on someone else's page: browsers always add
 * Origin or Sec-Fetch-Site to a POST (and cookies or basic credentials ride along by themselves);
 * curl and server-side clients send none of them.
 */
function fromBrowser(req: IncomingMessage): boolean {
  const h = req.headers;
  return Boolean(h.origin || h['sec-fetch-site'] || h.referer || h.cookie);
}

/**
 * A POST may act when it carries the page's CSRF token, or a bearer token (which a browser never
 * adds by itself), or when no browser sent it. A forged cross-site form or fetch has none of these:
 * it cannot read the token from our page, and a custom header needs a CORS preflight we never grant.
 */
export function csrfOk(req: IncomingMessage, token: string, auth: AuthOutcome): boolean {
  if (auth.ok && auth.via === 'bearer') return true;
  const sent = req.headers[CSRF_HEADER];
  if (typeof sent === 'string') {
    const a = Buffer.from(sent);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b);
  }
  return !fromBrowser(req);
}
