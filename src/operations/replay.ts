import type { Queryable, SqlContext } from '../db/queryable.js';
import { InvalidInputError } from '../errors.js';
import { assertReplayArgs } from '../validation/options.js';
import { assertSubscription } from './subscriptionControl.js';

export type PositionOrTime = { position: number } | { time: Date };

export interface ReplayArgs {
  group: string;
  subscription: string;
  /** First message of the range (global position or time). Default: the start of the log. */
  from?: PositionOrTime;
  /** Last message of the range (inclusive). Default: everything processed so far. */
  to?: PositionOrTime;
  /** Only this stream. */
  stream?: string;
  /** Only these message types (the subscription's types from the config). */
  types?: string[];
}

export interface ReplayStream {
  stream: string;
  /** The checkpoint's position before the replay: the worker handles again up to here. */
  previousPosition: number;
  /** Where the checkpoint was moved back to (the message before the range's first). */
  rewoundTo: number;
  /**
   * The last position handled again: the range's last message in this stream when the range has an
   * end (--to; the checkpoint then jumps back to previousPosition), else previousPosition.
   */
  handledAgainUpTo: number;
  /** Messages of the range in this stream. */
  messages: number;
}

export interface ReplayResult {
  dryRun: boolean;
  group: string;
  subscription: string;
  /** Streams whose checkpoints were (or, in a dry run, would be) moved back. */
  streams: ReplayStream[];
  /** Messages of the range to handle again. */
  messages: number;
  /**
   * Messages read again in all. With --to, the range's messages and the stream's other messages
   * between them; without it, each stream from the range's first message up to where it was.
   */
  redelivered: number;
  /** Streams whose checkpoint a worker holds right now and that could not be moved back. */
  busy: string[];
}

/*
 * The checkpoints of the subscription with processed messages in the range: each moves back to just
 * before its first such message. Only messages at or before where the checkpoint had got count
 * (later ones are not processed yet, so they need no replay): its position, or, while an earlier
 * replay runs, the position that replay returns to (replay_resume). $9 restricts a retry to the
 * streams still to do, so a stream rewound once is never rewound twice by the same replay.
 */
const planSql = (ctx: SqlContext) => `
  SELECT c.stream_name, c.stream_position AS position, c.replay_until AS until, c.replay_resume AS resume,
         GREATEST(c.stream_position, coalesce(c.replay_resume, 0)) AS previous,
         min(m.stream_position) - 1 AS rewound_to, max(m.stream_position) AS last_in_range,
         count(*)::int AS messages
    FROM ${ctx.s}.checkpoints c
    JOIN ${ctx.s}.messages m ON m.stream_name = c.stream_name
     AND m.stream_position <= GREATEST(c.stream_position, coalesce(c.replay_resume, 0))
   WHERE c.group_name = $1 AND c.subscription_name = $2
     AND ($3::text IS NULL OR c.stream_name = $3)
     AND ($4::bigint IS NULL OR m.global_position >= $4)
     AND ($5::bigint IS NULL OR m.global_position <= $5)
     AND ($6::timestamptz IS NULL OR m.created_at >= $6)
     AND ($7::timestamptz IS NULL OR m.created_at <= $7)
     AND ($8::text[] IS NULL OR m.type = ANY ($8))
     AND ($9::text[] IS NULL OR c.stream_name = ANY ($9))
   GROUP BY c.stream_name, c.stream_position, c.replay_until, c.replay_resume
   ORDER BY c.stream_name`;

/*
 * Move back only checkpoints no worker holds (a holder's final write would race ours) and that are
 * still as planned (position and replay state). The positions to handle again join those of any
 * replay already running (migration 0009): with --to the range, without it everything from the range
 * up to where the checkpoint had got; consumers stop at each range's end and the checkpoint then
 * jumps on. An expired lease is cleared, so its holder, if it still runs, can no longer write over
 * the rewind. Retry and failed state is cleared: the replay is a fresh start.
 */
const rewindSql = (ctx: SqlContext) => `
  WITH plan AS (${planSql(ctx)}),
  next AS (
    SELECT p.*, c.replay_ranges AS old_ranges, LEAST(p.position, p.rewound_to) AS new_position,
           coalesce(c.replay_ranges, '{}'::int8multirange)
             + int8multirange(int8range(p.rewound_to + 1,
                 (CASE WHEN $10 THEN p.last_in_range ELSE p.previous END) + 1)) AS ranges
      FROM plan p
      JOIN ${ctx.s}.checkpoints c
        ON c.group_name = $1 AND c.subscription_name = $2 AND c.stream_name = p.stream_name),
  moved AS (
    UPDATE ${ctx.s}.checkpoints c
       SET stream_position = n.new_position, status = 'active', attempts = 0, last_error = NULL,
           next_attempt_at = now(), updated_at = now(),
           replay_ranges = n.ranges,
           replay_until = upper((SELECT r FROM unnest(n.ranges) AS r LIMIT 1)) - 1,
           replay_resume = n.previous,
           leased_by = NULL, lease_id = NULL, leased_until = NULL
      FROM next n
     WHERE c.group_name = $1 AND c.subscription_name = $2 AND c.stream_name = n.stream_name
       AND c.stream_position = n.position
       AND c.replay_until IS NOT DISTINCT FROM n.until
       AND c.replay_resume IS NOT DISTINCT FROM n.resume
       AND c.replay_ranges IS NOT DISTINCT FROM n.old_ranges
       AND (c.leased_until IS NULL OR c.leased_until < now())
    RETURNING c.stream_name)
  SELECT p.*, EXISTS (SELECT 1 FROM moved WHERE moved.stream_name = p.stream_name) AS moved
    FROM plan p ORDER BY p.stream_name`;

