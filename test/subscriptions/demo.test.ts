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
    expect(out).toMatch(/^appended order_item_added {2}orders-\w+@1/m);
    expect(out).toContain(`npx es tail orders --from 0 --exit-at-end --schema ${schema}`);
    // The commands a user types first, as the demo suggests them, act on the demo's data.
    const tail = await es(['tail', 'orders', '--from', '0', '--exit-at-end', '--schema', schema], {
      env: { DATABASE_URL: databaseUrl() },
    });
    expect(tail.exitCode, tail.stderr).toBe(0);
    expect(tail.stdout.match(/order_item_added/g)?.length).toBe(8);
    const once = await es(['worker', '--group', 'InventoryAllocation', '--once', '--schema', schema], {
      env: { DATABASE_URL: databaseUrl() },
    });
    expect(once.exitCode, once.stderr).toBe(0);
    expect(once.stderr).toContain('es: no beckett.config.ts here: using beckett.config.example.ts');
    expect(once.stderr).toMatch(/group InventoryAllocation caught up/);
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

  it('runs the example config with es worker from the repo root, as typed (no --config)', async () => {
    const schema = uniqueSchema('demow');
    const env = { DATABASE_URL: databaseUrl() };
    expect((await es(['migrate', '--schema', schema], { env })).exitCode).toBe(0);
    const { execa } = await import('execa');
    const { ES_BIN } = await import('../helpers/cli.js');
    const worker = execa('node', [ES_BIN, 'worker', '--group', 'InventoryAllocation', '--schema', schema], {
      reject: false,
      env: { NO_COLOR: '1', ...env },
      timeout: 60_000,
    });
    const add = await es(
      [
        'append',
        'orders-9',
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
