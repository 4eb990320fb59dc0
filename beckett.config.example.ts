// The inventory-allocation example. Copy to beckett.config.ts (or run es init) and start a worker:
//   es worker --group InventoryAllocation
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
          category: 'order',
          handler: (msg, ctx) => (msg.type === 'order_item_added' ? allocateInventory(msg, ctx) : undefined),
        },
      },
    },
  },
});
