import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { message } from '../../src/config/types.js';
import { InvalidInputError, MessageValidationError, WrongExpectedVersionError } from '../../src/errors.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('append', { poolSize: 25 });
});
afterAll(async () => db.close());

const item = (n: number) => ({ type: 'item_added', data: { n } });

async function settle<T>(ps: Promise<T>[]): Promise<{ ok: T[]; errors: unknown[] }> {
  const rs = await Promise.allSettled(ps);
  return {
    ok: rs
      .filter((r): r is PromiseFulfilledResult<Awaited<T>> => r.status === 'fulfilled')
      .map((r) => r.value),
    errors: rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason),
  };
}

describe('append with expected version', () => {
  it('appends in order and reports the new version', async () => {
    const r1 = await db.store.append('order-a1', item(1), { expectedVersion: 'no_stream' });
    const r2 = await db.store.append('order-a1', [item(2), item(3)], { expectedVersion: 1 });
    expect(r1.streamVersion).toBe(1);
    expect(r2.streamVersion).toBe(3);
    expect(r2.globalPosition).toBeGreaterThan(r1.globalPosition);
    const read = await db.store.readStream('order-a1');
    expect(read.map((m) => [m.streamPosition, (m.data as { n: number }).n])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    expect(await db.store.streamVersion('order-a1')).toBe(3);
  });

  it('rejects a wrong expected version with stream, expected and actual, writing nothing', async () => {
    await db.store.append('order-a2', [item(1), item(2)]);
    const err = await db.store.append('order-a2', item(3), { expectedVersion: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongExpectedVersionError);
    expect(err).toMatchObject({ stream: 'order-a2', expected: 1, actual: 2, exitCode: 7 });
    await expect(
      db.store.append('order-a2', item(3), { expectedVersion: 'no_stream' }),
    ).rejects.toMatchObject({ actual: 2 });
    await expect(
      db.store.append('order-a3', item(1), { expectedVersion: 'stream_exists' }),
    ).rejects.toMatchObject({ actual: 0 });
    expect(await db.store.streamVersion('order-a2')).toBe(2);
    expect(await db.store.streamVersion('order-a3')).toBe(0);
  });

  it('lets exactly one of 20 concurrent appenders with the same expected version win', async () => {
    await db.store.append('race-1', item(0));
    const { ok, errors } = await settle(
      Array.from({ length: 20 }, (_, i) => db.store.append('race-1', item(i + 1), { expectedVersion: 1 })),
    );
    expect(ok).toHaveLength(1);
    expect(errors).toHaveLength(19);
    for (const e of errors) expect(e).toBeInstanceOf(WrongExpectedVersionError);
    const stream = await db.store.readStream('race-1');
    expect(stream.map((m) => m.streamPosition)).toEqual([1, 2]);
  });

  it('lets exactly one of 20 concurrent appenders of several messages with the same expected version win', async () => {
    await db.store.append('race-many', item(0));
    const { ok, errors } = await settle(
      Array.from({ length: 20 }, (_, i) =>
        db.store.append('race-many', [item(10 * i + 1), item(10 * i + 2), item(10 * i + 3)], {
          expectedVersion: 1,
        }),
      ),
    );
    expect(ok).toHaveLength(1);
    expect(errors).toHaveLength(19);
    for (const e of errors) expect(e).toMatchObject({ name: 'WrongExpectedVersionError', actual: 4 });
    const stream = await db.store.readStream('race-many');
    expect(stream.map((m) => m.streamPosition)).toEqual([1, 2, 3, 4]);
    // Global positions follow stream positions.
    const globals = stream.map((m) => m.globalPosition);
    expect([...globals].sort((a, b) => a - b)).toEqual(globals);
    expect(ok[0]).toMatchObject({ streamVersion: 4, globalPosition: globals[3] });
  });

  it('lets exactly one of 20 concurrent "no_stream" appenders create the stream', async () => {
    const { ok, errors } = await settle(
      Array.from({ length: 20 }, (_, i) =>
        db.store.append('race-2', item(i), { expectedVersion: 'no_stream' }),
      ),
    );
    expect(ok).toHaveLength(1);
    expect(errors.every((e) => e instanceof WrongExpectedVersionError)).toBe(true);
    expect(await db.store.streamVersion('race-2')).toBe(1);
  });

  it('gives concurrent "any" appenders contiguous positions with no loss', async () => {
    const writers = 16;
    const each = 10;
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < each; i++) await db.store.append('race-3', item(w * 100 + i));
      }),
    );
    const stream = await db.store.readStream('race-3');
    expect(stream.map((m) => m.streamPosition)).toEqual(
      Array.from({ length: writers * each }, (_, i) => i + 1),
    );
    expect(new Set(stream.map((m) => (m.data as { n: number }).n)).size).toBe(writers * each);
  });
});

