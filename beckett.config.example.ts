// The inventory-allocation example (what `es demo` runs). In a folder without a beckett.config.ts
// (a clone of this repository) es uses this file; copy it to beckett.config.ts to make it yours.
//   npx es demo                                 orders in orders-<n> streams, allocated
//   npx es worker --group InventoryAllocation   run the group (Ctrl-C stops)
import { defineConfig, message } from 'beckett';
import {
  allocateInventory,
  type InventoryAllocated,
  type OrderItemAdded,
} from './examples/inventory/allocateInventory.ts';

export default defineConfig({
  database: { schema: 'beckett' },
  messages: {
    order_item_added: message<OrderItemAdded>(),
    inventory_allocated: message<InventoryAllocated>(),
  },
  groups: {
    InventoryAllocation: {
      subscriptions: {
        allocate: {
          types: ['order_item_added'],
          category: 'orders',
          handler: (msg, ctx) => (msg.type === 'order_item_added' ? allocateInventory(msg, ctx) : undefined),
        },
      },
    },
  },
});
