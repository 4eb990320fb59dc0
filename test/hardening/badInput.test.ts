import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import { appendWithCondition } from '../../src/consistency/conditionalAppend.js';
import { Query } from '../../src/consistency/query.js';
import { readByQuery, readForDecision } from '../../src/consistency/readByQuery.js';
import { migrate } from '../../src/db/migrate.js';
import { dumpMigrationsSql } from '../../src/db/migrations.js';
import { createPool } from '../../src/db/pool.js';
import {
  BeckettError,
  ConfigError,
  DatabaseUnreachableError,
  ExitCode,
  InvalidInputError,
} from '../../src/errors.js';
import { lagSnapshot } from '../../src/operations/lagSnapshot.js';
import { listCheckpoints } from '../../src/operations/listCheckpoints.js';
import { replay } from '../../src/operations/replay.js';
import { retryCheckpoints, skipCheckpoints } from '../../src/operations/retryCheckpoints.js';
import { resetSubscription } from '../../src/operations/subscriptionControl.js';
import { tailMessages } from '../../src/operations/tail.js';
import { scheduleMessage } from '../../src/scheduling/scheduleMessage.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import { createInMemoryStore } from '../../src/testing/inMemoryStore.js';
import { es } from '../helpers/cli.js';
import { databaseUrl, uniqueSchema } from '../helpers/db.js';
import { rowCounts, schemasLike } from './footprint.js';

/*
 * Bad input, as a careless or hostile user gives it: every case must be refused with its exit code
 * (CLI) or error class (library), a short message naming what was wrong, and nothing written: the
 * row counts of every table of the schema and the list of this file's schemas are compared before
 * and after. Independent of the cases, no output may show a password, a stack or a line longer
 * than a few hundred characters.
 */

const SECRET = 'sekret-4d1f';
const PREFIX = 'hbad';
const LONG = 'x'.repeat(10_000);
const DUP_ID = '0190c1a2-1111-7000-8000-00000000d0b1';
const deep = (n: number): unknown => (n === 0 ? {} : { a: deep(n - 1) });

let pool: pg.Pool;
let schema: string;
let ahead: string;
let store: MessageStore;
let before: Record<string, number>;
let beforeAhead: Record<string, number>;
let schemasBefore: string[];
let configDir: string;
let env: Record<string, string>;

beforeAll(async () => {
  pool = createPool(databaseUrl(), { max: 4 });
  schema = uniqueSchema(PREFIX);
  ahead = uniqueSchema(`${PREFIX}_ahead`);
  await migrate(pool, schema);
  await migrate(pool, ahead);
  // A schema migrated by a newer beckett: one migration this code does not know.
  await pool.query(
    `INSERT INTO ${ahead}.schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')`,
  );
  store = createMessageStore({ pool, schema });
  await store.append('order-1', { type: 'placed', data: { n: 1 }, tags: ['order:1'] });
  before = await rowCounts(pool, schema);
  beforeAhead = await rowCounts(pool, ahead);
  schemasBefore = await schemasLike(pool, [PREFIX, 'pwned']);
  configDir = mkdtempSync(join(tmpdir(), 'beckett-badinput-'));
  writeFileSync(
    join(configDir, 'beckett.config.mjs'),
    'export default { groups: { G: { subscriptions: { s: { handler: async () => {} } } } } };\n',
  );
  writeFileSync(join(configDir, 'nodefault.mjs'), 'export const groups = {};\n');
  env = { DATABASE_URL: databaseUrl() };
});

afterAll(async () => {
  await store.close();
  await pool.end();
});

async function expectNothingWritten(): Promise<void> {
  expect(await rowCounts(pool, schema)).toEqual(before);
  expect(await rowCounts(pool, ahead)).toEqual(beforeAhead);
  expect(await schemasLike(pool, [PREFIX, 'pwned'])).toEqual(schemasBefore);
}

function expectCleanText(text: string, debug = false): void {
  expect(text).not.toContain(SECRET);
  for (const line of text.split('\n')) expect(line.length, line.slice(0, 120)).toBeLessThan(400);
  // A stack only with DEBUG.
  if (!debug) expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  expect(text).not.toMatch(/\b(TypeError|RangeError|DatabaseError|SyntaxError)\b/);
}

interface CliCase {
  name: string;
  args: () => string[];
  exit: number;
  message: RegExp;
  env?: () => Record<string, string>;
  cwd?: () => string;
}

const s = () => ['--schema', schema];
const nested = JSON.stringify(deep(100));

