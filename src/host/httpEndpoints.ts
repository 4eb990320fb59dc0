import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { toError } from '../errors.js';

/** A health answer: `ok` decides the status code (200 or 503); `checks` is shown as JSON. */
export interface HealthReport {
  ok: boolean;
  checks: Record<string, unknown>;
}

export interface HttpEndpointsOptions {
  /** 0 picks a free port (see `port` on the result). */
  port: number;
  /**
   * Default `127.0.0.1` (this machine only). `/metrics` and the probes carry no secret but name
   * groups, subscriptions and lag; bind `0.0.0.0` only on a network you trust or behind a proxy.
   */
  host?: string;
  /** Prometheus text for `/metrics`. */
  metrics: () => Promise<string>;
  /** `/healthz`: the process is alive and the database answers. */
  health: () => Promise<HealthReport>;
  /** `/readyz`: the worker started and is not draining. */
  ready: () => HealthReport | Promise<HealthReport>;
  /** A callback that threw; the request gets a 500 or 503. */
  onError?: (err: Error, path: string) => void;
  /** Longest time a probe may take before it answers 503. Default 5000 ms. */
  timeoutMs?: number;
  /**
   * More routes (the dashboard and its REST API): tried for every other path, any method; resolves
   * true when it answered.
   */
  routes?: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;
}

export interface HttpEndpoints {
  readonly port: number;
  /** Stop listening and close open connections. Idempotent. */
  close(): Promise<void>;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Serve `/metrics` (Prometheus text), `/healthz` and `/readyz` (JSON; 200 when ok, 503 when not).
 * Standalone: it only calls the callbacks, so any process can serve them.
 */
export async function startHttpEndpoints(opts: HttpEndpointsOptions): Promise<HttpEndpoints> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`${JSON.stringify(body)}\n`);
  };
  const probe = async (res: ServerResponse, path: string, fn: () => HealthReport | Promise<HealthReport>) => {
    try {
      const report = await withTimeout(Promise.resolve(fn()), timeoutMs, path);
      json(res, report.ok ? 200 : 503, { status: report.ok ? 'ok' : 'unavailable', ...report.checks });
    } catch (err) {
      const e = toError(err);
      opts.onError?.(e, path);
      json(res, 503, { status: 'unavailable', error: e.message });
    }
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (opts.routes && path !== '/metrics' && path !== '/healthz' && path !== '/readyz') {
      try {
        if (await opts.routes(req, res)) return;
      } catch (err) {
        const e = toError(err);
        opts.onError?.(e, path);
        if (!res.headersSent) json(res, 500, { error: e.message });
        else res.end();
        return;
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      try {
        const text = await withTimeout(opts.metrics(), timeoutMs, path);
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(text);
      } catch (err) {
        const e = toError(err);
        opts.onError?.(e, path);
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`# error: ${e.message}\n`);
      }
    } else if (path === '/healthz') await probe(res, path, opts.health);
    else if (path === '/readyz') await probe(res, path, opts.ready);
    else json(res, 404, { error: 'not found', paths: ['/metrics', '/healthz', '/readyz'] });
  };
  const server: Server = createServer((req, res) => {
    void handle(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
