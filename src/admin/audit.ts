import type { Queryable, SqlContext } from '../db/queryable.js';
import { decodeCursor, encodeCursor, type Page, pageLimit } from './pages.js';

/** One operator action as the audit log keeps it. */
export interface AuditEntry {
  id: number;
  at: string;
  /** 'cli', 'api', or the name the host gave (a dashboard user). */
  actor: string;
  /** The admin method: 'retry', 'skip', 'release', 'pause', 'resume', 'reset', 'replay', ... */
  action: string;
  /** What it acted on: `{ checkpoints: [...] }`, `{ group, subscription }`, `{ stream }`, ... */
  target: Record<string, unknown>;
  result: 'ok' | 'error';
  /** The action's result (abridged when large), or the error's code and message. */
  detail: unknown;
}

/** Results larger than this are recorded abridged (counts instead of lists). */
const MAX_DETAIL_BYTES = 16_384;

function abridge(detail: unknown): unknown {
  const text = JSON.stringify(detail ?? null);
  if (text.length <= MAX_DETAIL_BYTES) return detail ?? null;
  if (typeof detail !== 'object' || detail === null) return { abridged: true };
  return {
    abridged: true,
    ...Object.fromEntries(
      Object.entries(detail).map(([k, v]) => [k, Array.isArray(v) ? { count: v.length } : v]),
    ),
  };
}

export async function recordAudit(
  db: Queryable,
  ctx: SqlContext,
  entry: {
    actor: string;
    action: string;
    target: Record<string, unknown>;
    result: 'ok' | 'error';
    detail: unknown;
  },
): Promise<void> {
  await db.query(
    `INSERT INTO ${ctx.s}.audit_log (actor, action, target, result, detail) VALUES ($1, $2, $3, $4, $5)`,
    [
      entry.actor,
      entry.action,
      JSON.stringify(entry.target),
      entry.result,
      JSON.stringify(abridge(entry.detail)),
    ],
  );
}

interface AuditRow {
  id: number;
  at: Date;
  actor: string;
  action: string;
  target: Record<string, unknown>;
  result: 'ok' | 'error';
  detail: unknown;
}

/** The audit log, newest first, a page at a time; `checkpoint` keeps the actions naming that checkpoint id. */
export async function listAudit(
  db: Queryable,
  ctx: SqlContext,
  opts: { after?: string; limit?: number; checkpoint?: string } = {},
): Promise<Page<AuditEntry>> {
  const limit = pageLimit(opts.limit);
  const after = decodeCursor(opts.after, 1)?.[0];
  const { rows } = await db.query<AuditRow>(
    `SELECT id, at, actor, action, target, result, detail FROM ${ctx.s}.audit_log
      WHERE ($1::bigint IS NULL OR id < $1) AND ($2::jsonb IS NULL OR target @> $2::jsonb)
      ORDER BY id DESC LIMIT $3`,
    [
      typeof after === 'number' ? after : null,
      opts.checkpoint ? JSON.stringify({ checkpoints: [opts.checkpoint] }) : null,
      limit + 1,
    ],
  );
  const items = rows.slice(0, limit).map((r) => ({
    id: Number(r.id),
    at: r.at.toISOString(),
    actor: r.actor,
    action: r.action,
    target: r.target,
    result: r.result,
    detail: r.detail,
  }));
  const last = items[items.length - 1];
  return { items, next: rows.length > limit && last ? encodeCursor([last.id]) : null };
}