interface PlanRow {
  stream_name: string;
  previous: number;
  rewound_to: number;
  last_in_range: number;
  messages: number;
  moved?: boolean;
}

function params(args: ReplayArgs, only: string[] | null): unknown[] {
  const pos = (x: PositionOrTime | undefined) => (x && 'position' in x ? x.position : null);
  const time = (x: PositionOrTime | undefined) => (x && 'time' in x ? x.time : null);
  return [
    args.group,
    args.subscription,
    args.stream ?? null,
    pos(args.from),
    pos(args.to),
    time(args.from),
    time(args.to),
    args.types?.length ? args.types : null,
    only,
  ];
}

/** Whether the range has an end (--to): then only the range is handled again. */
const bounded = (args: ReplayArgs): boolean => args.to !== undefined;

const toStream = (args: ReplayArgs, r: PlanRow): ReplayStream => ({
  stream: r.stream_name,
  previousPosition: r.previous,
  rewoundTo: r.rewound_to,
  handledAgainUpTo: bounded(args) ? Math.min(r.last_in_range, r.previous) : r.previous,
  messages: r.messages,
});

function summarize(args: ReplayArgs, dryRun: boolean, streams: ReplayStream[], busy: string[]): ReplayResult {
  return {
    dryRun,
    group: args.group,
    subscription: args.subscription,
    streams,
    messages: streams.reduce((n, s) => n + s.messages, 0),
    redelivered: streams.reduce((n, s) => n + (s.handledAgainUpTo - s.rewoundTo), 0),
    busy,
  };
}

/**
 * Replay a range of a subscription: move the checkpoints of the streams with already processed
 * messages in the range back to just before the range, so the workers handle those messages again,
 * each stream in order: with `to`, up to the range's last message, after which the checkpoint returns
 * to where it was; without it, up to where it was. Unknown group or
 * subscription: NotFoundError naming the known ones. A checkpoint a worker holds is retried until
 * `busyTimeoutMs` (default 10 s), then reported in `busy`.
 */
export async function replay(
  db: Queryable,
  ctx: SqlContext,
  args: ReplayArgs,
  opts: { dryRun?: boolean; busyTimeoutMs?: number } = {},
): Promise<ReplayResult> {
  assertReplayArgs(args, opts);
  const f = args.from;
  const t = args.to;
  if (
    f &&
    t &&
    (('position' in f && 'position' in t && f.position > t.position) ||
      ('time' in f && 'time' in t && f.time > t.time))
  ) {
    throw new InvalidInputError(
      'The replay range is empty: --from is after --to.',
      'Give --from before --to.',
    );
  }
  await assertSubscription(db, ctx, args.group, args.subscription);
  if (opts.dryRun) {
    const { rows } = await db.query<PlanRow>(planSql(ctx), params(args, null));
    return summarize(
      args,
      true,
      rows.map((r) => toStream(args, r)),
      [],
    );
  }
  const deadline = Date.now() + (opts.busyTimeoutMs ?? 10_000);
  const done: ReplayStream[] = [];
  let only: string[] | null = null;
  for (;;) {
    const rows: PlanRow[] = (await db.query<PlanRow>(rewindSql(ctx), [...params(args, only), bounded(args)]))
      .rows;
    for (const r of rows) if (r.moved) done.push(toStream(args, r));
    const busy: string[] = rows.filter((r) => !r.moved).map((r) => r.stream_name);
    if (busy.length === 0 || Date.now() >= deadline) {
      done.sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0));
      return summarize(args, false, done, busy);
    }
    only = busy;
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface ReplayProgress {
  /** Messages handled again so far (of `total`). */
  done: number;
  total: number;
  /** Streams whose checkpoint is failed (the replay stops there until an operator acts). */
  failed: string[];
  finished: boolean;
}

const progressSql = (ctx: SqlContext) => `
  SELECT stream_name, stream_position, status FROM ${ctx.s}.checkpoints
   WHERE group_name = $1 AND subscription_name = $2 AND stream_name = ANY ($3::text[])`;

/** How far the workers are with a replay's streams. */
export async function replayProgress(
  db: Queryable,
  ctx: SqlContext,
  r: ReplayResult,
): Promise<ReplayProgress> {
  const { rows } = await db.query<{ stream_name: string; stream_position: number; status: string }>(
    progressSql(ctx),
    [r.group, r.subscription, r.streams.map((s) => s.stream)],
  );
  const now = new Map(rows.map((x) => [x.stream_name, x]));
  let done = 0;
  const failed: string[] = [];
  for (const s of r.streams) {
    const row = now.get(s.stream);
    // A checkpoint deleted meanwhile (a reset) has nothing left to do.
    // Up to the range's end, not past it: a bounded replay's checkpoint jumps back to where it was.
    const pos = row ? row.stream_position : s.handledAgainUpTo;
    done += Math.min(s.handledAgainUpTo, Math.max(pos, s.rewoundTo)) - s.rewoundTo;
    if (row?.status === 'failed') failed.push(s.stream);
  }
  return { done, total: r.redelivered, failed, finished: done >= r.redelivered };
}
