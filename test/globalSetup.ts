import type { TestProject } from 'vitest/node';
import { ensureEmbedded, stopEmbedded } from '../src/db/embedded.js';

/**
 * Tests run against DATABASE_URL when set, else against the embedded server (its data in
 * .beckett/test/ so it never mixes with a developer's own). Each test file makes its own schema.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let url = process.env.DATABASE_URL;
  let startedHere = false;
  const projectDir = new URL('../.beckett/test/', import.meta.url).pathname;
  if (!url) {
    const server = await ensureEmbedded(projectDir);
    url = server.url;
    startedHere = server.started;
  }
  project.provide('databaseUrl', withSessionSafetyNet(url));
  return async () => {
    // Leave a server we found running alone; stop one we started, so CI leaves nothing behind.
    if (startedHere) await stopEmbedded(projectDir);
  };
}

/**
 * Every test session (and every `es` process a test spawns with this URL) ends a transaction left
 * idle for 30 s. Gap-safe readers wait for the oldest open transaction on the whole server, so one
 * session leaked by a test file would otherwise stall every reader in the files running beside it.
 * Tests that hold a transaction on purpose do so for a few seconds.
 */
function withSessionSafetyNet(url: string): string {
  if (new URL(url).searchParams.has('options')) return url;
  // Spelled out with %20: libpq (psql) does not read "+" as a space.
  return `${url}${url.includes('?') ? '&' : '?'}options=-c%20idle_in_transaction_session_timeout%3D30s`;
}

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
  }
}
