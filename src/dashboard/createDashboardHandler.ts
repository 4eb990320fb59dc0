import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Beckett } from '../admin/createBeckett.js';
import { createApiHandler } from '../http/apiHandler.js';
import {
  type AuthOutcome,
  authenticate,
  type DashboardAuth,
  isLoopbackHost,
  TOKEN_COOKIE,
  tokenFromQuery,
} from './auth.js';
import { CSRF_HEADER, csrfOk, newCsrfToken } from './csrf.js';
import { type Asset, loadAssets } from './staticAssets.js';

export interface DashboardOptions {
  beckett: Beckett;
  /** Where the dashboard lives in the server's URL space, e.g. `/beckett`. Default `/`. */
  basePath?: string;
  /** Hide every action in the pages and refuse every POST with 403. Default false. */
  readOnly?: boolean;
  /**
   * Credentials every request must carry (token or basic). Without them, requests must name a
   * loopback host (or one of `allowedHosts`) in their Host header: that keeps a web page elsewhere
   * from reaching a loopback dashboard through DNS rebinding.
   */
  auth?: DashboardAuth;
  /** Host names accepted without `auth` besides localhost and loopback addresses. */
  allowedHosts?: string[];
}

/**
 * A Node request handler: `(req, res, next?) => Promise<boolean>`. It answers requests under
 * `basePath` (pages, assets and the REST API at `<basePath>api`) and resolves true; other paths go
 * to `next` when given, else get a 404.
 */
export type DashboardHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next?: () => void,
) => Promise<boolean>;

/** `/beckett` -> `/beckett/`; `/` stays. */
export function normalizeBasePath(basePath: string | undefined): string {
  const p = (basePath ?? '/').trim();
  const withSlashes = `/${p.replace(/^\/+|\/+$/g, '')}/`.replace(/^\/\/$/, '/');
  if (!/^\/[A-Za-z0-9._~\-/]*$/.test(withSlashes) || withSlashes.includes('//'))
    throw new Error(
      `Invalid dashboard base path ${JSON.stringify(basePath)}: use letters, digits and "/", like /beckett.`,
    );
  return withSlashes;
}

const SECURITY_HEADERS = {
  // Only our own files: no CDN, no inline script, nothing framing the page.
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
};

function problem(
  res: ServerResponse,
  status: number,
  title: string,
  detail: string,
  code: string,
  extra: Record<string, string> = {},
) {
  res.writeHead(status, {
    'content-type': 'application/problem+json',
    'cache-control': 'no-store',
    ...extra,
  });
  res.end(JSON.stringify({ type: 'about:blank', title, status, detail, code }));
}

function hostName(req: IncomingMessage): string {
  const host = req.headers.host ?? '';
  const m = /^(\[[^\]]*\]|[^:]*)/.exec(host);
  return (m?.[1] ?? '').toLowerCase();
}

/**
 * The dashboard: its pages and assets (read once from the package, nothing from a CDN), the REST
 * API it reads and acts through, auth, CSRF checks on POSTs, and read-only mode.
 */
