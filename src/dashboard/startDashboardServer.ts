import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidInputError } from '../errors.js';
import { assertAuth, assertSafeBind, isLoopbackHost } from './auth.js';
import {
  createDashboardHandler,
  type DashboardOptions,
  normalizeBasePath,
} from './createDashboardHandler.js';

export interface DashboardServerOptions extends DashboardOptions {
  /** 0 picks a free port. Default 7890. */
  port?: number;
  /** Default 127.0.0.1. Anything else needs `auth`. */
  host?: string;
}

export interface DashboardServer {
  readonly port: number;
  readonly host: string;
  /** The dashboard's address, e.g. http://127.0.0.1:7890/beckett/ */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serve the dashboard on its own HTTP server. Refuses (InvalidInputError, exit 2) a non-loopback
 * host without credentials, and credentials too weak to guard it.
 */
export async function startDashboardServer(opts: DashboardServerOptions): Promise<DashboardServer> {
  const host = opts.host ?? '127.0.0.1';
  if (opts.auth) assertAuth(opts.auth);
  assertSafeBind(host, opts.auth);
  const base = normalizeBasePath(opts.basePath);
  const handler = createDashboardHandler({
    ...opts,
    basePath: base,
    // Binding a named loopback-only host (e.g. an interface name) still serves requests for it.
    allowedHosts: [...(opts.allowedHosts ?? []), ...(isLoopbackHost(host) ? [] : [host])],
  });
  const server: Server = createServer((req, res) => {
    handler(req, res).catch((err) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`dashboard error: ${(err as Error).message}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new InvalidInputError(
              `Port ${opts.port ?? 7890} on ${host} is in use.`,
              'Pick another with --port (0 picks a free one).',
            )
          : err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND'
            ? new InvalidInputError(
                `Cannot listen on ${host}: no such local address.`,
                'Use 127.0.0.1, 0.0.0.0 or an address of this machine.',
              )
            : err,
      ),
    );
    server.listen(opts.port ?? 7890, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  let closing: Promise<void> | undefined;
  return {
    port,
    host,
    url: `http://${shownHost}:${port}${base}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
