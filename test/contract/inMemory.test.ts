import { createInMemoryStore } from '../../src/testing/inMemoryStore.js';
import { messageStoreContract } from './messageStore.contract.js';

// A transaction counter just below a power of ten: the log must order transaction ids as numbers.
messageStoreContract('in memory', async () => ({
  store: createInMemoryStore({ firstTransactionId: 95n }),
  withMessages: (messages) => createInMemoryStore({ messages }),
  close: async () => undefined,
}));
