import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Worker } from '../../src/subscriptions/workerRuntime.js';
import { es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from '../operations/helpers.js';

let db: TestDb;
let env: Record<string, string>;
let worker: Worker;
const run = (...args: string[]) => es(['--schema', db.schema, ...args], { env });
const out = (r: { stdout?: unknown }) => String(r.stdout ?? '');
const err = (r: { stderr?: unknown }) => String(r.stderr ?? '');

beforeAll(async () => {
  db = await setupDb('ops_cli');
  env = { DATABASE_URL: db.url };
  // G/flaky fails (for good: maxRetries 0) on every message with data.fail; G/steady never fails.
  const config = opsConfig(db.schema, {
    flaky: {
      category: 'order',
      maxRetries: 0,
      handler: (m) => {
        if ((m.data as { fail?: boolean }).fail) throw new Error(`cannot handle ${m.streamName}`);
      },
    },
    steady: { category: 'order', handler: () => undefined },
  });
  await db.store.append('order-1', [
    { type: 'placed', data: {} },
    { type: 'paid', data: { fail: true } },
    { type: 'shipped', data: {} },
  ]);
  await db.store.append('order-2', { type: 'placed', data: { fail: true } });
  await db.store.append('order-3', { type: 'placed', data: {} });
  worker = startWorker(db, config);
  await worker.start();
  await until(async () => (await checkpoint(db, 'flaky', 'order-2'))?.status === 'failed', 'order-2 to fail');
  await until(async () => (await checkpoint(db, 'flaky', 'order-1'))?.status === 'failed', 'order-1 to fail');
  await steadyCaughtUp();
});

/** G/steady has handled every message (handlers run before positions are written). */
async function steadyCaughtUp(): Promise<void> {
  for (const [stream, end] of [
    ['order-1', 3],
    ['order-2', 1],
    ['order-3', 1],
  ] as const)
    await until(
      async () => (await checkpoint(db, 'steady', stream))?.stream_position === end,
      `steady ${stream}`,
    );
}
afterAll(async () => {
  await worker?.stop();
  await db?.close();
});

describe('every ops command has --help with examples', () => {
  it.each([
    ['tail'],
    ['replay'],
    ['checkpoints'],
    ['retry'],
    ['skip'],
    ['subscriptions'],
    ['retention', 'apply'],
    ['lag'],
    ['init'],
  ])('es %s --help', async (...cmd) => {
    const r = await es([...cmd, '--help']);
    expect(r.exitCode).toBe(0);
    expect(out(r)).toMatch(/Examples:\n {2}\$ es /);
  });
});

describe('es checkpoints', () => {
  it('lists failing checkpoints first with id, position/version, attempts and the error', async () => {
    const r = await run('checkpoints');
    expect(r.exitCode, err(r)).toBe(0);
    const lines = out(r).trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+STREAM\s+POS\/VER\s+STATUS\s+ATTEMPTS\s+NEXT ATTEMPT\s+LAST ERROR$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['G/flaky/order-1', 'G/flaky/order-2']);
    expect(lines[1]).toMatch(
      /^G\/flaky\/order-1\s+order-1\s+1\/3\s+failed\s+1\s+never \(failed\)\s+Error: cannot handle order-1$/,
    );
  });

  it('prints one JSON object per line with --json, filtered by --status and --subscription', async () => {
    const r = await run(
      'checkpoints',
      '--group',
      'G',
      '--subscription',
      'flaky',
      '--status',
      'failed',
      '--json',
    );
    expect(r.exitCode, err(r)).toBe(0);
    const rows = out(r)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows.map((c) => c.id)).toEqual(['G/flaky/order-1', 'G/flaky/order-2']);
    expect(rows[1]).toMatchObject({
      group: 'G',
      subscription: 'flaky',
      stream: 'order-2',
      position: 0,
      version: 1,
      status: 'failed',
      attempts: 1,
      lastError: { message: 'cannot handle order-2' },
    });
    const all = await run('checkpoints', '--all', '--json', '--subscription', 'steady');
    expect(out(all).trim().split('\n')).toHaveLength(3);
  });

  it('exits 8 naming the known groups and subscriptions, 2 on a bad status', async () => {
    const group = await run('checkpoints', '--group', 'Nope');
    expect(group.exitCode).toBe(8);
    expect(err(group)).toMatch(/Unknown group "Nope".*Known groups: G\./);
    const sub = await run('checkpoints', '--group', 'G', '--subscription', 'nope');
    expect(sub.exitCode).toBe(8);
    expect(err(sub)).toMatch(/Known subscriptions of G: flaky, steady/);
    const alone = await run('checkpoints', '--subscription', 'nope');
    expect(alone.exitCode).toBe(8);
    expect(err(alone)).toMatch(/Known subscriptions: G\/flaky, G\/steady\./);
    const status = await run('checkpoints', '--status', 'broken');
    expect(status.exitCode).toBe(2);
    expect(err(status)).toMatch(/--status must be retry, failed or active/);
  });
});

