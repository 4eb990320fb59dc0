import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { resolveConfig } from '../../src/config/validate.js';
import { ConfigError } from '../../src/errors.js';

function project(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'beckett-config-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

describe('loadConfig', () => {
  it('loads beckett.config.ts that imports beckett and a TypeScript handler module', async () => {
    const dir = project({
      'beckett.config.ts': `import { defineConfig, message } from 'beckett';
import { allocate } from './handlers/allocate.ts';
export default defineConfig({
  database: { schema: 'shop' },
  messages: { order_item_added: message<{ orderId: string }>() },
  groups: { Inventory: { concurrency: 2, subscriptions: { allocate: { handler: allocate, maxRetries: 3 } } } },
});`,
      'handlers/allocate.ts': `import type { HandlerContext } from 'beckett';
export async function allocate(_m: unknown, _ctx: HandlerContext): Promise<void> {}`,
    });
    const cfg = await loadConfig({ cwd: join(dir, 'handlers') });
    expect(cfg.path).toBe(join(dir, 'beckett.config.ts'));
    expect(cfg.projectDir).toBe(dir);
    expect(cfg.database.schema).toBe('shop');
    const sub = cfg.groups.get('Inventory')?.subscriptions.get('allocate');
    expect(typeof sub?.handler).toBe('function');
    expect(sub).toMatchObject({
      maxRetries: 3,
      startFrom: 'beginning',
      batchSize: 100,
      types: ['order_item_added'],
    });
    expect(cfg.groups.get('Inventory')?.concurrency).toBe(2);
  }, 180_000); // jiti transpiles all of src/ here (the alias points at src/index.ts): slow on a loaded machine

  it('loads an .mjs config and an explicit --config path', async () => {
    const dir = project({ 'conf/other.mjs': `export default { database: { schema: 'other' } };` });
    const cfg = await loadConfig({ path: 'conf/other.mjs', cwd: dir });
    expect(cfg.database.schema).toBe('other');
  });

  it('returns defaults when no file exists, and refuses when one is required', async () => {
    const dir = project({});
    const cfg = await loadConfig({ cwd: dir });
    expect(cfg.path).toBeUndefined();
    expect(cfg.database.schema).toBe('beckett');
    await expect(loadConfig({ cwd: dir, required: true })).rejects.toThrow(/No beckett config found/);
    await expect(loadConfig({ cwd: dir, path: 'missing.ts' })).rejects.toThrow(
      /Config file not found: .*missing\.ts/,
    );
  });

  it('names the file when the config does not compile', async () => {
    const dir = project({ 'beckett.config.ts': 'export default {{{' });
    const err = await loadConfig({ cwd: dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(join(dir, 'beckett.config.ts'));
  });

  it('reports every invalid key with its path and what it expects', async () => {
    const dir = project({
      'beckett.config.ts': `export default {
  database: { schema: 'Bad Schema', poolSize: 0 },
  groups: { G: { subscriptions: { s1: { handler: 'nope', startFrom: 'middle', batchSize: -1 }, s2: {} } } },
  extra: true,
};`,
    });
    const err = await loadConfig({ cwd: dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toContain(join(dir, 'beckett.config.ts'));
    expect(msg).toContain('database.schema: expected lower case letters');
    expect(msg).toContain('database.poolSize: expected an integer >= 1, got 0');
    expect(msg).toContain('groups.G.subscriptions.s1.handler: expected a function, got "nope"');
    expect(msg).toContain('groups.G.subscriptions.s1.startFrom: expected "beginning" or "end", got "middle"');
    expect(msg).toContain('groups.G.subscriptions.s1.batchSize: expected an integer >= 1, got -1');
    expect(msg).toContain('groups.G.subscriptions.s2.handler: expected a function (or give batchHandler)');
    expect(msg).toContain('extra: unknown key');
    expect((err as ConfigError).exitCode).toBe(3);
  });

  it('refuses a group with no subscriptions (it would mark every subscription of the group unknown)', () => {
    const err = (() => {
      try {
        resolveConfig({ groups: { G: { subscriptions: {} } } });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect(err?.message).toContain('groups.G.subscriptions: expected at least one subscription');
    expect(err?.message).toContain('remove it from groups');
  });

  it('never echoes a database URL (it may hold a password)', () => {
    const err = (() => {
      try {
        resolveConfig({ database: { url: 'mysql://u:secret@h/db' } });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message).toContain('database.url: expected a postgres:// URL');
    expect(err?.message).not.toContain('secret');
  });
});
