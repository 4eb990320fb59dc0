import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stopEmbedded } from '../../src/db/embedded.js';
import { es } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'beckett-embedded-'));
afterAll(async () => {
  await stopEmbedded(dir);
});

describe('embedded PostgreSQL (no database URL anywhere)', () => {
  it('is started once on demand and shared by concurrent es processes', async () => {
    const env = { DATABASE_URL: undefined };
    const runs = await Promise.all(
      Array.from({ length: 3 }, () => es(['migrate'], { cwd: dir, env, timeout: 120_000 })),
    );
    for (const r of runs) expect(r.exitCode, r.stderr).toBe(0);
    // Said once, by the process that started the server; not by every command.
    const notices = runs.flatMap((r) =>
      r.stderr.split('\n').filter((l) => l.startsWith('es: started the embedded PostgreSQL')),
    );
    expect(notices, runs.map((r) => r.stderr).join('\n')).toHaveLength(1);
    expect(notices[0]).toContain('set DATABASE_URL or --database-url to use your own server');
    // Concurrent migrators take turns file by file (a transaction lock per file): between them
    // every migration is applied exactly once.
    const applied = runs.flatMap((r) => r.stdout.split('\n').filter((l) => l.startsWith('applied ')));
    const status = await es(['migrate', '--status'], { cwd: dir, env });
    expect(status.stdout).not.toContain('pending');
    const total = status.stdout.split('\n').filter((l) => l.startsWith('applied ')).length;
    expect(total).toBeGreaterThan(0);
    expect(new Set(applied).size).toBe(applied.length);
    expect(applied).toHaveLength(total);

    const append = await es(['append', 'order-1', 'order_item_added', '{"orderId":"1"}'], { cwd: dir, env });
    expect(append.exitCode, append.stderr).toBe(0);
    expect(append.stderr).not.toContain('embedded PostgreSQL');
    const read = await es(['read', 'order-1', '--json'], { cwd: dir, env });
    expect(JSON.parse(read.stdout)).toMatchObject({ type: 'order_item_added', data: { orderId: '1' } });

    const db = await es(['db', 'status', '--json'], { cwd: dir, env });
    const s = JSON.parse(db.stdout);
    expect(s).toMatchObject({ running: true, initialised: true });
    expect(s.url).toContain(':***@');

    const stop = await es(['db', 'stop'], { cwd: dir, env });
    expect(stop.stdout).toContain('stopped the embedded PostgreSQL');
    const after = await es(['db', 'status'], { cwd: dir, env });
    expect(after.stdout).toMatch(/^stopped/);
    // Data survives a stop: the next command starts the server again and reads it.
    const again = await es(['read', 'order-1', '--json'], { cwd: dir, env });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/^es: started the embedded PostgreSQL/);
    expect(again.stdout).toContain('order_item_added');
  });
});