describe('es retry and es skip', () => {
  it('skip moves past the failing message; the worker then handles the rest of the stream', async () => {
    const r = await run('skip', 'G/flaky/order-1');
    expect(r.exitCode, err(r)).toBe(0);
    expect(out(r).trim()).toBe(
      'skipped G/flaky/order-1 message 2 (paid) (was failed after 1 attempt: cannot handle order-1)',
    );
    await until(
      async () => (await checkpoint(db, 'flaky', 'order-1'))?.stream_position === 3,
      'order-1 done',
    );
    expect(await checkpoint(db, 'flaky', 'order-1')).toMatchObject({ status: 'active', attempts: 0 });
  });

  it('retry puts a failed checkpoint back to work (it fails again here: the handler still throws)', async () => {
    const r = await run('retry', 'G/flaky/order-2', '--json');
    expect(r.exitCode, err(r)).toBe(0);
    const result = JSON.parse(out(r));
    expect(result.changed).toHaveLength(1);
    expect(result.changed[0]).toMatchObject({ id: 'G/flaky/order-2', wasStatus: 'failed', wasAttempts: 1 });
    // The worker attempts it again at once; with maxRetries 0 it is failed again, attempts 1.
    await until(async () => {
      const c = await checkpoint(db, 'flaky', 'order-2');
      return c?.status === 'failed' && c.attempts === 1;
    }, 'the retried attempt');
  });

  it('retry --all retries every failed checkpoint matching the filters', async () => {
    const r = await run('retry', '--all', '--group', 'G', '--status', 'failed');
    expect(r.exitCode, err(r)).toBe(0);
    expect(out(r)).toMatch(
      /^retried G\/flaky\/order-2 at position 1 \(was failed after 1 attempt: cannot handle order-2\)$/m,
    );
  });

  it('says what it did not change, and exits 8 for unknown ids and 2 without ids', async () => {
    const healthy = await run('skip', 'G/steady/order-1');
    expect(healthy.exitCode).toBe(0);
    expect(err(healthy)).toMatch(/G\/steady\/order-1 is not failing: nothing to skip/);
    const missing = await run('retry', 'G/steady/order-404');
    expect(missing.exitCode).toBe(8);
    expect(err(missing)).toMatch(/No checkpoint G\/steady\/order-404/);
    const none = await run('retry');
    expect(none.exitCode).toBe(2);
    expect(err(none)).toMatch(/give checkpoint ids or --all/);
    const bad = await run('skip', 'not-an-id');
    expect(bad.exitCode).toBe(2);
    expect(err(bad)).toMatch(/expected group\/subscription\/stream/);
  });
});

