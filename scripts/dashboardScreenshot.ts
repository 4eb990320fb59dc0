/**
 * Re-take docs/dashboard.png: a two-group store (a paused subscription lagging, two failed
 * checkpoints, two live workers) in a schema of its own, the overview in headless Chromium at
 * 1280x760. Run: DATABASE_URL=... node --import jiti/register scripts/dashboardScreenshot.ts [out.png]
 */
import { createRequire } from 'node:module';

// Required natively: jiti's transform of playwright-core breaks its path import.
const { chromium } = createRequire(import.meta.url)('playwright-core');

import pg from 'pg';
import { createBeckett } from '../src/admin/createBeckett.ts';
import { startDashboardServer } from '../src/dashboard/startDashboardServer.ts';
import { migrate } from '../src/db/migrate.ts';
import { createPool } from '../src/db/pool.ts';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `shot_${Date.now().toString(36)}`;
const pool = createPool(url, { max: 4 });
const s = pg.escapeIdentifier(schema);
await migrate(pool, schema);
const b = createBeckett({ pool, schema });
const store = b.store;
for (let i = 1; i <= 20; i++)
  await store.append(`orders-${i}`, [
    { type: 'OrderPlaced', data: { orderId: String(i) } },
    { type: 'OrderItemAdded', data: { orderId: String(i), productId: 'p1', quantity: 1 } },
    { type: 'OrderItemAdded', data: { orderId: String(i), productId: 'p2', quantity: 2 } },
  ]);
for (let i = 1; i <= 19; i++)
  await store.append(`invoices-${i}`, [
    { type: 'InvoiceIssued', data: { n: i } },
    { type: 'InvoiceSent', data: { n: i } },
    { type: 'InvoicePaid', data: { n: i } },
  ]);
await pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('Billing'), ('Fulfilment')`);
await pool.query(
  `INSERT INTO ${s}.subscriptions (group_name, name, status, log_transaction_id, log_position)
   SELECT g, n, st, m.transaction_id, m.global_position
     FROM (VALUES ('Billing', 'ledger', 'paused'), ('Billing', 'payments', 'active'), ('Fulfilment', 'allocation', 'active'),
                  ('Fulfilment', 'invoicing', 'active'), ('Fulfilment', 'shipping', 'active')) v(g, n, st),
          (SELECT transaction_id, global_position FROM ${s}.messages ORDER BY global_position DESC LIMIT 1) m`,
);
// Caught-up checkpoints for every subscription, then the lagging and failed ones.
await pool.query(`
  INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position)
  SELECT sub.group_name, sub.name, st.stream_name, st.v, st.v
    FROM ${s}.subscriptions sub,
         (SELECT stream_name, max(stream_position) AS v FROM ${s}.messages GROUP BY 1) st
   WHERE (sub.name IN ('ledger', 'payments', 'invoicing') AND st.stream_name LIKE 'invoices-%')
      OR (sub.name IN ('allocation', 'shipping') AND st.stream_name LIKE 'orders-%')`);
await pool.query(`UPDATE ${s}.checkpoints SET stream_position = CASE WHEN stream_name IN ('invoices-1') THEN 2 ELSE 0 END
  WHERE subscription_name = 'ledger' AND stream_name IN ('invoices-1', ${Array.from({ length: 15 }, (_, i) => `'invoices-${i + 2}'`).join(', ')})`);
await pool.query(`UPDATE ${s}.checkpoints SET stream_position = 1, status = 'failed', attempts = 4,
  last_error = '{"type": "Error", "message": "carrier API answered 503", "attempt": 4}'
  WHERE subscription_name = 'shipping' AND stream_name IN ('orders-3', 'orders-7')`);
await pool.query(`INSERT INTO ${s}.workers (id, host, pid, group_name, concurrency) VALUES
  ('worker-a', 'app-1', 4411, 'Billing', 4), ('worker-b', 'app-2', 4412, 'Fulfilment', 4)`);
await pool.query(`UPDATE ${s}.messages SET created_at = now() - interval '82 seconds'`);
const server = await startDashboardServer({ beckett: b, port: 0, host: '127.0.0.1' });
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const page = await (await browser.newContext({ viewport: { width: 1280, height: 760 } })).newPage();
await page.goto(server.url);
await page.getByText('ledger').waitFor();
await page.waitForTimeout(1500);
await page.screenshot({ path: process.argv[2] ?? 'docs/dashboard.png' });
await browser.close();
await server.close();
await b.close();
await pool.query(`DROP SCHEMA ${s} CASCADE`);
await pool.end();
