import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type MessageDefinition, message } from '../../src/config/types.js';
import { CommandExecutor, type DecisionStore } from '../../src/consistency/commandExecutor.js';
import type { Decider } from '../../src/consistency/decider.js';
import { Query } from '../../src/consistency/query.js';
import {
  AppendConditionFailedError,
  InvalidInputError,
  MessageIdConflictError,
  MessageValidationError,
  NotFoundError,
  WrongExpectedVersionError,
} from '../../src/errors.js';
import type { MessageStore } from '../../src/store/messageStore.js';
import type { LogPosition, RecordedMessage } from '../../src/store/types.js';
import { createFaultyStore } from '../../src/testing/faultyStore.js';
import type { MessageStoreApi } from '../../src/testing/storeApi.js';
import { until } from '../helpers/until.js';

/** One store under test (a fresh log is not required: every test writes its own streams and tags). */
export interface ContractStore {
  store: MessageStoreApi;
  /** A store of the same kind with these message type mappings (validators, upcasters). */
  withMessages(messages: Record<string, MessageDefinition>): MessageStoreApi;
  /** What to give a CommandExecutor (default: `store`); the PostgreSQL run gives its MessageStore. */
  executorStore?: MessageStore | DecisionStore;
  close(): Promise<void>;
}

const uid = () => randomBytes(4).toString('hex');
/** A category of its own (no "-"), so reads of it see only this test's messages. */
const category = () => `c${uid()}`;

function after(a: { transactionId: string; globalPosition: number }, b: LogPosition): boolean {
  const x = BigInt(a.transactionId);
  const y = BigInt(b.transactionId);
  return x > y || (x === y && a.globalPosition > b.globalPosition);
}

/**
 * The message store's contract: the same tests for every implementation (the PostgreSQL store and
 * the in-memory one), so they cannot drift. `label` names the implementation in test names.
 */