describe('es subscriptions', () => {
  it('lists status and lag, as a table and as JSON', async () => {
    const r = await run('subscriptions');
    expect(r.exitCode, err(r)).toBe(0);
    const lines = out(r).trim().split('\n');
    expect(lines[0]).toMatch(
      /^GROUP\s+SUBSCRIPTION\s+STATUS\s+LAG\s+OLDEST\s+RETRY\s+FAILED\s+READ\s+WORKERS$/,
    );
    // Caught up reads as such, not as a position that might look stuck.
    expect(lines[2]).toMatch(/^G\s+steady\s+active\s+0\s+-\s+0\s+0\s+caught up\s+1$/);
    const json = await run('subscriptions', 'list', '--json');
    const rows = out(json)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows.map((s) => s.name)).toEqual(['flaky', 'steady']);
    expect(rows[1]).toMatchObject({
      group: 'G',
      status: 'active',
      lag: 0,
      retry: 0,
      failed: 0,
      logPosition: 5,
    });
  });

  it('pauses and resumes, saying when nothing changed', async () => {
    const paused = await run('subscriptions', 'pause', 'G', 'steady');
    expect(out(paused).trim()).toBe('paused G/steady');
    const again = await run('subscriptions', 'pause', 'G', 'steady');
    expect(out(again).trim()).toBe('G/steady unchanged: its status is paused');
    const { rows } = await db.pool.query(
      `SELECT status FROM "${db.schema}".subscriptions WHERE group_name = 'G' AND name = 'steady'`,
    );
    expect(rows[0].status).toBe('paused');
    const resumed = await run('subscriptions', 'resume', 'G', 'steady', '--json');
    expect(JSON.parse(out(resumed))).toEqual({
      group: 'G',
      subscription: 'steady',
      changed: true,
      status: 'active',
    });
    const unknown = await run('subscriptions', 'pause', 'G', 'nope');
    expect(unknown.exitCode).toBe(8);
  });

  it('reset needs --yes, then starts the subscription over', async () => {
    const refused = await run('subscriptions', 'reset', 'G', 'steady');
    expect(refused.exitCode).toBe(2);
    expect(err(refused)).toMatch(/Add --yes to confirm/);
    await run('subscriptions', 'pause', 'G', 'steady');
    const r = await run('subscriptions', 'reset', 'G', 'steady', '--yes');
    expect(r.exitCode, err(r)).toBe(0);
    expect(out(r)).toMatch(
      /reset G\/steady: deleted 3 checkpoint\(s\); it reads the log again from the beginning/,
    );
    await run('subscriptions', 'resume', 'G', 'steady');
    await steadyCaughtUp();
  });

  it('forget needs --yes, refuses a running subscription (exit 7), and deletes an unknown one', async () => {
    const refused = await run('subscriptions', 'forget', 'G', 'steady');
    expect(refused.exitCode).toBe(2);
    expect(err(refused)).toMatch(/Add --yes to confirm/);
    const running = await run('subscriptions', 'forget', 'G', 'steady', '--yes');
    expect(running.exitCode).toBe(7);
    expect(err(running)).toMatch(/G\/steady is run by 1 live worker\(s\): only an unknown subscription/);
    // One that no config declares any more and no worker runs, with two checkpoints left behind.
    await db.pool.query(
      `INSERT INTO "${db.schema}".subscriptions (group_name, name, status, fingerprint) VALUES ('G', 'retired', 'unknown', 'f');
       INSERT INTO "${db.schema}".checkpoints (group_name, subscription_name, stream_name) VALUES ('G', 'retired', 'a-1'), ('G', 'retired', 'a-2')`,
    );
    const r = await run('subscriptions', 'forget', 'G', 'retired', '--yes');
    expect(r.exitCode, err(r)).toBe(0);
    expect(out(r)).toMatch(/forgot G\/retired: deleted it and 2 checkpoint\(s\)/);
    const left = await db.pool.query(
      `SELECT count(*)::int AS n FROM "${db.schema}".checkpoints WHERE subscription_name = 'retired'`,
    );
    expect(left.rows[0].n).toBe(0);
    expect((await run('subscriptions', 'forget', 'G', 'retired', '--yes')).exitCode).toBe(8);
  });
});

describe('es replay', () => {
  it('--dry-run counts streams and messages; then replays and --wait waits until done', async () => {
    const dry = await run('replay', '--group', 'G', '--subscription', 'steady', '--from', '4', '--dry-run');
    expect(dry.exitCode, err(dry)).toBe(0);
    expect(out(dry).trim()).toBe(
      'would replay 2 messages in 2 streams of G/steady; nothing changed (dry run)',
    );
    expect((await checkpoint(db, 'steady', 'order-2'))?.stream_position).toBe(1);
    const r = await run(
      'replay',
      '--group',
      'G',
      '--subscription',
      'steady',
      '--from',
      '4',
      '--wait',
      '--json',
    );
    expect(r.exitCode, err(r)).toBe(0);
    const result = JSON.parse(out(r));
    expect(result).toMatchObject({
      messages: 2,
      redelivered: 2,
      busy: [],
      progress: { finished: true, done: 2 },
    });
    expect(result.streams.map((s: { stream: string }) => s.stream)).toEqual(['order-2', 'order-3']);
  });

  it('--wait counts the messages of a bounded range, not where the checkpoint returns to', async () => {
    // order-1 is at 3; its first message (global position 1) is handled again, then it returns to 3.
    const r = await run(
      'replay',
      '--group',
      'G',
      '--subscription',
      'steady',
      '--from',
      '1',
      '--to',
      '1',
      '--wait',
    );
    expect(r.exitCode, err(r)).toBe(0);
    expect(out(r).trim().split('\n')).toEqual([
      'replaying 1 message in 1 stream of G/steady',
      'replay of G/steady done: 1 message handled again',
    ]);
    await steadyCaughtUp();
  });

  it('exits 8 naming the known subscriptions, 2 on a bad time', async () => {
    const unknown = await run('replay', '--group', 'G', '--subscription', 'nope');
    expect(unknown.exitCode).toBe(8);
    expect(err(unknown)).toMatch(
      /Unknown subscription "nope" in group "G"\. Known subscriptions of G: flaky, steady\./,
    );
    const time = await run('replay', '--group', 'G', '--subscription', 'steady', '--from', 'last tuesday');
    expect(time.exitCode).toBe(2);
    expect(err(time)).toMatch(/--from must be a position/);
    const missing = await run('replay', '--group', 'G');
    expect(missing.exitCode).toBe(2);
  });
});

