import type pg from 'pg';
import type { ResolvedGroup } from '../config/types.js';
import { assertSafeSchemaName, escapeIdentifier } from '../db/identifier.js';
import { inTransaction, type Queryable, type SqlContext } from '../db/queryable.js';
import { NotFoundError } from '../errors.js';
import { logEnd } from '../store/readLog.js';
import {
  definitionOf,
  fingerprintOf,
  type SubscriptionDefinition,
  showDefinition,
} from './subscriptionDefinition.js';

export type SubscriptionStatus = 'initializing' | 'active' | 'paused' | 'replaying' | 'unknown';

/** Statuses whose checkpoints consumers may claim. */
export const CLAIMABLE_STATUSES: SubscriptionStatus[] = ['initializing', 'active', 'replaying'];

const insertGroupSql = (ctx: SqlContext) =>
  `INSERT INTO ${ctx.s}.subscription_groups (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`;

// Registrations of one group run one at a time (every process re-registers at each heartbeat).
const lockSql = 'SELECT pg_advisory_xact_lock(hashtextextended($1, 0))';

/**
 * Wait for (and hold until the transaction ends) the lock registrations of `group` take: an
 * operator's change to the group's subscriptions (forgetting one) runs between registrations.
 */
export async function lockGroupRegistrations(db: Queryable, ctx: SqlContext, group: string): Promise<void> {
  await db.query(lockSql, [`beckett.subscriptions:${ctx.schema}.${group}`]);
}

const storedSql = (ctx: SqlContext) =>
  `SELECT s.name, s.status, s.fingerprint, s.definition, d.first_seen_at,
          EXISTS (SELECT 1 FROM ${ctx.s}.subscription_runners r
                   WHERE r.group_name = s.group_name AND r.subscription_name = s.name
                     AND r.fingerprint = s.fingerprint AND r.alive_until > now()) AS alive
     FROM ${ctx.s}.subscriptions s
     LEFT JOIN ${ctx.s}.subscription_definitions d
       ON d.group_name = s.group_name AND d.subscription_name = s.name AND d.fingerprint = s.fingerprint
    WHERE s.group_name = $1`;

const insertSubscriptionSql = (ctx: SqlContext) =>
  `INSERT INTO ${ctx.s}.subscriptions
     (group_name, name, log_transaction_id, log_position, start_from, fingerprint, definition)
   VALUES ($1, $2, $3::xid8, $4, $5, $6, $7::jsonb)
   ON CONFLICT (group_name, name) DO NOTHING`;

// first_seen_at stays as first written: it says which definition is newer. Nothing is rewritten
// when the definition is known (registration runs at every heartbeat).
const recordDefinitionsSql = (ctx: SqlContext) =>
  `WITH u AS (
     SELECT * FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS u(name, fingerprint, definition)),
   added AS (
     INSERT INTO ${ctx.s}.subscription_definitions (group_name, subscription_name, fingerprint, definition)
     SELECT $1, u.name, u.fingerprint, u.definition FROM u
     ON CONFLICT (group_name, subscription_name, fingerprint) DO NOTHING
     RETURNING subscription_name, first_seen_at)
   SELECT subscription_name, first_seen_at FROM added
   UNION ALL
   SELECT d.subscription_name, d.first_seen_at
     FROM ${ctx.s}.subscription_definitions d JOIN u ON d.subscription_name = u.name AND d.fingerprint = u.fingerprint
    WHERE d.group_name = $1`;

const keepAliveSql = (ctx: SqlContext) =>
  `INSERT INTO ${ctx.s}.subscription_runners (worker_id, group_name, subscription_name, fingerprint, alive_until)
   SELECT $1, $2, u.name, u.fingerprint, now() + make_interval(secs => $5::float8 / 1000)
     FROM unnest($3::text[], $4::text[]) AS u(name, fingerprint)
   ON CONFLICT (worker_id, group_name, subscription_name) DO UPDATE
     SET fingerprint = EXCLUDED.fingerprint, alive_until = EXCLUDED.alive_until`;

const dropRunnerSql = (ctx: SqlContext) => `DELETE FROM ${ctx.s}.subscription_runners WHERE worker_id = $1`;

/** A worker that stopped cleanly no longer runs any definition (a killed one's rows expire). */
export async function unregisterRunner(db: Queryable, ctx: SqlContext, workerId: string): Promise<void> {
  await db.query(dropRunnerSql(ctx), [workerId]);
}

// Taking a subscription over (or adopting one registered before fingerprints existed, or bringing
// back one marked unknown) leaves its log position and checkpoints as they are: what the previous
// definition passed before this commit was its to pass; from here on only this definition acts.
const takeOverSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.subscriptions
      SET fingerprint = $3, definition = $4::jsonb,
          status = CASE WHEN status = 'unknown' THEN 'active' ELSE status END, updated_at = now()
    WHERE group_name = $1 AND name = $2`;

// Never demote a subscription that a live process (of another config version) still runs.
const markUnknownSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.subscriptions s SET status = 'unknown', updated_at = now()
    WHERE s.group_name = $1 AND NOT (s.name = ANY($2::text[])) AND s.status <> 'unknown'
      AND NOT EXISTS (
        SELECT 1 FROM ${ctx.s}.subscription_runners r
         WHERE r.group_name = s.group_name AND r.subscription_name = s.name AND r.alive_until > now())
   RETURNING s.name`;

