import { AssertionError } from 'node:assert';
import { describe, expect, it } from 'vitest';
import {
  CourseRuleError,
  courseTag,
  STUDENT_LIMIT,
  studentTag,
  subscribeStudent,
} from '../../examples/courses/courses.js';
import { AccountRuleError, account, accountStream, transfer } from '../../examples/transfer/accounts.js';
import { InvalidInputError } from '../../src/errors.js';
import { DeciderSpecification } from '../../src/testing/deciderSpecification.js';

describe('DeciderSpecification', () => {
  const courseDefined = (courseId: string, capacity: number) => ({
    type: 'course_defined',
    data: { courseId, capacity },
    tags: [courseTag(courseId)],
  });
  const subscribed = (courseId: string, studentId: string) => ({
    type: 'student_subscribed',
    data: { courseId, studentId },
    tags: [courseTag(courseId), studentTag(studentId)],
  });
  const cmd = { courseId: 'c1', studentId: 's1' };
  const spec = DeciderSpecification.for(subscribeStudent(cmd).decider);

  it('then: the decided messages (courses example)', async () => {
    await spec
      .given([courseDefined('c1', 2), subscribed('c1', 's2')])
      .when(cmd)
      .then([
        { stream: 'course-c1', type: 'student_subscribed', data: cmd, tags: ['course:c1', 'student:s1'] },
      ]);
    // Fields not given are not compared.
    await spec
      .given([courseDefined('c1', 2)])
      .when(cmd)
      .then([{ type: 'student_subscribed', data: cmd }]);
  });

  it('thenThrows: the business rules (courses example)', async () => {
    await spec
      .given([])
      .when(cmd)
      .thenThrows(CourseRuleError, (e) => expect(e.rule).toBe('course_not_found'));
    await spec
      .given([courseDefined('c1', 1), subscribed('c1', 's2')])
      .when(cmd)
      .thenThrows(CourseRuleError, (e) => expect(e.rule).toBe('course_full'));
    await spec
      .given([
        courseDefined('c1', 50),
        ...Array.from({ length: STUDENT_LIMIT }, (_, i) => subscribed(`x${i}`, 's1')),
      ])
      .when(cmd)
      .thenThrows(CourseRuleError, (e) => expect(e.rule).toBe('student_limit'));
  });

  it('given messages in several streams fold in order (transfer example)', async () => {
    const t = { transferId: 't1', from: 'a', to: 'b', amount: 30 };
    const opened = (id: string, initialBalance: number) => ({
      stream: accountStream(id),
      type: 'account_opened',
      data: { accountId: id, initialBalance },
    });
    await DeciderSpecification.for(transfer)
      .given([opened('a', 50), opened('b', 0)])
      .when(t)
      .then((messages) => {
        expect(messages.map((m) => [m.stream, m.type])).toEqual([
          [accountStream('a'), 'debited'],
          [accountStream('b'), 'credited'],
        ]);
      });
    await DeciderSpecification.for(transfer)
      .given([opened('a', 10), opened('b', 0)])
      .when(t)
      .thenThrows(AccountRuleError, (e) => expect(e.rule).toBe('insufficient_funds'));
    await DeciderSpecification.for(account)
      .givenState({ open: true, balance: 0 })
      .when({ type: 'deposit', accountId: 'a', amount: 5 })
      .then([{ type: 'deposited', data: { amount: 5 } }]);
  });

  it('thenNothing, and every assertion fails when the decider does otherwise', async () => {
    const quiet = DeciderSpecification.for<number, string>({
      initialState: () => 0,
      evolve: (n) => n + 1,
      decide: (c, n) => (c === 'noop' ? [] : [{ type: c, data: { n } }]),
    });
    await quiet
      .given([{ type: 'x', data: {} }])
      .when('noop')
      .thenNothing();
    await quiet
      .given([
        { type: 'x', data: {} },
        { type: 'x', data: {} },
      ])
      .when('ping')
      .then([{ type: 'ping', data: { n: 2 } }]);
    await expect(quiet.when('ping').thenNothing()).rejects.toBeInstanceOf(AssertionError);
    await expect(quiet.when('ping').then([{ type: 'ping', data: { n: 1 } }])).rejects.toBeInstanceOf(
      AssertionError,
    );
    await expect(quiet.when('ping').then([])).rejects.toBeInstanceOf(AssertionError);
    await expect(quiet.when('ping').thenThrows(Error)).rejects.toThrow(
      /to throw Error, but it returned \["ping"\]/,
    );
    await expect(spec.given([]).when(cmd).thenThrows(InvalidInputError)).rejects.toThrow(
      /to throw InvalidInputError, but it threw CourseRuleError/,
    );
    // A domain error is not swallowed by then().
    await expect(spec.given([]).when(cmd).then([])).rejects.toBeInstanceOf(CourseRuleError);
  });
});
