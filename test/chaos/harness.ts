import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type pg from 'pg';
import { maskUrl } from '../../src/db/databaseUrl.js';
import { embeddedHome, ensureEmbedded, stopEmbedded } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { createMessageStore, type MessageStore } from '../../src/store/messageStore.js';
import { guardPool } from '../../src/subscriptions/guardPool.js';
import { ES_BIN } from '../helpers/cli.js';
import { until } from '../helpers/until.js';
import { checkOutcome } from './oracle.js';
import { ORACLE_DDL, SCHEMA, SUBS, writeConfig } from './workerConfig.js';

/*
 * A randomized run against a PRIVATE embedded server (it is restarted: never the shared one):
 * appenders of every kind (single, several streams at once, transactions held open 0-2 s and
 * sometimes rolled back, raw SQL through append_to_stream()), `es worker` processes SIGKILLed and
 * restarted, the database stopped and started, transaction ids burnt so that the run crosses a
 * power of ten, and `es tail --json` following the category throughout. At the end an oracle checks
 * what must hold and returns the figures and the problems found (empty when every check holds).
 */

export interface ChaosOptions {
  /** How long the chaos lasts (the catch-up after it is not counted). */
  durationMs: number;
  /** Worker processes (each with `concurrency` consumers). */
  workers: number;
  concurrency: number;
  streams: number;
  /** Concurrent appender loops. */
  appenders: number;
  /** SIGKILL one worker (then restart it) about this often. */
  killEveryMs: number;
  /** Stop and start the database about this often (0: never). */
  restartEveryMs: number;
  /** How long to wait for the workers to catch up once the chaos stops. */
  catchUpMs: number;
  /** Lease of the workers: a killed worker's streams wait this long. */
  leaseMs: number;
  /** Chance that a `rec` handler call blocks its event loop for the lease + 1 s. Default 0. */
  blockChance?: number;
  /** The run crosses 10^xidPower transaction ids (burnt before the run). Default: the next power of ten. */
  xidPower?: number;
  /** Keep the database's data folder when a check breaks (for inspection). Default false. */
  keepOnFailure?: boolean;
  /** Log progress lines here (the script prints them; the test keeps them for a failure). */
  log?: (line: string) => void;
}

export interface ChaosReport {
  figures: Record<string, number | string>;
  /** One line per broken check; empty when the run is clean. */
  problems: string[];
}

const rand = (n: number) => Math.floor(Math.random() * n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const noop = () => undefined;

/** Burn `n` transaction ids: one committed transaction each, in a loop on the server. */
async function burnXids(pool: pg.Pool, n: number): Promise<void> {
  if (n <= 0) return;
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    // Nothing is written: no reason to wait for a WAL flush at each of these commits.
    await client.query('SET synchronous_commit = off');
    await client.query(
      `DO $$ BEGIN FOR i IN 1..${Math.floor(n)} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$`,
    );
    await client.query('RESET synchronous_commit');
  } catch (err) {
    broken = err as Error;
    throw err;
  } finally {
    client.release(broken);
  }
}

async function currentXid(pool: pg.Pool): Promise<bigint> {
  const { rows } = await pool.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x');
  return BigInt(rows[0]!.x);
}

type Child = ResultPromise & { stderrText(): string; stdoutText(): string };