/** What a registration found: which subscriptions this process acts on, and which it must not. */
export interface Registration {
  /** Subscriptions whose stored definition is this process's: it reads, claims and handles them. */
  acting: string[];
  /** Subscriptions this process's definition took over from another one (named). */
  tookOver: { name: string; from: string }[];
  /** Subscriptions a newer definition runs: this process leaves them alone (named). */
  standby: { name: string; current: string }[];
  /** Subscriptions no longer in the config and run by no live process: marked unknown. */
  demoted: string[];
  /** Subscriptions not in this config that a live process of another version still runs. */
  keptForOthers: string[];
}

export interface RegisterOptions {
  /** The worker registering: it counts as a live runner of its definitions for `aliveMs`. */
  workerId?: string;
  /**
   * How long this registration keeps the worker alive as a runner. Long on purpose (workers pass
   * 12 heartbeats, a minute by default): an older definition takes a subscription back when the
   * newer one's runners are gone, so a newer fleet whose heartbeats are late (a loaded or briefly
   * unreachable database) must not look gone. A clean stop withdraws at once. Default 60 s.
   */
  aliveMs?: number;
}

interface StoredRow {
  name: string;
  status: SubscriptionStatus;
  fingerprint: string | null;
  definition: SubscriptionDefinition | null;
  first_seen_at: Date | null;
  alive: boolean;
}

/**
 * Record the group's subscriptions and keep this process's definitions alive (idempotent, safe
 * from many processes at once; workers call it at start and at every heartbeat). A new subscription
 * starts at the beginning of the log or at its current end.
 *
 * During a rolling deploy two configs of a group can define a subscription differently. One
 * definition acts at a time, the one stored on the subscription: a newer definition (first
 * registered later) takes over from an older one, and an older one takes over only once no live
 * process runs the newer (a rollback). Subscriptions that are in the database but in no live
 * process's config are marked `unknown`, never deleted, so their checkpoints survive.
 */
export async function registerSubscriptions(
  pool: pg.Pool,
  ctx: SqlContext,
  group: ResolvedGroup,
  opts: RegisterOptions = {},
): Promise<Registration> {
  const subs = [...group.subscriptions.values()];
  const names = subs.map((s) => s.name);
  const result: Registration = { acting: [], tookOver: [], standby: [], demoted: [], keptForOthers: [] };
  await inTransaction(pool, async (client) => {
    await lockGroupRegistrations(client, ctx, group.name);
    await client.query(insertGroupSql(ctx), [group.name]);
    const stored = new Map(
      (await client.query<StoredRow>(storedSql(ctx), [group.name])).rows.map((r) => [r.name, r]),
    );
    let end: { transactionId: string; globalPosition: number } | undefined;
    for (const sub of subs) {
      if (stored.has(sub.name)) continue;
      let pos = { transactionId: '0', globalPosition: 0 };
      if (sub.startFrom === 'end') {
        end ??= await logEnd(client, ctx);
        pos = end;
      }
      await client.query(insertSubscriptionSql(ctx), [
        group.name,
        sub.name,
        pos.transactionId,
        pos.globalPosition,
        sub.startFrom,
        fingerprintOf(sub),
        JSON.stringify(definitionOf(sub)),
      ]);
    }
    const { rows: mine } = await client.query<{ subscription_name: string; first_seen_at: Date }>(
      recordDefinitionsSql(ctx),
      [group.name, names, subs.map(fingerprintOf), subs.map((s) => JSON.stringify(definitionOf(s)))],
    );
    if (opts.workerId !== undefined)
      await client.query(keepAliveSql(ctx), [
        opts.workerId,
        group.name,
        names,
        subs.map(fingerprintOf),
        opts.aliveMs ?? 60_000,
      ]);
    const firstSeen = new Map(mine.map((r) => [r.subscription_name, r.first_seen_at.getTime()]));
    for (const sub of subs) {
      const fingerprint = fingerprintOf(sub);
      const row = stored.get(sub.name);
      if (row && row.fingerprint !== null && row.fingerprint !== fingerprint) {
        const theirs = row.first_seen_at?.getTime() ?? 0;
        const ours = firstSeen.get(sub.name) ?? 0;
        const newer = ours > theirs || (ours === theirs && fingerprint > row.fingerprint);
        if (row.alive && !newer) {
          result.standby.push({ name: sub.name, current: showDefinition(row.definition) });
          continue;
        }
        result.tookOver.push({ name: sub.name, from: showDefinition(row.definition) });
      }
      if (!row || row.fingerprint !== fingerprint || row.status === 'unknown') {
        await client.query(takeOverSql(ctx), [
          group.name,
          sub.name,
          fingerprint,
          JSON.stringify(definitionOf(sub)),
        ]);
      }
      result.acting.push(sub.name);
    }
    const { rows: demoted } = await client.query<{ name: string }>(markUnknownSql(ctx), [group.name, names]);
    result.demoted = demoted.map((r) => r.name);
    result.keptForOthers = [...stored.values()]
      .filter((r) => !group.subscriptions.has(r.name) && r.status !== 'unknown')
      .map((r) => r.name)
      .filter((n) => !result.demoted.includes(n));
  });
  return result;
}

