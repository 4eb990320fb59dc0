import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
let env: Record<string, string>;
beforeAll(async () => {
  db = await setupDb('tail_target');
  env = { DATABASE_URL: db.url };
  await db.store.append('order-1', [
    { type: 'order_placed', data: { n: 1 } },
    { type: 'order_item_added', data: { n: 2 } },
  ]);
  await db.store.append('order-2', { type: 'order_placed', data: { n: 3 } });
});
afterAll(async () => db?.close());

const tail = (args: string[]) => es(['--schema', db.schema, 'tail', ...args], { env, timeout: 90_000 });

describe('es tail: what is followed', () => {
  it('says what it follows, that "orders" holds nothing yet, and suggests the category "order"', async () => {
    const r = await tail(['orders', '--from', '0', '--exit-at-end']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('following category orders (streams orders-*), from global position 0');
    expect(r.stderr).toContain('no messages in category orders yet; the closest existing category is order');
    // The note on the target comes after the line saying what is followed, whichever is known first.
    expect(r.stderr.indexOf('following')).toBeLessThan(r.stderr.indexOf('no messages'));
  });

  it('accepts order-* as the category and exits after --count messages while following', async () => {
    const r = await tail(['order-*', '--from', '0', '--count', '2', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((m) => m.data.n)).toEqual([1, 2]);
    expect(r.stderr).toContain('following category order (streams order-*)');
    expect(r.stderr).not.toContain('no messages');
  });

  it('prints what is there and exits with --exit-at-end', async () => {
    const r = await tail(['order', '--from', '0', '--exit-at-end']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(3);
    expect(r.stderr).not.toContain('Ctrl-C');
  });

  it('suggests the closest stream of the category for an unknown stream', async () => {
    const r = await tail(['order-3', '--exit-at-end']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain('following stream order-3, new messages only');
    expect(r.stderr).toMatch(/no messages in stream order-3 yet; the closest existing stream is order-[12]/);
    expect(r.stderr.indexOf('following')).toBeLessThan(r.stderr.indexOf('no messages'));
  });
});
