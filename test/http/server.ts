import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Beckett } from '../../src/admin/createBeckett.js';
import { type ApiHandlerOptions, createApiHandler } from '../../src/http/apiHandler.js';

export interface TestServer {
  base: string;
  server: Server;
  close(): Promise<void>;
}

/** A real HTTP server on a free port serving the API handler (404 for anything else). */
export async function serveApi(beckett: Beckett, opts: ApiHandlerOptions = {}): Promise<TestServer> {
  const handle = createApiHandler(beckett, opts);
  const server = createServer((req, res) => {
    void handle(req, res).then((handled) => {
      if (!handled) {
        res.statusCode = 404;
        res.end('not the api');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export async function getJson(url: string): Promise<{ status: number; type: string; body: any }> {
  const r = await fetch(url);
  return { status: r.status, type: r.headers.get('content-type') ?? '', body: await r.json() };
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; type: string; body: any }> {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: r.status, type: r.headers.get('content-type') ?? '', body: await r.json() };
}
