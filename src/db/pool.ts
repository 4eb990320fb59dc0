import pg from 'pg';
import { assertDatabaseUrl, maskUrl } from './databaseUrl.js';
import { toBeckettError } from './toBeckettError.js';

// bigint (int8) columns: positions fit comfortably in a JS number.
pg.types.setTypeParser(20, (v) => Number(v));

export { maskUrl };

export interface PoolOptions {
  max?: number;
  applicationName?: string;
  /**
   * Server settings for every session of the pool (sent at connect), e.g. `{ statement_timeout: 5000 }`.
   * Not sent when `listenUrl` is set: PgBouncer refuses the `options` startup parameter.
   */
  settings?: Record<string, string | number>;
  /**
   * A direct connection (not through a pooler) for LISTEN. Set it when `url` goes through PgBouncer
   * in transaction mode, where a LISTEN would stay on whichever server connection ran it.
   */
  listenUrl?: string;
}

const listenUrls = new WeakMap<pg.Pool, string>();

/**
 * Send the LISTEN connections of a pool (yours or createPool's) to `url`, a direct connection to
 * the primary: for a pool that goes through PgBouncer in transaction mode.
 */
export function setListenUrl(pool: pg.Pool, url: string): void {
  assertDatabaseUrl(url);
  listenUrls.set(pool, url);
}

/** The direct URL set for the pool's LISTEN connections, if any. */
export function listenUrlOf(pool: pg.Pool): string | undefined {
  return listenUrls.get(pool);
}

/**
 * A new, unconnected client for a LISTEN of its own (a pooled connection would lose its LISTEN when
 * returned): on the pool's listen URL when one is set, else with the pool's own settings.
 */
export function listenClient(pool: pg.Pool, applicationName: string): pg.Client {
  const direct = listenUrls.get(pool);
  const client = new pg.Client(
    direct
      ? { connectionString: direct, application_name: applicationName }
      : ({ ...pool.options, application_name: applicationName } as pg.ClientConfig),
  );
  return client;
}

/** The startup `options` string that sets `settings` (spaces and backslashes escaped as libpq does). */
export function sessionOptions(settings: Record<string, string | number>): string {
  return Object.entries(settings)
    .map(([key, value]) => `-c ${key}=${String(value).replace(/[\\ ]/g, (c) => `\\${c}`)}`)
    .join(' ');
}

/**
 * The URL with `settings` added to its `options` parameter (a URL's parameters override the pool's
 * own options, so they must go there). Later `-c` switches win: these override the URL's own.
 */
function withSettings(url: string, settings: Record<string, string | number> | undefined): string {
  if (!settings || Object.keys(settings).length === 0) return url;
  try {
    const u = new URL(url);
    const options = [u.searchParams.get('options'), sessionOptions(settings)].filter(Boolean).join(' ');
    u.searchParams.set('options', options);
    // URLSearchParams writes a space as "+" (and a real "+" as %2B); libpq reads only %20.
    return u.toString().replace(/\+/g, '%20');
  } catch {
    return url;
  }
}

/**
 * A pool whose failed connections reject with DatabaseUnreachableError (URL masked), so a library
 * user on a wrong or unreachable URL gets a typed error, as the CLI does. pg.Pool's query() goes
 * through connect(), so both are covered.
 */
interface LateUrl {
  find: () => Promise<string>;
  settings: Record<string, string | number> | undefined;
}

class MappedPool extends pg.Pool {
  #url: string;
  /** Finds the URL on the first connect (a development store on the embedded server). */
  readonly #lateUrl: LateUrl | undefined;
  #found: Promise<void> | undefined;
  constructor(config: pg.PoolConfig & { connectionString: string }, lateUrl?: LateUrl) {
    super(config);
    this.#url = config.connectionString;
    this.#lateUrl = lateUrl;
  }

  /** Resolves once the URL is known (at once for a pool made with one); shared by every connect. */
  #urlKnown(): Promise<void> | undefined {
    const late = this.#lateUrl;
    if (!late) return undefined;
    this.#found ??= late.find().then((url) => {
      assertDatabaseUrl(url);
      this.#url = url;
      // pg-pool builds every client from its options: clients made from now on use this URL.
      (this as unknown as { options: pg.PoolConfig }).options.connectionString = withSettings(
        url,
        late.settings,
      );
    });
    // A failure is every waiting connect's error; the next connect tries again.
    this.#found.catch(() => {
      this.#found = undefined;
    });
    return this.#found;
  }

  override connect(): Promise<pg.PoolClient>;
  override connect(
    callback: (
      err: Error | undefined,
      client: pg.PoolClient | undefined,
      done: (release?: unknown) => void,
    ) => void,
  ): void;
  override connect(
    callback?: (
      err: Error | undefined,
      client: pg.PoolClient | undefined,
      done: (release?: unknown) => void,
    ) => void,
  ): Promise<pg.PoolClient> | undefined {
    const map = (err: unknown) => toBeckettError(err, { url: this.#url });
    const pending = this.#urlKnown();
    if (callback) {
      const go = () =>
        super.connect((err, client, done) => callback(err ? map(err) : undefined, client, done));
      if (pending) pending.then(go, (err: unknown) => callback(map(err), undefined, () => undefined));
      else go();
      return undefined;
    }
    return (pending ? pending.then(() => super.connect()) : super.connect()).catch((err: unknown) => {
      throw map(err);
    });
  }
}

/**
 * A pool that fails fast on an unreachable server; errors on idle clients never crash the process.
 * Throws InvalidInputError for a malformed URL (never repeating its password).
 */
export function createPool(url: string, opts: PoolOptions = {}): pg.Pool {
  assertDatabaseUrl(url);
  const settings = opts.listenUrl ? undefined : opts.settings;
  const pool = new MappedPool({
    connectionString: withSettings(url, settings),
    max: opts.max ?? 10,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName ?? 'beckett',
    ...(settings && Object.keys(settings).length > 0 ? { options: sessionOptions(settings) } : {}),
  });
  if (opts.listenUrl) setListenUrl(pool, opts.listenUrl);
  // A server restart kills idle connections; the pool replaces them on the next checkout.
  pool.on('error', () => undefined);
  return pool;
}

/**
 * A pool whose URL is found when it first connects (`find`, e.g. starting the embedded server):
 * the synchronous createMessageStore() can then reach a server that is not running yet. A failure
 * to find it is the error of every connect().
 */
export function createPoolFindingUrl(find: () => Promise<string>, opts: PoolOptions = {}): pg.Pool {
  const pool = new MappedPool(
    {
      // Replaced before any client is made; a placeholder the masking code can parse.
      connectionString: 'postgres://pending@127.0.0.1/pending',
      max: opts.max ?? 10,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      application_name: opts.applicationName ?? 'beckett',
      ...(opts.settings && Object.keys(opts.settings).length > 0
        ? { options: sessionOptions(opts.settings) }
        : {}),
    },
    { find, settings: opts.settings },
  );
  pool.on('error', () => undefined);
  return pool;
}

/** Check the database answers, turning connection failures into a clear, masked error. */
export async function assertReachable(pool: pg.Pool, url: string): Promise<void> {
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    throw toReachabilityError(err, url);
  }
}

export function toReachabilityError(err: unknown, url: string): Error {
  return toBeckettError(err, { url });
}