export function createDashboardHandler(opts: DashboardOptions): DashboardHandler {
  const base = normalizeBasePath(opts.basePath);
  const readOnly = opts.readOnly ?? false;
  const auth = opts.auth;
  const allowedHosts = new Set((opts.allowedHosts ?? []).map((h) => h.toLowerCase()));
  const csrf = newCsrfToken();
  const assets = loadAssets({ base, csrf, readOnly });
  const api = createApiHandler(opts.beckett, {
    readOnly,
    actor: (req: IncomingMessage) => actorOf(req),
    checkCsrf: () => true, // checked below, before the API sees the request
  });
  const outcomes = new WeakMap<IncomingMessage, AuthOutcome>();
  const actorOf = (req: IncomingMessage) => {
    const o = outcomes.get(req);
    return o?.ok && o.via === 'basic' && o.user ? `dashboard:${o.user}` : 'dashboard';
  };

  const serveAsset = (req: IncomingMessage, res: ServerResponse, a: Asset, html: boolean) => {
    const headers: Record<string, string> = {
      'content-type': a.type,
      etag: a.etag,
      'cache-control': html ? 'no-cache' : 'public, max-age=0, must-revalidate',
      ...SECURITY_HEADERS,
    };
    if (req.headers['if-none-match'] === a.etag) {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': String(a.body.length) });
    res.end(req.method === 'HEAD' ? undefined : a.body);
  };

  return async (req, res, next) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (path === base.slice(0, -1) && base !== '/') {
      res.writeHead(308, { location: `${base}${url.search}` }).end();
      return true;
    }
    if (!path.startsWith(base)) {
      if (next) {
        next();
        return false;
      }
      problem(res, 404, 'Not found', `Nothing at ${path}; the dashboard is at ${base}.`, 'NOT_FOUND');
      return true;
    }
    if (!auth) {
      const host = hostName(req);
      if (!isLoopbackHost(host) && !allowedHosts.has(host)) {
        problem(
          res,
          403,
          'Host not allowed',
          `This dashboard has no credentials configured, so it answers only requests for localhost, not ${JSON.stringify(host)}.`,
          'HOST_NOT_ALLOWED',
        );
        return true;
      }
    }
    const tokenInQuery = tokenFromQuery(url, auth);
    if (tokenInQuery !== undefined) {
      // A link with ?token= logs the browser in: keep the token in an HttpOnly cookie, drop it from the URL.
      url.searchParams.delete('token');
      res.writeHead(303, {
        'set-cookie': `${TOKEN_COOKIE}=${encodeURIComponent(tokenInQuery)}; Path=${base}; HttpOnly; SameSite=Strict`,
        location: `${url.pathname}${url.search}`,
        'cache-control': 'no-store',
      });
      res.end();
      return true;
    }
    const outcome = authenticate(req, auth);
    if (!outcome.ok) {
      const challenge: Record<string, string> =
        auth?.user !== undefined
          ? { 'www-authenticate': 'Basic realm="beckett dashboard", charset="UTF-8"' }
          : {};
      problem(
        res,
        401,
        'Unauthorized',
        auth?.token !== undefined
          ? 'Send the dashboard token as "Authorization: Bearer <token>", or open the dashboard once with ?token=<token>.'
          : 'Log in with the dashboard user and password.',
        'UNAUTHORIZED',
        challenge,
      );
      return true;
    }
    outcomes.set(req, outcome);
    const rest = path.slice(base.length);
    if (rest === 'api' || rest.startsWith('api/')) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        if (readOnly) {
          problem(
            res,
            403,
            'Read-only',
            'The dashboard runs with --read-only: every action is refused.',
            'READ_ONLY',
          );
          return true;
        }
        if (!csrfOk(req, csrf, outcome)) {
          problem(
            res,
            403,
            'CSRF token missing or wrong',
            `A POST from a browser must carry the ${CSRF_HEADER} header of the dashboard page (GET ${base}api/csrf gives it).`,
            'CSRF',
          );
          return true;
        }
      }
      if (rest === 'api/csrf' && req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify({ header: CSRF_HEADER, token: csrf }));
        return true;
      }
      const original = req.url;
      req.url = `/${rest}${url.search}`;
      try {
        if (await api(req, res)) return true;
      } finally {
        req.url = original;
      }
      problem(res, 404, 'Not found', `No API endpoint ${req.method} ${path}.`, 'NOT_FOUND');
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return true;
    }
    const name = rest === '' ? 'index.html' : rest;
    const a = assets.get(name);
    if (!a) {
      problem(res, 404, 'Not found', `No dashboard file ${name}.`, 'NOT_FOUND');
      return true;
    }
    serveAsset(req, res, a, name.endsWith('.html'));
    return true;
  };
}
