import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Beckett, createBeckett } from '../../src/admin/createBeckett.js';
import type { ResolvedConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/validate.js';
import type { DashboardServer } from '../../src/dashboard/startDashboardServer.js';
import { createQueueWorker, type QueueWorker } from '../../src/queues/queueWorker.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';
import { launchBrowser, openPage, screenshot, serveDashboard } from './browser.js';

let db: TestDb;
let config: ResolvedConfig;
let beckett: Beckett;
let readOnly: Beckett;
let worker: QueueWorker;
let server: DashboardServer;
let roServer: DashboardServer;
let browser: Browser;
/** The mail server is down until the test "fixes" it. */
let smtpDown = true;
const sent: string[] = [];

beforeAll(async () => {
  browser = await launchBrowser();
  db = await setupDb('dash_queues');
  config = resolveConfig({
    database: { schema: db.schema },
    queues: {
      emails: {
        maxDeliveries: 1,
        handler: (job: { data: unknown }) => {
          if (smtpDown) throw new Error('smtp answered 421');
          sent.push((job.data as { to: string }).to);
        },
      },
    },
  });
  worker = createQueueWorker({
    pool: db.pool,
    config,
    queues: ['emails'],
    maxPollMs: 200,
    onError: () => undefined,
  });
  await worker.start();
  beckett = createBeckett({ pool: db.pool, schema: db.schema, config });
  readOnly = createBeckett({ pool: db.pool, schema: db.schema, config, readOnly: true });
  server = await serveDashboard(beckett);
  roServer = await serveDashboard(readOnly, { readOnly: true });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await roServer?.close();
  await worker?.stop();
  await beckett?.close();
  await readOnly?.close();
  await db?.close();
});

describe('queues in the browser', () => {
  it('shows a dead job and redrives it with the button; the job then runs', async () => {
    const { ids } = await beckett.admin.enqueue('emails', [
      { message: { type: 'welcome', data: { to: 'ada@example.com' } } },
    ]);
    const id = ids[0]!;
    await until(
      async () => (await beckett.admin.deadLetters('emails')).items.some((d) => d.id === id),
      'the job to reach the dead letters',
    );
    const { page, problems } = await openPage(browser, server.url);
    await page.goto(`${server.url}#/queues`);
    await expect.poll(() => page.locator('[data-queue="emails"]').textContent()).toContain('emails');
    await screenshot(page, 'queues');
    await page.getByRole('link', { name: 'emails' }).click();
    await page.locator(`[data-dead="${id}"]`).waitFor();
    await expect.poll(() => page.locator(`[data-dead="${id}"]`).textContent()).toContain('smtp answered 421');
    await screenshot(page, 'queue-dead');
    smtpDown = false;
    await page.getByTestId(`redrive-${id}`).click();
    await page.getByTestId('confirm').click();
    await until(() => sent.includes('ada@example.com'), 'the redriven job to run');
    await expect.poll(() => page.locator('.toast').first().textContent()).toContain('Redrove 1');
    await expect.poll(() => page.locator(`[data-dead="${id}"]`).count(), { timeout: 15_000 }).toBe(0);
    // The audit log names the dashboard as the actor.
    await page.goto(`${server.url}#/audit`);
    await expect.poll(() => page.locator('[data-action="redrive"]').textContent()).toContain('dashboard');
    expect(problems).toEqual([]);
  });

  it('purges only after the queue is named in the confirmation', async () => {
    smtpDown = true;
    const { ids } = await beckett.admin.enqueue('emails', [
      { message: { type: 'welcome', data: { to: 'bob@example.com' } } },
    ]);
    await until(
      async () => (await beckett.admin.deadLetters('emails')).items.some((d) => d.id === ids[0]),
      'the job to reach the dead letters',
    );
    const { page, problems } = await openPage(browser, server.url);
    await page.goto(`${server.url}#/queues/emails`);
    await page.getByTestId('purge-dead').click();
    const dialog = page.getByTestId('confirm-dialog');
    await dialog.locator('input[name="confirm"]').fill('wrong');
    await page.getByTestId('confirm').click();
    await expect.poll(() => page.locator('.toast').first().textContent()).toContain('confirm');
    expect((await beckett.admin.deadLetters('emails')).items).toHaveLength(1);
    await page.getByTestId('purge-dead').click();
    await page.getByTestId('confirm-dialog').locator('input[name="confirm"]').fill('emails');
    await page.getByTestId('confirm').click();
    await until(async () => (await beckett.admin.deadLetters('emails')).items.length === 0, 'the purge');
    // The refused purge's 400 is logged by the browser; nothing else may be.
    expect(problems.filter((p) => !/status of 400/.test(p))).toEqual([]);
  });

  it('hides redrive and purge in read-only mode, and the API refuses them', async () => {
    smtpDown = true;
    const { ids } = await beckett.admin.enqueue('emails', [
      { message: { type: 'welcome', data: { to: 'eve@example.com' } } },
    ]);
    const id = ids[0]!;
    await until(
      async () => (await beckett.admin.deadLetters('emails')).items.some((d) => d.id === id),
      'the job to reach the dead letters',
    );
    const { page, problems } = await openPage(browser, roServer.url);
    await page.goto(`${roServer.url}#/queues/emails`);
    await page.locator(`[data-dead="${id}"]`).waitFor();
    expect(await page.getByTestId(`redrive-${id}`).count()).toBe(0);
    expect(await page.getByTestId('purge-jobs').count()).toBe(0);
    expect(await page.getByTestId('purge-dead').count()).toBe(0);
    const refused = await fetch(`${roServer.url}api/queues/emails/dead-letters/redrive`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ all: true }),
    });
    expect(refused.status).toBe(403);
    expect((await beckett.admin.deadLetters('emails')).items.map((d) => d.id)).toContain(id);
    expect(problems).toEqual([]);
  });
});