const cliCases: CliCase[] = [
  {
    name: 'type with a newline',
    args: () => [...s(), 'append', 'order-1', 'bad\ntype', '{}'],
    exit: 2,
    message: /Invalid message type "bad\\ntype"/,
  },
  {
    name: 'type with SQL text',
    args: () => [...s(), 'append', 'order-1', "x'); DROP TABLE messages; --", '{}'],
    exit: 2,
    message: /Invalid message type/,
  },
  {
    name: 'type of 10k characters',
    args: () => [...s(), 'append', 'order-1', LONG, '{}'],
    exit: 2,
    message: /Invalid message type "x+… \(10002 characters\)/,
  },
  {
    name: 'type starting with a digit',
    args: () => [...s(), 'append', 'order-1', '1type', '{}'],
    exit: 2,
    message: /Invalid message type/,
  },
  {
    name: 'type with a control character',
    args: () => [...s(), 'append', 'order-1', 'a\u0007b', '{}'],
    exit: 2,
    message: /Invalid message type/,
  },
  {
    name: 'empty type',
    args: () => [...s(), 'append', 'order-1', '', '{}'],
    exit: 2,
    message: /Invalid message type ""/,
  },
  {
    name: 'stream with a space',
    args: () => [...s(), 'append', 'order 1', 'placed', '{}'],
    exit: 2,
    message: /Invalid stream name "order 1"/,
  },
  {
    name: 'stream with a tab',
    args: () => [...s(), 'append', 'order\t1', 'placed', '{}'],
    exit: 2,
    message: /Invalid stream name/,
  },
  {
    name: 'stream of 10k characters',
    args: () => [...s(), 'append', LONG, 'placed', '{}'],
    exit: 2,
    message: /Invalid stream name "x+… \(10002/,
  },
  {
    name: 'data is an array',
    args: () => [...s(), 'append', 'order-1', 'placed', '[1,2]'],
    exit: 2,
    message: /data of a "placed" message must be a JSON object, got \[1,2\]/,
  },
  {
    name: 'data is a number',
    args: () => [...s(), 'append', 'order-1', 'placed', '42'],
    exit: 2,
    message: /must be a JSON object, got 42/,
  },
  {
    name: 'data is null',
    args: () => [...s(), 'append', 'order-1', 'placed', 'null'],
    exit: 2,
    message: /must be a JSON object, got null/,
  },
  {
    name: 'data is a string',
    args: () => [...s(), 'append', 'order-1', 'placed', '"x"'],
    exit: 2,
    message: /must be a JSON object, got "x"/,
  },
  {
    name: 'data is not JSON',
    args: () => [...s(), 'append', 'order-1', 'placed', '{'],
    exit: 2,
    message: /The message data is not valid JSON/,
  },
  {
    name: 'data of 10k bad characters',
    args: () => [...s(), 'append', 'order-1', 'placed', LONG],
    exit: 2,
    message: /not valid JSON/,
  },
  {
    name: 'data with a NUL character',
    args: () => [...s(), 'append', 'order-1', 'placed', '{"a":"x\\u0000y"}'],
    exit: 2,
    message: /NUL character \(\\u0000\) at a/,
  },
  {
    name: 'data with an unpaired surrogate',
    args: () => [...s(), 'append', 'order-1', 'placed', '{"a":"x\\ud800y"}'],
    exit: 2,
    message: /unpaired UTF-16 surrogate at a/,
  },
  {
    name: 'data with a NUL in a key',
    args: () => [...s(), 'append', 'order-1', 'placed', '{"a\\u0000":1}'],
    exit: 2,
    message: /key with a NUL character/,
  },
  {
    name: 'data nested 100 deep',
    args: () => [...s(), 'append', 'order-1', 'placed', nested],
    exit: 2,
    message: /nested deeper than 64 levels/,
  },
  {
    name: 'metadata is a string',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--metadata', '"abc"'],
    exit: 2,
    message: /--metadata must be a JSON object/,
  },
  {
    name: 'metadata is an array',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--metadata', '[1]'],
    exit: 2,
    message: /--metadata must be a JSON object/,
  },
  {
    name: 'correlationId is a number',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--metadata', '{"correlationId":5}'],
    exit: 2,
    message: /metadata.correlationId .* must be a string/,
  },
  {
    name: 'causationId is an object',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--metadata', '{"causationId":{}}'],
    exit: 2,
    message: /metadata.causationId/,
  },
  {
    name: 'metadata with a NUL character',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--metadata', '{"k":"\\u0000"}'],
    exit: 2,
    message: /metadata .* NUL character/,
  },
  {
    name: 'tag with a space',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--tag', 'a b'],
    exit: 2,
    message: /Invalid tag "a b"/,
  },
  {
    name: 'empty tag',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--tag', ''],
    exit: 2,
    message: /Invalid tag ""/,
  },
  {
    name: 'tag of 10k characters',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--tag', LONG],
    exit: 2,
    message: /Invalid tag "x+… \(10002/,
  },
  {
    name: 'expected version beyond bigint',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--expected-version', '9223372036854775808'],
    exit: 2,
    message: /--expected-version must be/,
  },
  {
    name: 'negative expected version',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--expected-version=-1'],
    exit: 2,
    message: /--expected-version must be/,
  },
  {
    name: 'expected version a word',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}', '--expected-version', 'sideways'],
    exit: 2,
    message: /--expected-version must be/,
  },
  {
    name: 'read --limit 1e20',
    args: () => [...s(), 'read', 'order-1', '--limit', '1e20'],
    exit: 2,
    message: /--limit must be an integer from 1/,
  },
  {
    name: 'read --limit beyond bigint',
    args: () => [...s(), 'read', 'order-1', '--limit', '100000000000000000000'],
    exit: 2,
    message: /--limit must be an integer from 1 to 9007199254740991/,
  },
  {
    name: 'read --limit 0',
    args: () => [...s(), 'read', 'order-1', '--limit', '0'],
    exit: 2,
    message: /--limit must be an integer from 1/,
  },
  {
    name: 'read --from negative',
    args: () => [...s(), 'read', 'order-1', '--from=-5'],
    exit: 2,
    message: /--from must be an integer from 0/,
  },
  {
    name: 'read a bad stream',
    args: () => [...s(), 'read', 'a\u0001b'],
    exit: 2,
    message: /Invalid stream name/,
  },
  {
    name: 'read --type with SQL text',
    args: () => [...s(), 'read', '--type', "x' OR '1'='1"],
    exit: 2,
    message: /Invalid --type "x' OR '1'='1"/,
  },
  {
    name: 'tail --type with a newline',
    args: () => [...s(), 'tail', 'order', '--type', 'a\nb', '--no-follow'],
    exit: 2,
    message: /Invalid --type "a\\nb"/,
  },
  {
    name: 'replay from 2026-02-30',
    args: () => [...s(), 'replay', '--group', 'G', '--subscription', 's', '--from', '2026-02-30'],
    exit: 2,
    message: /--from must be a position .* or a valid ISO 8601 time, got "2026-02-30"/,
  },
  {
    name: 'replay to month 13',
    args: () => [...s(), 'replay', '--group', 'G', '--subscription', 's', '--to', '2026-13-01T00:00:00Z'],
    exit: 2,
    message: /--to must be a position/,
  },
  {
    name: 'replay to 25 o’clock',
    args: () => [...s(), 'replay', '--group', 'G', '--subscription', 's', '--to', '2026-01-01T25:00:00Z'],
    exit: 2,
    message: /--to must be a position/,
  },
  {
    name: 'tail from 2026-02-30',
    args: () => [...s(), 'tail', 'order', '--from', '2026-02-30', '--no-follow'],
    exit: 2,
    message: /--from must be a position/,
  },
  {
    name: 'schema with a newline',
    args: () => ['--schema', 'x\nDROP', 'read', 'order-1'],
    exit: 2,
    message: /Invalid schema name "x\\nDROP"/,
  },
  {
    name: 'schema of 10k characters',
    args: () => ['--schema', LONG, 'read', 'order-1'],
    exit: 2,
    message: /Invalid schema name "x+… \(10002/,
  },
  {
    name: 'dump-migrations with an injected schema',
    args: () => ['dump-migrations', '--schema', 'pwned\nCREATE SCHEMA pwned_x;'],
    exit: 2,
    message: /Invalid schema name/,
  },
  {
    name: 'URL with a port out of range',
    args: () => ['--database-url', `postgres://u:${SECRET}@127.0.0.1:99999/x`, ...s(), 'read', 'order-1'],
    exit: 2,
    message: /database URL \(.*u:\*\*\*@.*\) is not valid/,
  },
  {
    name: 'URL with a port that is a word',
    args: () => ['--database-url', `postgres://u:${SECRET}@127.0.0.1:abc/x`, ...s(), 'read', 'order-1'],
    exit: 2,
    message: /is not valid/,
  },
  {
    name: 'libpq key=value string',
    args: () => ['--database-url', `host=127.0.0.1 password=${SECRET}`, ...s(), 'read', 'order-1'],
    exit: 2,
    message: /key=value connection strings are not supported/,
  },
  {
    name: 'URL of another scheme',
    args: () => ['--database-url', `mysql://u:${SECRET}@h/x`, ...s(), 'read', 'order-1'],
    exit: 2,
    message: /must start with postgres:\/\//,
  },
  {
    name: 'unreachable URL',
    args: () => ['--database-url', `postgres://u:${SECRET}@127.0.0.1:1/x`, ...s(), 'read', 'order-1'],
    exit: 4,
    message: /Cannot connect to the database at postgres:\/\/u:\*\*\*@127.0.0.1:1\/x/,
  },
  {
    name: 'unknown database, password as a parameter',
    args: () => [
      '--database-url',
      `postgres://postgres@127.0.0.1:5432/no_such_db_hbad?password=${SECRET}`,
      ...s(),
      'read',
      'order-1',
    ],
    exit: 4,
    message: /password=\*\*\*/,
  },
  {
    name: 'unreachable URL with DEBUG',
    args: () => ['--database-url', `postgres://u:${SECRET}@127.0.0.1:1/x`, ...s(), 'read', 'order-1'],
    env: () => ({ DEBUG: '1' }),
    exit: 4,
    message: /Cannot connect/,
  },
  {
    name: 'unreachable DATABASE_URL with DEBUG',
    args: () => [...s(), 'append', 'order-1', 'placed', '{}'],
    env: () => ({ DATABASE_URL: `postgres://u:${SECRET}@127.0.0.1:1/x`, DEBUG: '1' }),
    exit: 4,
    message: /u:\*\*\*@/,
  },
  {
    name: '--config without a default export',
    args: () => ['--config', join(configDir, 'nodefault.mjs'), ...s(), 'append', 'order-1', 'placed', '{}'],
    exit: 3,
    message: /has no default export/,
  },
  {
    name: '--config that does not exist',
    args: () => ['--config', join(configDir, 'missing.ts'), ...s(), 'read', 'order-1'],
    exit: 3,
    message: /Config file not found/,
  },
  {
    name: 'worker --http-port 70000',
    args: () => [...s(), 'worker', '--group', 'G', '--http-port', '70000'],
    cwd: () => configDir,
    exit: 2,
    message: /--http-port must be 0-65535/,
  },
  {
    name: 'worker --processes 0',
    args: () => [...s(), 'worker', '--group', 'G', '--processes', '0'],
    cwd: () => configDir,
    exit: 2,
    message: /--processes must be an integer from 1/,
  },
  {
    name: 'worker --lease-ms 1e20',
    args: () => [...s(), 'worker', '--group', 'G', '--lease-ms', '100000000000000000000'],
    cwd: () => configDir,
    exit: 2,
    message: /--lease-ms must be/,
  },
  {
    name: 'schedule list --limit beyond bigint',
    args: () => [...s(), 'schedule', 'list', '--limit', '99999999999999999999'],
    exit: 2,
    message: /--limit must be/,
  },
  {
    name: 'checkpoints --limit a word',
    args: () => [...s(), 'checkpoints', '--group', 'G', '--limit', 'many'],
    cwd: () => configDir,
    exit: 2,
    message: /--limit must be/,
  },
  {
    name: 'append to a schema migrated by a newer beckett',
    args: () => ['--schema', ahead, 'append', 'order-1', 'placed', '{}'],
    exit: 6,
    message: /migrations this version of beckett does not know: 9999/,
  },
  {
    name: 'worker on a schema migrated by a newer beckett',
    args: () => ['--schema', ahead, 'worker', '--group', 'G'],
    cwd: () => configDir,
    exit: 6,
    message: /does not know: 9999/,
  },
  {
    name: 'migrate a schema migrated by a newer beckett',
    args: () => ['--schema', ahead, 'migrate'],
    exit: 6,
    message: /does not know: 9999/,
  },
  {
    name: 'append to a schema never migrated',
    args: () => ['--schema', `${PREFIX}_never`, 'append', 'order-1', 'placed', '{}'],
    exit: 10,
    message: /has not been migrated/,
  },
];

