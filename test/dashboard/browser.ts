import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import type { Beckett } from '../../src/admin/createBeckett.js';
import type { DashboardServerOptions } from '../../src/dashboard/startDashboardServer.js';
import { type DashboardServer, startDashboardServer } from '../../src/dashboard/startDashboardServer.js';

/** Debian's chromium; CHROMIUM_PATH overrides it. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Screenshots land here (gitignored): look at them after a run. */
export const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));

/**
 * Launch headless Chromium. A missing browser fails the test with what to do: the browser tests
 * must never pass by skipping.
 */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `The dashboard's browser tests need Chromium at ${CHROMIUM}, and it is missing. Install it with ` +
        `"apt-get install -y chromium" (as root; .ci/run does this), or set CHROMIUM_PATH to a Chromium binary.`,
    );
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

export async function serveDashboard(
  beckett: Beckett,
  opts: Omit<DashboardServerOptions, 'beckett'> = {},
): Promise<DashboardServer> {
  return startDashboardServer({ beckett, port: 0, host: '127.0.0.1', ...opts });
}

/**
 * A page that fails the test on a script error or a request leaving the dashboard's origin (the
 * dashboard must work offline: nothing from a CDN).
 */
export async function openPage(
  browser: Browser,
  origin: string,
): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1360, height: 860 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of (403|404|409)/.test(m.text()))
      problems.push(`console: ${m.text()}`);
  });
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.origin !== new URL(origin).origin) {
      problems.push(`outside request: ${u.href}`);
      return route.abort();
    }
    return route.continue();
  });
  return { page, problems };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: false });
}