describe('exact expected versions race without a lock', () => {
  it('mixing exact-version and "any" appenders: every "any" lands, exact ones win or get the actual version', async () => {
    await db.store.append('mixed-1', item(0));
    const rounds = 10;
    for (let round = 0; round < rounds; round++) {
      const version = await db.store.streamVersion('mixed-1');
      const exact = Array.from({ length: 6 }, (_, i) =>
        db.store.append('mixed-1', item(1000 + round * 10 + i), { expectedVersion: version }),
      );
      const any = Array.from({ length: 6 }, (_, i) =>
        db.store.append('mixed-1', item(2000 + round * 10 + i)),
      );
      const exactResults = await settle(exact);
      const anyResults = await settle(any);
      expect(anyResults.errors).toEqual([]);
      expect(exactResults.ok.length).toBeLessThanOrEqual(1);
      for (const e of exactResults.errors) {
        expect(e).toBeInstanceOf(WrongExpectedVersionError);
        expect((e as WrongExpectedVersionError).actual).toBeGreaterThan(version);
      }
    }
    const stream = await db.store.readStream('mixed-1', { limit: 10_000 });
    expect(stream.map((m) => m.streamPosition)).toEqual(
      Array.from({ length: stream.length }, (_, i) => i + 1),
    );
    expect(stream.length).toBeGreaterThanOrEqual(1 + rounds * 6);
  });

  it('a lost race inside a multi-stream append writes nothing and names the actual version', async () => {
    await db.store.append('pair-a', item(1));
    await db.store.append('pair-b', item(1));
    const results = await settle(
      Array.from({ length: 8 }, (_, i) =>
        db.store.appendMultiple([
          { stream: 'pair-a', messages: item(i), expectedVersion: 1 },
          { stream: 'pair-b', messages: item(i), expectedVersion: 1 },
        ]),
      ),
    );
    expect(results.ok).toHaveLength(1);
    for (const e of results.errors) expect(e).toMatchObject({ actual: 2 });
    expect(await db.store.streamVersion('pair-a')).toBe(2);
    expect(await db.store.streamVersion('pair-b')).toBe(2);
  });
});

