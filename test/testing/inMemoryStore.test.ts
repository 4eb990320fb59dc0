import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { message } from '../../src/config/types.js';
import { Query } from '../../src/consistency/query.js';
import { InvalidInputError, MessageValidationError, WrongExpectedVersionError } from '../../src/errors.js';
import { createInMemoryStore } from '../../src/testing/inMemoryStore.js';
import { createTestClock } from '../../src/testing/testClock.js';

// What only the in-memory store has, or what the contract suite cannot run on this branch's
// PostgreSQL store yet (idempotent appends by message id land with the writer's branch).

describe('in-memory store', () => {
  it('appends are idempotent by message id: a retry returns the original result', async () => {
    const store = createInMemoryStore();
    const ids = [randomUUID(), randomUUID()];
    const batch = ids.map((id, i) => ({ id, type: 't', data: { i } }));
    const first = await store.append('s-1', batch, { expectedVersion: 'no_stream' });
    await store.append('s-1', { type: 'later', data: {} });
    // The same append again (a lost reply's retry): same result, nothing written twice.
    expect(await store.append('s-1', batch, { expectedVersion: 'no_stream' })).toEqual(first);
    expect(await store.append('s-1', batch)).toEqual(first);
    expect(await store.streamVersion('s-1')).toBe(3);
    // The same ids elsewhere, in part, or at other positions: a conflict, nothing written.
    await expect(store.append('s-2', batch)).rejects.toMatchObject({ code: 'MESSAGE_ID_CONFLICT' });
    await expect(store.append('s-1', [batch[0]!, { type: 't', data: {} }])).rejects.toMatchObject({
      code: 'MESSAGE_ID_CONFLICT',
    });
    await expect(store.append('s-1', batch, { expectedVersion: 2 })).rejects.toMatchObject({
      code: 'MESSAGE_ID_CONFLICT',
    });
    // One id twice in one append is refused as such, stored or not.
    await expect(store.append('s-3', [batch[0]!, batch[0]!])).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: expect.stringMatching(/appears twice in one append/),
    });
    expect(await store.streamVersion('s-2')).toBe(0);
    expect(await store.streamVersion('s-3')).toBe(0);
    // A multi-stream append and a conditional one, retried.
    const multi = [
      { stream: 'a-1', messages: { id: randomUUID(), type: 'x', data: {} }, expectedVersion: 0 },
      { stream: 'b-1', messages: { id: randomUUID(), type: 'y', data: {}, tags: ['k:1'] } },
    ];
    const m1 = await store.appendMultiple(multi);
    expect(await store.appendMultiple(multi)).toEqual(m1);
    const q = Query.where({ tags: ['k:1'] });
    const cond = [{ stream: 'c-1', messages: { id: randomUUID(), type: 'z', data: {}, tags: ['k:1'] } }];
    const read = await store.readForDecision(q);
    const c1 = await store.appendWithCondition(cond, { failIfEventsMatch: q, after: read });
    expect(await store.appendWithCondition(cond, { failIfEventsMatch: q, after: read })).toEqual(c1);
  });

  it('scheduled messages come due on the test clock; a pending id is scheduled once; cancel', async () => {
    const clock = createTestClock(new Date('2030-01-01T00:00:00Z'));
    const store = createInMemoryStore({ clock });
    const id = await store.schedule('order-1', { type: 'timeout', data: {} }, { delay: 1000 });
    expect(
      await store.schedule('order-1', { id, type: 'timeout', data: { other: true } }, { delay: 5 }),
    ).toBe(id);
    const at = await store.schedule(
      'order-2',
      { type: 'reminder', data: {} },
      { at: new Date('2030-01-01T00:00:00.500Z') },
    );
    const gone = await store.schedule('order-3', { type: 'never', data: {} }, { delay: 10 });
    expect(store.listScheduled().map((s) => s.id)).toEqual([gone, at, id]);
    expect(await store.cancelScheduled(gone)).toBe(true);
    expect(await store.cancelScheduled(gone)).toBe(false);
    expect(await store.deliverDue()).toEqual({ delivered: 0, duplicates: 0 });
    clock.advance(500);
    expect(await store.deliverDue()).toEqual({ delivered: 1, duplicates: 0 });
    clock.advance(500);
    expect(await store.deliverDue()).toEqual({ delivered: 1, duplicates: 0 });
    const [delivered] = await store.readStream('order-1');
    expect(delivered).toMatchObject({ id, type: 'timeout', data: {} });
    expect(delivered!.createdAt).toEqual(new Date('2030-01-01T00:00:01Z'));
    expect(await store.streamVersion('order-3')).toBe(0);
    expect(store.listScheduled()).toEqual([]);
    await expect(store.schedule('order-1', { type: 't', data: {} }, { delay: -1 })).rejects.toBeInstanceOf(
      InvalidInputError,
    );
    expect(() => clock.set(new Date('2029-01-01T00:00:00Z'))).toThrow(RangeError);
  });

  it('validates data with the declared schemas and upcasts on read', async () => {
    const store = createInMemoryStore({
      messages: {
        placed: message(z.object({ amount: z.number() }), {
          upcast: (d) => ({ amount: (d as { amount: number }).amount }),
        }),
        priced: message({ upcast: (d) => ({ ...(d as object), currency: 'EUR' }) }),
      },
    });
    await expect(store.append('o-1', { type: 'placed', data: { amount: 'x' } })).rejects.toBeInstanceOf(
      MessageValidationError,
    );
    await store.append('o-1', { type: 'priced', data: { amount: 3 } });
    expect((await store.readStream('o-1'))[0]!.data).toEqual({ amount: 3, currency: 'EUR' });
    // Reads are copies: changing one does not change the store.
    const [m] = await store.readStream('o-1');
    (m!.data as { amount: number }).amount = 99;
    expect((await store.readAll()).messages[0]!.data).toEqual({ amount: 3, currency: 'EUR' });
  });

  it('throws rather than pretends: no PostgreSQL transaction, no PostgreSQL snapshot', async () => {
    const store = createInMemoryStore();
    expect(() => store.withTransaction({})).toThrow(/cannot join a PostgreSQL transaction/);
    await expect(store.readForDecision(Query.all(), { since: '100:105:' })).rejects.toThrow(
      /does not come from this in-memory store/,
    );
    await expect(
      store.appendWithCondition([{ stream: 's-1', messages: { type: 't', data: {} } }], {
        failIfEventsMatch: Query.all(),
        after: { snapshot: '100:105:' },
      }),
    ).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('transaction ids cross a power of ten in numeric order', async () => {
    const store = createInMemoryStore({ firstTransactionId: 8n });
    for (let i = 0; i < 5; i++) await store.append('s-1', { type: 't', data: { i } });
    const page1 = await store.readAll({ limit: 2 });
    expect(page1.messages.map((m) => m.transactionId)).toEqual(['8', '9']);
    const page2 = await store.readAll({ after: page1.position });
    expect(page2.messages.map((m) => m.transactionId)).toEqual(['10', '11', '12']);
    await expect(store.append('s-1', { type: 't', data: {} }, { expectedVersion: 4 })).rejects.toBeInstanceOf(
      WrongExpectedVersionError,
    );
  });
});
