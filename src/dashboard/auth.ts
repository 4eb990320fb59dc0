import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { InvalidInputError } from '../errors.js';

/**
 * Who may use the dashboard. A token is sent as `Authorization: Bearer <token>` (or once as
 * `?token=`, which sets an HttpOnly cookie for the browser); basic auth is the browser's own login
 * prompt. With both set, either one is accepted.
 */
export interface DashboardAuth {
  token?: string;
  user?: string;
  password?: string;
}

/** The environment variables `es dashboard` and `es worker --http-port` read credentials from. */
export const AUTH_ENV = {
  token: 'BECKETT_DASHBOARD_TOKEN',
  user: 'BECKETT_DASHBOARD_USER',
  password: 'BECKETT_DASHBOARD_PASSWORD',
} as const;

/** Shorter secrets are refused: a dashboard that can skip messages deserves more than a PIN. */
export const MIN_SECRET_LENGTH = 16;

/** Credentials from the environment, or undefined when none is set; half a basic pair is an error. */
export function authFromEnv(env: NodeJS.ProcessEnv = process.env): DashboardAuth | undefined {
  const token = env[AUTH_ENV.token] || undefined;
  const user = env[AUTH_ENV.user] || undefined;
  const password = env[AUTH_ENV.password] || undefined;
  if ((user && !password) || (!user && password))
    throw new InvalidInputError(
      `${user ? AUTH_ENV.user : AUTH_ENV.password} is set but ${user ? AUTH_ENV.password : AUTH_ENV.user} is not.`,
      'Basic auth needs both the user and the password.',
    );
  if (!token && !user) return undefined;
  return { ...(token ? { token } : {}), ...(user && password ? { user, password } : {}) };
}

/** Check credentials once, when the server starts: clear errors, never the secret itself. */
export function assertAuth(auth: DashboardAuth): void {
  if (auth.token !== undefined && auth.token.length < MIN_SECRET_LENGTH)
    throw new InvalidInputError(
      `The dashboard token is ${auth.token.length} characters; it needs at least ${MIN_SECRET_LENGTH}.`,
      `Make one with: export ${AUTH_ENV.token}=$(openssl rand -hex 24)`,
    );
  if ((auth.user === undefined) !== (auth.password === undefined))
    throw new InvalidInputError('Basic auth needs both a user and a password.');
  if (auth.password !== undefined && auth.password.length < MIN_SECRET_LENGTH)
    throw new InvalidInputError(
      `The dashboard password is ${auth.password.length} characters; it needs at least ${MIN_SECRET_LENGTH}.`,
      `Set a longer ${AUTH_ENV.password}.`,
    );
  if (auth.user !== undefined && (auth.user === '' || auth.user.includes(':')))
    throw new InvalidInputError('The dashboard user must be non-empty and contain no ":".');
  if (auth.token === undefined && auth.user === undefined)
    throw new InvalidInputError('Dashboard auth needs a token or a user and password.');
}

/** 127.0.0.0/8, ::1, localhost: what needs no credentials. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  return h.startsWith('::ffff:127.');
}

/**
 * Refuse to listen beyond this machine without credentials: the dashboard can retry, skip, reset
 * and replay. Throws InvalidInputError (exit 2) naming the variables to set.
 */
export function assertSafeBind(host: string, auth: DashboardAuth | undefined): void {
  if (isLoopbackHost(host) || auth) return;
  throw new InvalidInputError(
    `Refusing to serve the dashboard on ${host} without credentials: anyone who can reach it could act on your subscriptions.`,
    `Set ${AUTH_ENV.token} (at least ${MIN_SECRET_LENGTH} characters), or ${AUTH_ENV.user} and ${AUTH_ENV.password}; or keep the default --host 127.0.0.1 and use an SSH tunnel.`,
  );
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // Compare equal lengths only, so the time does not tell how much of the secret matched.
  return x.length === y.length && timingSafeEqual(x, y);
}

export const TOKEN_COOKIE = 'beckett_dashboard_token';

export function cookieValue(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) {
      try {
        return decodeURIComponent(part.slice(i + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** How a request proved who it is: a bearer token needs no CSRF token (a browser never adds one). */
export type AuthOutcome =
  | { ok: true; via: 'none' | 'bearer' | 'cookie' | 'basic'; user?: string }
  | { ok: false };

export function authenticate(req: IncomingMessage, auth: DashboardAuth | undefined): AuthOutcome {
  if (!auth) return { ok: true, via: 'none' };
  const header = req.headers.authorization ?? '';
  const [scheme, value = ''] = header.split(' ', 2);
  if (auth.token !== undefined) {
    if (scheme?.toLowerCase() === 'bearer' && safeEqual(value.trim(), auth.token))
      return { ok: true, via: 'bearer' };
    const cookie = cookieValue(req, TOKEN_COOKIE);
    if (cookie !== undefined && safeEqual(cookie, auth.token)) return { ok: true, via: 'cookie' };
  }
  if (auth.user !== undefined && auth.password !== undefined && scheme?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value.trim(), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i > 0) {
      const user = decoded.slice(0, i);
      // Both compared, always, so a wrong user takes as long as a wrong password.
      const okUser = safeEqual(user, auth.user);
      const okPassword = safeEqual(decoded.slice(i + 1), auth.password);
      if (okUser && okPassword) return { ok: true, via: 'basic', user };
    }
  }
  return { ok: false };
}

/** `?token=` matches: the caller sets the cookie and redirects to the same URL without it. */
export function tokenFromQuery(url: URL, auth: DashboardAuth | undefined): string | undefined {
  const t = url.searchParams.get('token');
  return t !== null && auth?.token !== undefined && safeEqual(t, auth.token) ? t : undefined;
}
