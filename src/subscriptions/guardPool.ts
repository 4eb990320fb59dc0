import type pg from 'pg';

const guarded = new WeakSet<pg.Pool>();
const ignore = () => undefined;

/**
 * node-postgres emits a server-side disconnect (a restart: 57P01) on a checked-out client that is
 * between queries as an 'error' event, and an unhandled 'error' event kills the process. The worker
 * must outlive a database restart: the failure still surfaces through the next query on that client,
 * so the event itself can be ignored. Applied to every client the pool creates from now on.
 */
export function guardPool(pool: pg.Pool): void {
  if (guarded.has(pool)) return;
  guarded.add(pool);
  pool.on('connect', (client) => {
    client.on('error', ignore);
  });
  // Clients the pool made before (pg-pool keeps them in _clients; absent in other versions: harmless).
  const existing = (pool as unknown as { _clients?: pg.PoolClient[] })._clients ?? [];
  for (const client of existing) if (!client.listeners('error').includes(ignore)) client.on('error', ignore);
}

/** A pooled client that survives a disconnect between queries (see guardPool). */
export async function connectGuarded(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect();
  if (!client.listeners('error').includes(ignore)) client.on('error', ignore);
  return client;
}
