import { resolve } from 'node:path';
import { assertDatabaseUrl } from '../db/databaseUrl.js';
import { assertSafeSchemaName } from '../db/identifier.js';
import { BeckettError, ConfigError } from '../errors.js';
import { parseDuration, resolveRetention } from '../retention/resolveRetention.js';
import { resolveRecurring } from '../scheduling/resolveRecurring.js';
import type {
  BeckettConfig,
  MessageDefinition,
  QueueConfig,
  ResolvedConfig,
  ResolvedGroup,
  ResolvedQueue,
  ResolvedSubscription,
  SubscriptionConfig,
} from './types.js';

function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return `a ${typeof value}`;
}

/** Collects problems with their key paths so the user sees them all at once. */
class Problems {
  readonly list: string[] = [];
  add(key: string, expected: string, got: unknown): void {
    this.list.push(`${key}: expected ${expected}, got ${describe(got)}`);
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isPositiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;
const isNonNegativeInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,99}$/;

/**
 * Default handler timeout. Handlers of an event-driven system are short (a projection's write, a
 * call to another service): 30 s is far past any of them, matches the default lease and drain
 * timeout (a draining worker is not kept waiting longer by a stuck handler) and common HTTP client
 * timeouts, and a stuck handler then costs its stream 30 s plus the retry backoff.
 */
export const DEFAULT_HANDLER_TIMEOUT_MS = 30_000;
/** setTimeout's limit (about 24.8 days). */
const MAX_TIMEOUT_MS = 2_147_483_647 - 1000;
const TIMEOUT = "milliseconds or a duration such as '30s', '5m' (at most 24 days)";

/** A handler timeout in ms, or undefined (and a problem) when the value is not one. */
function resolveTimeout(p: Problems, key: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined || ms > MAX_TIMEOUT_MS) {
    p.add(key, TIMEOUT, value);
    return undefined;
  }
  return ms;
}

function checkKeys(p: Problems, obj: Record<string, unknown>, path: string, allowed: string[]): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key))
      p.list.push(`${path ? `${path}.` : ''}${key}: unknown key (allowed: ${allowed.join(', ')})`);
  }
}

