import net from 'node:net';

/*
 * A TCP proxy between a pool and PostgreSQL that can lose a reply after the server committed: the
 * next request whose bytes contain a marker (a stream name sent as a parameter, say) is forwarded,
 * its reply is swallowed up to the server's ReadyForQuery (by then the implicit transaction has
 * committed), and both sockets are then cut, as a network failure after COMMIT would.
 */
export class ReplyDropProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #marker: Buffer | undefined;
  /** Replies lost so far. */
  dropped = 0;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(target: { host: string; port: number }): Promise<ReplyDropProxy> {
    const server = net.createServer();
    const proxy = new ReplyDropProxy(server);
    server.on('connection', (client) => proxy.#pipe(client, target));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** The URL `url` pointed at this proxy. */
  urlFor(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Lose the reply to the next request containing `marker`. */
  dropReplyTo(marker: string): void {
    this.#marker = Buffer.from(marker);
  }

  #pipe(client: net.Socket, target: { host: string; port: number }): void {
    const server = net.connect(target.port, target.host);
    this.#sockets.add(client).add(server);
    let dropping = false;
    const cut = () => {
      client.destroy();
      server.destroy();
    };
    client.on('data', (chunk) => {
      if (this.#marker && chunk.includes(this.#marker)) {
        this.#marker = undefined;
        dropping = true;
      }
      server.write(chunk);
    });
    server.on('data', (chunk) => {
      if (!dropping) {
        client.write(chunk);
        return;
      }
      // ReadyForQuery ('Z', length 5, status) ends the reply: the server is done with it.
      const n = chunk.length;
      if (n >= 6 && chunk[n - 6] === 0x5a && chunk.readInt32BE(n - 5) === 5) {
        this.dropped++;
        cut();
      }
    });
    for (const s of [client, server]) {
      s.on('error', cut);
      s.on('close', () => {
        this.#sockets.delete(s);
        cut();
      });
    }
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