export function messageStoreContract(label: string, open: () => Promise<ContractStore>): void {
  describe(`message store contract: ${label}`, () => {
    let opened: ContractStore;
    let store: MessageStoreApi;
    beforeAll(async () => {
      opened = await open();
      store = opened.store;
    });
    afterAll(async () => opened?.close());

    /**
     * Log reads are gap-safe on PostgreSQL: another file's open transaction may hold messages back a
     * moment, and `logEnd()` may then stop before an earlier test's committed messages. So this waits
     * until `count` messages that `keep` accepts are readable, and returns only those.
     */
    async function readAllAfter(
      start: LogPosition,
      count: number,
      { category, keep = () => true }: { category?: string; keep?: (m: RecordedMessage) => boolean } = {},
    ): Promise<RecordedMessage[]> {
      let got: RecordedMessage[] = [];
      await until(async () => {
        const r = category
          ? await store.readCategory(category, { after: start, limit: 10_000 })
          : await store.readAll({ after: start, limit: 10_000 });
        got = r.messages.filter(keep);
        return got.length >= count;
      }, `${count} messages in the log`);
      return got;
    }

    async function logEnd(): Promise<LogPosition> {
      let position: LogPosition = { transactionId: '0', globalPosition: 0 };
      for (;;) {
        const r = await store.readAll({ after: position, limit: 10_000 });
        if (r.messages.length === 0) return position;
        position = r.position;
      }
    }

    describe('append and read a stream', () => {
      it('records what was appended, with positions, ids, metadata and JSON data', async () => {
        const s = `order-${uid()}`;
        const r1 = await store.append(s, {
          type: 'placed',
          data: { n: 1, at: new Date('2025-01-02T03:04:05Z'), gone: undefined },
        });
        const r2 = await store.append(s, [
          { type: 'paid', data: { n: 2 }, tags: ['order:x'] },
          { type: 'shipped', data: {}, metadata: { by: 'me' } },
        ]);
        expect(r1.streamVersion).toBe(1);
        expect(r2.streamVersion).toBe(3);
        expect(r2.globalPosition).toBeGreaterThan(r1.globalPosition);
        const read = await store.readStream(s);
        expect(read.map((m) => [m.type, m.streamPosition, m.streamName])).toEqual([
          ['placed', 1, s],
          ['paid', 2, s],
          ['shipped', 3, s],
        ]);
        // Stored as JSON: a Date becomes its string, undefined properties disappear.
        expect(read[0]!.data).toEqual({ n: 1, at: '2025-01-02T03:04:05.000Z' });
        expect(read[0]!.globalPosition).toBe(r1.globalPosition);
        expect(read[2]!.globalPosition).toBe(r2.globalPosition);
        expect(read[1]!.tags).toEqual(['order:x']);
        expect(read[0]!.tags).toEqual([]);
        expect(read[2]!.metadata).toMatchObject({ by: 'me', correlationId: read[2]!.id });
        expect(read[0]!.metadata.correlationId).toBe(read[0]!.id);
        expect(read[0]!.metadata.causationId).toBeUndefined();
        expect(read[0]!.createdAt).toBeInstanceOf(Date);
        expect(read[0]!.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
        // One append, one transaction; a later append, a later transaction.
        expect(read[1]!.transactionId).toBe(read[2]!.transactionId);
        expect(BigInt(read[1]!.transactionId)).toBeGreaterThan(BigInt(read[0]!.transactionId));
        expect(await store.streamVersion(s)).toBe(3);
        expect(await store.streamVersion(`order-${uid()}`)).toBe(0);
      });

      it('keeps a given id (lower-cased) and refuses a malformed one', async () => {
        const s = `order-${uid()}`;
        const id = randomUUID().toUpperCase();
        await store.append(s, { type: 't', data: {}, id });
        expect((await store.readStream(s))[0]!.id).toBe(id.toLowerCase());
        await expect(store.append(s, { type: 't', data: {}, id: 'nope' })).rejects.toBeInstanceOf(
          InvalidInputError,
        );
      });

      it('ids stored elsewhere: MessageIdConflictError with every id, naming the first three', async () => {
        const s = `order-${uid()}`;
        const batch = Array.from({ length: 10 }, (_, i) => ({ type: 't', data: { i }, id: randomUUID() }));
        await store.append(s, batch);
        const err = await store.append(`${s}x`, batch).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MessageIdConflictError);
        expect((err as MessageIdConflictError).ids).toHaveLength(10);
        expect((err as Error).message).toMatch(
          new RegExp(
            `^Message ids ${batch[0]!.id}, [0-9a-f-]{36}, [0-9a-f-]{36} and 7 more are already stored`,
          ),
        );
        expect(await store.streamVersion(`${s}x`)).toBe(0);
      });

      it('stores a value referenced twice (not a cycle) and a Date as JSON.stringify writes them', async () => {
        const s = `order-${uid()}`;
        const shared = { n: 1 };
        const at = new Date('2030-01-02T03:04:05.000Z');
        await store.append(s, { type: 't', data: { a: shared, b: [shared, shared], at } });
        expect((await store.readStream(s))[0]!.data).toEqual({
          a: { n: 1 },
          b: [{ n: 1 }, { n: 1 }],
          at: '2030-01-02T03:04:05.000Z',
        });
      });

      it('refuses bad input and writes nothing', async () => {
        const s = `order-${uid()}`;
        await expect(store.append('has space', { type: 't', data: {} })).rejects.toBeInstanceOf(
          InvalidInputError,
        );
        await expect(store.append('', { type: 't', data: {} })).rejects.toBeInstanceOf(InvalidInputError);
        await expect(store.append(s, [])).rejects.toBeInstanceOf(InvalidInputError);
        await expect(store.append(s, { type: '', data: {} })).rejects.toBeInstanceOf(InvalidInputError);
        await expect(store.append(s, { type: 't', data: undefined })).rejects.toBeInstanceOf(
          InvalidInputError,
        );
        await expect(store.append(s, { type: 't', data: {}, tags: [''] })).rejects.toBeInstanceOf(
          InvalidInputError,
        );
        await expect(
          store.append(s, { type: 't', data: {} }, { expectedVersion: -1 as number }),
        ).rejects.toBeInstanceOf(InvalidInputError);
        await expect(
          store.append(s, { type: 't', data: {} }, { expectedVersion: 'latest' as 'any' }),
        ).rejects.toBeInstanceOf(InvalidInputError);
        // One id twice in an append; names and strings with an unpaired surrogate (no UTF-8 form).
        const id = randomUUID();
        await expect(
          store.append(s, [
            { type: 't', data: {}, id },
            { type: 't', data: {}, id },
          ]),
        ).rejects.toThrow(/appears twice in one append/);
        await expect(store.append(`${s}\ud800`, { type: 't', data: {} })).rejects.toBeInstanceOf(
          InvalidInputError,
        );
        await expect(store.append(s, { type: 't', data: {}, tags: ['g:\udc00'] })).rejects.toBeInstanceOf(
          InvalidInputError,
        );
        await expect(store.append(s, { type: 't', data: { a: '\ud83d' } })).rejects.toThrow(
          /unpaired UTF-16 surrogate at a/,
        );
        expect(await store.streamVersion(s)).toBe(0);
      });

      it('reads forward from a position, backward, and in pages', async () => {
        const s = `order-${uid()}`;
        await store.append(
          s,
          Array.from({ length: 7 }, (_, i) => ({ type: 't', data: { i: i + 1 } })),
        );
        const pos = (ms: RecordedMessage[]) => ms.map((m) => m.streamPosition);
        expect(pos(await store.readStream(s, { from: 3, limit: 2 }))).toEqual([3, 4]);
        expect(pos(await store.readStream(s, { from: 6 }))).toEqual([6, 7]);
        expect(pos(await store.readStream(s, { from: 8 }))).toEqual([]);
        expect(pos(await store.readStream(s, { direction: 'backward', limit: 3 }))).toEqual([7, 6, 5]);
        expect(pos(await store.readStream(s, { direction: 'backward', from: 2 }))).toEqual([2, 1]);
        expect(await store.readStream(`order-${uid()}`)).toEqual([]);
        await expect(store.readStream('bad name')).rejects.toBeInstanceOf(InvalidInputError);
      });
    });

    describe('expected versions', () => {
      it('no_stream and 0: only for a stream that does not exist', async () => {
        const s = `acct-${uid()}`;
        await store.append(s, { type: 'opened', data: {} }, { expectedVersion: 'no_stream' });
        const err = await store
          .append(s, { type: 'opened', data: {} }, { expectedVersion: 'no_stream' })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(WrongExpectedVersionError);
        expect(err).toMatchObject({
          stream: s,
          expected: 'no_stream',
          actual: 1,
          code: 'WRONG_EXPECTED_VERSION',
        });
        await expect(store.append(s, { type: 'x', data: {} }, { expectedVersion: 0 })).rejects.toMatchObject({
          expected: 0,
          actual: 1,
        });
        const t = `acct-${uid()}`;
        expect(
          (await store.append(t, { type: 'opened', data: {} }, { expectedVersion: 0 })).streamVersion,
        ).toBe(1);
        expect(await store.streamVersion(s)).toBe(1);
      });

      it('stream_exists: refuses a missing stream', async () => {
        const s = `acct-${uid()}`;
        await expect(
          store.append(s, { type: 'x', data: {} }, { expectedVersion: 'stream_exists' }),
        ).rejects.toMatchObject({ name: 'WrongExpectedVersionError', expected: 'stream_exists', actual: 0 });
        await store.append(s, { type: 'x', data: {} });
        expect(
          (await store.append(s, { type: 'y', data: {} }, { expectedVersion: 'stream_exists' }))
            .streamVersion,
        ).toBe(2);
      });

      it('an exact version: the stream head must be exactly that, or nothing is written', async () => {
        const s = `acct-${uid()}`;
        await store.append(s, [
          { type: 'a', data: {} },
          { type: 'b', data: {} },
        ]);
        for (const wrong of [0, 1, 3, 10]) {
          const err = await store
            .append(
              s,
              [
                { type: 'c', data: {} },
                { type: 'd', data: {} },
              ],
              { expectedVersion: wrong },
            )
            .catch((e: unknown) => e);
          expect(err).toBeInstanceOf(WrongExpectedVersionError);
          expect(err).toMatchObject({ stream: s, expected: wrong, actual: 2 });
        }
        expect(await store.streamVersion(s)).toBe(2);
        expect((await store.append(s, { type: 'c', data: {} }, { expectedVersion: 2 })).streamVersion).toBe(
          3,
        );
        expect(
          (await store.append(s, { type: 'd', data: {} }, { expectedVersion: 'any' })).streamVersion,
        ).toBe(4);
      });

      it('two appends expecting the same version: exactly one wins', async () => {
        const s = `acct-${uid()}`;
        await store.append(s, { type: 'a', data: {} });
        const results = await Promise.allSettled(
          [1, 2, 3].map((i) => store.append(s, { type: `w${i}`, data: {} }, { expectedVersion: 1 })),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        for (const r of results.filter((x) => x.status === 'rejected'))
          expect((r as PromiseRejectedResult).reason).toBeInstanceOf(WrongExpectedVersionError);
        expect(await store.streamVersion(s)).toBe(2);
      });
    });

    describe('appendMultiple', () => {
      it('writes every stream in one transaction', async () => {
        const a = `acct-${uid()}`;
        const b = `acct-${uid()}`;
        await store.append(a, { type: 'opened', data: {} });
        const results = await store.appendMultiple([
          { stream: a, messages: { type: 'debited', data: { n: 5 } }, expectedVersion: 1 },
          {
            stream: b,
            messages: [
              { type: 'opened', data: {} },
              { type: 'credited', data: { n: 5 } },
            ],
            expectedVersion: 'no_stream',
          },
        ]);
        expect(results.get(a)?.streamVersion).toBe(2);
        expect(results.get(b)?.streamVersion).toBe(2);
        const [ra, rb] = [await store.readStream(a), await store.readStream(b)];
        expect(ra[1]!.transactionId).toBe(rb[0]!.transactionId);
        expect(rb[1]!.transactionId).toBe(rb[0]!.transactionId);
        expect(results.get(a)?.globalPosition).toBe(ra[1]!.globalPosition);
        expect(results.get(b)?.globalPosition).toBe(rb[1]!.globalPosition);
      });

      it('writes nothing when one expected version is wrong', async () => {
        const a = `acct-${uid()}`;
        const b = `acct-${uid()}`;
        await store.append(b, { type: 'opened', data: {} });
        const err = await store
          .appendMultiple([
            { stream: a, messages: { type: 'x', data: {} }, expectedVersion: 'no_stream' },
            { stream: b, messages: { type: 'x', data: {} }, expectedVersion: 'no_stream' },
          ])
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(WrongExpectedVersionError);
        expect(err).toMatchObject({ stream: b, actual: 1 });
        expect(await store.streamVersion(a)).toBe(0);
        expect(await store.streamVersion(b)).toBe(1);
      });

      it('refuses a stream given twice, an empty list and bad names', async () => {
        const a = `acct-${uid()}`;
        await expect(
          store.appendMultiple([
            { stream: a, messages: { type: 'x', data: {} } },
            { stream: a, messages: { type: 'y', data: {} } },
          ]),
        ).rejects.toBeInstanceOf(InvalidInputError);
        await expect(store.appendMultiple([])).rejects.toBeInstanceOf(InvalidInputError);
        await expect(
          store.appendMultiple([
            { stream: a, messages: { type: 'x', data: {} } },
            { stream: 'bad name', messages: { type: 'y', data: {} } },
          ]),
        ).rejects.toBeInstanceOf(InvalidInputError);
        const id = randomUUID();
        await expect(
          store.appendMultiple([
            { stream: a, messages: { type: 'x', data: {}, id } },
            { stream: `${a}b`, messages: { type: 'y', data: {}, id } },
          ]),
        ).rejects.toThrow(/appears twice in one append/);
        expect(await store.streamVersion(a)).toBe(0);
      });
    });

    describe('the log', () => {
      it('readAll: log order, increasing transaction ids, paging by position', async () => {
        const start = await logEnd();
        const s1 = `log-${uid()}`;
        const s2 = `log-${uid()}`;
        for (let i = 0; i < 5; i++) {
          await store.append(s1, { type: 'a', data: { i } });
          await store.append(s2, [
            { type: 'b', data: { i } },
            { type: 'c', data: { i } },
          ]);
        }
        const ours = await readAllAfter(start, 15, {
          keep: (m) => m.streamName === s1 || m.streamName === s2,
        });
        expect(ours).toHaveLength(15);
        for (let i = 1; i < ours.length; i++) {
          const prev = ours[i - 1]!;
          expect(after(ours[i]!, prev)).toBe(true);
        }
        // Paging: every page starts after the previous page's position and nothing repeats.
        const paged: RecordedMessage[] = [];
        let position = start;
        for (;;) {
          const page = await store.readAll({ after: position, limit: 4 });
          if (page.messages.length === 0) {
            expect(page.position).toEqual(position);
            break;
          }
          expect(page.messages.length).toBeLessThanOrEqual(4);
          const last = page.messages[page.messages.length - 1]!;
          expect(page.position).toEqual({
            transactionId: last.transactionId,
            globalPosition: last.globalPosition,
          });
          paged.push(...page.messages);
          position = page.position;
        }
        expect(paged.filter((m) => m.streamName === s1 || m.streamName === s2).map((m) => m.id)).toEqual(
          ours.map((m) => m.id),
        );
        const typed = await store.readAll({ after: start, types: ['c'], limit: 10_000 });
        expect(typed.messages.filter((m) => m.streamName === s2)).toHaveLength(5);
        expect(typed.messages.every((m) => m.type === 'c')).toBe(true);
      });

      it('readCategory: only its streams, in log order, with a types filter', async () => {
        const cat = category();
        const other = category();
        const start: LogPosition = { transactionId: '0', globalPosition: 0 };
        await store.append(`${cat}-1`, { type: 'a', data: {} });
        await store.append(`${other}-1`, { type: 'a', data: {} });
        await store.append(`${cat}-2`, [
          { type: 'b', data: {} },
          { type: 'a', data: {} },
        ]);
        await store.append(`${cat}-1-x`, { type: 'b', data: {} });
        const read = await readAllAfter(start, 4, { category: cat });
        expect(read.map((m) => [m.streamName, m.type])).toEqual([
          [`${cat}-1`, 'a'],
          [`${cat}-2`, 'b'],
          [`${cat}-2`, 'a'],
          [`${cat}-1-x`, 'b'],
        ]);
        const page1 = await store.readCategory(cat, { limit: 2 });
        const page2 = await store.readCategory(cat, { after: page1.position, limit: 2 });
        expect([...page1.messages, ...page2.messages].map((m) => m.id)).toEqual(read.map((m) => m.id));
        const bs = await store.readCategory(cat, { types: ['b'] });
        expect(bs.messages.map((m) => m.streamName)).toEqual([`${cat}-2`, `${cat}-1-x`]);
        await expect(store.readCategory('has-dash')).rejects.toBeInstanceOf(InvalidInputError);
        await expect(store.readCategory('')).rejects.toBeInstanceOf(InvalidInputError);
      });
    });

    describe('tags, queries and conditions', () => {
      it('readByQuery: types OR, tags AND, items OR, after a position or a global position', async () => {
        const c = `course:${uid()}`;
        const st = `student:${uid()}`;
        const s = `course-${uid()}`;
        await store.append(s, [
          { type: 'course_defined', data: {}, tags: [c] },
          { type: 'subscribed', data: {}, tags: [c, st] },
          { type: 'unsubscribed', data: {}, tags: [c, st] },
          { type: 'renamed', data: {}, tags: [c] },
          { type: 'subscribed', data: {}, tags: [`course:${uid()}`, st] },
        ]);
        const types = (r: { messages: RecordedMessage[] }) => r.messages.map((m) => m.type);
        await until(
          async () => (await store.readByQuery(Query.where({ tags: [st] }))).messages.length === 3,
          'tagged messages readable',
        );
        expect(types(await store.readByQuery(Query.where({ tags: [c, st] })))).toEqual([
          'subscribed',
          'unsubscribed',
        ]);
        expect(
          types(await store.readByQuery(Query.where({ tags: [c], types: ['renamed', 'course_defined'] }))),
        ).toEqual(['course_defined', 'renamed']);
        const both = await store.readByQuery(
          Query.of({ tags: [c], types: ['course_defined'] }, { tags: [st], types: ['unsubscribed'] }),
        );
        expect(types(both)).toEqual(['course_defined', 'unsubscribed']);
        const first = await store.readByQuery(Query.where({ tags: [c] }), { limit: 2 });
        expect(types(first)).toEqual(['course_defined', 'subscribed']);
        const rest = await store.readByQuery(Query.where({ tags: [c] }), { after: first.position });
        expect(types(rest)).toEqual(['unsubscribed', 'renamed']);
        const byNumber = await store.readByQuery(Query.where({ tags: [c] }), {
          after: first.messages[1]!.globalPosition,
        });
        expect(types(byNumber)).toEqual(['unsubscribed', 'renamed']);
        const none = await store.readByQuery(Query.where({ tags: [`course:${uid()}`] }), {
          after: first.position,
        });
        expect(none).toEqual({ messages: [], position: first.position });
        await expect(
          store.readByQuery(Query.where({ tags: [c] }), { after: 9_000_000_000 }),
        ).rejects.toBeInstanceOf(NotFoundError);
      });

      it('readForDecision and appendWithCondition: a decision fails once a match appears after its read', async () => {
        const c = `course:${uid()}`;
        const s = `course-${uid()}`;
        const q = Query.where({ tags: [c], types: ['subscribed'] });
        await store.append(s, { type: 'subscribed', data: { n: 1 }, tags: [c] });
        const read = await store.readForDecision(q);
        expect(read.messages.map((m) => m.data)).toEqual([{ n: 1 }]);
        expect(typeof read.snapshot).toBe('string');
        // A non-matching message does not fail the condition.
        await store.append(s, { type: 'renamed', data: {}, tags: [c] });
        const ok = await store.appendWithCondition(
          [{ stream: s, messages: { type: 'subscribed', data: { n: 2 }, tags: [c] } }],
          {
            failIfEventsMatch: q,
            after: read,
          },
        );
        expect(ok.streams.get(s)).toMatchObject({ streamVersion: 3 });
        expect(ok.position.globalPosition).toBe(ok.streams.get(s)!.globalPosition);
        // The same decision again: the message just appended matches after the read.
        const err = await store
          .appendWithCondition([{ stream: s, messages: { type: 'subscribed', data: { n: 3 }, tags: [c] } }], {
            failIfEventsMatch: q,
            after: read,
          })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(AppendConditionFailedError);
        expect(await store.streamVersion(s)).toBe(3);
        const again = await store.readForDecision(q);
        expect(again.messages.map((m) => m.data)).toEqual([{ n: 1 }, { n: 2 }]);
        const since = await store.readForDecision(q, { since: read.snapshot });
        expect(since.messages.map((m) => m.data)).toEqual([{ n: 2 }]);
      });

      it('appendWithCondition: without a position any match fails; after a log or global position only later ones', async () => {
        const c = `course:${uid()}`;
        const s = `course-${uid()}`;
        const q = Query.where({ tags: [c] });
        const first = await store.appendWithCondition(
          [{ stream: s, messages: { type: 'defined', data: {}, tags: [c] } }],
          {
            failIfEventsMatch: q,
          },
        );
        await expect(
          store.appendWithCondition([{ stream: s, messages: { type: 'defined', data: {}, tags: [c] } }], {
            failIfEventsMatch: q,
          }),
        ).rejects.toBeInstanceOf(AppendConditionFailedError);
        await until(
          async () => (await store.readByQuery(q)).messages.length === 1,
          'the first message readable',
        );
        const { position } = await store.readByQuery(q);
        expect(position).toEqual(first.position);
        const two = await store.appendWithCondition(
          [
            { stream: s, messages: { type: 'changed', data: {}, tags: [c] }, expectedVersion: 1 },
            { stream: `${s}x`, messages: [{ type: 'noted', data: {} }] },
          ],
          { failIfEventsMatch: q, after: position },
        );
        expect(two.streams.get(s)?.streamVersion).toBe(2);
        expect(two.streams.get(`${s}x`)?.streamVersion).toBe(1);
        await expect(
          store.appendWithCondition([{ stream: s, messages: { type: 'changed', data: {}, tags: [c] } }], {
            failIfEventsMatch: q,
            after: position,
          }),
        ).rejects.toBeInstanceOf(AppendConditionFailedError);
        await expect(
          store.appendWithCondition([{ stream: s, messages: { type: 'changed', data: {}, tags: [c] } }], {
            failIfEventsMatch: q,
            after: first.position.globalPosition,
          }),
        ).rejects.toBeInstanceOf(AppendConditionFailedError);
        // The condition holds but a stream's expected version does not: nothing is written.
        await expect(
          store.appendWithCondition(
            [{ stream: s, messages: { type: 'changed', data: {}, tags: [c] }, expectedVersion: 1 }],
            { failIfEventsMatch: Query.where({ tags: [`course:${uid()}`] }) },
          ),
        ).rejects.toMatchObject({ name: 'WrongExpectedVersionError', stream: s, actual: 2 });
        expect(await store.streamVersion(s)).toBe(2);
        await expect(
          store.appendWithCondition([{ stream: s, messages: { type: 'x', data: {} } }], {
            failIfEventsMatch: { items: [] } as unknown as Query,
          }),
        ).rejects.toBeInstanceOf(InvalidInputError);
        await expect(store.appendWithCondition([])).rejects.toBeInstanceOf(InvalidInputError);
      });
    });

    describe('message types', () => {
      it('validates data with the declared schema (nothing written) and upcasts on read', async () => {
        const typed = opened.withMessages({
          placed: message(z.object({ amount: z.number().int() })),
          priced: message({ upcast: (d) => ({ ...(d as object), currency: 'EUR' }) }),
        });
        const s = `order-${uid()}`;
        const err = await typed.append(s, { type: 'placed', data: { amount: 1.5 } }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MessageValidationError);
        expect(err).toMatchObject({ code: 'MESSAGE_INVALID', type: 'placed' });
        await expect(
          typed.appendMultiple([{ stream: s, messages: [{ type: 'placed', data: { amount: 'x' } }] }]),
        ).rejects.toBeInstanceOf(MessageValidationError);
        await expect(
          typed.appendWithCondition([{ stream: s, messages: { type: 'placed', data: {} } }]),
        ).rejects.toBeInstanceOf(MessageValidationError);
        expect(await typed.streamVersion(s)).toBe(0);
        await typed.append(s, [
          { type: 'placed', data: { amount: 2 } },
          { type: 'priced', data: { amount: 2 } },
        ]);
        expect((await typed.readStream(s)).map((m) => m.data)).toEqual([
          { amount: 2 },
          { amount: 2, currency: 'EUR' },
        ]);
        const cat = s.split('-')[0]!;
        // Gap-safe on PostgreSQL: another file's open transaction may hold the read back a moment.
        let messages: RecordedMessage[] = [];
        await until(async () => {
          ({ messages } = await typed.readCategory(cat, { types: ['priced'], limit: 10_000 }));
          return messages.some((m) => m.streamName === s);
        }, 'the priced message in its category');
        expect(messages.filter((m) => m.streamName === s).map((m) => m.data)).toEqual([
          { amount: 2, currency: 'EUR' },
        ]);
      });
    });

    describe('metadata', () => {
      it("causedBy: appends carry the cause's correlation id and its id as causation", async () => {
        const s = `order-${uid()}`;
        await store.append(s, {
          type: 'placed',
          data: {},
          metadata: { correlationId: 'corr-1', tenant: 't1' },
        });
        const [cause] = await store.readStream(s);
        const caused = store.causedBy(cause!);
        await caused.append(s, { type: 'reserved', data: {} });
        await caused.appendMultiple([{ stream: `${s}b`, messages: { type: 'noted', data: {} } }]);
        await caused.appendWithCondition([{ stream: `${s}c`, messages: { type: 'noted', data: {} } }]);
        const [, reserved] = await store.readStream(s);
        expect(reserved!.metadata).toMatchObject({ correlationId: 'corr-1', causationId: cause!.id });
        expect(reserved!.metadata.tenant).toBeUndefined();
        for (const other of [`${s}b`, `${s}c`])
          expect((await store.readStream(other))[0]!.metadata).toMatchObject({
            correlationId: 'corr-1',
            causationId: cause!.id,
          });
        // A cause without a correlation id: its own id is the correlation.
        const bare = store.causedBy({ id: cause!.id, metadata: {} });
        await bare.append(s, { type: 'x', data: {} });
        expect((await store.readStream(s, { from: 3 }))[0]!.metadata).toMatchObject({
          correlationId: cause!.id,
          causationId: cause!.id,
        });
        // A message's own metadata wins over what it inherits.
        await caused.append(s, { type: 'y', data: {}, metadata: { correlationId: 'mine' } });
        expect((await store.readStream(s, { from: 4 }))[0]!.metadata.correlationId).toBe('mine');
      });
    });

    describe('CommandExecutor', () => {
      type Cmd = { add: number; id?: string; race?: () => Promise<unknown> };
      /** A counter: refuses to go above 10; `race` runs once inside decide(), as a competing writer. */
      const counter = (name: string, boundary: 'stream' | 'query', every?: number): Decider<number, Cmd> => ({
        name,
        initialState: () => 0,
        evolve: (n, m) => n + (m.data as { add: number }).add,
        decide: async (cmd, n) => {
          const race = cmd.race;
          cmd.race = undefined;
          await race?.();
          if (n + cmd.add > 10) throw new RangeError(`over 10: ${n} + ${cmd.add}`);
          return [
            {
              type: 'added',
              data: { add: cmd.add },
              tags: [name],
              ...(cmd.id ? { id: cmd.id } : {}),
              // A query boundary names the stream each message goes to.
              ...(boundary === 'query' ? { stream: `qc-${name}` } : {}),
            },
          ];
        },
        ...(every ? { snapshots: { every, stateVersion: 1 } } : {}),
      });
      const executorOn = (opts = {}) =>
        new CommandExecutor(opened.executorStore ?? store, { baseDelayMs: 1, ...opts });

      it('stream boundary: appends at the version read; a competing append makes it decide again', async () => {
        const s = `counter-${uid()}`;
        const ex = executorOn();
        expect((await ex.execute(counter('c', 'stream'), { add: 3 }, { stream: s })).attempts).toBe(1);
        const r = await ex.execute(
          counter('c', 'stream'),
          { add: 4, race: () => store.append(s, { type: 'added', data: { add: 2 } }) },
          { stream: s },
        );
        expect(r.attempts).toBe(2);
        expect(r.state).toBe(5);
        expect((await store.readStream(s)).map((m) => (m.data as { add: number }).add)).toEqual([3, 2, 4]);
        // A domain error is not retried and writes nothing.
        await expect(ex.execute(counter('c', 'stream'), { add: 2 }, { stream: s })).rejects.toBeInstanceOf(
          RangeError,
        );
        expect(await store.streamVersion(s)).toBe(3);
        // Out of attempts: the conflict surfaces.
        await expect(
          executorOn({ maxAttempts: 1 }).execute(
            counter('c', 'stream'),
            { add: 1, race: () => store.append(s, { type: 'added', data: { add: 0 } }) },
            { stream: s },
          ),
        ).rejects.toBeInstanceOf(WrongExpectedVersionError);
        expect(await store.streamVersion(s)).toBe(4);
      });

      it('query boundary: appends under the condition; a matching append after the read makes it decide again', async () => {
        const t = `tag${uid()}:1`;
        const q = Query.where({ tags: [t] });
        const ex = executorOn();
        await ex.execute(counter(t, 'query'), { add: 4 }, { query: q });
        const r = await ex.execute(
          counter(t, 'query'),
          {
            add: 3,
            race: () => store.append(`other-${uid()}`, { type: 'added', data: { add: 3 }, tags: [t] }),
          },
          { query: q },
        );
        expect(r).toMatchObject({ attempts: 2, state: 7 });
        // Decided on the fresh state: now 10, and 10 + 3 > 10.
        await expect(ex.execute(counter(t, 'query'), { add: 3 }, { query: q })).rejects.toBeInstanceOf(
          RangeError,
        );
        await expect(
          executorOn({ maxAttempts: 1 }).execute(
            counter(t, 'query'),
            {
              add: 0,
              race: () => store.append(`other-${uid()}`, { type: 'added', data: { add: 0 }, tags: [t] }),
            },
            { query: q },
          ),
        ).rejects.toBeInstanceOf(AppendConditionFailedError);
        // Gap-safe on PostgreSQL: another file's open transaction may hold the read back a moment.
        await until(
          async () => (await store.readByQuery(q)).messages.length >= 4,
          'the four messages of the boundary',
        );
        expect((await store.readByQuery(q)).messages.map((m) => (m.data as { add: number }).add)).toEqual([
          4, 3, 3, 0,
        ]);
      });

      it('several streams: folded in log order, appended atomically to the stream each message names', async () => {
        const a = `acc-${uid()}`;
        const b = `acc-${uid()}`;
        await store.append(a, { type: 'added', data: { add: 2 } });
        await store.append(b, { type: 'added', data: { add: 5 } });
        const transfer: Decider<number, null> = {
          initialState: () => 0,
          evolve: (n, m) => n + (m.data as { add: number }).add,
          decide: (_c, n) => [
            { stream: a, type: 'added', data: { add: -1 } },
            { stream: b, type: 'added', data: { add: n } },
          ],
        };
        const r = await executorOn().execute(transfer, null, { streams: [a, b] });
        expect(r.state).toBe(7);
        expect((await store.readStream(b)).map((m) => (m.data as { add: number }).add)).toEqual([5, 7]);
        expect(await store.streamVersion(a)).toBe(2);
      });

      it('snapshots: saved every N messages, the next load folds only the tail', async () => {
        const s = `snap-${uid()}`;
        const d = counter(`snap${uid()}`, 'stream', 2);
        const ex = executorOn();
        for (const add of [1, 1, 1]) await ex.execute(d, { add }, { stream: s });
        const loaded = await ex.load(d, { stream: s });
        expect(loaded.state).toBe(3);
        expect(loaded.messageCount).toBe(3);
        // Both stores keep snapshots.
        expect(loaded.fromSnapshot).toBe(true);
        expect(loaded.folded).toBeLessThan(3);
        const t = `tag${uid()}:1`;
        const dq = counter(t, 'query', 2);
        for (const add of [2, 2, 2]) await ex.execute(dq, { add }, { query: Query.where({ tags: [t] }) });
        const lq = await ex.load(dq, { query: Query.where({ tags: [t] }) });
        expect(lq).toMatchObject({ state: 6, messageCount: 3, fromSnapshot: true });
        expect(lq.folded).toBeLessThan(3);
      });

      it('a lost reply: appended again with the same ids, written once', async () => {
        const s = `counter-${uid()}`;
        const faulty = createFaultyStore(opened.executorStore ?? store);
        faulty.failNext('append', { kind: 'lostReply' });
        const r = await new CommandExecutor(faulty.store, { baseDelayMs: 1 }).execute(
          counter('c', 'stream'),
          { add: 1, id: randomUUID() },
          { stream: s },
        );
        expect(r.attempts).toBe(1);
        expect(faulty.pending()).toBe(0);
        const read = await store.readStream(s);
        expect(read).toHaveLength(1);
        expect(faulty.calls.filter((c) => c.method === 'append')).toHaveLength(2);
      });
    });
  });
}
