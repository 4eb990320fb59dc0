import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import { ES_BIN, es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
let dir: string;
beforeAll(async () => {
  db = await setupDb('append_tools');
  dir = mkdtempSync(join(tmpdir(), 'beckett-append-'));
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  writeFileSync(
    join(dir, 'beckett.config.mjs'),
    `export default {
  database: { schema: '${db.schema}' },
  messages: { item_added: {}, order_paid: {} },
  groups: { G: { subscriptions: { s: { types: ['item_added'], handler: async () => {} } } } },
};
`,
  );
});
afterAll(async () => db?.close());

const env = () => ({ DATABASE_URL: db.url });
const inDir = (args: string[], input?: string) =>
  es(args, { cwd: dir, env: env(), ...(input !== undefined ? { input } : {}) });

describe('config validation of subscription types', () => {
  it('refuses a type not declared under messages, unless the subscription asks for undeclared ones', () => {
    const cfg = (onUnmappedType?: string) => ({
      messages: { a: {}, b: {} },
      groups: {
        G: {
          subscriptions: {
            s: { types: ['a', 'c'], handler: () => {}, ...(onUnmappedType ? { onUnmappedType } : {}) },
          },
        },
      },
    });
    expect(() => resolveConfig(cfg())).toThrow(
      /groups\.G\.subscriptions\.s\.types: "c" is not declared under messages \(declared: a, b;/,
    );
    expect(resolveConfig(cfg('raw')).groups.get('G')?.subscriptions.get('s')?.types).toEqual(['a', 'c']);
    // A config that declares no messages has nothing to check against.
    expect(() => resolveConfig({ groups: cfg().groups })).not.toThrow();
  });
});

describe('es append', () => {
  it('refuses a type the config does not declare (exit 2), and appends it with --allow-unknown-type', async () => {
    const typo = await inDir(['append', 'order-1', 'item_addded', '{}']);
    expect(typo.exitCode).toBe(2);
    expect(typo.stderr).toMatch(
      /declares no message type "item_addded" \(it declares item_added, order_paid\)/,
    );
    expect(typo.stderr).toMatch(/hint: .*--allow-unknown-type/);
    expect(await db.store.streamVersion('order-1')).toBe(0);
    const forced = await inDir(['append', 'order-1', 'item_addded', '{}', '--allow-unknown-type']);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(forced.stderr).toContain('a type the config does not declare');
    expect(await db.store.streamVersion('order-1')).toBe(1);
  });

  it('loads NDJSON from stdin in batches, the expected version checked on the first and carried on', async () => {
    const lines = Array.from({ length: 2500 }, (_, i) =>
      JSON.stringify({ type: 'item_added', data: { n: i + 1 }, ...(i === 0 ? { tags: ['bulk:1'] } : {}) }),
    );
    const input = `${lines.join('\n')}\n\n`;
    const r = await inDir(
      ['append', 'bulk-1', '-', '--expected-version', 'no_stream', '--batch-size', '1000', '--json'],
      input,
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ stream: 'bulk-1', streamVersion: 2500, appended: 2500 });
    const stored = await db.store.readStream('bulk-1', { limit: 3000 });
    expect(stored.map((m) => (m.data as { n: number }).n)).toEqual(lines.map((_, i) => i + 1));
    expect(stored[0]?.tags).toEqual(['bulk:1']);
    // The same load again expects no stream: refused (exit 7), nothing more written.
    const again = await inDir(['append', 'bulk-1', '--ndjson', '--expected-version', 'no_stream'], input);
    expect(again.exitCode).toBe(7);
    expect(await db.store.streamVersion('bulk-1')).toBe(2500);
  });

  it('checks every line before appending anything, naming the bad line', async () => {
    const input = `{"type":"item_added","data":{}}\n{"type":"item_added","data":{}}\nnot json\n`;
    const bad = await inDir(['append', 'bulk-2', '-'], input);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('stdin line 3 is not valid JSON');
    const noType = await inDir(['append', 'bulk-2', '-'], '{"data":{}}\n');
    expect(noType.stderr).toContain('stdin line 1 has no "type"');
    const undeclared = await inDir(['append', 'bulk-2', '-'], '{"type":"nope","data":{}}\n');
    expect(undeclared.exitCode).toBe(2);
    expect(undeclared.stderr).toContain('declares no message type "nope"');
    expect(await db.store.streamVersion('bulk-2')).toBe(0);
  });

  it('checks every message as the store will, and every id once, before the first batch', async () => {
    // A full batch of good lines, then a line the store refuses: nothing appended (it was 2 before).
    const good = (n: number, id?: string) =>
      JSON.stringify({ type: 'item_added', data: { n }, ...(id ? { id } : {}) });
    const notObject = `${good(1)}\n${good(2)}\n{"type":"item_added","data":5}\n`;
    const r1 = await inDir(['append', 'bulk-3', '-', '--batch-size', '2'], notObject);
    expect(r1.exitCode).toBe(2);
    expect(r1.stderr).toContain('stdin line 3: The data of a "item_added" message must be a JSON object');
    const id = randomUUID();
    const twice = `${good(1, id)}\n${good(2)}\n\n${good(3, id.toUpperCase())}\n`;
    const r2 = await inDir(['append', 'bulk-3', '-', '--batch-size', '2'], twice);
    expect(r2.exitCode).toBe(2);
    expect(r2.stderr).toContain(`stdin line 4: message id ${id} is on line 1 too`);
    const badTag = `${good(1)}\n${good(2)}\n{"type":"item_added","data":{},"tags":["a b"]}\n`;
    const r3 = await inDir(['append', 'bulk-3', '-', '--batch-size', '2'], badTag);
    expect(r3.exitCode).toBe(2);
    expect(r3.stderr).toContain('stdin line 3: Invalid tag "a b"');
    expect(await db.store.streamVersion('bulk-3')).toBe(0);
  });
});

describe('es checkpoints and es subscriptions', () => {
  it('es checkpoints says so when nothing fails or lags', async () => {
    const r = await inDir(['checkpoints']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('No checkpoint fails, waits for a retry or lags');
  });

  it('-w shows the list again until Ctrl-C', async () => {
    for (const args of [
      ['subscriptions', '-w', '0.2'],
      ['checkpoints', '--watch', '0.2'],
    ]) {
      const child = execa('node', [ES_BIN, ...args], {
        cwd: dir,
        env: { NO_COLOR: '1', ...env() },
        reject: false,
      });
      let out = '';
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString();
      });
      await until(() => (out.match(/^Every 0\.2s/gm) ?? []).length >= 3, `three rounds of es ${args[0]}`);
      child.kill('SIGINT');
      const r = await child;
      expect(r.exitCode, r.stderr).toBe(0);
    }
    const bad = await inDir(['checkpoints', '--watch', 'often']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('--watch takes seconds');
  });
});

describe('es completion', () => {
  it('prints a bash script that completes commands and their options', async () => {
    const r = await es(['completion', 'bash']);
    expect(r.exitCode).toBe(0);
    const file = join(dir, 'completion.bash');
    writeFileSync(file, r.stdout);
    const complete = (...words: string[]) =>
      execFileSync(
        'bash',
        [
          '-c',
          `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _es_complete; echo "\${COMPREPLY[@]}"`,
        ],
        { encoding: 'utf8' },
      ).trim();
    expect(complete('es', 'wor')).toBe('worker');
    expect(complete('es', 'worker', '--log-f')).toBe('--log-format');
    expect(complete('es', 'subscriptions', 'pa')).toBe('pause');
    const zsh = await es(['completion', 'zsh']);
    expect(zsh.stdout).toContain('bashcompinit');
    const fish = await es(['completion', 'fish']);
    expect(fish.exitCode).toBe(2);
    expect(fish.stderr).toContain('es completion takes bash or zsh');
  });
});
