/*
 * Course capacity and student limit with dynamic consistency boundaries.
 *   node --import jiti/register examples/courses/run.ts
 * Uses DATABASE_URL, or the embedded PostgreSQL when it is unset. Writes to the schema
 * "example_courses" (recreated on every run).
 */
import pg from 'pg';
import { ensureEmbedded } from '../../src/db/embedded.js';
import { CommandExecutor, createMessageStore, migrate, Query, readForDecision } from '../../src/index.js';
import { type CourseRuleError, defineCourse, STUDENT_LIMIT, subscribeStudent } from './courses.js';

const SCHEMA = 'example_courses';

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL ?? (await ensureEmbedded(process.cwd())).url;
  const pool = new pg.Pool({ connectionString: url, max: 12 });
  await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  await migrate(pool, SCHEMA);
  const store = createMessageStore({ pool, schema: SCHEMA });
  const executor = new CommandExecutor(store, { maxAttempts: 20, baseDelayMs: 2, maxDelayMs: 50 });

  const course = defineCourse({ courseId: 'dcb101', capacity: 3 });
  await executor.execute(course.decider, { courseId: 'dcb101', capacity: 3 }, course.boundary);
  console.log('Defined course dcb101 with 3 seats.');

  console.log('\n8 students subscribe to dcb101 at the same time:');
  const students = Array.from({ length: 8 }, (_, i) => `student${i + 1}`);
  const outcomes = await Promise.allSettled(
    students.map((studentId) => {
      const s = subscribeStudent({ courseId: 'dcb101', studentId });
      return executor.execute(s.decider, { courseId: 'dcb101', studentId }, s.boundary);
    }),
  );
  outcomes.forEach((o, i) => {
    if (o.status === 'fulfilled')
      console.log(
        `  ${students[i]}: subscribed (attempts: ${o.value.attempts}, seats taken before: ${o.value.state.courseSubscriptions})`,
      );
    else console.log(`  ${students[i]}: refused: ${(o.reason as Error).message}`);
  });

  console.log(`\nstudent1 tries 12 more courses at once (limit: ${STUDENT_LIMIT} courses per student):`);
  const more = Array.from({ length: 12 }, (_, i) => `extra${i + 1}`);
  for (const courseId of more) {
    const c = defineCourse({ courseId, capacity: 5 });
    await executor.execute(c.decider, { courseId, capacity: 5 }, c.boundary);
  }
  const results = await Promise.allSettled(
    more.map((courseId) => {
      const s = subscribeStudent({ courseId, studentId: 'student1' });
      return executor.execute(s.decider, { courseId, studentId: 'student1' }, s.boundary);
    }),
  );
  const refused = results
    .filter((r) => r.status === 'rejected')
    .map((r) => (r.reason as CourseRuleError).rule);
  console.log(
    `  subscribed to ${results.length - refused.length} of them; refused: ${refused.join(', ') || 'none'}`,
  );

  const { messages } = await readForDecision(
    store,
    Query.of({ types: ['student_subscribed'], tags: ['student:student1'] }),
  );
  console.log(
    `  student1 now takes ${messages.length} courses: ${messages.map((m) => (m.data as { courseId: string }).courseId).join(', ')}`,
  );
  const seats = await readForDecision(
    store,
    Query.of({ types: ['student_subscribed'], tags: ['course:dcb101'] }),
  );
  console.log(`\ndcb101 has ${seats.messages.length} subscriptions for 3 seats.`);
  console.log(`Inspect with: es read --schema ${SCHEMA} --tag course:dcb101`);
  await store.close();
  await pool.end();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
