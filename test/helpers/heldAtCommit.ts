import type pg from 'pg';

/**
 * A pool on which an operation that runs in its own transaction (an operator's reset, a worker's
 * registration) does all its writes and then stops before its COMMIT, its row locks held, until
 * `release()`: the barrier for "X commits while a reader round waits on its rows".
 */
export function heldAtCommit(pool: pg.Pool): { pool: pg.Pool; atCommit: Promise<void>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  let reached!: () => void;
  const atCommit = new Promise<void>((r) => {
    reached = r;
  });
  const held = {
    query: (...args: unknown[]) => (pool.query as (...a: unknown[]) => unknown)(...args),
    connect: async () => {
      const client = await pool.connect();
      const query = client.query.bind(client) as (...a: unknown[]) => unknown;
      (client as { query: unknown }).query = async (...args: unknown[]) => {
        if (args[0] === 'COMMIT') {
          reached();
          await gate;
          (client as { query: unknown }).query = query;
        }
        return query(...args);
      };
      return client;
    },
  };
  return { pool: held as unknown as pg.Pool, atCommit, release };
}
