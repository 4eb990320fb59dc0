import type { HandlerContext, RecordedMessage } from 'beckett';

export interface OrderItemAdded {
  orderId: string;
  productId: string;
  quantity: number;
}

export interface InventoryAllocated {
  productId: string;
  orderId: string;
  quantity: number;
}

/** For each item added to an order, allocate that quantity in the product's inventory stream. */
export async function allocateInventory(
  message: RecordedMessage<'order_item_added', OrderItemAdded>,
  ctx: HandlerContext,
): Promise<void> {
  const { orderId, productId, quantity } = message.data;
  await ctx.store.append(`inventory-${productId}`, {
    type: 'inventory_allocated',
    data: { productId, orderId, quantity } satisfies InventoryAllocated,
  });
}
