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
    const notices = runs.map((r) =>
      r.stderr.split('\n').filter((l) => l.startsWith('es: using the embedded PostgreSQL')),
    );
    for (const n of notices) expect(n).toHaveLength(1);
    expect(runs.filter((r) => r.stderr.includes('just started'))).toHaveLength(1);
    const ports = new Set(runs.map((r) => /port (\d+)/.exec(r.stderr)?.[1]));
    expect(ports.size, runs.map((r) => r.stderr).join('\n')).toBe(1);
    expect(runs.filter((r) => r.stdout.includes('migrated:'))).toHaveLength(1);

    const append = await es(['append', 'order-1', 'order_item_added', '{"orderId":"1"}'], { cwd: dir, env });
    expect(append.exitCode, append.stderr).toBe(0);
    expect(append.stderr).toContain('set DATABASE_URL or --database-url to use your own server');
    const read = await es(['read', 'order-1', '--json'], { cwd: dir, env });
    expect(JSON.parse(read.stdout)).toMatchObject({ type: 'order_item_added', data: { orderId: '1' } });

    const status = await es(['db', 'status', '--json'], { cwd: dir, env });
    const s = JSON.parse(status.stdout);
    expect(s).toMatchObject({ running: true, initialised: true });
    expect(s.url).toContain(':***@');

    const stop = await es(['db', 'stop'], { cwd: dir, env });
    expect(stop.stdout).toContain('stopped the embedded PostgreSQL');
    const after = await es(['db', 'status'], { cwd: dir, env });
    expect(after.stdout).toMatch(/^stopped/);
    // Data survives a stop: the next command starts the server again and reads it.
    const again = await es(['read', 'order-1', '--json'], { cwd: dir, env });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toContain('order_item_added');
  });
});