describe('es lag', () => {
  it('prints one JSON snapshot when not on a terminal', async () => {
    // Another test file's open transaction on the same server can hold the readable end back for a
    // moment: ask again until it reaches the head (it must, within the deadline).
    let r = await run('lag');
    for (let i = 0; i < 30 && r.exitCode === 0 && JSON.parse(out(r)).readable !== 5; i++) {
      await new Promise((res) => setTimeout(res, 500));
      r = await run('lag');
    }
    expect(r.exitCode, err(r)).toBe(0);
    const snap = JSON.parse(out(r));
    expect(snap).toMatchObject({ schema: db.schema, head: 5, readable: 5 });
    expect(snap.groups).toHaveLength(1);
    expect(snap.groups[0]).toMatchObject({ name: 'G', liveWorkers: 1, readerPosition: 5 });
    expect(snap.groups[0].subscriptions.map((s: { name: string }) => s.name)).toEqual(['flaky', 'steady']);
    expect(Object.keys(snap.groups[0].subscriptions[0]).sort()).toEqual(
      [
        'behind',
        'failed',
        'group',
        'lag',
        'logPosition',
        'name',
        'oldestUnprocessedAgeSeconds',
        'processed',
        'retry',
        'status',
        'streamsBehind',
        'throughput',
        'undispatched',
        'undispatchedCapped',
        'checkpointsCapped',
      ].sort(),
    );
    const unknown = await run('lag', '--group', 'Nope');
    expect(unknown.exitCode).toBe(8);
  });

  it('names the backend of a long-open transaction holding readers back', async () => {
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query("SELECT pg_current_xact_id(), 'held open by the ops test'");
    const pid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    try {
      await new Promise((r) => setTimeout(r, 5200));
      const snap = JSON.parse(out(await run('lag', '--json')));
      expect(snap.blocking).toMatchObject({ pid, state: 'idle in transaction' });
      expect(snap.blocking.ageSeconds).toBeGreaterThanOrEqual(5);
    } finally {
      await holder.query('ROLLBACK');
    }
  });
});

