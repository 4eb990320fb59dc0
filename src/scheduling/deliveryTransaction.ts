import type pg from 'pg';
import type { MessageStore } from '../store/messageStore.js';

/**
 * Run one delivery pass in a transaction on a connection of its own. A connection killed under us
 * (server restart, pg_terminate_backend) surfaces as the failed query: the 'error' listener keeps
 * the client's event from crashing the process, and the connection is released as broken so the
 * pool does not hand it out again.
 */
export async function inDeliveryTransaction<T>(
  store: MessageStore,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client: pg.PoolClient = await store.pool.connect();
  let broken = false;
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    try {
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw err;
    }
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
