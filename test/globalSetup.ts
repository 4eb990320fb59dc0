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
  project.provide('databaseUrl', url);
  return async () => {
    // Leave a server we found running alone; stop one we started, so CI leaves nothing behind.
    if (startedHere) await stopEmbedded(projectDir);
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
  }
}