describe('es retention apply', () => {
  it('deletes by policy, keeps what subscriptions have not processed, and prints counts per policy', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'es-retention-'));
    writeFileSync(
      join(dir, 'beckett.config.ts'),
      `export default { groups: { G: { subscriptions: {
         flaky: { category: 'order', handler: () => {} }, steady: { category: 'order', handler: () => {} } } } },
       retention: { policies: [{ category: 'order', maxCount: 1 }, { name: 'logs', stream: 'log-*', maxCount: 1 }] } };\n`,
    );
    await db.store.append(
      'log-1',
      [1, 2, 3].map((i) => ({ type: 'line', data: { i } })),
    );
    // order-2 is failed for G/flaky at its first message: its next two stay until flaky gets there.
    await db.store.append('order-2', [
      { type: 'paid', data: {} },
      { type: 'shipped', data: {} },
    ]);
    await until(async () => (await checkpoint(db, 'steady', 'order-2'))?.stream_position === 3, 'steady');
    const cfg = ['--config', join(dir, 'beckett.config.ts'), '--schema', db.schema];
    const dry = await es([...cfg, 'retention', 'apply', '--dry-run', '--json'], { env });
    expect(dry.exitCode, err(dry)).toBe(0);
    const planned = JSON.parse(out(dry));
    // order-1: 1 and 2 go (3 is its newest); order-2: 1 and 2 are kept for G/flaky (3 is its newest).
    expect(planned.policies).toEqual([
      { policy: 'order', deleted: 2, protected: 2, heldBy: ['G/flaky'], batches: 0 },
      { policy: 'logs', deleted: 2, protected: 0, heldBy: [], batches: 0 },
    ]);
    const r = await es([...cfg, 'retention', 'apply'], { env });
    expect(r.exitCode, err(r)).toBe(0);
    expect(out(r)).toMatch(
      /^POLICY\s+DELETED\s+KEPT \(UNPROCESSED\)\s+HELD BY\norder\s+2\s+2\s+G\/flaky\nlogs\s+2\s+0\s+-\n/,
    );
    expect(out(r)).toMatch(
      /2 message\(s\) past their policy were kept: subscriptions have not processed them yet/,
    );
    expect((await db.store.readStream('order-1')).map((m) => m.streamPosition)).toEqual([3]);
    expect((await db.store.readStream('order-2')).map((m) => m.streamPosition)).toEqual([1, 2, 3]);
    expect((await db.store.readStream('log-1')).map((m) => m.streamPosition)).toEqual([3]);
    const unknown = await es([...cfg, 'retention', 'apply', '--policy', 'nope'], { env });
    expect(unknown.exitCode).toBe(8);
    expect(err(unknown)).toMatch(/Known policies: order, logs/);
  });

  it('exits 3 without policies and names the key of an invalid one', async () => {
    const none = await run('retention', 'apply');
    expect(none.exitCode).toBe(3);
    expect(err(none)).toMatch(/No retention policies/);
    const dir = mkdtempSync(join(tmpdir(), 'es-retention-'));
    writeFileSync(
      join(dir, 'beckett.config.ts'),
      `export default { retention: { policies: [{ category: 'order', maxAge: 'later' }] } };\n`,
    );
    const bad = await es(['--config', join(dir, 'beckett.config.ts'), 'retention', 'apply'], { env });
    expect(bad.exitCode).toBe(3);
    expect(err(bad)).toMatch(/retention\.policies\[0\]\.maxAge: expected milliseconds or a duration/);
  });
});

describe('es init', () => {
  it('scaffolds a config that loads, refuses to overwrite (exit 2) unless --force', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'es-init-'));
    const r = await es(['init'], { cwd: dir });
    expect(r.exitCode, err(r)).toBe(0);
    expect(out(r)).toMatch(/^created beckett\.config\.ts\ncreated handlers\/greet\.ts\n/);
    expect(readFileSync(join(dir, 'beckett.config.ts'), 'utf8')).toMatch(/from 'beckett'/);
    const again = await es(['init'], { cwd: dir });
    expect(again.exitCode).toBe(2);
    expect(err(again)).toMatch(/Refusing to overwrite beckett\.config\.ts, handlers\/greet\.ts/);
    expect(err(again)).toMatch(/hint: Run es init --force/);
    const forced = await es(['init', '--force', '--json'], { cwd: dir });
    expect(JSON.parse(out(forced))).toMatchObject({ files: ['beckett.config.ts', 'handlers/greet.ts'] });
    // The generated config (importing 'beckett' and its handler module) loads and validates.
    const loaded = await es(
      ['--config', 'beckett.config.ts', '--schema', db.schema, 'subscriptions', '--json'],
      {
        cwd: dir,
        env,
      },
    );
    expect(loaded.exitCode, err(loaded)).toBe(0);
    expect(out(loaded)).toContain('{"group":"Greetings","name":"greet","status":"not registered"}');
    const retention = await es(
      ['--config', 'beckett.config.ts', '--schema', db.schema, 'retention', 'apply', '--dry-run', '--json'],
      { cwd: dir, env },
    );
    expect(JSON.parse(out(retention)).policies[0]).toMatchObject({ policy: 'greeting', deleted: 0 });
  });
});

describe('bad input elsewhere', () => {
  it('an invalid JSON payload is refused with exit 2', async () => {
    const r = await run('append', 'order-1', 'placed', '{not json');
    expect(r.exitCode).toBe(2);
    expect(err(r)).toMatch(/is not valid JSON/);
  });
});
