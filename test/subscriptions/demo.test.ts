import { describe, expect, it } from 'vitest';
import { es } from '../helpers/cli.js';
import { databaseUrl, uniqueSchema } from '../helpers/db.js';

describe('es demo', () => {
  it('migrates, appends orders, runs InventoryAllocation until every item is allocated, exits 0', async () => {
    const schema = uniqueSchema('demo');
    const r = await es(['demo', '--schema', schema, '--orders', '4'], {
      env: { DATABASE_URL: databaseUrl() },
    });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const out = String(r.stdout);
    expect(out.match(/^appended order_item_added/gm)?.length).toBe(8);
    expect(out.match(/^allocated inventory_allocated {2}inventory-p\d@\d+ \(global \d+\)/gm)?.length).toBe(8);
    expect(out).toContain('Done: 8 items allocated');
    // A second run adds new orders; the checkpoints keep earlier ones from being allocated twice.
    const again = await es(['demo', '--schema', schema, '--orders', '1'], {
      env: { DATABASE_URL: databaseUrl() },
    });
    expect(again.exitCode, String(again.stderr)).toBe(0);
    expect(String(again.stdout)).toContain('Done: 2 items allocated');
    const read = await es(['read', 'inventory-p1', '--schema', schema, '--json'], {
      env: { DATABASE_URL: databaseUrl() },
    });
    const lines = String(read.stdout).trim().split('\n');
    const causes = lines.map((l) => JSON.parse(l).metadata.causationId);
    expect(new Set(causes).size).toBe(causes.length);
  });

  it('runs the example config with es worker from the repo root', async () => {
    const schema = uniqueSchema('demow');
    const env = { DATABASE_URL: databaseUrl() };
    expect((await es(['migrate', '--schema', schema], { env })).exitCode).toBe(0);
    const { execa } = await import('execa');
    const { ES_BIN } = await import('../helpers/cli.js');
    const worker = execa(
      'node',
      [
        ES_BIN,
        'worker',
        '--config',
        'beckett.config.example.ts',
        '--group',
        'InventoryAllocation',
        '--schema',
        schema,
      ],
      { reject: false, env: { NO_COLOR: '1', ...env }, timeout: 60_000 },
    );
    const add = await es(
      [
        'append',
        'order-9',
        'order_item_added',
        '{"orderId":"9","productId":"p7","quantity":2}',
        '--schema',
        schema,
      ],
      { env },
    );
    expect(add.exitCode, String(add.stderr)).toBe(0);
    let found = '';
    for (let i = 0; i < 200 && !found.includes('inventory_allocated'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      found = String((await es(['read', 'inventory-p7', '--schema', schema, '--json'], { env })).stdout);
    }
    worker.kill('SIGINT');
    const result = await worker;
    expect(found).toContain('"orderId":"9"');
    expect(result.exitCode, String(result.stderr)).toBe(0);
  });
});
