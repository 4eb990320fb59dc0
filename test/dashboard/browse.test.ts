import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Beckett, createBeckett } from '../../src/admin/createBeckett.js';
import type { DashboardServer } from '../../src/dashboard/startDashboardServer.js';
import { scheduleMessage } from '../../src/scheduling/scheduleMessage.js';
import type { Worker } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from '../operations/helpers.js';
import { launchBrowser, openPage, screenshot, serveDashboard } from './browser.js';

let db: TestDb;
let beckett: Beckett;
let worker: Worker;
let server: DashboardServer;
let browser: Browser;
let orderIds: string[];

beforeAll(async () => {
  browser = await launchBrowser();
  db = await setupDb('dash_browse');
  const config = opsConfig(db.schema, {
    shipping: {
      category: 'order',
      maxRetries: 0,
      handler: (m) => {
        if ((m.data as { fragile?: boolean }).fragile) throw new Error(`carrier refused ${m.streamName}`);
      },
    },
    invoicing: { category: 'order', handler: () => undefined },
  });
  await db.store.append('order-1001', [
    {
      type: 'OrderPlaced',
      data: { orderId: '1001', customer: 'ada', total: 42.5, items: [{ sku: 'p-1', qty: 2 }] },
    },
    { type: 'OrderPaid', data: { orderId: '1001', amount: 42.5, method: 'card' } },
    { type: 'OrderShipped', data: { orderId: '1001', carrier: 'dhl' } },
  ]);
  const placed = await db.store.readStream('order-1001');
  orderIds = placed.map((m) => m.id);
  await db.store.append('payment-1001', {
    type: 'PaymentCaptured',
    data: { orderId: '1001', amount: 42.5 },
    metadata: { correlationId: placed[0]!.id, causationId: placed[1]!.id },
  });
  await db.store.append('order-1002', { type: 'OrderPlaced', data: { orderId: '1002', fragile: true } });
  for (const c of ['inventory', 'customer', 'shipment'])
    for (let i = 1; i <= 3; i++) await db.store.append(`${c}-${i}`, { type: `${c}Updated`, data: { i } });
  worker = startWorker(db, config);
  await worker.start();
  await until(
    async () => (await checkpoint(db, 'shipping', 'order-1002'))?.status === 'failed',
    'order-1002 to fail',
  );
  beckett = createBeckett({ pool: db.pool, schema: db.schema, config });
  server = await serveDashboard(beckett);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await worker?.stop();
  await beckett?.close();
  await db?.close();
});

describe('browsing the message store', () => {
  it('goes from the categories down to a message, its data, its neighbours and its links', async () => {
    const { page, problems } = await openPage(browser, server.url);
    await page.goto(server.url);
    // The header's live counts come from /api/summary.
    await expect.poll(() => page.getByTestId('count-failed').textContent()).toContain('1');
    await screenshot(page, 'overview');

    await page.getByRole('link', { name: 'Message store' }).click();
    await page.getByRole('link', { name: 'order', exact: true }).click();
    await expect.poll(() => page.locator('h1').textContent()).toBe('order');
    await page.getByRole('link', { name: 'order-1001' }).click();
    await expect.poll(() => page.getByTestId('stream-name').textContent()).toBe('order-1001');
    await screenshot(page, 'stream');
    // The last page of a stream is live: a new message shows without a reload.
    await db.store.append('order-1001', { type: 'OrderDelivered', data: { orderId: '1001' } });
    await page.getByRole('link', { name: 'OrderDelivered' }).waitFor({ timeout: 15_000 });
    await page.getByRole('link', { name: 'OrderPaid' }).click();
    await expect.poll(() => page.getByTestId('message-type').textContent()).toBe('OrderPaid');
    expect(await page.getByTestId('message-data').textContent()).toContain('"method": "card"');
    await screenshot(page, 'message');

    await page.getByTestId('next').click();
    await expect.poll(() => page.getByTestId('message-type').textContent()).toBe('OrderShipped');
    await page.getByTestId('previous').click();
    await page.getByTestId('previous').click();
    await expect.poll(() => page.getByTestId('message-type').textContent()).toBe('OrderPlaced');
    // Its correlation links to the payment, which names it as correlation id.
    await expect.poll(() => page.getByRole('link', { name: 'payment-1001' }).count()).toBeGreaterThan(0);

    // Find by message id, and by global position.
    await page.getByRole('searchbox', { name: 'Find a message' }).fill(orderIds[2]!);
    await page.keyboard.press('Enter');
    await expect.poll(() => page.getByTestId('message-type').textContent()).toBe('OrderShipped');
    const paymentPosition = (await db.store.readStream('payment-1001'))[0]!.globalPosition;
    await page.getByRole('searchbox', { name: 'Find a message' }).fill(`#${paymentPosition}`);
    await page.keyboard.press('Enter');
    await expect.poll(() => page.getByTestId('message-type').textContent()).toBe('PaymentCaptured');
    expect(problems).toEqual([]);
  });

  it('shows subscriptions, the failed checkpoint and its error, and searches categories', async () => {
    const { page, problems } = await openPage(browser, server.url);
    await page.goto(`${server.url}#/subscriptions`);
    await expect
      .poll(() => page.locator('[data-subscription="G/shipping"]').textContent())
      .toContain('active');
    await screenshot(page, 'subscriptions');
    await page.goto(`${server.url}#/checkpoints?status=failed`);
    await page.getByRole('link', { name: 'G/shipping/order-1002' }).click();
    await expect.poll(() => page.locator('pre.stack').textContent()).toContain('carrier refused order-1002');
    await screenshot(page, 'checkpoint');
    await page.goto(`${server.url}#/messages?search=inv`);
    await expect.poll(() => page.locator('tbody tr').count()).toBe(1);
    expect(await page.locator('tbody').textContent()).toContain('inventory');
    expect(problems).toEqual([]);
  });

  it('lists scheduled messages and cancels one, and shows workers, retention and the audit log', async () => {
    const later = await scheduleMessage(
      db.store,
      'reminder-1',
      { type: 'PaymentReminder', data: { orderId: '1002' } },
      { delay: 3_600_000 },
    );
    const keep = await scheduleMessage(
      db.store,
      'reminder-2',
      { type: 'PaymentReminder', data: { orderId: '1003' } },
      { delay: 7_200_000 },
    );
    const { page, problems } = await openPage(browser, server.url);
    await page.goto(`${server.url}#/scheduled`);
    await page.getByTestId(`cancel-${later}`).waitFor();
    await screenshot(page, 'scheduled');
    await page.getByTestId(`cancel-${later}`).click();
    await page.getByTestId('confirm').click();
    await page.locator('.toast', { hasText: 'Cancelled.' }).waitFor();
    // The page reloaded: the other one is listed, the cancelled one is gone.
    await page.getByTestId(`cancel-${keep}`).waitFor();
    expect(await page.getByTestId(`cancel-${later}`).count()).toBe(0);
    const { rows } = await db.pool.query(`SELECT id FROM "${db.schema}".scheduled_messages`);
    expect(rows.map((r) => r.id)).toEqual([keep]);

    await page.goto(`${server.url}#/workers`);
    await expect.poll(() => page.locator('h1 + .subtitle').textContent()).toBe('1 live, 0 gone');
    await screenshot(page, 'workers');
    await page.goto(`${server.url}#/retention`);
    await page.getByText('Dry run result').waitFor();
    await page.goto(`${server.url}#/audit`);
    await expect
      .poll(() => page.locator('[data-action="cancelScheduled"]').textContent())
      .toContain('dashboard');
    expect(problems).toEqual([]);
  });
});
