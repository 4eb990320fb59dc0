import { ConfigError } from '../errors.js';
import type { Queryable } from './queryable.js';

/*
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
