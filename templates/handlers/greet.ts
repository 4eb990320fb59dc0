// A handler: called once per message, in stream order. Appends through ctx.store carry the
// handled message's correlation id, and its id as causation id.
import type { HandlerContext, RecordedMessage } from 'beckett';

export interface PersonArrived {
  name: string;
}

export interface Greeted {
  greeting: string;
}

export async function greet(
  msg: RecordedMessage<'person_arrived', PersonArrived>,
  ctx: HandlerContext,
): Promise<void> {
  await ctx.store.append(`greeting-${msg.data.name.toLowerCase()}`, {
    type: 'greeted',
    data: { greeting: `Hello, ${msg.data.name}!` } satisfies Greeted,
  });
}
