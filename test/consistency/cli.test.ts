import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { es } from '../helpers/cli.js';
import { databaseUrl, setupDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
let env: Record<string, string>;
beforeAll(async () => {
  db = await setupDb('dcb_cli', { poolSize: 2 });
  env = { DATABASE_URL: databaseUrl() };
  const s = db.store;
  await s.append('course-c1', { type: 'course_defined', data: { n: 1 }, tags: ['course:c1'] });
  await s.append('course-c1', {
    type: 'student_subscribed',
    data: { n: 2 },
    tags: ['course:c1', 'student:s1'],
  });
  await s.append('course-c2', { type: 'course_defined', data: { n: 3 }, tags: ['course:c2'] });
  await s.append('course-c2', {
    type: 'student_subscribed',
    data: { n: 4 },
    tags: ['course:c2', 'student:s1'],
  });
  await s.append('course-c2', {
    type: 'student_subscribed',
    data: { n: 5 },
    tags: ['course:c2', 'student:s2'],
  });
});
afterAll(async () => {
  await db?.close();
});

/** Run `es read ... --json` until it shows `expected` lines (gap-safe reads wait for older open transactions). */
async function readJson(args: string[], expected: number) {
  for (let i = 0; ; i++) {
    const r = await es(['read', ...args, '--json', '--schema', db.schema], { env });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const out = String(r.stdout).trim();
    const lines = out === '' ? [] : out.split('\n');
    if (lines.length >= expected || i >= 40)
      return lines.map(
        (l) => JSON.parse(l) as { data: { n: number }; globalPosition: number; tags: string[] },
      );
    await new Promise((res) => setTimeout(res, 250));
  }
}

describe('es read --type/--tag', () => {
  it('queries the log by types (any) and tags (all), after a position', async () => {
    const byTag = await readJson(['--tag', 'course:c2'], 3);
    expect(byTag.map((m) => m.data.n)).toEqual([3, 4, 5]);
    const byTypeAndTags = await readJson(['--type', 'student_subscribed', '--tag', 'student:s1'], 2);
    expect(byTypeAndTags.map((m) => m.data.n)).toEqual([2, 4]);
    expect(byTypeAndTags[0]?.tags).toEqual(['course:c1', 'student:s1']);
    const allTags = await readJson(['--tag', 'course:c2', '--tag', 'student:s2'], 1);
    expect(allTags.map((m) => m.data.n)).toEqual([5]);
    const anyType = await readJson(['--type', 'course_defined', '--type', 'student_subscribed'], 5);
    expect(anyType.map((m) => m.data.n)).toEqual([1, 2, 3, 4, 5]);
    const after = await readJson(
      ['--type', 'student_subscribed', '--after', String(anyType[1]!.globalPosition)],
      2,
    );
    expect(after.map((m) => m.data.n)).toEqual([4, 5]);
  });

  it('prints human lines and says where to continue when the limit is reached', async () => {
    await readJson(['--tag', 'course:c2'], 3);
    const r = await es(['read', '--tag', 'course:c2', '--limit', '2', '--schema', db.schema], { env });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const lines = String(r.stdout).trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/course-c2@1 course_defined \{"n":3\}/);
    expect(r.stderr).toMatch(/continue with --after \d+/);
    const none = await es(['read', '--tag', 'course:none', '--schema', db.schema], { env });
    expect(none.exitCode).toBe(0);
    expect(none.stdout).toBe('');
    expect(none.stderr).toMatch(/no matching messages/);
  });

  it('still reads a stream, and refuses unclear combinations with exit 2', async () => {
    const stream = await es(['read', 'course-c2', '--json', '--schema', db.schema], { env });
    expect(stream.exitCode, String(stream.stderr)).toBe(0);
    expect(String(stream.stdout).trim().split('\n')).toHaveLength(3);

    const nothing = await es(['read', '--schema', db.schema], { env });
    expect(nothing.exitCode).toBe(2);
    expect(nothing.stderr).toMatch(/needs a stream, or at least one --type or --tag/);
    const mixed = await es(['read', 'course-c2', '--tag', 'course:c2', '--schema', db.schema], { env });
    expect(mixed.exitCode).toBe(2);
    expect(mixed.stderr).toMatch(/leave out the stream/);
    const backward = await es(['read', '--tag', 'course:c2', '--backward', '--schema', db.schema], { env });
    expect(backward.exitCode).toBe(2);
    const badAfter = await es(['read', '--tag', 'course:c2', '--after', 'x', '--schema', db.schema], { env });
    expect(badAfter.exitCode).toBe(2);
    expect(badAfter.stderr).toMatch(/--after must be an integer/);
    const unknownAfter = await es(
      ['read', '--tag', 'course:c2', '--after', '99999999', '--schema', db.schema],
      {
        env,
      },
    );
    expect(unknownAfter.exitCode).toBe(8);
    expect(unknownAfter.stderr).toMatch(/No message at global position 99999999/);
  });

  it('documents the query mode in --help', async () => {
    const r = await es(['read', '--help']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('es read --type student_subscribed --tag student:s1 --json');
    expect(r.stdout).toMatch(/--tag <key:value>/);
  });
});