function spawnEs(args: string[], url: string, children: Set<Child>, debug = false): Child {
  let stderr = '';
  let stdout = '';
  const child = execa('node', [ES_BIN, ...args], {
    reject: false,
    env: { NO_COLOR: '1', DATABASE_URL: url, ...(debug ? { DEBUG: '1' } : {}) },
    stdout: 'pipe',
    stderr: 'pipe',
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  const es = Object.assign(child, { stderrText: () => stderr, stdoutText: () => stdout });
  children.add(es);
  void es.then(() => children.delete(es));
  return es;
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const dir = mkdtempSync(join(tmpdir(), 'beckett-chaos-'));
  const serverDir = mkdtempSync(join(tmpdir(), 'beckett-chaos-db-'));
  const children = new Set<Child>();
  let remove = false;
  try {
    const report = await run(opts, dir, serverDir, children);
    // A broken run can keep its database for inspection (start it with pg_ctl -D).
    remove = report.problems.length === 0 || !opts.keepOnFailure;
    if (!remove) report.figures.keptDataDir = embeddedHome(serverDir);
    return report;
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await Promise.allSettled([...children]);
    await stopEmbedded(serverDir).catch(() => undefined);
    if (remove) {
      rmSync(dir, { recursive: true, force: true });
      rmSync(serverDir, { recursive: true, force: true });
      // As root the server's data lives under the temp folder, not in serverDir (see embeddedHome).
      rmSync(embeddedHome(serverDir), { recursive: true, force: true });
    }
  }
}

async function run(
  opts: ChaosOptions,
  dir: string,
  serverDir: string,
  children: Set<Child>,
): Promise<ChaosReport> {
  const log = opts.log ?? (() => undefined);
  const started = Date.now();
  const { url } = await ensureEmbedded(serverDir);
  const pool = createPool(url, { max: opts.appenders + 6 });
  guardPool(pool);
  await migrate(pool, SCHEMA);
  await pool.query(ORACLE_DDL);
  const store: MessageStore = createMessageStore({ pool, schema: SCHEMA });
  const config = writeConfig(dir, opts.blockChance ?? 0, opts.leaseMs + 1000);

  // Transaction ids: burn to just below the next power of ten (at least 2000 ahead), so the run
  // crosses it while messages are appended and read.
  const xidStart = await currentXid(pool);
  let power = 10n;
  while (power < xidStart + 2000n) power *= 10n;
  if (opts.xidPower !== undefined && 10n ** BigInt(opts.xidPower) > power)
    power = 10n ** BigInt(opts.xidPower);
  await burnXids(pool, Number(power - xidStart - 300n));
  const xidBefore = await currentXid(pool);
  log(`server ${maskUrl(url)}, transaction ids ${xidStart} -> ${xidBefore}, to cross ${power}`);

  const figures: Record<string, number> = {
    single: 0,
    multi: 0,
    held: 0,
    raw: 0,
    rolledBack: 0,
    appendErrors: 0,
    workerKills: 0,
    workerExits: 0,
    databaseRestarts: 0,
  };
  const acked = new Set<string>();
  const rolledBack = new Set<string>();
  const stream = () => `c-${rand(opts.streams) + 1}`;
  const msg = () => ({ id: randomUUID(), type: 't', data: { at: Date.now() } });

  let chaos = true;
  let dbUp = true;
  /** Resolves while the database is up; a restart replaces it until the server is back. */
  let dbReady: Promise<void> = Promise.resolve();
  /** Resolves when the chaos stops (loops waiting on events race it). */
  let stopChaos!: () => void;
  const chaosOver = new Promise<void>((r) => {
    stopChaos = r;
  });
  /** Re-armed whenever a worker is replaced, so the supervisor watches the new one. */
  let workersChanged!: () => void;
  let changed = new Promise<void>((r) => {
    workersChanged = r;
  });
  const replaceWorker = (i: number) => {
    workers[i] = spawnWorker();
    const tell = workersChanged;
    changed = new Promise<void>((r) => {
      workersChanged = r;
    });
    tell();
  };
  /** A sleep that ends early when the chaos stops. */
  const nap = (ms: number) => Promise.race([sleep(ms), chaosOver]);

  const workers: Child[] = [];
  const kills: { at: bigint; pid: number }[] = [];
  const clockBefore = clockOffset();
  const killing = new Set<number>();
  const spawnWorker = () =>
    spawnEs(
      [
        'worker',
        '--config',
        config,
        '--group',
        'G',
        '--lease-ms',
        String(opts.leaseMs),
        '--concurrency',
        String(opts.concurrency),
      ],
      url,
      children,
    );
  for (let i = 0; i < opts.workers; i++) workers.push(spawnWorker());
  const tail = spawnEs(['tail', 'c', '--from', '0', '--json', '--schema', SCHEMA], url, children, true);

  async function appender(): Promise<void> {
    while (chaos) {
      if (!dbUp) {
        await Promise.race([dbReady, chaosOver]);
        continue;
      }
      const kind = rand(10);
      try {
        if (kind < 4) {
          const m = msg();
          await store.append(stream(), m);
          acked.add(m.id);
          figures.single!++;
        } else if (kind < 6) {
          const names = [...new Set([stream(), stream(), stream()])];
          const batch = names.map((s) => ({ stream: s, messages: [msg(), msg()] }));
          await store.appendMultiple(batch);
          for (const b of batch) for (const m of b.messages) acked.add(m.id);
          figures.multi!++;
        } else if (kind < 8) {
          // A transaction held open 0-2 s: its transaction id is taken early, its messages commit late.
          const client = await pool.connect();
          const ids: string[] = [];
          let broken: Error | undefined;
          try {
            await client.query('BEGIN');
            const tx = store.withTransaction(client);
            const first = msg();
            ids.push(first.id);
            await tx.append(stream(), first);
            await sleep(rand(2000));
            const second = msg();
            ids.push(second.id);
            await tx.appendMultiple([{ stream: stream(), messages: second }]);
            if (Math.random() < 0.15) {
              await client.query('ROLLBACK');
              for (const id of ids) rolledBack.add(id);
              figures.rolledBack!++;
            } else {
              await client.query('COMMIT');
              for (const id of ids) acked.add(id);
              figures.held!++;
            }
          } catch (err) {
            broken = err as Error;
            await client.query('ROLLBACK').catch(() => undefined);
            throw err;
          } finally {
            client.release(broken);
          }
        } else {
          // Raw SQL through the documented function, as a writer outside the library would.
          const m = msg();
          await pool.query(
            `SELECT * FROM ${SCHEMA}.append_to_stream($1, -1, ARRAY[$2::uuid], ARRAY['t'], ARRAY[$3::jsonb], ARRAY['{}'::jsonb], ARRAY[NULL::text])`,
            [stream(), m.id, JSON.stringify(m.data)],
          );
          acked.add(m.id);
          figures.raw!++;
        }
      } catch {
        figures.appendErrors!++;
        // The database went away (a restart): append again once it is back.
        await Promise.race([dbReady, chaosOver]);
      }
      await sleep(rand(30));
    }
  }

  async function killer(): Promise<void> {
    while (chaos) {
      await nap(opts.killEveryMs / 2 + rand(opts.killEveryMs));
      if (!chaos) break;
      const i = rand(workers.length);
      killing.add(i);
      workers[i]!.kill('SIGKILL');
      const pid = workers[i]!.pid;
      await workers[i];
      // Whatever the killed process had started is over now.
      if (pid !== undefined) kills.push({ at: process.hrtime.bigint(), pid });
      figures.workerKills!++;
      await sleep(rand(500));
      killing.delete(i);
      replaceWorker(i);
    }
  }

  // Like a process supervisor: a worker that exited on its own (started while the database was
  // down: es worker exits 4 when it cannot connect at start) is started again.
  async function supervisor(): Promise<void> {
    while (chaos) {
      // Wake when a running worker exits, one is replaced, or the chaos stops: not on a timer. (A
      // worker the killer is replacing is its business.)
      const watched = workers.filter((_, i) => !killing.has(i));
      await Promise.race([...watched.map((w) => w.then(noop, noop)), changed, chaosOver]);
      for (let i = 0; i < workers.length; i++) {
        if (workers[i]!.exitCode !== null && !killing.has(i)) {
          figures.workerExits!++;
          replaceWorker(i);
        }
      }
    }
  }

  async function restarter(): Promise<void> {
    if (opts.restartEveryMs <= 0) return;
    while (chaos) {
      await nap(opts.restartEveryMs / 2 + rand(opts.restartEveryMs));
      if (!chaos) break;
      let back!: () => void;
      dbReady = new Promise((r) => {
        back = r;
      });
      dbUp = false;
      await stopEmbedded(serverDir);
      // The outage itself: a random length is the point here, not a wait for something.
      await sleep(300 + rand(700));
      await ensureEmbedded(serverDir);
      dbUp = true;
      back();
      figures.databaseRestarts!++;
      log(`database restarted (${figures.databaseRestarts})`);
    }
  }

  async function burner(): Promise<void> {
    // Keeps transaction ids moving while the database is up, so the crossing happens mid-run.
    while (chaos) {
      await Promise.race([dbReady, chaosOver]);
      if (dbUp) await burnXids(pool, 50).catch(() => undefined);
      // The burn's pace (about 250 ids a second), not a wait for something.
      await nap(200);
    }
  }

  const loops = [
    ...Array.from({ length: opts.appenders }, () => appender()),
    killer(),
    supervisor(),
    restarter(),
    burner(),
  ];
  await sleep(opts.durationMs);
  chaos = false;
  stopChaos();
  await Promise.all(loops);
  if (!dbUp) await ensureEmbedded(serverDir);
  for (let i = 0; i < workers.length; i++)
    if (workers[i]!.exitCode !== null) {
      figures.workerExits!++;
      workers[i] = spawnWorker();
    }
  const xidAfter = await currentXid(pool);
  log(`chaos over after ${Date.now() - started} ms; catching up`);

  const problems: string[] = [];
  // Streams are contiguous (no retention here): the head is the count.
  const headsOf = async () => {
    const { rows } = await pool.query<{ stream_name: string; head: number; n: number }>(
      `SELECT stream_name, max(stream_position)::int AS head, count(*)::int AS n
         FROM ${SCHEMA}.messages WHERE stream_name LIKE 'c-%' GROUP BY stream_name`,
    );
    return rows;
  };
  const heads = new Map((await headsOf()).map((r) => [r.stream_name, r.head]));
  const total = [...heads.values()].reduce((a, b) => a + b, 0);
  const caughtUp = async () => {
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${SCHEMA}.checkpoints
        WHERE group_name = 'G' AND stream_name LIKE 'c-%' AND status <> 'failed'
          AND stream_position >= (SELECT max(stream_position) FROM ${SCHEMA}.messages m WHERE m.stream_name = checkpoints.stream_name)`,
    );
    return rows[0]!.n === heads.size * SUBS.length;
  };
  const catchUpFrom = Date.now();
  const done = await until(() => caughtUp().catch(() => false), 'catch-up', opts.catchUpMs).then(
    () => true,
    () => false,
  );
  const catchUpMs = Date.now() - catchUpFrom;
  if (!done) {
    const { rows } = await pool.query(
      `SELECT subscription_name, stream_name, stream_version, stream_position, status, attempts, leased_by, last_error->>'message' AS error
         FROM ${SCHEMA}.checkpoints c
        WHERE stream_position < (SELECT max(stream_position) FROM ${SCHEMA}.messages m WHERE m.stream_name = c.stream_name)
        ORDER BY 1, 2 LIMIT 10`,
    );
    problems.push(
      `not caught up ${opts.catchUpMs} ms after the chaos stopped; lagging checkpoints (first 10): ${JSON.stringify(rows)}`,
    );
  }

  // A worker restarted a moment ago may still be loading (no signal handler yet, nothing claimed):
  // let every worker say it runs before asking them all to drain.
  await until(
    () => workers.every((w) => /running group/.test(w.stderrText())),
    'every worker running',
    30_000,
  ).catch(() => undefined);
  for (const w of workers) w.kill('SIGTERM');
  const exits = await Promise.all(workers);
  exits.forEach((e, i) => {
    if (e.exitCode !== 0)
      problems.push(
        `worker ${i} exited with ${e.exitCode ?? e.signal} on SIGTERM: ${workers[i]!.stderrText().slice(-400)}`,
      );
  });

  // es tail: every message of the category printed exactly once.
  const tailCount = () => tail.stdoutText().split('\n').filter(Boolean).length;
  await until(() => tailCount() >= total, 'es tail to print every message', 10_000).catch(() => undefined);
  // A duplicate would come after the last message: there is no event for "nothing more", so the
  // check gives the tail a moment to print one before counting.
  await sleep(300);
  const tailAlive = tail.exitCode === null;
  tail.kill('SIGTERM');
  const tailExit = await tail;
  // (DEBUG is set for the tail: its stack says where it gave up.)
  if (!tailAlive)
    problems.push(`es tail exited during the run (${tailExit.exitCode}): ${tail.stderrText().slice(-1500)}`);
  const oracle = await checkOutcome({
    pool,
    dir,
    heads,
    acked,
    rolledBack,
    tailOutput: tail.stdoutText(),
    kills,
    clock: { before: clockBefore, after: clockOffset() },
  });
  problems.push(...oracle.problems);
  if (xidBefore >= power || xidAfter <= power)
    problems.push(`transaction ids did not cross ${power} during the run (${xidBefore} -> ${xidAfter})`);

  await store.close();
  await pool.end();

  return {
    figures: {
      ...figures,
      messages: total,
      streams: heads.size,
      acknowledged: acked.size,
      xidFrom: xidBefore.toString(),
      xidTo: xidAfter.toString(),
      crossed: power.toString(),
      ...oracle.figures,
      catchUpMs: done ? catchUpMs : -1,
      totalMs: Date.now() - started,
    },
    problems,
  };
}

/**
 * The wall clock minus the monotonic one, in ns: measured at the moment Date.now() ticks to the
 * next millisecond, so the error stays well under one.
 */
function clockOffset(): bigint {
  const from = Date.now();
  let now = from;
  while (now === from) now = Date.now();
  return BigInt(now) * 1_000_000n - process.hrtime.bigint();
}

/** The figures as aligned lines, for printing. */
export function formatReport(report: ChaosReport): string {
  const width = Math.max(...Object.keys(report.figures).map((k) => k.length));
  const lines = Object.entries(report.figures).map(([k, v]) => `  ${k.padEnd(width)}  ${v}`);
  lines.push(report.problems.length === 0 ? 'every check holds' : `${report.problems.length} checks broken:`);
  for (const p of report.problems) lines.push(`  - ${p}`);
  return lines.join('\n');
}
