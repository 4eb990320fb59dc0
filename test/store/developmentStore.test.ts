import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { embeddedHome, stopEmbedded } from '../../src/db/embedded.js';
import { InvalidInputError } from '../../src/errors.js';
import { createMessageStore } from '../../src/index.js';
import { es } from '../helpers/cli.js';

// A project of its own: its embedded server is started here and stopped after.
const dir = mkdtempSync(join(tmpdir(), 'beckett-devstore-'));
writeFileSync(join(dir, 'beckett.config.ts'), 'export default {};\n');
writeFileSync(join(dir, 'package.json'), '{ "name": "devstore", "type": "module" }\n');
const nested = join(dir, 'src', 'app');
mkdirSync(nested, { recursive: true });
const savedUrl = process.env.DATABASE_URL;
const savedNodeEnv = process.env.NODE_ENV;
const cwd = process.cwd();
afterAll(async () => {
  process.chdir(cwd);
  process.env.DATABASE_URL = savedUrl;
  process.env.NODE_ENV = savedNodeEnv;
  await stopEmbedded(dir);
});

const env = { DATABASE_URL: undefined };

describe('a store created without a URL (development)', () => {
  it("starts the project's embedded server, says so once, and shares it with es", async () => {
    delete process.env.DATABASE_URL;
    process.env.NODE_ENV = 'development';
    // From a folder below the config, as an application's module would run.
    process.chdir(nested);
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    const store = createMessageStore({});
    try {
      await expect(store.streamVersion('order-1')).rejects.toThrow(/has not been migrated/);
      expect(warnings.filter((w) => w.name === 'BeckettNotice')).toHaveLength(1);
      // The folder es uses for this project (under the temp folder when running as root).
      expect(warnings[0]?.message).toContain(`started the embedded PostgreSQL (${embeddedHome(dir)}`);
      expect(warnings[0]?.message).toContain('set DATABASE_URL to use your own server');
      // es, run in the project, finds the same server running: it migrates it and says nothing of a start.
      const migrate = await es(['migrate'], { cwd: dir, env });
      expect(migrate.exitCode, migrate.stderr).toBe(0);
      expect(migrate.stderr).not.toContain('embedded PostgreSQL');
      await store.append('order-1', { type: 'order_placed', data: { orderId: '1' } });
      const read = await es(['read', 'order-1', '--json'], { cwd: dir, env });
      expect(read.exitCode, read.stderr).toBe(0);
      expect(JSON.parse(read.stdout)).toMatchObject({ type: 'order_placed', data: { orderId: '1' } });
      // A second store reaches the running server without announcing anything.
      const other = createMessageStore({ projectDir: dir });
      expect(await other.streamVersion('order-1')).toBe(1);
      await other.close();
      expect(warnings.filter((w) => w.name === 'BeckettNotice')).toHaveLength(1);
    } finally {
      process.off('warning', onWarning);
      await store.close();
    }
  });

  it('reaches a server es started (stopped, then started by es)', async () => {
    await stopEmbedded(dir);
    const migrate = await es(['migrate'], { cwd: dir, env });
    expect(migrate.exitCode, migrate.stderr).toBe(0);
    expect(migrate.stderr).toMatch(/^es: started the embedded PostgreSQL/);
    delete process.env.DATABASE_URL;
    const store = createMessageStore({ projectDir: dir });
    try {
      await store.append('order-1', { type: 'order_paid', data: {} }, { expectedVersion: 1 });
      expect((await store.readStream('order-1')).map((m) => m.type)).toEqual(['order_placed', 'order_paid']);
    } finally {
      await store.close();
    }
  });

  it('refuses to start one under NODE_ENV=production, naming what to set', async () => {
    delete process.env.DATABASE_URL;
    process.env.NODE_ENV = 'production';
    const store = createMessageStore({ projectDir: dir });
    try {
      const err = await store.streamVersion('order-1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect((err as InvalidInputError).message).toMatch(/NODE_ENV=production/);
      expect((err as InvalidInputError).hint).toMatch(/DATABASE_URL/);
    } finally {
      await store.close();
      process.env.NODE_ENV = savedNodeEnv;
    }
  });
});
