import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Beckett, createBeckett } from '../../src/admin/createBeckett.js';
import type { DashboardServer } from '../../src/dashboard/startDashboardServer.js';
import type { Worker } from '../../src/subscriptions/workerRuntime.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { checkpoint, opsConfig, startWorker, until } from '../operations/helpers.js';
import { launchBrowser, openPage, screenshot, serveDashboard } from './browser.js';

let db: TestDb;
let beckett: Beckett;
let worker: Worker;
let server: DashboardServer;
let browser: Browser;
/** The carrier is down until the test "fixes" it. */
let carrierDown = true;
/** How many times `invoicing` handled each global position. */
const invoiced = new Map<number, number>();
const shipped: string[] = [];

beforeAll(async () => {
  browser = await launchBrowser();
  db = await setupDb('dash_actions');
  const config = opsConfig(db.schema, {
    shipping: {
      category: 'order',
      maxRetries: 0,
      handler: (m) => {
        if (carrierDown) throw new Error('carrier API answered 503');
        shipped.push(m.streamName);
      },
    },
    invoicing: {
      category: 'invoice',
      handler: (m) => {
        invoiced.set(m.globalPosition, (invoiced.get(m.globalPosition) ?? 0) + 1);
      },
    },
  });
  await db.store.append('order-1', { type: 'OrderPlaced', data: { orderId: '1' } });
  await db.store.append('invoice-1', [
    { type: 'InvoiceIssued', data: { n: 1 } },
    { type: 'InvoiceSent', data: { n: 2 } },
    { type: 'InvoicePaid', data: { n: 3 } },
  ]);
  worker = startWorker(db, config);
  await worker.start();
  await until(
    async () => (await checkpoint(db, 'shipping', 'order-1'))?.status === 'failed',
    'order-1 to fail',
  );
  await until(
    async () => (await checkpoint(db, 'invoicing', 'invoice-1'))?.stream_position === 3,
    'invoices',
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

describe('operator actions in the browser', () => {
  it('retries a failed checkpoint with the button and sees it flow again', async () => {
    const { page, problems } = await openPage(browser, server.url);
    await page.goto(`${server.url}#/checkpoints?status=failed`);
    await page.locator('[data-checkpoint="G/shipping/order-1"]').waitFor();
    await screenshot(page, 'failed-list');
    await page.getByRole('link', { name: 'G/shipping/order-1' }).click();
    await expect.poll(() => page.getByTestId('checkpoint-status').textContent()).toBe('failed');
    carrierDown = false;
    await page.getByTestId('retry').click();
    await screenshot(page, 'confirm-retry');
    await page.getByTestId('confirm').click();
    // The worker handles it again; the page shows the checkpoint active and caught up.
    await until(() => shipped.includes('order-1'), 'the worker to ship order-1 after the retry');
    await expect
      .poll(() => page.getByTestId('checkpoint-status').textContent(), { timeout: 15_000 })
      .toBe('active');
    // Active comes with the retry itself; the position once the completion lands and the page
    // refreshes (it polls every few seconds).
    await expect
      .poll(() => page.getByTestId('checkpoint-position').textContent(), { timeout: 15_000 })
      .toBe('1');
    await expect.poll(() => page.getByTestId('history').textContent()).toContain('retry');
    await page.getByTestId('count-failed').getByText('0').waitFor();
    await screenshot(page, 'after-retry');
    // The audit log names the dashboard as the actor.
    await page.goto(`${server.url}#/audit`);
    await expect.poll(() => page.locator('[data-action="retry"]').textContent()).toContain('dashboard');
    expect(problems).toEqual([]);
  });

  it('replays a range of a subscription after confirming it', async () => {
    const [first, second, third] = (await db.store.readStream('invoice-1')).map((m) => m.globalPosition);
    const { page, problems } = await openPage(browser, server.url);
    await page.goto(`${server.url}#/subscriptions`);
    await page.getByTestId('replay-invoicing').click();
    const dialog = page.getByTestId('confirm-dialog');
    await dialog.locator('input[name="from"]').fill(String(first));
    await dialog.locator('input[name="to"]').fill(String(second));
    await screenshot(page, 'confirm-replay');
    await page.getByTestId('confirm').click();
    await until(
      () => invoiced.get(first!) === 2 && invoiced.get(second!) === 2,
      'the range to be handled again',
    );
    expect(invoiced.get(third!)).toBe(1);
    await expect.poll(() => page.locator('.toast').first().textContent()).toContain('Replaying 2 message(s)');
    await page.goto(`${server.url}#/audit`);
    await expect.poll(() => page.locator('[data-action="replay"]').textContent()).toContain('invoicing');
    await screenshot(page, 'audit');
    expect(problems).toEqual([]);
  });

  it('pauses and resumes a subscription', async () => {
    const { page, problems } = await openPage(browser, server.url);
    await page.goto(`${server.url}#/subscriptions`);
    await page.getByTestId('pause-shipping').click();
    await page.getByTestId('confirm').click();
    await expect
      .poll(() => page.locator('[data-subscription="G/shipping"]').textContent())
      .toContain('paused');
    await page.getByTestId('resume-shipping').click();
    await page.getByTestId('confirm').click();
    await expect
      .poll(() => page.locator('[data-subscription="G/shipping"]').textContent())
      .toContain('active');
    expect(problems).toEqual([]);
  });
});
