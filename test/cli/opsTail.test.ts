import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oldestOpenTransaction } from '../../src/store/readLog.js';
import { ES_BIN, es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
let env: Record<string, string>;
beforeAll(async () => {
  db = await setupDb('ops_tail');
  env = { DATABASE_URL: db.url };
});
afterAll(async () => db?.close());

/** Spawn a following `es tail` and collect its stdout lines as they come. */
function spawnTail(args: string[]) {
  const child = execa('node', [ES_BIN, '--schema', db.schema, 'tail', ...args], {
    reject: false,
    env: { NO_COLOR: '1', ...env },
    timeout: 60_000,
  });
  const lines: string[] = [];
  const stderr = { text: '' };
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr.text += chunk.toString();
  });
  let buffer = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    lines.push(...parts);
  });
  return { child, lines, stderr };
}

// Generous: gap-safe reads wait for every older transaction in the cluster (other test files hold some).
async function until(check: () => boolean, what: string, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function untilAsync(
  check: () => Promise<boolean>,
  what: string,
  ms = 90_000,
  explain?: () => Promise<string>,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`Timed out waiting for ${what}${explain ? `: ${await explain()}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('es tail', () => {
  it('prints a message committed after it started, as JSON, and exits 0 on Ctrl-C', {
    timeout: 120_000,
  }, async () => {
    const head = (await db.store.append('order-9', { type: 'placed', data: { n: 0 } })).globalPosition;
    // Start from the next position: whatever the start-up time, the next commit is the first line.
    const { child, lines, stderr } = spawnTail(['order', '--from', String(head + 1), '--json']);
    await until(() => stderr.text.includes('following category order'), 'the tail to start');
    await db.store.append('order-10', { type: 'paid', data: { amount: 5 } });
    await until(() => lines.length >= 1, 'the tailed message');
    const m = JSON.parse(lines[0]!);
    expect(m).toMatchObject({ streamName: 'order-10', streamPosition: 1, type: 'paid', data: { amount: 5 } });
    expect(m.globalPosition).toBe(head + 1);
    expect(Object.keys(m).sort()).toEqual(
      [
        'createdAt',
        'data',
        'globalPosition',
        'id',
        'metadata',
        'streamName',
        'streamPosition',
        'tags',
        'type',
      ].sort(),
    );
    child.kill('SIGINT');
    const r = await child;
    expect(r.exitCode).toBe(0);
    expect(lines).toHaveLength(1);
  });

  it('starts at the end by default: only messages committed after it started', {
    timeout: 120_000,
  }, async () => {
    await db.store.append('cart-1', { type: 'old', data: {} });
    const { child, lines } = spawnTail(['cart']);
    // Append until one shows up: the start-up time is unknown, the first line must still be new.
    let n = 0;
    const writer = setInterval(() => {
      n += 1;
      void db.store.append('cart-1', { type: 'new', data: { n } });
    }, 200);
    try {
      await until(() => lines.length >= 1, 'a new message');
    } finally {
      clearInterval(writer);
    }
    expect(lines[0]).toMatch(/^\s*\d+ \S+Z cart-1@\d+ new \{"n":\d+\}$/);
    expect(lines.join('\n')).not.toContain(' old ');
    child.kill('SIGINT');
    expect((await child).exitCode).toBe(0);
  });

  it('says "following" once its start is fixed: a message committed after that line is printed', {
    timeout: 120_000,
  }, async () => {
    // The start read (the stream's version) is held back by a lock on the log; a message commits
    // while it waits. Printed before the start was read, the line would promise a message the tail
    // then starts after (seen in CI: the tail printed nothing and ran into its timeout).
    const holder = await db.pool.connect();
    let child: ReturnType<typeof execa> | undefined;
    try {
      await holder.query('BEGIN');
      await holder.query(`LOCK TABLE "${db.schema}".messages IN ACCESS EXCLUSIVE MODE`);
      child = execa('node', [ES_BIN, '--schema', db.schema, 'tail', 'held-1', '--count', '1'], {
        reject: false,
        env: { NO_COLOR: '1', ...env },
        timeout: 90_000,
      });
      let err = '';
      child.stderr?.on('data', (c: Buffer) => {
        err += c.toString();
      });
      await untilAsync(async () => {
        const { rows } = await db.pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = 'beckett-cli' AND wait_event_type = 'Lock'
              AND query LIKE '%stream_name%'`,
        );
        return rows.length > 0;
      }, "the tail's start read to wait on the lock");
      expect(err).not.toContain('following');
      await db.store.withTransaction(holder).append('held-1', { type: 'before', data: {} });
      await holder.query('COMMIT');
      await until(() => err.includes('following stream held-1'), 'the following line');
      await db.store.append('held-1', { type: 'after', data: {} });
      const r = await child;
      expect(r.exitCode).toBe(0);
      expect(String(r.stdout).trim()).toMatch(/^\s*\d+ \S+Z held-1@2 after \{\}$/);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
      child?.kill('SIGINT');
    }
  });

  it('follows a single stream (a name with "-") and filters types with --no-follow', {
    timeout: 120_000,
  }, async () => {
    await db.store.append('shop-1', [
      { type: 'a', data: { i: 1 } },
      { type: 'b', data: { i: 2 } },
      { type: 'a', data: { i: 3 } },
    ]);
    const last = await db.store.append('shop-2', { type: 'a', data: { i: 4 } });
    // --no-follow prints what is final: wait until no older transaction in the cluster hides it.
    // (Compare by transaction, not by position: log order is by transaction id, and a concurrent
    // insert can hold a lower position with a higher transaction id.)
    await untilAsync(
      async () =>
        (
          await db.pool.query<{ final: boolean }>(
            `SELECT transaction_id < pg_snapshot_xmin(pg_current_snapshot()) AS final
               FROM "${db.schema}".messages WHERE global_position = $1`,
            [last.globalPosition],
          )
        ).rows[0]?.final === true,
      'the log to be readable',
      90_000,
      // If this times out, say which transaction held every gap-safe reader back.
      async () => JSON.stringify(await oldestOpenTransaction(db.pool)),
    );
    const r = await es(
      ['--schema', db.schema, 'tail', 'shop-1', '--from', '0', '--type', 'a', '--no-follow'],
      {
        env,
      },
    );
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const lines = String(r.stdout).trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/shop-1@1 a \{"i":1\}$/);
    expect(lines[1]).toMatch(/shop-1@3 a \{"i":3\}$/);
    const category = await es(
      ['--schema', db.schema, 'tail', 'shop', '--from', '0', '--no-follow', '--json'],
      {
        env,
      },
    );
    expect(
      String(category.stdout)
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).data.i),
    ).toEqual([1, 2, 3, 4]);
  });

  it('takes --from as an ISO time', { timeout: 120_000 }, async () => {
    await db.store.append('clock-1', { type: 'before', data: {} });
    const [before] = await db.store.readStream('clock-1');
    await new Promise((r) => setTimeout(r, 20));
    await db.store.append('clock-1', { type: 'after', data: {} });
    const [, after] = await db.store.readStream('clock-1');
    expect(after!.createdAt.getTime()).toBeGreaterThan(before!.createdAt.getTime());
    const r = await es(
      ['--schema', db.schema, 'tail', 'clock-1', '--from', after!.createdAt.toISOString(), '--no-follow'],
      { env },
    );
    expect(String(r.stdout)).toMatch(/clock-1@2 after/);
    expect(String(r.stdout)).not.toMatch(/before/);
  });

  it('exits 2 on a bad --from or stream name', async () => {
    const time = await es(['--schema', db.schema, 'tail', 'order', '--from', 'yesterday'], { env });
    expect(time.exitCode).toBe(2);
    expect(String(time.stderr)).toMatch(/--from must be a position \(an integer\) or a valid ISO 8601 time/);
    const name = await es(['--schema', db.schema, 'tail', 'bad name', '--no-follow'], { env });
    expect(name.exitCode).toBe(2);
    expect(String(name.stderr)).toMatch(/Invalid stream name/);
  });
});

describe('es tail when the server drops its connections', () => {
  it('reconnects and carries on from where it was', { timeout: 120_000 }, async () => {
    const head = (await db.store.append('ship-1', { type: 'made', data: { n: 0 } })).globalPosition;
    const { child, lines } = spawnTail(['ship', '--from', String(head), '--json']);
    await until(() => lines.length >= 1, 'the first message');
    // Only this file's tail: its queries name this file's schema.
    const killed = await db.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = 'beckett-cli' AND query LIKE '%' || $1 || '%'`,
      [db.schema],
    );
    expect(killed.rowCount).toBeGreaterThan(0);
    await db.store.append('ship-1', { type: 'sailed', data: { n: 1 } });
    await until(() => lines.length >= 2, 'the message after the reconnect');
    expect(lines.map((l) => JSON.parse(l).type)).toEqual(['made', 'sailed']);
    child.kill('SIGINT');
    expect((await child).exitCode).toBe(0);
  });
});
