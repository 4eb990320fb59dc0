import type { MessageStore } from '../../src/store/messageStore.js';
import { storeApiOf } from '../../src/testing/storeApi.js';
import { setupDb } from '../helpers/db.js';
import { messageStoreContract } from './messageStore.contract.js';

messageStoreContract('PostgreSQL', async () => {
  const db = await setupDb('contract');
  const made: MessageStore[] = [];
  return {
    store: storeApiOf(db.store),
    executorStore: db.store,
    withMessages: (messages) => {
      const store = db.makeStore({ messages });
      made.push(store);
      return storeApiOf(store);
    },
    close: async () => {
      await Promise.all(made.map((s) => s.close()));
      await db.close();
    },
  };
});