describe('bad input to the CLI: refused with its exit code, nothing written', () => {
  const results = new Map<string, Awaited<ReturnType<typeof es>>>();
  beforeAll(async () => {
    // Four at a time: each case is its own process.
    const queue = [...cliCases];
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let c = queue.shift(); c; c = queue.shift()) {
          results.set(
            c.name,
            await es(c.args(), {
              env: { ...env, ...c.env?.() },
              cwd: c.cwd?.() ?? configDir,
              timeout: 60_000,
            }),
          );
        }
      }),
    );
  }, 300_000);

  it.each(cliCases)('$name', async (c) => {
    const r = results.get(c.name)!;
    expect(r.exitCode, r.stderr).toBe(c.exit);
    expect(r.stderr).toMatch(c.message);
    expectCleanText(r.stdout + r.stderr, c.env?.().DEBUG !== undefined);
    await expectNothingWritten();
  });
});

interface LibCase {
  name: string;
  run: () => Promise<unknown> | unknown;
  error: new (...args: never[]) => Error;
  message: RegExp;
}

const append =
  (m: unknown, stream = 'order-1') =>
  () =>
    store.append(stream, m as never);
const placed = (extra: Record<string, unknown>) => ({ type: 'placed', data: {}, ...extra });
const circular = (): unknown => {
  const o: Record<string, unknown> = { a: 1 };
  o.self = o;
  return o;
};

