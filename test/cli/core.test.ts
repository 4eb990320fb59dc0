import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { es } from '../helpers/cli.js';
import { databaseUrl, uniqueSchema } from '../helpers/db.js';

let schema: string;
let env: Record<string, string>;
let pool: pg.Pool;

beforeAll(async () => {
  schema = uniqueSchema('cli');
  env = { DATABASE_URL: databaseUrl() };
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 });
  const r = await es(['migrate', '--schema', schema], { env });
  expect(r.exitCode, r.stderr).toBe(0);
});
afterAll(async () => pool.end());

describe('es --help and usage errors', () => {
  it('prints help with examples and exit codes', async () => {
    const r = await es(['--help']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('Usage: es');
    expect(r.stdout).toMatch(/migrate/);
    expect(r.stdout).toMatch(/Exit codes:/);
  });

  it('exits 2 on an unknown command or a missing argument', async () => {
    const unknown = await es(['frobnicate']);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    const missing = await es(['append', 'order-1']);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/missing required argument/);
  });
});

describe('es migrate', () => {
  it('is a no-op the second time', async () => {
    const r = await es(['migrate', '--schema', schema], { env });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`Schema "${schema}" is up to date`);
  });

  it('refuses an unsafe schema name with exit 2', async () => {
    const r = await es(['migrate', '--schema', 'x"; DROP TABLE y; --'], { env });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('Invalid schema name');
  });

  it('exits 6 when the database is ahead of the code, and 5 when an applied file changed', async () => {
    const s = uniqueSchema('clim');
    expect((await es(['migrate', '--schema', s], { env })).exitCode).toBe(0);
    await pool.query(
      `INSERT INTO ${s}.schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')`,
    );
    const ahead = await es(['migrate', '--schema', s], { env });
    expect(ahead.exitCode).toBe(6);
    expect(ahead.stderr).toMatch(/9999/);
    expect(ahead.stderr).toMatch(/hint: .*Upgrade beckett/);
    await pool.query(`DELETE FROM ${s}.schema_migrations WHERE version = 9999`);
    await pool.query(`UPDATE ${s}.schema_migrations SET checksum = 'changed' WHERE version = 1`);
    const changed = await es(['migrate', '--schema', s], { env });
    expect(changed.exitCode).toBe(5);
    expect(changed.stderr).toMatch(/Migration 1 \(message_store\) was changed/);
  });

  it('exits 4 with the password masked when the database is unreachable', async () => {
    const r = await es(['migrate', '--database-url', 'postgres://app:hunter2@127.0.0.1:1/app']);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain('postgres://app:***@127.0.0.1:1/app');
    expect(r.stderr).not.toContain('hunter2');
  });
});