/**
 * What a worker should say about a registration: standing by, taking over, demoting, leaving a
 * subscription to another version. `told` holds what was said per subscription (the caller records
 * each notice there), so a state is reported once, and again only after it changed.
 */
export function registrationNotices(
  group: ResolvedGroup,
  r: Registration,
  told: Map<string, string>,
): { subscription: string; text: string }[] {
  const notices: { subscription: string; text: string }[] = [];
  const say = (subscription: string, text: string) => {
    if (told.get(subscription) !== text) notices.push({ subscription, text });
  };
  const of = (name: string) => `Subscription "${name}" of group "${group.name}"`;
  for (const { name, current } of r.standby) {
    const mine = showDefinition(definitionOf(group.subscriptions.get(name)!));
    say(
      name,
      `${of(name)}: a newer definition (${current}) registered by another process runs it; this process (${mine}) leaves it alone until no live process runs that one.`,
    );
  }
  for (const { name, from } of r.tookOver)
    say(name, `${of(name)}: this process's definition now runs it (it was: ${from}).`);
  // Back to normal: a later stand-by is news again.
  for (const name of r.acting) if (!r.tookOver.some((t) => t.name === name)) told.delete(name);
  for (const name of r.demoted) say(name, `${of(name)} is in no live process's config: marked unknown.`);
  for (const name of r.keptForOthers)
    say(
      name,
      `${of(name)} is not in this config but a live process of another version runs it: left as it is.`,
    );
  return notices;
}

export interface SubscriptionRow {
  group: string;
  name: string;
  status: SubscriptionStatus;
  logTransactionId: string;
  logPosition: number;
}

/** The subscriptions of a group as stored. */
export async function listSubscriptions(
  db: Queryable,
  schema: string,
  group: string,
): Promise<SubscriptionRow[]> {
  const s = escapeIdentifier(assertSafeSchemaName(schema));
  const { rows } = await db.query<{
    group_name: string;
    name: string;
    status: SubscriptionStatus;
    log_transaction_id: string;
    log_position: number;
  }>(
    `SELECT group_name, name, status, log_transaction_id, log_position
       FROM ${s}.subscriptions WHERE group_name = $1 ORDER BY name`,
    [group],
  );
  return rows.map((r) => ({
    group: r.group_name,
    name: r.name,
    status: r.status,
    logTransactionId: r.log_transaction_id,
    logPosition: r.log_position,
  }));
}

async function setStatus(
  db: Queryable,
  schema: string,
  group: string,
  name: string,
  to: SubscriptionStatus,
  from: SubscriptionStatus[],
): Promise<boolean> {
  const s = escapeIdentifier(assertSafeSchemaName(schema));
  const { rows } = await db.query<{ status: SubscriptionStatus; changed: boolean }>(
    `WITH target AS (SELECT status FROM ${s}.subscriptions WHERE group_name = $1 AND name = $2),
          changed AS (
            UPDATE ${s}.subscriptions SET status = $3, updated_at = now()
             WHERE group_name = $1 AND name = $2 AND status = ANY($4::text[])
             RETURNING 1)
     SELECT (SELECT status FROM target) AS status, EXISTS (SELECT 1 FROM changed) AS changed`,
    [group, name, to, from],
  );
  const row = rows[0];
  if (!row || row.status === null) {
    throw new NotFoundError(
      `Subscription "${name}" of group "${group}" is not registered in schema "${schema}".`,
      'Subscriptions are registered when a worker of their group starts (es worker --group NAME).',
    );
  }
  return row.changed;
}

/**
 * Pause a subscription: its checkpoints are no longer claimed (work in flight finishes); the global
 * reader keeps recording new messages, so resuming loses nothing. Resolves false when it was
 * already paused (or unknown/replaying: only active or initializing subscriptions are paused).
 */
export function pauseSubscription(
  db: Queryable,
  schema: string,
  group: string,
  name: string,
): Promise<boolean> {
  return setStatus(db, schema, group, name, 'paused', ['active', 'initializing']);
}

/** Resume a paused subscription. Resolves false when it was not paused. */
export function resumeSubscription(
  db: Queryable,
  schema: string,
  group: string,
  name: string,
): Promise<boolean> {
  return setStatus(db, schema, group, name, 'active', ['paused']);
}
