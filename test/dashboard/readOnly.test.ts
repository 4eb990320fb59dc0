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

beforeAll(async () => {
  browser = await launchBrowser();
  db = await setupDb('dash_ro');
  const config = opsConfig(db.schema, {
    shipping: {
      category: 'order',
      maxRetries: 0,
      handler: () => {
        throw new Error('carrier API answered 503');
      },
    },
  });
  await db.store.append('order-1', { type: 'OrderPlaced', data: { orderId: '1' } });
  worker = startWorker(db, config);
  await worker.start();
  await until(
    async () => (await checkpoint(db, 'shipping', 'order-1'))?.status === 'failed',
    'order-1 to fail',
  );
  beckett = createBeckett({ pool: db.pool, schema: db.schema, config });
  server = await serveDashboard(beckett, { readOnly: true });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await worker?.stop();
  await beckett?.close();
  await db?.close();
});

describe('read-only mode in the browser', () => {
  it('hides every action and refuses a POST with 403, even with the CSRF token', async () => {
    const { page, problems } = await openPage(browser, server.url);
    await page.goto(`${server.url}#/checkpoints/${encodeURIComponent('G/shipping/order-1')}`);
    await expect.poll(() => page.getByTestId('checkpoint-status').textContent()).toBe('failed');
    expect(await page.getByTestId('read-only').isVisible()).toBe(true);
    expect(await page.getByTestId('retry').count()).toBe(0);
    expect(await page.getByRole('button', { name: /retry|skip|release/i }).count()).toBe(0);
    await screenshot(page, 'read-only-checkpoint');
    await page.goto(`${server.url}#/subscriptions`);
    await page.locator('[data-subscription="G/shipping"]').waitFor();
    expect(await page.getByRole('button', { name: /pause|replay|reset/i }).count()).toBe(0);
    await page.goto(`${server.url}#/checkpoints?status=failed`);
    await page.locator('[data-checkpoint="G/shipping/order-1"]').waitFor();
    expect(await page.locator('input[type="checkbox"]').count()).toBe(0);

    // A POST made by hand from the page, with the page's CSRF token, is still refused.
    const answer = await page.evaluate(async () => {
      // Runs in the page (no DOM types in this project's tsconfig).
      const doc = (globalThis as any).document;
      const token: string = doc.querySelector('meta[name="beckett-csrf"]')?.getAttribute('content') ?? '';
      const r = await fetch('api/checkpoints/retry', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-beckett-csrf': token },
        body: JSON.stringify({ ids: ['G/shipping/order-1'] }),
      });
      return { status: r.status, body: (await r.json()) as { code: string } };
    });
    expect(answer.status).toBe(403);
    expect(answer.body.code).toBe('READ_ONLY');
    expect((await checkpoint(db, 'shipping', 'order-1'))?.status).toBe('failed');
    expect(problems).toEqual([]);
  });
});