describe('es append and es read', () => {
  it('appends and reads back, human and JSON', async () => {
    const a = await es(
      [
        'append',
        'order-1',
        'order_item_added',
        '{"orderId":"1","productId":"p1","quantity":2}',
        '--schema',
        schema,
      ],
      { env },
    );
    expect(a.exitCode, a.stderr).toBe(0);
    expect(a.stdout).toMatch(/appended order_item_added to order-1 at version 1/);
    const b = await es(
      [
        'append',
        'order-1',
        'order_paid',
        '{}',
        '--expected-version',
        '1',
        '--json',
        '--metadata',
        '{"correlationId":"c-9"}',
        '--schema',
        schema,
      ],
      { env },
    );
    expect(b.exitCode, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout)).toMatchObject({ stream: 'order-1', streamVersion: 2 });

    const human = await es(['read', 'order-1', '--schema', schema], { env });
    expect(human.exitCode).toBe(0);
    const lines = human.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/order-1@1 order_item_added \{"orderId":"1".*\}/);

    const json = await es(['read', 'order-1', '--json', '--from', '2', '--schema', schema], { env });
    const objs = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(objs).toHaveLength(1);
    expect(objs[0]).toMatchObject({
      streamName: 'order-1',
      streamPosition: 2,
      type: 'order_paid',
      data: {},
      metadata: { correlationId: 'c-9' },
    });
    expect(typeof objs[0].globalPosition).toBe('number');
    expect(Date.parse(objs[0].createdAt)).not.toBeNaN();
  });

  it('exits 7 on a wrong expected version and writes nothing', async () => {
    await es(['append', 'order-2', 'x', '{}', '--schema', schema], { env });
    const r = await es(
      ['append', 'order-2', 'x', '{}', '--expected-version', 'no_stream', '--schema', schema],
      { env },
    );
    expect(r.exitCode).toBe(7);
    expect(r.stderr).toContain(
      'Wrong expected version for stream "order-2": expected no stream (version 0), actual version is 1',
    );
    const read = await es(['read', 'order-2', '--json', '--schema', schema], { env });
    expect(read.stdout.trim().split('\n')).toHaveLength(1);
  });

  it('exits 2 on invalid JSON, a bad stream name, a bad expected version or a bad --from', async () => {
    const badJson = await es(['append', 'order-3', 'x', '{oops', '--schema', schema], { env });
    expect(badJson.exitCode).toBe(2);
    expect(badJson.stderr).toContain('The message data is not valid JSON');
    const badStream = await es(['append', 'has space', 'x', '{}', '--schema', schema], { env });
    expect(badStream.exitCode).toBe(2);
    expect(badStream.stderr).toContain('Invalid stream name');
    const badVersion = await es(
      ['append', 'order-3', 'x', '{}', '--expected-version', 'latest', '--schema', schema],
      { env },
    );
    expect(badVersion.exitCode).toBe(2);
    const badFrom = await es(['read', 'order-3', '--from', 'yesterday', '--schema', schema], { env });
    expect(badFrom.exitCode).toBe(2);
    const read = await es(['read', 'order-3', '--json', '--schema', schema], { env });
    expect(read.stdout.trim()).toBe('');
  });

  it('exits 10 with the command to run when the schema is not migrated', async () => {
    const r = await es(['read', 'order-1', '--schema', 'never_migrated_here'], { env });
    expect(r.exitCode).toBe(10);
    expect(r.stderr).toContain('es migrate --schema never_migrated_here');
  });

  it('exits 9 when data fails the schema declared in the config, and 3 for an invalid config', async () => {
    // Inside the repository, so the config resolves zod from its node_modules as a user's project would.
    mkdirSync(new URL('../../.beckett/', import.meta.url), { recursive: true });
    const dir = mkdtempSync(fileURLToPath(new URL('../../.beckett/cli-config-', import.meta.url)));
    writeFileSync(
      join(dir, 'beckett.config.ts'),
      `import { defineConfig, message } from 'beckett';
import { z } from 'zod';
export default defineConfig({ messages: { order_item_added: message(z.object({ quantity: z.number().positive() })) } });`,
    );
    const config = join(dir, 'beckett.config.ts');
    const bad = await es(
      ['append', 'order-9', 'order_item_added', '{"quantity":-1}', '--config', config, '--schema', schema],
      { env },
    );
    expect(bad.exitCode).toBe(9);
    expect(bad.stderr).toMatch(/Message of type "order_item_added" is invalid: quantity:/);
    const good = await es(
      ['append', 'order-9', 'order_item_added', '{"quantity":1}', '--config', config, '--schema', schema],
      { env },
    );
    expect(good.exitCode, good.stderr).toBe(0);

    writeFileSync(
      join(dir, 'broken.config.ts'),
      `export default { groups: { G: { subscriptions: { s: { handler: 1 } } } } };`,
    );
    const invalid = await es(
      ['read', 'order-9', '--config', join(dir, 'broken.config.ts'), '--schema', schema],
      { env },
    );
    expect(invalid.exitCode).toBe(3);
    expect(invalid.stderr).toContain('groups.G.subscriptions.s.handler: expected a function, got 1');
  });
});

describe('es dump-migrations', () => {
  it('writes the SQL to stdout or a file without a database', async () => {
    const out = await es(['dump-migrations', '--schema', 'shop'], {
      env: { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/x' },
    });
    expect(out.exitCode).toBe(0);
    expect(out.stdout).toContain('CREATE TABLE "shop".messages');
    const file = join(mkdtempSync(join(tmpdir(), 'beckett-dump-')), '001.sql');
    const toFile = await es(['dump-migrations', '--schema', 'shop', file]);
    expect(toFile.exitCode).toBe(0);
    // execa strips the final newline of stdout.
    expect(readFileSync(file, 'utf8')).toBe(`${out.stdout}\n`);
    const bad = await es(['dump-migrations', '--schema', 'Shop']);
    expect(bad.exitCode).toBe(2);
  });
});
