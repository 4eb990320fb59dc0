import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupDb, type TestDb } from '../helpers/db.js';
import { spawnWorker } from '../subscriptions/workerProcess.js';

let db: TestDb;
beforeAll(async () => {
  db = await setupDb('wsig');
});
afterAll(async () => db?.close());

function writeConfig(schema: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'beckett-sig-'));
  const file = join(dir, 'beckett.config.mjs');
  writeFileSync(
    file,
    `export default {
  database: { schema: '${schema}' },
  groups: { G: { subscriptions: { s: { category: 'sig', handler: () => undefined } } } },
  queues: { jobs: { handler: () => undefined } },
};
`,
  );
  return file;
}

describe('es worker and a signal on its "running" line', () => {
  // An orchestrator stops a worker as soon as it says it runs (a rolling deploy, a scale-in): the
  // signal must drain and exit 0, not kill the process because its handler is not installed yet.
  it('drains and exits 0 when SIGTERM comes the moment it says it runs', async () => {
    const config = writeConfig(db.schema);
    for (let round = 0; round < 3; round++) {
      const child = spawnWorker(['--config', config, '--group', 'G', '--queue', 'jobs'], {
        DATABASE_URL: db.url,
      });
      let sent = false;
      child.stderr?.on('data', () => {
        if (sent || !child.stderrText().includes(' running ')) return;
        sent = true;
        child.kill('SIGTERM');
      });
      const r = await child;
      expect({ exitCode: r.exitCode, signal: r.signal ?? null }, child.stderrText()).toEqual({
        exitCode: 0,
        signal: null,
      });
      expect(child.stderrText()).toContain(' stopped ');
    }
  }, 120_000);
});