function resolveSubscription(
  p: Problems,
  group: string,
  name: string,
  raw: unknown,
  messages: Record<string, MessageDefinition>,
  groupHandlerTimeoutMs: number,
): ResolvedSubscription | undefined {
  const path = `groups.${group}.subscriptions.${name}`;
  if (!isRecord(raw)) {
    p.add(path, 'an object with a handler', raw);
    return undefined;
  }
  const s = raw as SubscriptionConfig & Record<string, unknown>;
  checkKeys(p, s, path, [
    'types',
    'category',
    'stream',
    'handler',
    'batchHandler',
    'startFrom',
    'maxRetries',
    'backoff',
    'batchSize',
    'transactional',
    'onUnmappedType',
    'handlerTimeout',
  ]);
  if (!NAME.test(name)) p.add(path, 'a subscription name of letters, digits, "_", "-" or "."', name);
  if (s.handler === undefined && s.batchHandler === undefined)
    p.add(`${path}.handler`, 'a function (or give batchHandler)', undefined);
  if (s.handler !== undefined && typeof s.handler !== 'function')
    p.add(`${path}.handler`, 'a function', s.handler);
  if (s.batchHandler !== undefined && typeof s.batchHandler !== 'function')
    p.add(`${path}.batchHandler`, 'a function', s.batchHandler);
  if (s.handler !== undefined && s.batchHandler !== undefined)
    p.list.push(`${path}: give handler or batchHandler, not both`);
  if (
    s.types !== undefined &&
    (!Array.isArray(s.types) || s.types.some((t) => typeof t !== 'string' || t === ''))
  ) {
    p.add(`${path}.types`, 'an array of message type names', s.types);
  }
  if (
    s.category !== undefined &&
    (typeof s.category !== 'string' || s.category === '' || s.category.includes('-'))
  ) {
    p.add(`${path}.category`, 'a category name (no "-")', s.category);
  }
  if (s.stream !== undefined && (typeof s.stream !== 'string' || s.stream === ''))
    p.add(`${path}.stream`, 'a stream name', s.stream);
  if (s.startFrom !== undefined && s.startFrom !== 'beginning' && s.startFrom !== 'end') {
    p.add(`${path}.startFrom`, '"beginning" or "end"', s.startFrom);
  }
  if (s.maxRetries !== undefined && !isNonNegativeInt(s.maxRetries))
    p.add(`${path}.maxRetries`, 'an integer >= 0', s.maxRetries);
  if (s.batchSize !== undefined && !isPositiveInt(s.batchSize))
    p.add(`${path}.batchSize`, 'an integer >= 1', s.batchSize);
  if (s.transactional !== undefined && typeof s.transactional !== 'boolean')
    p.add(`${path}.transactional`, 'true or false', s.transactional);
  if (s.onUnmappedType !== undefined && !['fail', 'skip', 'raw'].includes(s.onUnmappedType)) {
    p.add(`${path}.onUnmappedType`, '"fail", "skip" or "raw"', s.onUnmappedType);
  }
  if (s.backoff !== undefined) {
    if (!isRecord(s.backoff)) p.add(`${path}.backoff`, 'an object { initialMs, maxMs }', s.backoff);
    else {
      checkKeys(p, s.backoff, `${path}.backoff`, ['initialMs', 'maxMs']);
      if (s.backoff.initialMs !== undefined && !isPositiveInt(s.backoff.initialMs))
        p.add(`${path}.backoff.initialMs`, 'milliseconds >= 1', s.backoff.initialMs);
      if (s.backoff.maxMs !== undefined && !isPositiveInt(s.backoff.maxMs))
        p.add(`${path}.backoff.maxMs`, 'milliseconds >= 1', s.backoff.maxMs);
    }
  }
  const handlerTimeoutMs = resolveTimeout(p, `${path}.handlerTimeout`, s.handlerTimeout);
  const declared = Object.keys(messages);
  // A type the config does not declare is a typo more often than not, and by default ('fail') its
  // messages would fail the stream. A subscription that sets onUnmappedType asks for undeclared
  // types on purpose; without any declared type there is nothing to check against.
  if (declared.length > 0 && Array.isArray(s.types) && s.onUnmappedType === undefined) {
    const unknown = (s.types as unknown[]).filter(
      (t) => typeof t === 'string' && t !== '' && !declared.includes(t),
    );
    if (unknown.length > 0)
      p.list.push(
        `${path}.types: ${unknown.map((t) => `"${String(t)}"`).join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not declared under messages (declared: ${declared.join(', ')}; declare it, or set onUnmappedType ('raw', 'skip' or 'fail') to list undeclared types on purpose)`,
      );
  }
  const types = Array.isArray(s.types) ? (s.types as string[]) : declared.length > 0 ? declared : undefined;
  return {
    group,
    name,
    types,
    category: s.category,
    stream: s.stream,
    // The worker wraps these (instrumentSubscription) and so supplies schedule/cancelScheduled, and
    // a transactional subscription's client: the context the user's handler was typed with.
    handler: s.handler as ResolvedSubscription['handler'],
    batchHandler: s.batchHandler as ResolvedSubscription['batchHandler'],
    startFrom: s.startFrom ?? 'beginning',
    maxRetries: s.maxRetries ?? 10,
    backoff: { initialMs: s.backoff?.initialMs ?? 1000, maxMs: s.backoff?.maxMs ?? 300_000 },
    batchSize: s.batchSize ?? 100,
    transactional: s.transactional ?? false,
    onUnmappedType: s.onUnmappedType ?? 'fail',
    handlerTimeoutMs: handlerTimeoutMs ?? groupHandlerTimeoutMs,
  };
}

/**
 * Check a raw config (from a file or code) and apply defaults. Throws one ConfigError naming the
 * file and every key that is wrong.
 */
