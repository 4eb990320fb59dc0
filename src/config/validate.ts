import { resolve } from 'node:path';
import { assertSafeSchemaName } from '../db/identifier.js';
import { BeckettError, ConfigError } from '../errors.js';
import { resolveRetention } from '../retention/resolveRetention.js';
import { resolveRecurring } from '../scheduling/resolveRecurring.js';
import type {
  BeckettConfig,
  MessageDefinition,
  ResolvedConfig,
  ResolvedGroup,
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
  const declared = Object.keys(messages);
  const types = Array.isArray(s.types) ? (s.types as string[]) : declared.length > 0 ? declared : undefined;
  return {
    group,
    name,
    types,
    category: s.category,
    stream: s.stream,
    handler: s.handler,
    batchHandler: s.batchHandler,
    startFrom: s.startFrom ?? 'beginning',
    maxRetries: s.maxRetries ?? 10,
    backoff: { initialMs: s.backoff?.initialMs ?? 1000, maxMs: s.backoff?.maxMs ?? 300_000 },
    batchSize: s.batchSize ?? 100,
    transactional: s.transactional ?? false,
    onUnmappedType: s.onUnmappedType ?? 'fail',
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
  checkKeys(p, cfg, '', ['database', 'messages', 'groups', 'retention', 'recurring']);

  const database: ResolvedConfig['database'] = {
    url: undefined,
    schema: 'beckett',
    preparedStatements: true,
    poolSize: 10,
  };
  if (cfg.database !== undefined) {
    if (!isRecord(cfg.database)) p.add('database', 'an object { url, schema }', cfg.database);
    else {
      const d = cfg.database;
      checkKeys(p, d, 'database', ['url', 'schema', 'preparedStatements', 'poolSize']);
      if (d.url !== undefined && (typeof d.url !== 'string' || !/^postgres(ql)?:\/\//.test(d.url))) {
        p.add('database.url', 'a postgres:// URL', d.url === undefined ? d.url : '(hidden)');
      } else database.url = d.url;
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
        if (!isRecord(g) || !isRecord(g.subscriptions)) {
          p.add(`${path}.subscriptions`, 'an object of subscriptions', isRecord(g) ? g.subscriptions : g);
          continue;
        }
        checkKeys(p, g, path, ['subscriptions', 'concurrency']);
        if (g.concurrency !== undefined && !isPositiveInt(g.concurrency))
          p.add(`${path}.concurrency`, 'an integer >= 1', g.concurrency);
        const subs = new Map<string, ResolvedSubscription>();
        for (const [subName, sub] of Object.entries(g.subscriptions)) {
          const r = resolveSubscription(p, name, subName, sub, messages);
          if (r) subs.set(subName, r);
        }
        groups.set(name, {
          name,
          concurrency: (g.concurrency as number | undefined) ?? 4,
          subscriptions: subs,
        });
      }
    }
  }

  const retention = resolveRetention(cfg.retention, (key, expected, got) =>
    p.list.push(`${key}: expected ${expected}, got ${got}`),
  );

  const recurring = resolveRecurring(cfg.recurring, (line) => p.list.push(line));

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
  };
}