const libCases: LibCase[] = [
  {
    name: 'type with a newline',
    run: append(placed({ type: 'a\nb' })),
    error: InvalidInputError,
    message: /Invalid message type "a\\nb"/,
  },
  {
    name: 'type with SQL text',
    run: append(placed({ type: "'; DROP TABLE x; --" })),
    error: InvalidInputError,
    message: /Invalid message type/,
  },
  {
    name: 'type of 10k characters',
    run: append(placed({ type: LONG })),
    error: InvalidInputError,
    message: /… \(10002 characters\)/,
  },
  {
    name: 'type is a number',
    run: append(placed({ type: 5 })),
    error: InvalidInputError,
    message: /Invalid message type 5/,
  },
  {
    name: 'type with NUL',
    run: append(placed({ type: 'a\u0000b' })),
    error: InvalidInputError,
    message: /Invalid message type/,
  },
  {
    name: 'message is a string',
    run: append('placed'),
    error: InvalidInputError,
    message: /Invalid message "placed"/,
  },
  { name: 'data missing', run: append({ type: 'placed' }), error: InvalidInputError, message: /has no data/ },
  {
    name: 'data is an array',
    run: append(placed({ data: [1] })),
    error: InvalidInputError,
    message: /must be a JSON object, got \[1\]/,
  },
  {
    name: 'data is a number',
    run: append(placed({ data: 7 })),
    error: InvalidInputError,
    message: /must be a JSON object, got 7/,
  },
  {
    name: 'data is null',
    run: append(placed({ data: null })),
    error: InvalidInputError,
    message: /must be a JSON object, got null/,
  },
  {
    name: 'data is a string',
    run: append(placed({ data: 'abc' })),
    error: InvalidInputError,
    message: /must be a JSON object, got "abc"/,
  },
  {
    name: 'data holds a BigInt',
    run: append(placed({ data: { n: 10n } })),
    error: InvalidInputError,
    message: /BigInt \(10n\) at n/,
  },
  {
    name: 'data holds a BigInt inside an array',
    run: append(placed({ data: { items: [{ ok: 1 }, { shared: { n: 1 }, bad: { deep: 1n } }] } })),
    error: InvalidInputError,
    message: /BigInt \(1n\) at items\[1\]\.bad\.deep/,
  },
  {
    name: 'data is circular through an array',
    run: () => {
      const o: Record<string, unknown> = { list: [] };
      (o.list as unknown[]).push({ back: o });
      return append(placed({ data: o }))();
    },
    error: InvalidInputError,
    message: /circular reference at list\[0\]\.back/,
  },
  {
    name: 'data is circular',
    run: append(placed({ data: circular() })),
    error: InvalidInputError,
    message: /circular reference at self/,
  },
  {
    name: 'data nested 100 deep',
    run: append(placed({ data: deep(100) })),
    error: InvalidInputError,
    message: /nested deeper than 64/,
  },
  {
    name: 'data with a NUL character',
    run: append(placed({ data: { s: 'a\u0000' } })),
    error: InvalidInputError,
    message: /NUL character .* at s/,
  },
  {
    name: 'data with a NUL in a key',
    run: append(placed({ data: { 'k\u0000': 1 } })),
    error: InvalidInputError,
    message: /key with a NUL/,
  },
  {
    name: 'data with NaN',
    run: append(placed({ data: { n: Number.NaN } })),
    error: InvalidInputError,
    message: /holds NaN at n/,
  },
  {
    name: 'data with Infinity',
    run: append(placed({ data: { n: Number.POSITIVE_INFINITY } })),
    error: InvalidInputError,
    message: /holds Infinity/,
  },
  {
    name: 'data with a function',
    run: append(placed({ data: { f: () => 1 } })),
    error: InvalidInputError,
    message: /holds a function at f/,
  },
  {
    name: 'data with a symbol',
    run: append(placed({ data: { s: Symbol('x') } })),
    error: InvalidInputError,
    message: /holds a symbol/,
  },
  {
    name: 'metadata is a string',
    run: append(placed({ metadata: 'abc' })),
    error: InvalidInputError,
    message: /metadata of a "placed" message must be a JSON object, got "abc"/,
  },
  {
    name: 'metadata is an array',
    run: append(placed({ metadata: ['a'] })),
    error: InvalidInputError,
    message: /metadata .* must be a JSON object/,
  },
  {
    name: 'metadata is null',
    run: append(placed({ metadata: null })),
    error: InvalidInputError,
    message: /metadata .* must be a JSON object, got null/,
  },
  {
    name: 'metadata is a Map',
    run: append(placed({ metadata: new Map() })),
    error: InvalidInputError,
    message: /metadata .* must be a JSON object/,
  },
  {
    name: 'correlationId is a number',
    run: append(placed({ metadata: { correlationId: 5 } })),
    error: InvalidInputError,
    message: /metadata.correlationId .* got 5/,
  },
  {
    name: 'causationId is an object',
    run: append(placed({ metadata: { causationId: {} } })),
    error: InvalidInputError,
    message: /metadata.causationId/,
  },
  {
    name: 'correlationId of 10k characters',
    run: append(placed({ metadata: { correlationId: LONG } })),
    error: InvalidInputError,
    message: /metadata.correlationId .*… \(10002/,
  },
  {
    name: 'metadata with a NUL character',
    run: append(placed({ metadata: { k: '\u0000' } })),
    error: InvalidInputError,
    message: /metadata .* NUL/,
  },
  {
    name: 'metadata with a BigInt',
    run: append(placed({ metadata: { k: 1n } })),
    error: InvalidInputError,
    message: /BigInt/,
  },
  {
    name: 'tags is a string',
    run: append(placed({ tags: 'a:b' })),
    error: InvalidInputError,
    message: /Invalid tags "a:b"/,
  },
  {
    name: 'empty tag',
    run: append(placed({ tags: [''] })),
    error: InvalidInputError,
    message: /Invalid tag ""/,
  },
  {
    name: 'tag with a space',
    run: append(placed({ tags: ['a b'] })),
    error: InvalidInputError,
    message: /Invalid tag "a b"/,
  },
  {
    name: 'tag is a number',
    run: append(placed({ tags: [1] })),
    error: InvalidInputError,
    message: /Invalid tag 1/,
  },
  {
    name: 'tag of 10k characters',
    run: append(placed({ tags: [LONG] })),
    error: InvalidInputError,
    message: /Invalid tag "x+… \(10002/,
  },
  {
    name: 'tag with NUL',
    run: append(placed({ tags: ['a\u0000'] })),
    error: InvalidInputError,
    message: /Invalid tag/,
  },
  {
    name: '101 tags',
    run: append(placed({ tags: Array.from({ length: 101 }, (_, i) => `t:${i}`) })),
    error: InvalidInputError,
    message: /Too many tags/,
  },
  {
    name: 'id that is not a UUID',
    run: append(placed({ id: 'nope' })),
    error: InvalidInputError,
    message: /Invalid message id "nope"/,
  },
  {
    name: 'empty stream',
    run: append(placed({}), ''),
    error: InvalidInputError,
    message: /Invalid stream name ""/,
  },
  {
    name: 'stream with NUL',
    run: append(placed({}), 'a\u0000b'),
    error: InvalidInputError,
    message: /Invalid stream name/,
  },
  {
    name: 'stream of 10k characters',
    run: append(placed({}), LONG),
    error: InvalidInputError,
    message: /Invalid stream name "x+… /,
  },
  {
    name: 'expectedVersion 1e20',
    run: () => store.append('order-1', placed({}) as never, { expectedVersion: 1e20 }),
    error: InvalidInputError,
    message: /Invalid expected version 100000000000000000000/,
  },
  {
    name: 'expectedVersion -1',
    run: () => store.append('order-1', placed({}) as never, { expectedVersion: -1 }),
    error: InvalidInputError,
    message: /Invalid expected version -1/,
  },
  {
    name: 'expectedVersion a word',
    run: () => store.append('order-1', placed({}) as never, { expectedVersion: 'sideways' as never }),
    error: InvalidInputError,
    message: /Invalid expected version "sideways"/,
  },
  {
    name: 'empty message list',
    run: () => store.append('order-1', []),
    error: InvalidInputError,
    message: /Nothing to append/,
  },
  {
    name: 'one bad message among good ones',
    run: () => store.append('order-1', [placed({}), placed({ data: null })] as never),
    error: InvalidInputError,
    message: /got null/,
  },
  {
    name: 'appendMultiple with one bad stream',
    run: () =>
      store.appendMultiple([
        { stream: 'ok-1', messages: placed({}) as never },
        { stream: 'bad stream', messages: placed({}) as never },
      ]),
    error: InvalidInputError,
    message: /Invalid stream name "bad stream"/,
  },
  {
    name: 'appendMultiple with a stream twice',
    run: () =>
      store.appendMultiple([
        { stream: 'ok-1', messages: placed({}) as never },
        { stream: 'ok-1', messages: placed({}) as never },
      ]),
    error: InvalidInputError,
    message: /appears twice/,
  },
  {
    name: 'one message id twice in one append',
    run: () =>
      store.append('order-1', [placed({ id: DUP_ID }), placed({ id: DUP_ID })] as never, {
        expectedVersion: 1,
      }),
    error: InvalidInputError,
    message: /Message id 0190c1a2-1111-7000-8000-00000000d0b1 appears twice in one append/,
  },
  {
    name: 'one message id in two streams of appendMultiple',
    run: () =>
      store.appendMultiple([
        { stream: 'ok-1', messages: placed({ id: DUP_ID }) as never },
        { stream: 'ok-2', messages: placed({ id: DUP_ID }) as never },
      ]),
    error: InvalidInputError,
    message: /appears twice in one append/,
  },
  {
    name: 'one message id in two streams of a conditional append',
    run: () =>
      appendWithCondition(
        store,
        [
          { stream: 'c-1', messages: placed({ id: DUP_ID }) as never },
          { stream: 'c-2', messages: placed({ id: DUP_ID }) as never },
        ],
        { failIfEventsMatch: Query.of({ types: ['placed'], tags: ['c:1'] }) },
      ),
    error: InvalidInputError,
    message: /appears twice in one append/,
  },
  {
    name: 'conditional append expecting version 1e300',
    run: () =>
      appendWithCondition(store, [{ stream: 'c-1', messages: placed({}) as never, expectedVersion: 1e300 }], {
        failIfEventsMatch: Query.all(),
      }),
    error: InvalidInputError,
    message: /Invalid expected version 1e\+300/,
  },
  {
    // The driver would send U+FFFD in its place: "a-\ud800" and "a-\udc00" would be one stream.
    name: 'stream name with an unpaired surrogate',
    run: append(placed({}), 'order-\ud800'),
    error: InvalidInputError,
    message: /Invalid stream name "order-\\ud800": .*unpaired surrogates/,
  },
  {
    name: 'readStream of a name with an unpaired surrogate',
    run: () => store.readStream('order-\udc00'),
    error: InvalidInputError,
    message: /Invalid stream name/,
  },
  {
    name: 'tag with an unpaired surrogate',
    run: append(placed({ tags: ['order:\ud83d'] })),
    error: InvalidInputError,
    message: /Invalid tag "order:\\ud83d"/,
  },
  {
    name: 'data with an unpaired surrogate',
    run: append(placed({ data: { note: { text: 'half an emoji \ud83d' } } })),
    error: InvalidInputError,
    message: /unpaired UTF-16 surrogate at note\.text/,
  },
  {
    name: 'data with an unpaired surrogate in a key',
    run: append(placed({ data: { 'k\udc00': 1 } })),
    error: InvalidInputError,
    message: /key with an unpaired UTF-16 surrogate/,
  },
  {
    name: 'correlation id with an unpaired surrogate',
    run: append(placed({ metadata: { correlationId: 'c-\ud800' } })),
    error: InvalidInputError,
    message: /metadata\.correlationId .* printable characters/,
  },
  {
    name: 'readStream direction sideways',
    run: () => store.readStream('order-1', { direction: 'sideways' as never }),
    error: InvalidInputError,
    message: /direction must be "forward" or "backward", got "sideways"/,
  },
  {
    name: 'readStream limit 1e20',
    run: () => store.readStream('order-1', { limit: 1e20 }),
    error: InvalidInputError,
    message: /limit must be an integer from 1/,
  },
  {
    name: 'readStream limit 0',
    run: () => store.readStream('order-1', { limit: 0 }),
    error: InvalidInputError,
    message: /limit must be an integer from 1/,
  },
  {
    name: 'readStream limit 1.5',
    run: () => store.readStream('order-1', { limit: 1.5 }),
    error: InvalidInputError,
    message: /limit must be an integer/,
  },
  {
    name: 'readStream from -1',
    run: () => store.readStream('order-1', { from: -1 }),
    error: InvalidInputError,
    message: /from must be an integer from 0/,
  },
  {
    name: 'readStream misspelt option',
    run: () => store.readStream('order-1', { limt: 5 } as never),
    error: InvalidInputError,
    message: /Unknown readStream option "limt"/,
  },
  {
    name: 'readAll limit 1e20 (maxCount)',
    run: () => store.readAll({ limit: 1e20 }),
    error: InvalidInputError,
    message: /limit must be an integer/,
  },
  {
    name: 'readAll after a bad position',
    run: () => store.readAll({ after: { transactionId: 'x', globalPosition: 0 } }),
    error: InvalidInputError,
    message: /after must be a log position/,
  },
  {
    name: 'readAll types not an array',
    run: () => store.readAll({ types: 'placed' as never }),
    error: InvalidInputError,
    message: /types must be an array/,
  },
  {
    name: 'readCategory with a dash',
    run: () => store.readCategory('order-1'),
    error: InvalidInputError,
    message: /Invalid category "order-1"/,
  },
  {
    name: 'conditional append with a bad tag in the query',
    run: () =>
      appendWithCondition(store, [{ stream: 'c-1', messages: placed({}) as never }], {
        failIfEventsMatch: Query.of({ tags: ['a b'] }),
      }),
    error: InvalidInputError,
    message: /Invalid tag "a b"/,
  },
  {
    name: 'conditional append after 1e20',
    run: () =>
      appendWithCondition(store, [{ stream: 'c-1', messages: placed({}) as never }], {
        failIfEventsMatch: Query.all(),
        after: 1e20,
      }),
    error: InvalidInputError,
    message: /Invalid condition position/,
  },
  {
    name: 'schedule with an impossible date',
    run: () => scheduleMessage(store, 'order-1', placed({}) as never, { at: new Date('2026-02-30x') }),
    error: InvalidInputError,
    message: /Invalid schedule time/,
  },
  {
    name: 'schedule with a delay of 1e20',
    run: () => scheduleMessage(store, 'order-1', placed({}) as never, { delay: 1e20 }),
    error: InvalidInputError,
    message: /Invalid delay/,
  },
  {
    name: 'schedule with bad data',
    run: () => scheduleMessage(store, 'order-1', placed({ data: [1] }) as never, { delay: 10 }),
    error: InvalidInputError,
    message: /must be a JSON object/,
  },
  {
    name: 'migrate with a newline in the schema',
    run: () => migrate(pool, 'pwned_a\nCREATE SCHEMA pwned_b;'),
    error: InvalidInputError,
    message: /Invalid schema name "pwned_a\\nCREATE SCHEMA pwned_b;"/,
  },
  {
    name: 'migrate with a quote in the schema',
    run: () => migrate(pool, "pwned_c'x"),
    error: InvalidInputError,
    message: /Invalid schema name/,
  },
  {
    name: 'dumpMigrationsSql with a newline in the schema',
    run: () => dumpMigrationsSql('s\nSELECT 1;'),
    error: InvalidInputError,
    message: /Invalid schema name/,
  },
  {
    name: 'store with a bad schema',
    run: () => createMessageStore({ pool, schema: 'Bad-Schema' }),
    error: InvalidInputError,
    message: /Invalid schema name "Bad-Schema"/,
  },
  {
    name: 'store on a URL with a bad port',
    run: () => createMessageStore({ connectionString: `postgres://u:${SECRET}@127.0.0.1:99999/x` }),
    error: InvalidInputError,
    message: /is not valid/,
  },
  {
    name: 'store on a key=value string',
    run: () => createMessageStore({ connectionString: `host=h password=${SECRET}` }),
    error: InvalidInputError,
    message: /key=value/,
  },
  {
    name: 'migrate on a pool of your own to an unreachable server',
    run: async () => {
      const own = new pg.Pool({ connectionString: `postgres://u:${SECRET}@127.0.0.1:1/x` });
      try {
        await migrate(own, 'hbad_unreachable');
      } finally {
        await own.end();
      }
    },
    error: DatabaseUnreachableError,
    message: /Cannot connect to the database/,
  },
  {
    name: 'store on an unreachable URL',
    run: async () => {
      const s2 = createMessageStore({ connectionString: `postgres://u:${SECRET}@127.0.0.1:1/x` });
      try {
        await s2.append('order-1', placed({}) as never);
      } finally {
        await s2.close();
      }
    },
    error: DatabaseUnreachableError,
    message: /Cannot connect to the database at postgres:\/\/u:\*\*\*@127.0.0.1:1\/x/,
  },
  {
    name: 'config with a key=value URL',
    run: () => resolveConfig({ database: { url: `host=h password=${SECRET}` } }),
    error: ConfigError,
    message: /database.url: expected a postgres:\/\/ URL/,
  },
  {
    name: 'config with a URL whose port is out of range',
    run: () => resolveConfig({ database: { url: `postgres://u:${SECRET}@h:99999/x` } }),
    error: ConfigError,
    message: /database.url: expected a postgres:\/\/ URL, got one that is not valid \(it cannot be parsed/,
  },
  {
    name: 'readByQuery with an unknown option',
    run: () => readByQuery(pool, store.sqlContext, Query.all(), { limt: 5 } as never),
    error: InvalidInputError,
    message: /Unknown readByQuery option "limt" \(allowed: after, limit\)/,
  },
  {
    name: 'readByQuery with limit 1e20',
    run: () => readByQuery(pool, store.sqlContext, Query.all(), { limit: 1e20 }),
    error: InvalidInputError,
    message: /limit must be an integer from 1 to 9007199254740991, got 100000000000000000000/,
  },
  {
    name: 'readByQuery with a negative limit',
    run: () => readByQuery(pool, store.sqlContext, Query.all(), { limit: -1 }),
    error: InvalidInputError,
    message: /limit must be an integer from 1/,
  },
  {
    name: 'readByQuery after a text position',
    run: () => readByQuery(pool, store.sqlContext, Query.all(), { after: 'x' as never }),
    error: InvalidInputError,
    message: /after must be a log position/,
  },
  {
    name: 'readByQuery after a fractional global position',
    run: () => readByQuery(pool, store.sqlContext, Query.all(), { after: 1.5 }),
    error: InvalidInputError,
    message: /after must be an integer from 0/,
  },
  {
    name: 'readByQuery with a plain object for a query',
    run: () => readByQuery(pool, store.sqlContext, { tags: ['order:1'] } as never),
    error: InvalidInputError,
    message: /Expected a Query, got/,
  },
  {
    name: 'readForDecision with pageSize 0',
    run: () => readForDecision(store, Query.all(), { pageSize: 0 }),
    error: InvalidInputError,
    message: /pageSize must be an integer from 1/,
  },
  {
    name: 'readForDecision with options a string',
    run: () => readForDecision(store, Query.all(), 'all' as never),
    error: InvalidInputError,
    message: /readForDecision options must be an object, got "all"/,
  },
  {
    name: 'in-memory readByQuery with limit 1e20 (same rule)',
    run: () => createInMemoryStore().readByQuery(Query.all(), { limit: 1e20 }),
    error: InvalidInputError,
    message: /limit must be an integer from 1 to 9007199254740991/,
  },
  {
    name: 'in-memory readByQuery with an unknown option',
    run: () => createInMemoryStore().readByQuery(Query.all(), { direction: 'backward' } as never),
    error: InvalidInputError,
    message: /Unknown readByQuery option "direction"/,
  },
  {
    name: 'tailMessages with an unknown option',
    run: () => tailMessages(pool, store.sqlContext, { target: { category: 'order' }, folow: false } as never),
    error: InvalidInputError,
    message: /Unknown tailMessages option "folow"/,
  },
  {
    name: 'tailMessages with batchSize 1e20',
    run: () => tailMessages(pool, store.sqlContext, { target: { category: 'order' }, batchSize: 1e20 }),
    error: InvalidInputError,
    message: /batchSize must be an integer from 1 to 9007199254740991/,
  },
  {
    name: 'tailMessages from a negative position',
    run: () =>
      tailMessages(pool, store.sqlContext, { target: { stream: 'order-1' }, from: { position: -1 } }),
    error: InvalidInputError,
    message: /from.position must be an integer from 0/,
  },
  {
    name: 'tailMessages from "start"',
    run: () =>
      tailMessages(pool, store.sqlContext, { target: { stream: 'order-1' }, from: 'start' as never }),
    error: InvalidInputError,
    message: /from must be "end", \{ position: integer \} or \{ time: Date \}, got "start"/,
  },
  {
    name: 'tailMessages of a category with a "-"',
    run: () => tailMessages(pool, store.sqlContext, { target: { category: 'order-1' } }),
    error: InvalidInputError,
    message: /Invalid category "order-1"/,
  },
  {
    name: 'tailMessages with follow "no"',
    run: () => tailMessages(pool, store.sqlContext, { target: { stream: 'order-1' }, follow: 'no' as never }),
    error: InvalidInputError,
    message: /follow must be true or false, got "no"/,
  },
  {
    name: 'replay with an unknown option',
    run: () =>
      replay(pool, store.sqlContext, { group: 'G', subscription: 's', form: { position: 1 } } as never),
    error: InvalidInputError,
    message: /Unknown replay option "form"/,
  },
  {
    name: 'replay from position 1e20',
    run: () => replay(pool, store.sqlContext, { group: 'G', subscription: 's', from: { position: 1e20 } }),
    error: InvalidInputError,
    message: /from.position must be an integer from 0 to 9007199254740991/,
  },
  {
    name: 'replay to an invalid date',
    run: () => replay(pool, store.sqlContext, { group: 'G', subscription: 's', to: { time: new Date('x') } }),
    error: InvalidInputError,
    message: /to must be \{ position: integer \} or \{ time: Date \}/,
  },
  {
    name: 'replay with a negative busy timeout',
    run: () => replay(pool, store.sqlContext, { group: 'G', subscription: 's' }, { busyTimeoutMs: -5 }),
    error: InvalidInputError,
    message: /busyTimeoutMs must be an integer from 0/,
  },
  {
    name: 'retryCheckpoints with an unknown status',
    run: () => retryCheckpoints(pool, store.sqlContext, { status: 'broken' as never }),
    error: InvalidInputError,
    message: /status must be "active" or "retry" or "failed", got "broken"/,
  },
  {
    name: 'retryCheckpoints with a misspelt filter',
    run: () => retryCheckpoints(pool, store.sqlContext, { grup: 'G' } as never),
    error: InvalidInputError,
    message: /Unknown retryCheckpoints option "grup"/,
  },
  {
    name: 'skipCheckpoints with ids not an array',
    run: () => skipCheckpoints(pool, store.sqlContext, { ids: 'G/s/order-1' as never }),
    error: InvalidInputError,
    message: /ids must be an array of \{ group, subscription, stream \}/,
  },
  {
    name: 'listCheckpoints with limit 1e20',
    run: () => listCheckpoints(pool, store.sqlContext, {}, { limit: 1e20 }),
    error: InvalidInputError,
    message: /limit must be an integer from 1 to 9007199254740991/,
  },
  {
    name: 'listCheckpoints with all "yes"',
    run: () => listCheckpoints(pool, store.sqlContext, {}, { all: 'yes' as never }),
    error: InvalidInputError,
    message: /all must be true or false, got "yes"/,
  },
  {
    name: 'lagSnapshot with an unknown option',
    run: () => lagSnapshot(pool, store.sqlContext, { groups: ['G'] } as never),
    error: InvalidInputError,
    message: /Unknown lagSnapshot option "groups"/,
  },
  {
    name: 'lagSnapshot with staleWorkerSeconds 1e20',
    run: () => lagSnapshot(pool, store.sqlContext, { staleWorkerSeconds: 1e20 }),
    error: InvalidInputError,
    message: /staleWorkerSeconds must be an integer from 1 to 9007199254740991/,
  },
  {
    name: 'resetSubscription to "start"',
    run: () =>
      resetSubscription(pool, store.sqlContext, { group: 'G', subscription: 's', to: 'start' as never }),
    error: InvalidInputError,
    message: /to must be "beginning" or "end", got "start"/,
  },
];

describe('bad input to the library: refused with a typed error, nothing written', () => {
  it.each(libCases)('$name', async (c) => {
    let caught: unknown;
    try {
      await c.run();
    } catch (err) {
      caught = err;
    }
    expect(caught, 'no error thrown').toBeInstanceOf(c.error);
    expect(caught).toBeInstanceOf(BeckettError);
    const e = caught as BeckettError;
    expect(e.message).toMatch(c.message);
    expect(e.message.length).toBeLessThan(600);
    expectCleanText(e.message);
    expect(e.exitCode).not.toBe(ExitCode.unexpected);
    await expectNothingWritten();
  });

  it('has at least 60 cases in all', () => {
    expect(cliCases.length + libCases.length).toBeGreaterThanOrEqual(120);
  });
});
