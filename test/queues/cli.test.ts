import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
let config: string;
beforeAll(async () => {
  db = await setupDb('qcli', { poolSize: 4 });
  const dir = mkdtempSync(join(tmpdir(), 'beckett-qcli-'));
  config = join(dir, 'beckett.config.mjs');
  // `emails` fails every job whose data says so, and gives up after two deliveries.
  writeFileSync(
    config,
    `export default {
  database: { schema: '${db.schema}' },
  queues: {
    emails: {
      maxDeliveries: 2,
      backoff: { initialMs: 10, maxMs: 10 },
      handler: async (job) => {
        if (job.data.fail) throw new Error('mail server said no to ' + job.data.to);
      },
    },
  },
};
`,
  );
});
afterAll(async () => db.close());

const run = (args: string[], input?: string) =>
  es(['--config', config, ...args], {
    env: { DATABASE_URL: db.url },
    ...(input !== undefined ? { input } : {}),
  });

describe('es queue', () => {
  it('enqueues (argument and NDJSON), lists, peeks, runs a worker, lists dead letters, redrives and purges', async () => {
    const one = await run([
      'queue',
      'enqueue',
      'emails',
      '{"type":"welcome","data":{"to":"a@example.com"}}',
      '--json',
    ]);
    expect(one.exitCode, one.stderr).toBe(0);
    const { ids } = JSON.parse(one.stdout) as { ids: string[] };
    expect(ids).toHaveLength(1);

    const bulk = await run(
      ['queue', 'enqueue', 'emails'],
      [
        '{"type":"welcome","data":{"to":"b@example.com"}}',
        '',
        '{"type":"welcome","data":{"to":"bad@example.com","fail":true},"id":"01890000-0000-7000-8000-0000000000aa"}',
        '{"type":"welcome","data":{"to":"c@example.com"},"key":"customer-1","delay":0}',
      ].join('\n'),
    );
    expect(bulk.exitCode, bulk.stderr).toBe(0);
    expect(bulk.stdout).toContain('Enqueued 3 jobs to emails.');

    const bad = await run(['queue', 'enqueue', 'emails'], '{"type":"welcome","data":{}}\n{not json}\n');
    expect(bad.exitCode).toBe(ExitCode.usage);
    expect(bad.stderr).toContain('line 2 of stdin is not valid JSON');

    const list = await run(['queue', 'list', '--json']);
    expect(JSON.parse(list.stdout)).toMatchObject({ queue: 'emails', ready: 4, inFlight: 0, dead: 0 });
    const table = await run(['queue', 'list']);
    expect(table.stdout).toMatch(/QUEUE\s+READY\s+IN FLIGHT/);
    expect(table.stdout).toMatch(/emails\s+4\s+0\s+0\s+0\s+0/);

    const peek = await run(['queue', 'peek', 'emails', '--json', '--limit', '2']);
    const peeked = peek.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(peeked).toHaveLength(2);
    expect(peeked[0]).toMatchObject({ id: ids[0], state: 'ready', deliveries: 0 });

    // A worker handles what is ready and exits; the failing job is dead after two deliveries.
    const worker = await run(['worker', '--queue', 'emails', '--once']);
    expect(worker.exitCode, worker.stderr).toBe(0);
    expect(worker.stderr).toContain('mail server said no to bad@example.com');
    const dead = await run(['queue', 'dead', 'emails', '--json']);
    const letters = dead.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ id: '01890000-0000-7000-8000-0000000000aa', deliveries: 2 });
    expect(letters[0].errors.map((e: { message: string }) => e.message)).toEqual([
      'mail server said no to bad@example.com',
      'mail server said no to bad@example.com',
    ]);
    const deadTable = await run(['queue', 'dead', 'emails']);
    expect(deadTable.stdout).toMatch(/01890000-0000-7000-8000-0000000000aa\s+welcome\s+2/);

    const none = await run(['queue', 'redrive', 'emails', '01890000-0000-7000-8000-0000000000bb']);
    expect(none.exitCode).toBe(ExitCode.notFound);
    const noIds = await run(['queue', 'redrive', 'emails']);
    expect(noIds.exitCode).toBe(ExitCode.usage);
    const redrive = await run(['queue', 'redrive', 'emails', '--all']);
    expect(redrive.stdout).toContain('Redrove 1 dead letter(s) to emails.');
    const after = JSON.parse((await run(['queue', 'list', '--json'])).stdout);
    expect(after).toMatchObject({ ready: 1, dead: 0 });

    // Purge asks; without a terminal it needs --yes.
    const refused = await run(['queue', 'purge', 'emails'], '');
    expect(refused.exitCode).toBe(ExitCode.usage);
    expect(refused.stderr).toContain('--yes');
    const purged = await run(['queue', 'purge', 'emails', '--yes', '--json']);
    expect(JSON.parse(purged.stdout)).toEqual({ queue: 'emails', deleted: 1 });

    const badName = await run(['queue', 'peek', 'no such queue']);
    expect(badName.exitCode).toBe(ExitCode.usage);
    const unknownQueue = await run(['worker', '--queue', 'sms']);
    expect(unknownQueue.exitCode).toBe(ExitCode.notFound);
    expect(unknownQueue.stderr).toContain('Unknown queue "sms"');
    const neither = await run(['worker']);
    expect(neither.exitCode).toBe(ExitCode.usage);
    // About twenty `es` processes: slow to start on a loaded machine.
  }, 240_000);

  it('has help for every subcommand', async () => {
    for (const sub of ['list', 'peek', 'enqueue', 'dead', 'redrive', 'purge']) {
      const r = await es(['queue', sub, '--help']);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toContain('Examples:');
    }
  });
});
