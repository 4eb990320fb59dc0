import type pg from 'pg';
import { inTransaction } from '../db/queryable.js';
import { WrongExpectedVersionError } from '../errors.js';
import type { MessageStore } from '../store/messageStore.js';

/**
 * Run one delivery pass in a transaction on a connection of its own: the one transaction helper
 * (inTransaction), which keeps a connection killed under us (server restart, pg_terminate_backend)
 * from crashing the process and releases it as broken.
 */
export function inDeliveryTransaction<T>(
  store: MessageStore,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return inTransaction(store.pool, fn);
}

/** Attempts of one delivery's append whose stream position another writer took first. */
const POSITION_RACE_ATTEMPTS = 5;

/**
 * Run one delivery's append (expected version "any") under a savepoint, so that its failure
 * leaves the rest of the delivery transaction usable. An exact-version append of another writer
 * that took the stream's next position first fails it (a WrongExpectedVersionError: inside a
 * transaction the store cannot retry it itself): it is run again from the savepoint, which then
 * sees that writer's commit. Any other error is rethrown with the savepoint rolled back.
 */
export async function appendUnderSavepoint<T>(
  client: pg.PoolClient,
  savepoint: string,
  append: () => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    await client.query(`SAVEPOINT ${savepoint}`);
    try {
      const result = await append();
      await client.query(`RELEASE SAVEPOINT ${savepoint}`);
      return result;
    } catch (err) {
      await client.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
      if (!(err instanceof WrongExpectedVersionError) || attempt >= POSITION_RACE_ATTEMPTS) throw err;
    }
  }
}
