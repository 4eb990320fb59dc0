import { type Decider, Query } from '../../src/index.js';

/*
 * Course subscriptions with a dynamic consistency boundary (dcb.events): a course has a
 * capacity, a student subscribes to at most 10 courses. Each subscription decision reads exactly
 * the facts it depends on (this course's definition and subscriptions, this student's
 * subscriptions) and appends on the condition that none of them changed meanwhile.
 */

export const STUDENT_LIMIT = 10;

export interface CourseDefined {
  courseId: string;
  capacity: number;
}
export interface StudentSubscribed {
  courseId: string;
  studentId: string;
}

export const courseTag = (courseId: string) => `course:${courseId}`;
export const studentTag = (studentId: string) => `student:${studentId}`;

/** A command refused by a business rule (not retried). */
export class CourseRuleError extends Error {
  constructor(
    readonly rule:
      | 'course_not_found'
      | 'course_exists'
      | 'course_full'
      | 'student_limit'
      | 'already_subscribed',
    message: string,
  ) {
    super(message);
    this.name = 'CourseRuleError';
  }
}

export interface DefineCourse {
  courseId: string;
  capacity: number;
}

/** Define a course once: the boundary is everything tagged with the course. */
export function defineCourse(cmd: DefineCourse) {
  const query = Query.of({ types: ['course_defined'], tags: [courseTag(cmd.courseId)] });
  const decider: Decider<{ exists: boolean }, DefineCourse> = {
    initialState: () => ({ exists: false }),
    evolve: () => ({ exists: true }),
    decide(c, state) {
      if (state.exists) throw new CourseRuleError('course_exists', `Course ${c.courseId} already exists.`);
      return [
        {
          stream: `course-${c.courseId}`,
          type: 'course_defined',
          data: { courseId: c.courseId, capacity: c.capacity } satisfies CourseDefined,
          tags: [courseTag(c.courseId)],
        },
      ];
    },
  };
  return { decider, boundary: { query } };
}

export interface SubscribeStudent {
  courseId: string;
  studentId: string;
}

export interface SubscriptionState {
  courseExists: boolean;
  capacity: number;
  courseSubscriptions: number;
  studentSubscriptions: number;
  alreadySubscribed: boolean;
}

/** Subscribe a student to a course: the course's capacity and the student's limit must hold. */
export function subscribeStudent(cmd: SubscribeStudent) {
  const course = courseTag(cmd.courseId);
  const student = studentTag(cmd.studentId);
  const query = Query.of(
    { types: ['course_defined', 'student_subscribed'], tags: [course] },
    { types: ['student_subscribed'], tags: [student] },
  );
  const decider: Decider<SubscriptionState, SubscribeStudent> = {
    initialState: () => ({
      courseExists: false,
      capacity: 0,
      courseSubscriptions: 0,
      studentSubscriptions: 0,
      alreadySubscribed: false,
    }),
    evolve(state, message) {
      if (message.type === 'course_defined') {
        return { ...state, courseExists: true, capacity: (message.data as CourseDefined).capacity };
      }
      const onCourse = message.tags.includes(course);
      const byStudent = message.tags.includes(student);
      return {
        ...state,
        courseSubscriptions: state.courseSubscriptions + (onCourse ? 1 : 0),
        studentSubscriptions: state.studentSubscriptions + (byStudent ? 1 : 0),
        alreadySubscribed: state.alreadySubscribed || (onCourse && byStudent),
      };
    },
    decide(c, state) {
      if (!state.courseExists)
        throw new CourseRuleError('course_not_found', `Course ${c.courseId} does not exist.`);
      if (state.alreadySubscribed)
        throw new CourseRuleError(
          'already_subscribed',
          `${c.studentId} is already subscribed to ${c.courseId}.`,
        );
      if (state.courseSubscriptions >= state.capacity)
        throw new CourseRuleError('course_full', `Course ${c.courseId} is full (${state.capacity} seats).`);
      if (state.studentSubscriptions >= STUDENT_LIMIT)
        throw new CourseRuleError(
          'student_limit',
          `${c.studentId} already has ${STUDENT_LIMIT} courses, the most a student may take.`,
        );
      return [
        {
          stream: `course-${c.courseId}`,
          type: 'student_subscribed',
          data: { courseId: c.courseId, studentId: c.studentId } satisfies StudentSubscribed,
          tags: [course, student],
        },
      ];
    },
  };
  return { decider, boundary: { query } };
}