describe('multi-stream append', () => {
  it('writes every stream or none', async () => {
    await db.store.append('account-x', item(1));
    await db.store.append('account-y', item(1));
    const err = await db.store
      .appendMultiple([
        { stream: 'account-x', messages: item(2), expectedVersion: 1 },
        { stream: 'account-y', messages: item(2), expectedVersion: 5 },
        { stream: 'account-z', messages: item(1), expectedVersion: 'no_stream' },
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongExpectedVersionError);
    expect(err).toMatchObject({ stream: 'account-y', actual: 1 });
    expect(await db.store.streamVersion('account-x')).toBe(1);
    expect(await db.store.streamVersion('account-z')).toBe(0);

    const ok = await db.store.appendMultiple([
      { stream: 'account-x', messages: item(2), expectedVersion: 1 },
      { stream: 'account-y', messages: [item(2), item(3)], expectedVersion: 1 },
    ]);
    expect(ok.get('account-x')?.streamVersion).toBe(2);
    expect(ok.get('account-y')?.streamVersion).toBe(3);
  });

  it('does not deadlock when concurrent transfers name the streams in opposite orders', async () => {
    const transfers = Array.from({ length: 40 }, (_, i) =>
      db.store.appendMultiple(
        i % 2 === 0
          ? [
              { stream: 'wallet-1', messages: item(i) },
              { stream: 'wallet-2', messages: item(i) },
            ]
          : [
              { stream: 'wallet-2', messages: item(i) },
              { stream: 'wallet-1', messages: item(i) },
            ],
      ),
    );
    await Promise.all(transfers);
    expect(await db.store.streamVersion('wallet-1')).toBe(40);
    expect(await db.store.streamVersion('wallet-2')).toBe(40);
  });
});

describe('message ids, metadata and validation', () => {
  it('assigns time-ordered UUIDv7 ids and a correlation id', async () => {
    await db.store.append('meta-1', [item(1), item(2), item(3)]);
    const ms = await db.store.readStream('meta-1');
    for (const m of ms) {
      expect(m.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(m.metadata.correlationId).toBe(m.id);
    }
    const ids = ms.map((m) => m.id);
    expect([...ids].sort()).toEqual(ids);
  });

  it('carries correlation and causation from the message that caused an append', async () => {
    await db.store.append('meta-2', {
      type: 'placed',
      data: {},
      metadata: { correlationId: 'corr-1', tenant: 't1' },
    });
    const [cause] = await db.store.readStream('meta-2');
    await db.store.causedBy(cause!).append('meta-3', { type: 'reacted', data: {} });
    const [effect] = await db.store.readStream('meta-3');
    expect(effect!.metadata).toMatchObject({ correlationId: 'corr-1', causationId: cause!.id });
    expect(cause!.metadata).toMatchObject({ tenant: 't1' });
  });

  it('validates data against the declared schema and writes nothing when it fails', async () => {
    const store = db.makeStore({
      messages: {
        order_item_added: message(z.object({ orderId: z.string(), quantity: z.number().int().positive() })),
      },
    });
    const err = await store
      .append('order-v1', { type: 'order_item_added', data: { orderId: 1, quantity: -2 } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MessageValidationError);
    expect((err as Error).message).toMatch(/orderId/);
    expect((err as Error).message).toMatch(/quantity/);
    expect(await store.streamVersion('order-v1')).toBe(0);
    await store.append('order-v1', { type: 'order_item_added', data: { orderId: '1', quantity: 2 } });
    expect(await store.streamVersion('order-v1')).toBe(1);
  });

  it('upcasts stored data on read', async () => {
    await db.store.append('legacy-1', { type: 'renamed', data: { full_name: 'Ada' } });
    const store = db.makeStore({
      messages: {
        renamed: message<{ name: string }>({
          upcast: (d) => ({ name: (d as { full_name: string }).full_name }),
        }),
      },
    });
    const [m] = await store.readStream('legacy-1');
    expect(m!.data).toEqual({ name: 'Ada' });
  });

  it('refuses bad stream names, empty appends and bad expected versions before touching the database', async () => {
    await expect(db.store.append('', item(1))).rejects.toBeInstanceOf(InvalidInputError);
    await expect(db.store.append('has space', item(1))).rejects.toBeInstanceOf(InvalidInputError);
    await expect(db.store.append('ok-1', [])).rejects.toBeInstanceOf(InvalidInputError);
    await expect(db.store.append('ok-1', item(1), { expectedVersion: -3 as number })).rejects.toBeInstanceOf(
      InvalidInputError,
    );
    await expect(db.store.append('ok-1', { type: 'x', data: {}, tags: ['a\u001fb'] })).rejects.toBeInstanceOf(
      InvalidInputError,
    );
    expect(await db.store.streamVersion('ok-1')).toBe(0);
  });

  it('stores tags', async () => {
    await db.store.append('course-c1', { type: 'subscribed', data: {}, tags: ['course:c1', 'student:s1'] });
    const [m] = await db.store.readStream('course-c1');
    expect(m!.tags).toEqual(['course:c1', 'student:s1']);
  });

  it('keeps a writer that bypasses the library from reusing a stream position', async () => {
    await db.store.append('direct-1', item(1));
    const err = await db.pool
      .query(
        `INSERT INTO ${db.schema}.messages (id, stream_name, stream_position, type, data) VALUES (gen_random_uuid(), 'direct-1', 1, 'x', '{}')`,
      )
      .catch((e: pg.DatabaseError) => e);
    expect((err as pg.DatabaseError).code).toBe('23505');
  });
});

describe('reads', () => {
  it('reads a stream backward and from a position', async () => {
    await db.store.append('read-1', [item(1), item(2), item(3), item(4)]);
    expect((await db.store.readStream('read-1', { from: 3 })).map((m) => m.streamPosition)).toEqual([3, 4]);
    expect(
      (await db.store.readStream('read-1', { direction: 'backward', limit: 2 })).map((m) => m.streamPosition),
    ).toEqual([4, 3]);
    expect(
      (await db.store.readStream('read-1', { direction: 'backward', from: 2 })).map((m) => m.streamPosition),
    ).toEqual([2, 1]);
  });

  it('reads a category across its streams in log order, resumably', async () => {
    await db.store.append('cart-1', item(1));
    await db.store.append('cart-2', item(2));
    await db.store.append('other-1', item(3));
    await db.store.append('cart-1', item(4));
    // Gap-safe reads wait for older transactions anywhere on the server (other test files run
    // beside this one): wait until all three are final, then page through them.
    for (let i = 0; i < 500 && (await db.store.readCategory('cart')).messages.length < 3; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const first = await db.store.readCategory('cart', { limit: 2 });
    expect(first.messages.map((m) => m.streamName)).toEqual(['cart-1', 'cart-2']);
    const rest = await db.store.readCategory('cart', { after: first.position });
    expect(rest.messages.map((m) => (m.data as { n: number }).n)).toEqual([4]);
    const none = await db.store.readCategory('cart', { after: rest.position });
    expect(none.messages).toEqual([]);
    expect(none.position).toEqual(rest.position);
  });
});

describe('message ids given by the caller', () => {
  it('keeps a given UUID and refuses an id that is not one, writing nothing', async () => {
    const id = '0190f4a2-7b1c-7d3e-8f00-123456789abc';
    await db.store.append('ids-1', { id: id.toUpperCase(), type: 'x', data: {} });
    const [m] = await db.store.readStream('ids-1');
    expect(m!.id).toBe(id);
    await expect(db.store.append('ids-2', { id: 'order-42', type: 'x', data: {} })).rejects.toThrow(
      /Invalid message id "order-42"/,
    );
    expect(await db.store.streamVersion('ids-2')).toBe(0);
  });
});
