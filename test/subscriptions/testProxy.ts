import net from 'node:net';

/**
 * A TCP proxy between a pool and PostgreSQL that can stall the network, or lose one reply after the server committed:
 * once armed, it watches for a statement whose bytes contain `marker` (a prepared statement's name
 * appears in every Bind), withholds the server's reply to it up to its ReadyForQuery (an implicit
 * transaction has committed by then), and, if the reply carried rows, drops the connection instead
 * of forwarding them. Replies without rows pass, and the proxy waits for the next statement.
 */
export interface TestProxy {
  url: string;
  /**
   * Drop the reply of the next statement containing `marker` that returns rows. With
   * `{ passRows: true }` the reply is forwarded up to its ReadyForQuery (the rows arrive, the
   * commit's confirmation does not) and the connection is dropped there.
   */
  arm(marker: string, opts?: { passRows?: boolean }): void;
  /** Set once a reply was dropped (Date.now()). */
  droppedAt: number | undefined;
  /** Hold every byte in both directions, on every connection (new ones too), until resume(). */
  stall(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startTestProxy(targetUrl: string): Promise<TestProxy> {
  const target = new URL(targetUrl);
  let marker: Buffer | undefined;
  let passRows = false;
  const sockets = new Set<net.Socket>();
  let stalled = false;
  const state: TestProxy = {
    url: '',
    droppedAt: undefined,
    stall() {
      stalled = true;
      for (const s of sockets) s.pause();
    },
    resume() {
      stalled = false;
      for (const s of sockets) s.resume();
    },
    arm(m: string, opts: { passRows?: boolean } = {}) {
      marker = Buffer.from(m);
      passRows = opts.passRows ?? false;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    if (stalled) {
      client.pause();
      upstream.pause();
    }
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    // Withholding the reply to a marked statement: bytes held back, and whether a row came.
    let watching = false;
    let held = Buffer.alloc(0);
    let rows = false;
    client.on('data', (chunk: Buffer) => {
      if (marker && !watching && chunk.includes(marker)) {
        watching = true;
        held = Buffer.alloc(0);
        rows = false;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!watching) {
        client.write(chunk);
        return;
      }
      held = Buffer.concat([held, chunk]);
      // Walk whole messages (type byte, int32 length including itself) up to ReadyForQuery ('Z').
      let at = 0;
      while (held.length - at >= 5) {
        const type = String.fromCharCode(held[at]!);
        const len = held.readInt32BE(at + 1);
        if (held.length - at < 1 + len) return;
        if (passRows && type !== 'Z') {
          // Forward each whole message but the ReadyForQuery.
          client.write(held.subarray(at, at + 1 + len));
          held = held.subarray(at + 1 + len);
          if (type === 'D') rows = true;
          continue;
        }
        at += 1 + len;
        if (type === 'D') rows = true;
        if (type === 'Z') {
          if (rows && marker) {
            marker = undefined;
            state.droppedAt = Date.now();
            end();
            return;
          }
          // Not the one: pass it on and watch for the next marked statement.
          watching = false;
          client.write(held);
          held = Buffer.alloc(0);
          return;
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  state.url = url.toString();
  return state;
}
