import type pg from 'pg';
import { ConfigError } from '../errors.js';
import { listenClient, listenUrlOf } from './pool.js';
import type { Queryable } from './queryable.js';

/*
 * Which server a second URL reaches, against the database URL's.
 *
 * A read URL (`database.readUrl`, `--read-url`, `createWorker({ readPool })`) must reach a hot
 * standby streaming from the primary, or the primary itself. Reads there are gap-safe only because
 * a physical standby replays the primary's transactions with their ids (the log's order is by
 * transaction id, and the reader's horizon is its own snapshot's xmin). Anything else answers the
 * same queries with other data: a restored copy, another cluster, a logical subscriber (its own
 * transaction ids), or a promoted standby whose writes have gone their own way. A worker would then
 * hand its handlers messages the primary does not hold, or skip ones it does.
 */
const IDENTITY_SQL = `SELECT system_identifier::text AS system, pg_is_in_recovery() AS standby,
         pg_postmaster_start_time()::text AS started, current_database() AS database
    FROM pg_control_system()`;

interface Identity {
  system: string;
  standby: boolean;
  started: string;
  database: string;
}

const HINT =
  'Point the read URL (--read-url, BECKETT_READ_URL, database.readUrl, readPool) at a hot standby of the primary (made with pg_basebackup, streaming from it), or leave it out: reads then go to the primary.';

/** Throws a ConfigError unless `replica` is a standby of `primary` (or the primary itself). */
export async function assertReplicaOf(primary: Queryable, replica: Queryable): Promise<void> {
  const [p, r] = await Promise.all([identity(primary), identity(replica)]);
  if (p.system !== r.system)
    throw new ConfigError(
      `The read URL's server is not a replica of the primary: its system identifier is ${r.system}, the primary's ${p.system} (another cluster, a restored copy or a logical subscriber).`,
      HINT,
    );
  if (p.database !== r.database)
    throw new ConfigError(
      `The read URL names the database ${JSON.stringify(r.database)}, the primary's URL ${JSON.stringify(p.database)}: a replica holds the same databases, so it must name the same one.`,
      HINT,
    );
  // Same cluster, accepting writes: the primary itself (same start), or a promoted standby.
  if (!r.standby && r.started !== p.started)
    throw new ConfigError(
      "The read URL's server is a copy of the primary that accepts writes (not in recovery): a promoted standby, whose data no longer follows the primary's.",
      HINT,
    );
}

async function identity(db: Queryable): Promise<Identity> {
  const { rows } = await db.query<Identity>(IDENTITY_SQL);
  return rows[0]!;
}

/*
 * A listen URL (`database.listenUrl`, `BECKETT_LISTEN_URL`, createPool's `listenUrl`: a direct
 * connection for LISTEN when the database URL goes through PgBouncer) must reach the primary the
 * database URL reaches, in the same database: NOTIFY is delivered to listeners of the database it
 * was sent in. Anywhere else the LISTEN succeeds and never hears a thing: every wake-up is lost and
 * the workers only poll.
 */
const LISTEN_HINT =
  'Point the listen URL (database.listenUrl, BECKETT_LISTEN_URL) at the same primary and database as the database URL, directly (not through PgBouncer), or leave it out.';

/**
 * Run `fn` on a connection of its own to the pool's listen target (its listen URL, else the pool's
 * own server). A target that cannot be reached leaves nothing to compare with: `onUnreachable`
 * hears why, and `fn` does not run.
 */
async function onListenTarget(
  pool: pg.Pool,
  onUnreachable: (err: unknown) => void,
  fn: (client: pg.Client) => Promise<void>,
): Promise<void> {
  const client = listenClient(pool, 'beckett-check');
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    return onUnreachable(err);
  }
  try {
    await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Throws a ConfigError when the pool's listen URL reaches another server or database than the
 * pool; one that cannot be reached goes to `onUnreachable` (its listener retries anyway).
 */
export async function assertListenUrlReachesPool(
  pool: pg.Pool,
  onUnreachable: (err: unknown) => void,
): Promise<void> {
  if (listenUrlOf(pool) === undefined) return;
  await onListenTarget(pool, onUnreachable, async (client) => {
    const [p, l] = await Promise.all([identity(pool), identity(client)]);
    if (p.system !== l.system || p.started !== l.started || l.standby)
      throw new ConfigError(
        `The listen URL reaches another server than the database URL (system identifier ${l.system}${l.standby ? ', a standby' : ''}; the database URL's ${p.system}): LISTEN there never hears this database's notifications.`,
        LISTEN_HINT,
      );
    if (p.database !== l.database)
      throw new ConfigError(
        `The listen URL names the database ${JSON.stringify(l.database)}, the database URL ${JSON.stringify(p.database)}: notifications reach only listeners of the database they are sent in.`,
        LISTEN_HINT,
      );
  });
}

/**
 * For a pool on the read replica whose listen URL is the primary (es tail --read-url): throws a
 * ConfigError unless the replica is a standby of that primary; a primary that cannot be reached
 * goes to `onUnreachable`.
 */
export async function assertPoolReplicatesListenTarget(
  replica: pg.Pool,
  onUnreachable: (err: unknown) => void,
): Promise<void> {
  await onListenTarget(replica, onUnreachable, (primary) => assertReplicaOf(primary, replica));
}
