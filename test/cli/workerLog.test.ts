import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWorkerLog, formatLogRecord, summaryRecord } from '../../src/cli/workerLog.js';
import { ES_BIN, es } from '../helpers/cli.js';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

let db: TestDb;
let dir: string;
beforeAll(async () => {
  db = await setupDb('worker_log');
  dir = mkdtempSync(join(tmpdir(), 'beckett-wlog-'));
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  writeFileSync(
    join(dir, 'beckett.config.mjs'),
    `export default {
  database: { schema: '${db.schema}' },
  groups: {
    Jobs: {
      subscriptions: {
        run: {
          category: 'job',
          maxRetries: 0,
          handler: async (m) => { if (m.data.fail) throw new Error('job failed on purpose'); },
        },
      },
    },
  },
};
`,
  );
});
afterAll(async () => db?.close());

const env = () => ({ DATABASE_URL: db.url });
const records = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('worker log lines', () => {
  it('format as a timed line or one JSON object, and filter by level', () => {
    const at = new Date('2026-01-02T03:04:05.678Z');
    const rec = { level: 'info' as const, event: 'handled', msg: 'run job-1@1 job', stream: 'job-1' };
    expect(formatLogRecord(rec, 'pretty', at)).toBe('03:04:05.678 run job-1@1 job');
    expect(JSON.parse(formatLogRecord(rec, 'json', at))).toEqual({
      time: '2026-01-02T03:04:05.678Z',
      level: 'info',
      event: 'handled',
      msg: 'run job-1@1 job',
      stream: 'job-1',
    });
    const lines: string[] = [];
    const quiet = createWorkerLog({ format: 'pretty', level: 'warn' }, (l) => lines.push(l));
    quiet.write(rec);
    quiet.write({ level: 'error', event: 'failed', msg: 'boom' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ERROR boom$/);
    // An idle, caught-up group says nothing; work waiting or done is said.
    expect(summaryRecord('G', { handled: 0, failed: 0, lag: 0, seconds: 10 })).toBeUndefined();
    expect(summaryRecord('G', { handled: 0, failed: 0, lag: 7, seconds: 10 })?.msg).toContain(
      'lag 7 messages',
    );
    expect(summaryRecord('G', { handled: 25, failed: 1, lag: 0, seconds: 10 })?.msg).toBe(
      'G: handled 25, failed 1 in the last 10s (2.5/s); caught up',
    );
  });

  it('--verbose --log-format json: a line per message, failures, a summary, start and stop', async () => {
    for (let i = 1; i <= 3; i++) await db.store.append(`job-${i}`, { type: 'job', data: {} });
    await db.store.append('job-bad', { type: 'job', data: { fail: true } });
    const child = execa(
      'node',
      [
        ES_BIN,
        'worker',
        '--group',
        'Jobs',
        '--verbose',
        '--log-format',
        'json',
        '--summary-interval',
        '300ms',
      ],
      { cwd: dir, env: { NO_COLOR: '1', ...env() }, reject: false },
    );
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    // Summaries count per window: the messages may be split over several of them.
    const summed = (key: 'handled' | 'failed') =>
      records(stderr)
        .filter((r) => r.event === 'summary')
        .reduce((sum, r) => sum + Number(r[key] ?? 0), 0);
    await until(
      () => summed('handled') >= 3 && summed('failed') >= 1,
      'summaries covering every handled and failed message',
      45_000,
    );
    child.kill('SIGINT');
    const r = await child;
    expect(r.exitCode, stderr).toBe(0);
    expect(r.stdout).toBe('');
    const recs = records(stderr);
    expect(stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'))).toEqual([]);
    const handled = recs.filter((x) => x.event === 'handled');
    expect(handled.map((x) => x.stream).sort()).toEqual(['job-1', 'job-2', 'job-3']);
    expect(handled[0]).toMatchObject({ level: 'info', subscription: 'run', type: 'job', streamPosition: 1 });
    expect(typeof handled[0]?.ms).toBe('number');
    const failed = recs.filter((x) => x.event === 'failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({
      level: 'error',
      stream: 'job-bad',
      status: 'failed',
      error: 'job failed on purpose',
    });
    const summary = recs.find((x) => x.event === 'summary' && Number(x.handled) > 0);
    expect(summary).toMatchObject({ group: 'Jobs' });
    expect({ handled: summed('handled'), failed: summed('failed') }).toEqual({ handled: 3, failed: 1 });
    expect(recs[0]?.event).toBe('started');
    expect(recs.at(-1)?.event).toBe('stopped');
  });

  it('is quiet by default: no line per message, but the failure and its stream', async () => {
    await db.store.append('job-4', { type: 'job', data: {} });
    await db.store.append('job-bad2', { type: 'job', data: { fail: true } });
    const r = await es(['worker', '--group', 'Jobs', '--once'], { cwd: dir, env: env() });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).not.toContain('job-4');
    expect(r.stderr).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} ERROR es worker: run job-bad2 attempt 1 failed: job failed on purpose$/m,
    );
  });

  it('refuses an unknown --log-format or --log-level with exit 2', async () => {
    const f = await es(['worker', '--group', 'Jobs', '--log-format', 'xml'], { cwd: dir, env: env() });
    expect(f.exitCode).toBe(2);
    expect(f.stderr).toContain('--log-format must be pretty or json, got "xml"');
    const l = await es(['worker', '--group', 'Jobs', '--log-level', 'loud'], { cwd: dir, env: env() });
    expect(l.exitCode).toBe(2);
    expect(l.stderr).toContain('--log-level must be one of error, warn, info, debug');
  });
});