export function resolveConfig(
  raw: unknown,
  opts: { path?: string; projectDir?: string } = {},
): ResolvedConfig {
  const p = new Problems();
  const where = opts.path ?? 'config';
  const projectDir = opts.projectDir ?? process.cwd();
  if (!isRecord(raw)) {
    throw new ConfigError(
      `${where}: expected the default export to be a config object (use defineConfig({...})), got ${describe(raw)}`,
    );
  }
  const cfg = raw as BeckettConfig & Record<string, unknown>;
  checkKeys(p, cfg, '', ['database', 'messages', 'groups', 'retention', 'recurring', 'migrations', 'queues']);

  const database: ResolvedConfig['database'] = {
    url: undefined,
    readUrl: undefined,
    listenUrl: undefined,
    schema: 'beckett',
    preparedStatements: true,
    poolSize: undefined,
  };
  if (cfg.database !== undefined) {
    if (!isRecord(cfg.database)) p.add('database', 'an object { url, schema }', cfg.database);
    else {
      const d = cfg.database;
      checkKeys(p, d, 'database', [
        'url',
        'readUrl',
        'listenUrl',
        'schema',
        'preparedStatements',
        'poolSize',
      ]);
      const url = (key: 'url' | 'readUrl' | 'listenUrl'): string | undefined => {
        const value = d[key];
        if (value === undefined) return undefined;
        try {
          assertDatabaseUrl(value, `database.${key}`);
          return value as string;
        } catch (err) {
          if (!(err instanceof BeckettError)) throw err;
          // The URL itself is never repeated: it may hold a password.
          p.list.push(
            `database.${key}: expected a postgres:// URL, got ${typeof value === 'string' ? `one that is not valid (${err.message.replace(/^.*is not valid: /, '').replace(/\.$/, '')})` : describe(value)}`,
          );
          return undefined;
        }
      };
      database.url = url('url');
      database.readUrl = url('readUrl');
      database.listenUrl = url('listenUrl');
      // A listen URL says `url` goes through a pooler: no named statements unless asked for.
      if (database.listenUrl && d.preparedStatements === undefined) database.preparedStatements = false;
      if (d.schema !== undefined) {
        try {
          database.schema = assertSafeSchemaName(String(d.schema));
        } catch (err) {
          p.add('database.schema', 'lower case letters, digits and "_", starting with a letter', d.schema);
          if (!(err instanceof BeckettError)) throw err;
        }
      }
      if (d.preparedStatements !== undefined) {
        if (typeof d.preparedStatements !== 'boolean')
          p.add('database.preparedStatements', 'true or false', d.preparedStatements);
        else database.preparedStatements = d.preparedStatements;
      }
      if (d.poolSize !== undefined) {
        if (!isPositiveInt(d.poolSize)) p.add('database.poolSize', 'an integer >= 1', d.poolSize);
        else database.poolSize = d.poolSize;
      }
    }
  }

  const messages: Record<string, MessageDefinition> = {};
  if (cfg.messages !== undefined) {
    if (!isRecord(cfg.messages)) p.add('messages', 'an object of message type definitions', cfg.messages);
    else {
      for (const [type, def] of Object.entries(cfg.messages)) {
        const path = `messages.${type}`;
        if (!isRecord(def)) {
          p.add(path, 'a message definition (message<T>() or message(schema))', def);
          continue;
        }
        checkKeys(p, def, path, ['schema', 'upcast']);
        const schema = def.schema as unknown;
        if (
          (schema !== undefined && !(isRecord(schema) || typeof schema === 'function')) ||
          (schema !== undefined && !('~standard' in (schema as object)))
        ) {
          p.add(`${path}.schema`, 'a Standard Schema validator (zod, valibot, arktype, ...)', schema);
        }
        if (def.upcast !== undefined && typeof def.upcast !== 'function')
          p.add(`${path}.upcast`, 'a function', def.upcast);
        messages[type] = def as MessageDefinition;
      }
    }
  }

  const groups = new Map<string, ResolvedGroup>();
  if (cfg.groups !== undefined) {
    if (!isRecord(cfg.groups)) p.add('groups', 'an object of groups', cfg.groups);
    else {
      for (const [name, g] of Object.entries(cfg.groups)) {
        const path = `groups.${name}`;
        if (!NAME.test(name)) p.add(path, 'a group name of letters, digits, "_", "-" or "."', name);
        const queueOnly = isRecord(g) && g.subscriptions === undefined && Array.isArray(g.queues);
        if (!isRecord(g) || (!isRecord(g.subscriptions) && !queueOnly)) {
          p.add(
            `${path}.subscriptions`,
            'an object of subscriptions (or give queues)',
            isRecord(g) ? g.subscriptions : g,
          );
          continue;
        }
        if (queueOnly) g.subscriptions = {};
        checkKeys(p, g, path, ['subscriptions', 'concurrency', 'handlerTimeout', 'queues']);
        const groupQueues = resolveGroupQueues(p, path, g.queues, cfg.queues);
        if (g.concurrency !== undefined && !isPositiveInt(g.concurrency))
          p.add(`${path}.concurrency`, 'an integer >= 1', g.concurrency);
        const groupTimeout =
          resolveTimeout(p, `${path}.handlerTimeout`, g.handlerTimeout) ?? DEFAULT_HANDLER_TIMEOUT_MS;
        // An empty group would mark every subscription of the group unknown in the database, by
        // accident (a config built at runtime that came out empty). Retiring is removing the group.
        if (Object.keys(g.subscriptions as object).length === 0 && !queueOnly)
          p.add(
            `${path}.subscriptions`,
            'at least one subscription (to retire a group, remove it from groups; a subscription left out of every live config is marked unknown)',
            g.subscriptions,
          );
        const subs = new Map<string, ResolvedSubscription>();
        for (const [subName, sub] of Object.entries(g.subscriptions as object)) {
          const r = resolveSubscription(p, name, subName, sub, messages, groupTimeout);
          if (r) subs.set(subName, r);
        }
        groups.set(name, {
          name,
          concurrency: (g.concurrency as number | undefined) ?? 4,
          subscriptions: subs,
          queues: groupQueues,
        });
      }
    }
  }

  const retention = resolveRetention(cfg.retention, (key, expected, got) =>
    p.list.push(`${key}: expected ${expected}, got ${got}`),
  );

  const recurring = resolveRecurring(cfg.recurring, (line) => p.list.push(line));

  let migrations: ResolvedConfig['migrations'];
  if (cfg.migrations !== undefined) {
    if (!isRecord(cfg.migrations))
      p.add('migrations', "an object { folder: './migrations' }", cfg.migrations);
    else {
      checkKeys(p, cfg.migrations, 'migrations', ['folder']);
      const folder = cfg.migrations.folder;
      if (typeof folder !== 'string' || folder.trim() === '')
        p.add('migrations.folder', "a folder path such as './migrations'", folder);
      else migrations = { folder: resolve(projectDir, folder) };
    }
  }
  const queues = resolveQueues(p, cfg.queues);

  if (p.list.length > 0) {
    throw new ConfigError(
      `${where} is invalid:\n${p.list.map((l) => `  - ${l}`).join('\n')}`,
      'Fix the keys above; defineConfig() in your editor shows what each one takes.',
    );
  }
  return {
    path: opts.path,
    projectDir: resolve(projectDir),
    database,
    messages,
    groups,
    retention,
    recurring,
    ...(migrations ? { migrations } : {}),
    queues,
  };
}

