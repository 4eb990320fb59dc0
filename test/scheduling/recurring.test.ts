import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResolvedRecurringMessage } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import { ConfigError } from '../../src/errors.js';
import {
  deliverDueRecurring,
  listRecurringMessages,
  occurrenceId,
  syncRecurringMessages,
} from '../../src/scheduling/deliverRecurring.js';
import { createSchedulerService } from '../../src/scheduling/schedulerService.js';
import { BeckettMetrics } from '../../src/telemetry/metrics.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('recur', { poolSize: 20 });
});
afterAll(async () => db.close());

const recurring = (over: Partial<ResolvedRecurringMessage> = {}): ResolvedRecurringMessage => ({
  name: 'tick',
  cron: '* * * * * *',
  timezone: 'UTC',
  stream: 'ticks-1',
  message: { type: 'tick', data: { source: 'cron' } },
  ...over,
});

async function setNext(name: string, at: Date): Promise<void> {
  await db.pool.query(
    `UPDATE "${db.schema}".recurring_messages SET next_occurrence_at = $2 WHERE name = $1`,
    [name, at],
  );
}

describe('recurring config', () => {
  it('accepts a valid entry and applies the UTC default', () => {
    const cfg = resolveConfig({
      recurring: [
        {
          name: 'nightly',
          cron: '0 3 * * *',
          stream: 'reports-daily',
          message: { type: 'report_due', data: {} },
        },
      ],
    });
    expect(cfg.recurring).toEqual([
      {
        name: 'nightly',
        cron: '0 3 * * *',
        timezone: 'UTC',
        stream: 'reports-daily',
        message: { type: 'report_due', data: {} },
      },
    ]);
    expect(resolveConfig({}).recurring).toEqual([]);
  });

  it('names the key of a bad cron expression, time zone, stream or message', () => {
    let err: unknown;
    try {
      resolveConfig({
        recurring: [
          {
            name: 'a',
            cron: 'every day',
            timezone: 'Mars/Olympus',
            stream: 's-1',
            message: { type: 't', data: {} },
          },
          { name: 'a', cron: '* * * * *', stream: 'bad stream', message: { data: {} } },
        ],
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/recurring\[0\]\.cron: invalid cron expression "every day"/);
    expect(msg).toMatch(/recurring\[0\]\.timezone: expected an IANA time zone .* got "Mars\/Olympus"/);
    expect(msg).toMatch(/recurring\[1\]\.name: "a" is used twice/);
    expect(msg).toMatch(/recurring\[1\]\.stream: /);
    expect(msg).toMatch(/recurring\[1\]\.message\.type: /);
    expect(() => resolveConfig({ recurring: {} })).toThrow(/recurring: expected an array/);
  });

  it('refuses at load a stream, type or data that every delivery would have refused', () => {
    let err: unknown;
    try {
      resolveConfig({
        recurring: [
          { name: 'a', cron: '* * * * *', stream: 'x'.repeat(501), message: { type: 't', data: {} } },
          { name: 'b', cron: '* * * * *', stream: 's-\u007f', message: { type: 'bad type', data: {} } },
          { name: 'c', cron: '* * * * *', stream: 's-1', message: { type: 't', data: [1] } },
          {
            name: 'd',
            cron: '* * * * *',
            stream: 's-\ud800',
            message: { type: 't', data: { a: 'x\u0000' } },
          },
        ],
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/recurring\[0\]\.stream: expected a stream name .*1-500 characters/);
    expect(msg).toMatch(/recurring\[1\]\.stream: /);
    expect(msg).toMatch(/recurring\[1\]\.message\.type: Invalid message type "bad type"/);
    expect(msg).toMatch(/recurring\[2\]\.message\.data: .*must be a JSON object/);
    expect(msg).toMatch(/recurring\[3\]\.stream: /);
    expect(msg).toMatch(/recurring\[3\]\.message\.data: .*NUL character/);
  });
});

describe('recurring delivery', () => {
  it('appends a due occurrence exactly once when many deliverers race for it', async () => {
    const r = recurring({ name: 'race', stream: 'ticks-race', cron: '0 0 * * *' });
    await syncRecurringMessages(db.store, [r]);
    const occurrence = new Date(Date.now() - 60_000);
    await setNext('race', occurrence);
    const results = await Promise.all(Array.from({ length: 8 }, () => deliverDueRecurring(db.store, [r])));
    expect(results.reduce((n, x) => n + x.delivered, 0)).toBe(1);
    const msgs = await db.store.readStream('ticks-race');
    expect(msgs.map((m) => m.id)).toEqual([occurrenceId('race', occurrence)]);
    expect(msgs[0]!.metadata).toMatchObject({ recurring: 'race', occurrence: occurrence.toISOString() });
    // Missed occurrences are coalesced: the next one is in the future, after now.
    const [row] = (await listRecurringMessages(db.store)).filter((x) => x.name === 'race');
    expect(row!.nextOccurrenceAt.getTime()).toBeGreaterThan(Date.now());
    expect(row!.lastOccurrenceAt).toEqual(occurrence);
  });

  it('keeps the stored next occurrence on a re-sync and restarts it when the cron changes', async () => {
    const r = recurring({ name: 'sync', stream: 'ticks-sync', cron: '0 0 1 1 *' });
    await syncRecurringMessages(db.store, [r]);
    const far = new Date('2030-06-01T00:00:00Z');
    await setNext('sync', far);
    await syncRecurringMessages(db.store, [r]);
    const get = async () => (await listRecurringMessages(db.store)).find((x) => x.name === 'sync')!;
    expect((await get()).nextOccurrenceAt).toEqual(far);
    await syncRecurringMessages(db.store, [{ ...r, cron: '0 12 * * *', timezone: 'Europe/Berlin' }]);
    const changed = await get();
    expect(changed.cron).toBe('0 12 * * *');
    expect(changed.timezone).toBe('Europe/Berlin');
    expect(changed.nextOccurrenceAt.getTime()).toBeLessThan(Date.now() + 25 * 3600_000);
    // Noon in Berlin is 10:00 or 11:00 UTC.
    expect([10, 11]).toContain(changed.nextOccurrenceAt.getUTCHours());
  });

  it('two worker loops append each occurrence of an every-second schedule once', async () => {
    const r = recurring({ name: 'every-second', stream: 'ticks-loop' });
    const ac = new AbortController();
    const metrics = [new BeckettMetrics(), new BeckettMetrics()];
    const errors: unknown[] = [];
    const loops = metrics.map((m) =>
      createSchedulerService(db.store, {
        recurring: [r],
        maxWaitMs: 60_000,
        metrics: m,
        onError: (e) => errors.push(e),
      })(ac.signal),
    );
    await new Promise((res) => setTimeout(res, 3500));
    ac.abort();
    await Promise.all(loops);
    expect(errors).toEqual([]);
    const msgs = await db.store.readStream('ticks-loop');
    const occurrences = msgs.map((m) => m.metadata.occurrence as string);
    expect(msgs.length).toBeGreaterThanOrEqual(2);
    expect(new Set(occurrences).size).toBe(msgs.length);
    expect(new Set(msgs.map((m) => m.id)).size).toBe(msgs.length);
    // Whole seconds, in order.
    for (const o of occurrences) expect(o).toMatch(/\.000Z$/);
    expect([...occurrences].sort()).toEqual(occurrences);
    const text = (await metrics[0]!.prometheus()) + (await metrics[1]!.prometheus());
    const delivered = [
      ...text.matchAll(/beckett_recurring_delivered_total\{name="every-second"\} (\d+)/g),
    ].reduce((n, m) => n + Number(m[1]), 0);
    expect(delivered).toBe(msgs.length);
  });
});

describe('a schedule that never fires again', () => {
  it('is parked at infinity without breaking the delivery loop', async () => {
    // 30 February never comes: croner finds no next run and the row parks at infinity.
    const r = recurring({ name: 'last-one', stream: 'ticks-last', cron: '0 0 0 1 1 *' });
    await syncRecurringMessages(db.store, [r]);
    await setNext('last-one', new Date(Date.now() - 1000));
    await db.pool.query(
      `UPDATE "${db.schema}".recurring_messages SET cron = '0 0 0 30 2 *' WHERE name = 'last-one'`,
    );
    const first = await deliverDueRecurring(db.store, [r]);
    expect(first.delivered).toBe(1);
    const [row] = (await listRecurringMessages(db.store)).filter((x) => x.name === 'last-one');
    expect(Number.isFinite(new Date(row!.nextOccurrenceAt).getTime())).toBe(false);
    // The loop still runs (its next-due query must cope with infinity) and delivers other messages.
    const ac = new AbortController();
    const errors: unknown[] = [];
    const loop = createSchedulerService(db.store, {
      recurring: [r],
      maxWaitMs: 200,
      onError: (e) => errors.push(e),
    })(ac.signal);
    await new Promise((res) => setTimeout(res, 500));
    ac.abort();
    await loop;
    expect(errors).toEqual([]);
    expect((await db.store.readStream('ticks-last')).length).toBe(1);
  });
});
