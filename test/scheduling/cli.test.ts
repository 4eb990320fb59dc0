import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { scheduleMessage } from '../../src/scheduling/scheduleMessage.js';
import { es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('scli', { poolSize: 4 });
});
afterAll(async () => db.close());

const run = (args: string[]) => es(['--schema', db.schema, ...args], { env: { DATABASE_URL: db.url } });

describe('es schedule', () => {
  it('lists pending messages (table and JSON) and cancels one; an unknown id exits 8', async () => {
    const empty = await run(['schedule', 'list']);
    expect(empty.exitCode).toBe(0);
    expect(empty.stdout).toContain('No scheduled messages pending.');

    const at = new Date(Date.now() + 3_600_000);
    const id = await scheduleMessage(
      db.store,
      'order-9',
      { type: 'payment_timed_out', data: { orderId: '9' } },
      { at },
    );
    const table = await run(['schedule', 'list']);
    expect(table.stdout).toMatch(
      new RegExp(`${id}\\s+${at.toISOString()}\\s+order-9\\s+payment_timed_out\\s+0`),
    );

    const json = await run(['schedule', 'list', '--json', '--stream', 'order-9']);
    expect(JSON.parse(String(json.stdout))).toMatchObject({
      kind: 'scheduled',
      id,
      stream: 'order-9',
      type: 'payment_timed_out',
      deliverAt: at.toISOString(),
      data: { orderId: '9' },
      attempts: 0,
    });

    const cancelled = await run(['schedule', 'cancel', id]);
    expect(cancelled.exitCode).toBe(0);
    expect(cancelled.stdout).toContain(`Cancelled scheduled message ${id}.`);
    const again = await run(['schedule', 'cancel', id]);
    expect(again.exitCode).toBe(ExitCode.notFound);
    expect(again.stderr).toMatch(/No pending scheduled message with id/);
    expect(again.stderr).toMatch(/hint: List pending messages with: es schedule list/);
    const bad = await run(['schedule', 'cancel', 'not-a-uuid']);
    expect(bad.exitCode).toBe(ExitCode.usage);
  });

  it('exits 10 on a schema that is not migrated', async () => {
    const r = await es(['--schema', 'never_migrated_sched', 'schedule', 'list'], {
      env: { DATABASE_URL: db.url },
    });
    expect(r.exitCode).toBe(ExitCode.notMigrated);
  });
});