/** Default visibility timeout of a queue's deliveries. */
export const DEFAULT_VISIBILITY_TIMEOUT_MS = 30_000;
const QUEUE_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,99}$/;

function resolveGroupQueues(p: Problems, path: string, raw: unknown, declared: unknown): string[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw) || raw.some((q) => typeof q !== 'string')) {
    p.add(`${path}.queues`, 'an array of queue names (declared under queues)', raw);
    return [];
  }
  for (const q of raw as string[])
    if (!isRecord(declared) || !(q in declared))
      p.list.push(
        `${path}.queues: queue "${q}" is not declared under queues${isRecord(declared) && Object.keys(declared).length > 0 ? ` (declared: ${Object.keys(declared).join(', ')})` : ''}`,
      );
  return [...new Set(raw as string[])];
}

function resolveQueues(p: Problems, raw: unknown): Map<string, ResolvedQueue> {
  const queues = new Map<string, ResolvedQueue>();
  if (raw === undefined) return queues;
  if (!isRecord(raw)) {
    p.add('queues', 'an object of queues { name: { handler, ... } }', raw);
    return queues;
  }
  for (const [name, q] of Object.entries(raw)) {
    const path = `queues.${name}`;
    if (!QUEUE_NAME.test(name)) p.add(path, 'a queue name of letters, digits, "_", "-" or "."', name);
    if (!isRecord(q)) {
      p.add(path, 'an object with a handler', q);
      continue;
    }
    const c = q as QueueConfig & Record<string, unknown>;
    checkKeys(p, c, path, [
      'handler',
      'concurrency',
      'visibilityTimeout',
      'maxDeliveries',
      'backoff',
      'batchSize',
      'handlerTimeout',
    ]);
    if (typeof c.handler !== 'function') p.add(`${path}.handler`, 'a function', c.handler);
    if (c.concurrency !== undefined && !isPositiveInt(c.concurrency))
      p.add(`${path}.concurrency`, 'an integer >= 1', c.concurrency);
    if (c.maxDeliveries !== undefined && !isPositiveInt(c.maxDeliveries))
      p.add(`${path}.maxDeliveries`, 'an integer >= 1', c.maxDeliveries);
    if (c.batchSize !== undefined && !isPositiveInt(c.batchSize))
      p.add(`${path}.batchSize`, 'an integer >= 1', c.batchSize);
    let visibilityMs = resolveTimeout(p, `${path}.visibilityTimeout`, c.visibilityTimeout);
    if (visibilityMs !== undefined && visibilityMs < 100) {
      p.add(`${path}.visibilityTimeout`, 'at least 100 ms', c.visibilityTimeout);
      visibilityMs = undefined;
    }
    let handlerTimeoutMs = resolveTimeout(p, `${path}.handlerTimeout`, c.handlerTimeout);
    if (handlerTimeoutMs !== undefined && handlerTimeoutMs < 1) {
      p.add(`${path}.handlerTimeout`, 'at least 1 ms', c.handlerTimeout);
      handlerTimeoutMs = undefined;
    }
    if (c.backoff !== undefined) {
      if (!isRecord(c.backoff)) p.add(`${path}.backoff`, 'an object { initialMs, maxMs }', c.backoff);
      else {
        checkKeys(p, c.backoff, `${path}.backoff`, ['initialMs', 'maxMs']);
        if (c.backoff.initialMs !== undefined && !isNonNegativeInt(c.backoff.initialMs))
          p.add(`${path}.backoff.initialMs`, 'milliseconds >= 0', c.backoff.initialMs);
        if (c.backoff.maxMs !== undefined && !isNonNegativeInt(c.backoff.maxMs))
          p.add(`${path}.backoff.maxMs`, 'milliseconds >= 0', c.backoff.maxMs);
      }
    }
    const concurrency = (c.concurrency as number | undefined) ?? 10;
    queues.set(name, {
      name,
      handler: c.handler as ResolvedQueue['handler'],
      concurrency,
      visibilityTimeoutMs: visibilityMs ?? DEFAULT_VISIBILITY_TIMEOUT_MS,
      maxDeliveries: (c.maxDeliveries as number | undefined) ?? 5,
      backoff: { initialMs: c.backoff?.initialMs ?? 1000, maxMs: c.backoff?.maxMs ?? 300_000 },
      batchSize: (c.batchSize as number | undefined) ?? concurrency,
      handlerTimeoutMs: handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS,
    });
  }
  return queues;
}
