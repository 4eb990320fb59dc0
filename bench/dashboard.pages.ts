/**
 * dashboard.pages: server time of every dashboard page on a big store. Loads 1M messages (COPY) over
 * 10k streams in 10 categories, 100k checkpoints (10 subscriptions x 10k streams: most caught up,
 * some lagging, retrying, failed and leased), 2k scheduled messages and 5k audit entries; then asks
 * the dashboard's HTTP handler (a real server on a free port, keep-alive) for each page's API
 * calls, as the page does, and reports p50/p95 per page. Queues: 10k jobs in two queues (ready,
 * delayed, in flight) and 100 dead letters. A page's time is the slowest of its calls
 * run in parallel, as the browser runs them. The budget is 200 ms per page: the summary line's
 * ratio is p95 / 200 ms (below 1 is within budget).
 *
 *   npm run bench -- dashboard.pages
 *   BENCH_SCALE=0.1 npm run bench -- dashboard.pages      100k messages, 1k streams, 10k checkpoints
 *   BENCH_KEEP=1 npm run bench -- dashboard.pages         keep the loaded schema (its name is printed)
 *   BENCH_SCHEMA=<name> npm run bench -- dashboard.pages  measure a kept schema again (migrated first)
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { createBeckett } from '../src/admin/createBeckett.js';
import { createDashboardHandler } from '../src/dashboard/createDashboardHandler.js';
import { escapeIdentifier } from '../src/db/identifier.js';
import { migrate } from '../src/db/migrate.js';
import { benchDatabaseUrl, describeUrl, dropSchemas, migratedSchema, openPool } from './lib/db.js';
import { scaled } from './lib/env.js';
import { printTable } from './lib/format.js';
import { copyMessages, waitUntilReadable } from './lib/load.js';
import { Latencies } from './lib/stats.js';

const BUDGET_MS = 200;
const CATEGORIES = 10;
const SUBSCRIPTIONS = 10;
const ROUNDS = Number(process.env.BENCH_DASHBOARD_ROUNDS ?? 40);

async function load(pool: pg.Pool, schema: string, messages: number, streams: number, checkpoints: number) {
  const s = escapeIdentifier(schema);
  const perCategory = Math.ceil(streams / CATEGORIES);
  for (let c = 0; c < CATEGORIES; c++)
    await copyMessages(pool, schema, Math.ceil(messages / CATEGORIES), perCategory, `cat${c}`);
  // Some causation links, so the message page's "caused by" probe finds something.
  await pool.query(
    `UPDATE ${s}.messages SET metadata = metadata || jsonb_build_object('causationId', id::text)
      WHERE global_position % 1000 = 0`,
  );
  await pool.query(`INSERT INTO ${s}.subscription_groups (name) VALUES ('G')`);
  await pool.query(
    `INSERT INTO ${s}.subscriptions (group_name, name, status)
     SELECT 'G', 'sub' || i, CASE WHEN i = 0 THEN 'paused' ELSE 'active' END FROM generate_series(0, $1::int - 1) i`,
    [SUBSCRIPTIONS],
  );
  // Each subscription has a checkpoint on checkpoints / SUBSCRIPTIONS streams; 1% lagging, 0.5%
  // retrying, 0.5% failed, 0.2% leased: the rest caught up.
  const version = Math.max(1, Math.floor(messages / streams));
  await pool.query(
    `INSERT INTO ${s}.checkpoints (group_name, subscription_name, stream_name, stream_version,
                                   stream_position, status, attempts, last_error, next_attempt_at,
                                   leased_by, leased_until)
     SELECT 'G', 'sub' || (i % $1), 'cat' || ((i / $1) % $2) || '-' || ((i / $1) / $2), $3::bigint,
            CASE WHEN i % 1000 < 20 THEN $3::bigint - 1 ELSE $3::bigint END,
            CASE WHEN i % 1000 BETWEEN 10 AND 14 THEN 'retry' WHEN i % 1000 BETWEEN 15 AND 19 THEN 'failed' ELSE 'active' END,
            CASE WHEN i % 1000 BETWEEN 10 AND 19 THEN 3 ELSE 0 END,
            CASE WHEN i % 1000 BETWEEN 10 AND 19 THEN jsonb_build_object('type', 'Error', 'message', 'boom ' || i,
                 'stack', 'Error: boom\n    at handler', 'attempt', 3, 'at', now()) END,
            now() + CASE WHEN i % 1000 BETWEEN 10 AND 14 THEN interval '1 minute' ELSE interval '0' END,
            CASE WHEN i % 1000 BETWEEN 20 AND 21 THEN 'worker-1' END,
            CASE WHEN i % 1000 BETWEEN 20 AND 21 THEN now() + interval '1 hour' END
       FROM generate_series(0, $4::int - 1) i`,
    [SUBSCRIPTIONS, CATEGORIES, version, checkpoints],
  );
  await pool.query(
    `INSERT INTO ${s}.workers (id, host, pid, group_name, concurrency, heartbeat_at)
     SELECT 'worker-' || i, 'host-' || i, 1000 + i, 'G', 4, now() - (i || ' minutes')::interval
       FROM generate_series(1, 20) i`,
  );
  await pool.query(
    `INSERT INTO ${s}.scheduled_messages (id, stream_name, type, data, deliver_at)
     SELECT gen_random_uuid(), 'reminder-' || i, 'Reminder', '{}', now() + (i || ' minutes')::interval
       FROM generate_series(1, 2000) i`,
  );
  await pool.query(
    `INSERT INTO ${s}.audit_log (actor, action, target, result, detail)
     SELECT 'bench', 'retry', jsonb_build_object('checkpoints', jsonb_build_array('G/sub1/cat1-' || i)), 'ok', '{}'
       FROM generate_series(1, 5000) i`,
  );
  await pool.query(
    `INSERT INTO ${s}.queue_jobs (id, queue, type, data, run_at, visible_at, deliveries, lease_token, leased_by)
     SELECT gen_random_uuid(), CASE WHEN i % 2 = 0 THEN 'emails' ELSE 'reports' END, 'job', jsonb_build_object('i', i),
            now(), now() + CASE i % 10 WHEN 0 THEN interval '1 hour' WHEN 1 THEN interval '30 seconds' ELSE interval '0' END,
            CASE WHEN i % 10 = 1 THEN 1 ELSE 0 END,
            CASE WHEN i % 10 = 1 THEN gen_random_uuid() END, CASE WHEN i % 10 = 1 THEN 'worker-1' END
       FROM generate_series(1, 10000) i`,
  );
  await pool.query(
    `INSERT INTO ${s}.queue_dead_letters (id, queue, type, data, metadata, deliveries, errors, created_at)
     SELECT gen_random_uuid(), 'emails', 'job', '{}', '{}', 5,
            jsonb_build_array(jsonb_build_object('delivery', 5, 'at', now(), 'name', 'Error', 'message', 'smtp down')), now()
       FROM generate_series(1, 100) i`,
  );
  for (const t of [
    'messages',
    'checkpoints',
    'subscriptions',
    'workers',
    'scheduled_messages',
    'audit_log',
    'queue_jobs',
    'queue_dead_letters',
  ])
    await pool.query(`ANALYZE ${s}.${t}`);
}

async function main(): Promise<void> {
  const url = await benchDatabaseUrl();
  const messages = scaled(1_000_000, 10_000);
  const streams = scaled(10_000, 100);
  const checkpoints = scaled(100_000, 1_000);
  console.log(
    `dashboard.pages on ${describeUrl(url)}: ${messages} messages, ${streams} streams, ${checkpoints} checkpoints`,
  );
  const pool = await openPool(url, 8);
  const reuse = process.env.BENCH_SCHEMA;
  const keep = reuse !== undefined || process.env.BENCH_KEEP === '1';
  const schema = reuse ?? (await migratedSchema(pool, 'bench_dashboard'));
  const server = createServer();
  try {
    if (reuse) await migrate(pool, schema);
    else {
      const t0 = performance.now();
      await load(pool, schema, messages, streams, checkpoints);
      await waitUntilReadable(pool, schema);
      console.log(`loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    if (keep) console.log(`schema ${schema} (kept)`);

    const beckett = createBeckett({ pool, schema });
    const handler = createDashboardHandler({ beckett });
    server.on('request', (req, res) => void handler(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const get = async (path: string) => {
      const res = await fetch(`${base}${path}`);
      const body = await res.text();
      if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${body.slice(0, 300)}`);
      return JSON.parse(body);
    };

    // Ids and positions the pages need, picked from the loaded data.
    const s = escapeIdentifier(schema);
    const mid = Math.floor(messages / 2);
    const { rows } = await pool.query<{ id: string; stream_name: string; correlation: string }>(
      `SELECT id, stream_name, metadata ->> 'correlationId' AS correlation FROM ${s}.messages WHERE global_position = $1`,
      [mid],
    );
    const m = rows[0]!;
    const failed = (await get('api/checkpoints?status=failed&limit=1')).items[0].id as string;
    const category = m.stream_name.split('-')[0]!;
    const enc = encodeURIComponent;

    const pages: [string, string[]][] = [
      ['overview', ['api/summary', 'api/subscriptions']],
      ['index.html', ['']],
      ['categories', ['api/summary', 'api/categories?limit=50']],
      ['categories.search', ['api/summary', 'api/categories?search=cat3&limit=50']],
      ['category.streams', ['api/summary', `api/categories/${enc(category)}/streams?limit=50`]],
      [
        'category.streams.page2',
        ['api/summary', `api/categories/${enc(category)}/streams?limit=50&after=__next__`],
      ],
      ['stream', ['api/summary', `api/streams/${enc(m.stream_name)}/messages?limit=50`]],
      ['message', ['api/summary', `api/messages/${m.id}`]],
      [
        'find.correlation',
        [
          'api/summary',
          `api/messages?correlationId=${m.correlation}`,
          `api/messages?causationId=${m.correlation}`,
        ],
      ],
      ['find.position', ['api/summary', `api/messages?globalPosition=${mid}`]],
      ['subscriptions', ['api/summary', 'api/subscriptions']],
      ['checkpoints.failed', ['api/summary', 'api/checkpoints?status=failed&limit=100']],
      ['checkpoints.retrying', ['api/summary', 'api/checkpoints?status=retrying&limit=100']],
      ['checkpoints.lagging', ['api/summary', 'api/checkpoints?status=lagging&limit=100']],
      ['checkpoints.leased', ['api/summary', 'api/checkpoints?status=leased&limit=100']],
      ['checkpoint', ['api/summary', `api/checkpoints/${enc(failed)}`]],
      ['scheduled', ['api/summary', 'api/scheduled?limit=50', 'api/recurring']],
      ['workers', ['api/summary', 'api/workers']],
      ['retention', ['api/summary', 'api/retention/preview']],
      ['audit', ['api/summary', 'api/audit?limit=50']],
      ['queues', ['api/summary', 'api/queues']],
      [
        'queue',
        [
          'api/summary',
          'api/queues',
          'api/queues/emails/jobs?limit=100',
          'api/queues/emails/dead-letters?limit=100',
        ],
      ],
    ];
    const next = (await get(`api/categories/${enc(category)}/streams?limit=50`)).next as string;
    for (const p of pages) p[1] = p[1].map((u) => u.replace('__next__', enc(next ?? '')));

    const results = new Map(pages.map(([name]) => [name, new Latencies()]));
    /** Answers other than 200 (a read past its statement timeout answers 503) per page. */
    const errors = new Map<string, string[]>();
    let current = '';
    const get2 = async (path: string) => {
      const res = await fetch(`${base}${path}`);
      const body = await res.text();
      if (res.status !== 200) {
        const list = errors.get(current) ?? [];
        list.push(`${res.status} ${path}: ${(JSON.parse(body) as { code?: string }).code ?? ''}`);
        errors.set(current, list);
      }
    };
    // Warm up once, then rounds over every page in turn (so drift spreads over all of them).
    for (const [, calls] of pages) await Promise.all(calls.map(get2));
    errors.clear();
    for (let r = 0; r < ROUNDS; r++)
      for (const [name, calls] of pages) {
        current = name;
        const t = performance.now();
        await Promise.all(calls.map(get2));
        results.get(name)!.add(performance.now() - t);
      }

    const fmt = (ms: number) => `${ms.toFixed(1)}ms`;
    printTable(
      `page server time (${ROUNDS} rounds; each page's API calls in parallel, as the browser makes them)`,
      ['page', 'p50', 'p95', 'max', `p95 / ${BUDGET_MS} ms`],
      pages.map(([name]) => {
        const l = results.get(name)!;
        return [
          name,
          fmt(l.p50),
          fmt(l.percentile(95)),
          fmt(l.max),
          (l.percentile(95) / BUDGET_MS).toFixed(2),
        ];
      }),
    );
    for (const [name] of pages) {
      const l = results.get(name)!;
      console.log(
        `dashboard.pages.${name} ratio=${(l.percentile(95) / BUDGET_MS).toFixed(2)} p50=${fmt(l.p50)} p95=${fmt(l.percentile(95))} budget=${BUDGET_MS}ms errors=${errors.get(name)?.length ?? 0}`,
      );
    }
    await beckett.close();
  } finally {
    server.closeAllConnections();
    server.close();
    if (!keep) await dropSchemas(pool, [schema]);
    await pool.end();
  }
}

await main();
