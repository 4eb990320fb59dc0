import pg from 'pg';
import { type Queryable, withClient } from './queryable.js';

/*
 * Several statements in one round trip: Bind/Execute for each, then one Sync. The server runs them
 * in order as one implicit transaction (or inside the caller's transaction), and in READ COMMITTED
 * each statement takes its own snapshot: a later statement sees what was committed while an
 * earlier one waited for a lock. One statement cannot do that (its snapshot is taken before it
 * runs), and a plpgsql function that can costs a call, SPI and a plan cache of its own.
 *
 * Built on pg's Submittable interface (the one pg-cursor uses): pg has no per-query pipelining.
 *
 * A named statement is prepared on its first use on a connection by a Parse sent inline, just
 * before its Bind, in the same write. It was once parsed in a round trip of its own before the
 * pipeline: a statement's Parse takes locks on the tables it reads, so with one of them locked (DDL,
 * a test's barrier) everything before it in the pipeline, a completion's COMMIT say, waited for
 * that lock too; and every new connection paid one round trip per statement. Its name is recorded
 * as parsed (pg's `parsedStatements`, which pg's own queries read as well) only when the server
 * confirms the Parse: after an error, the Parses the server skipped are sent again next time.
 */

/** A statement as statement() (queryable.ts) builds it: named (prepared once per connection) or not. */
export interface PipelinedStatement {
  name?: string | undefined;
  text: string;
  values?: unknown[] | undefined;
}

/** What pg's client calls on the active query; only the parts used here. */
interface Connection {
  parsedStatements: Record<string, string>;
  parse(msg: { name: string; text: string; types: unknown[] }): void;
  bind(msg: {
    portal: string;
    statement: string;
    values: unknown[];
    valueMapper: (v: unknown) => unknown;
  }): void;
  describe(msg: { type: 'P'; name: string }): void;
  execute(msg: { portal: string; rows: number }): void;
  flush(): void;
  sync(): void;
  stream: { cork?: () => void; uncork?: () => void };
  on(event: 'parseComplete', listener: () => void): void;
  removeListener(event: 'parseComplete', listener: () => void): void;
}

interface Message {
  fields?: { name: string; dataTypeID?: number }[] | (string | null)[];
}

/** A result column as the server described it. */
export interface PipelinedField {
  name: string;
  dataTypeID: number;
}

/**
 * Parameters as text: the values the callers here pass are strings, numbers, booleans, null and
 * one-dimensional arrays of those.
 */
function toParam(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (Array.isArray(v)) return `{${v.map(arrayElement).join(',')}}`;
  return String(v);
}

function arrayElement(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  return `"${String(v).replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

/** A RowDescription's columns. */
function fieldsOf(msg: Message): PipelinedField[] {
  const fields = (msg.fields ?? []) as { name: string; dataTypeID?: number }[];
  return fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID ?? 25 }));
}

/**
 * Base of the submittables: settles on ReadyForQuery, or on an error (pg's client then drops
 * the query and reads the ReadyForQuery that follows itself, before it sends anything else).
 * Sends each statement with its Parse when it needs one (see the top of this file).
 */
abstract class Submission {
  readonly done: Promise<void>;
  #resolve!: () => void;
  #reject!: (err: Error) => void;
  /** The Parses sent, in order: the statement's name (none: the unnamed statement) and text. */
  readonly #parses: { name: string | undefined; text: string }[] = [];
  /** ParseComplete messages received so far. */
  #parsed = 0;
  /** The connection whose ParseComplete messages are counted (while a named Parse is pending). */
  #counting: Connection | undefined;
  /** The server's ParseComplete messages come in the order the Parses went. */
  readonly #onParseComplete = () => {
    const parse = this.#parses[this.#parsed++];
    if (parse?.name !== undefined && this.#counting) this.#counting.parsedStatements[parse.name] = parse.text;
  };

  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  abstract submit(connection: Connection): void;

  /**
   * Parse (unless named and parsed on this connection or earlier in this pipeline), Bind,
   * optionally Describe, Execute.
   */
  protected send(connection: Connection, s: PipelinedStatement, describe: boolean): void {
    const name = s.name;
    if (
      name === undefined ||
      (connection.parsedStatements[name] === undefined && !this.#parses.some((p) => p.name === name))
    ) {
      if (name !== undefined && this.#counting === undefined) {
        this.#counting = connection;
        connection.on('parseComplete', this.#onParseComplete);
      }
      this.#parses.push({ name, text: s.text });
      connection.parse({ name: name ?? '', text: s.text, types: [] });
    }
    connection.bind({ portal: '', statement: name ?? '', values: s.values ?? [], valueMapper: toParam });
    if (describe) connection.describe({ type: 'P', name: '' });
    connection.execute({ portal: '', rows: 0 });
  }

  #stopCounting(): void {
    this.#counting?.removeListener('parseComplete', this.#onParseComplete);
    this.#counting = undefined;
  }

  handleRowDescription(_msg: Message): void {}
  handleDataRow(_msg: Message): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
  handleError(err: Error): void {
    // The server skips every message after an error up to the Sync: no ParseComplete follows.
    this.#stopCounting();
    this.#reject(err);
  }
  handleReadyForQuery(): void {
    this.#stopCounting();
    this.#resolve();
  }
}

/** Bind/Execute every statement, Describe the last one, one Sync; keeps the last one's rows. */
class Pipelined extends Submission {
  rows: (string | null)[][] = [];
  fields: PipelinedField[] = [];
  #described = false;

  constructor(readonly statements: PipelinedStatement[]) {
    super();
  }

  submit(connection: Connection): void {
    connection.stream.cork?.();
    try {
      const last = this.statements.length - 1;
      for (const [i, s] of this.statements.entries()) this.send(connection, s, i === last);
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
  }

  override handleRowDescription(msg: Message): void {
    // Only the last statement is described: rows before its description belong to earlier ones.
    this.#described = true;
    this.fields = fieldsOf(msg);
  }

  override handleDataRow(msg: Message): void {
    if (this.#described) this.rows.push(msg.fields as (string | null)[]);
  }
}

/** Bind/Execute/Describe every statement, one Sync; keeps every statement's rows, in order. */
class PipelinedEach extends Submission {
  /** Rows per statement: one CommandComplete ends each statement's result. */
  results: (string | null)[][][];
  /** Columns per statement (none for a statement that returns no rows). */
  fields: PipelinedField[][];
  #at = 0;

  constructor(
    readonly statements: PipelinedStatement[],
    /** The statements to Describe (their columns are wanted); all of them when undefined. */
    readonly described?: (i: number) => boolean,
  ) {
    super();
    this.results = statements.map(() => []);
    this.fields = statements.map(() => []);
  }

  override handleError(err: Error): void {
    // Which statements completed before the error, with their rows: a COMMIT among them committed.
    Object.assign(err, { pipelined: { completed: this.#at, results: this.results, fields: this.fields } });
    super.handleError(err);
  }

  override handleRowDescription(msg: Message): void {
    this.fields[this.#at] = fieldsOf(msg);
  }

  submit(connection: Connection): void {
    connection.stream.cork?.();
    try {
      for (const [i, s] of this.statements.entries())
        this.send(connection, s, this.described ? this.described(i) : true);
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
  }

  override handleDataRow(msg: Message): void {
    this.results[this.#at]?.push(msg.fields as (string | null)[]);
  }

  override handleCommandComplete(): void {
    this.#at++;
  }
}

/**
 * One statement whose rows are wanted before its commit: Bind/Describe/Execute, Flush, Sync in one
 * write. At the Flush the server sends the rows as soon as the statement has run; at the Sync it
 * commits the implicit transaction (the WAL flush) and then says so. The Sync reaches the server
 * with the statement, so once the rows are here the commit no longer depends on this client: a
 * process that dies holding them leaves the server to commit (only a server crash before its WAL
 * flush undoes it).
 */
class RowsBeforeCommit extends Submission {
  rows: (string | null)[][] = [];
  fields: PipelinedField[] = [];
  /** Resolves when the statement's rows are all here (before the commit); rejects on an error first. */
  readonly ready: Promise<void>;
  #ready!: () => void;
  #failed!: (err: Error) => void;

  constructor(readonly statement: PipelinedStatement) {
    super();
    this.ready = new Promise<void>((resolve, reject) => {
      this.#ready = resolve;
      this.#failed = reject;
    });
    // Settled by done too: an error after the rows is the commit's, for the caller of done.
    this.ready.catch(() => undefined);
  }

  submit(connection: Connection): void {
    connection.stream.cork?.();
    try {
      this.send(connection, this.statement, true);
      connection.flush();
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
  }

  override handleRowDescription(msg: Message): void {
    this.fields = fieldsOf(msg);
  }

  override handleDataRow(msg: Message): void {
    this.rows.push(msg.fields as (string | null)[]);
  }

  override handleCommandComplete(): void {
    this.#ready();
  }

  override handleError(err: Error): void {
    this.#failed(err);
    super.handleError(err);
  }
}

/** One statement, Bind/Execute without Describe, one Sync; keeps its first row's first value. */
class FirstValue extends Submission {
  /** Undefined until a row comes. */
  value: string | null | undefined;

  constructor(readonly statement: PipelinedStatement) {
    super();
  }

  submit(connection: Connection): void {
    connection.stream.cork?.();
    try {
      this.send(connection, this.statement, false);
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
  }

  override handleDataRow(msg: Message): void {
    if (this.value === undefined) this.value = (msg.fields as (string | null)[])[0] ?? null;
  }
}

/** Rows handed over before their transaction's commit is confirmed (see runRowsBeforeCommit). */
export interface RowsBeforeCommitResult<T> {
  rows: T[];
  /** Resolves once the statement's implicit transaction committed; rejects if it did not. */
  committed: Promise<void>;
}

/**
 * Run one statement on a client of `pool` as its own implicit transaction, and return its rows as
 * soon as it has run, before the commit's WAL flush: `committed` settles when the server confirms
 * the commit (or fails it: a lost connection, a server crash). Rejects, with nothing committed,
 * when the statement fails. The client goes back to the pool after the commit.
 */
export function runRowsBeforeCommit<T>(
  pool: pg.Pool,
  statement: PipelinedStatement,
): Promise<RowsBeforeCommitResult<T>> {
  return new Promise((resolve, reject) => {
    const committed: Promise<void> = withClient(pool, async (client) => {
      const run = new RowsBeforeCommit(statement);
      client.query(run as unknown as pg.Submittable);
      run.ready.then(() => resolve({ rows: rowObjects<T>(run.rows, run.fields), committed }), reject);
      await run.done;
    });
    // Before the rows: the statement's failure (then nothing is committed). After: a no-op.
    committed.catch(reject);
  });
}

/**
 * Run `statements` on `client` in one round trip and return every statement's rows (text values),
 * in order. As runPipelined: one implicit transaction unless the statements open one themselves
 * (a BEGIN first leaves the transaction open for the caller; a COMMIT last ends it). An error in
 * any statement rejects, and the statements after it do not run.
 */
export async function runPipelinedEach(
  client: pg.PoolClient | pg.Client,
  statements: PipelinedStatement[],
): Promise<(string | null)[][][]> {
  return (await runPipelinedWithFields(client, statements)).results;
}

/** What a failed runPipelinedWithFields had done: statements completed, and their rows. */
export interface PipelinedPartial {
  completed: number;
  results: (string | null)[][][];
  fields: PipelinedField[][];
}

/** The statements a pipeline's error came after (undefined for any other error). */
export function pipelinedPartial(err: unknown): PipelinedPartial | undefined {
  return (err as { pipelined?: PipelinedPartial } | undefined)?.pipelined;
}

/** As runPipelinedEach, with each statement's columns (for rowObjects). */
export async function runPipelinedWithFields(
  client: pg.PoolClient | pg.Client,
  statements: PipelinedStatement[],
  /** The statements whose columns are wanted (Describe); all when undefined. */
  described?: (i: number) => boolean,
): Promise<{ results: (string | null)[][][]; fields: PipelinedField[][] }> {
  const run = new PipelinedEach(statements, described);
  client.query(run as unknown as pg.Submittable);
  await run.done;
  return { results: run.results, fields: run.fields };
}

/**
 * One statement's text rows as objects, each value parsed by pg's type parser for its column (the
 * same values a pool.query would return).
 */
export function rowObjects<T>(rows: (string | null)[][], fields: PipelinedField[]): T[] {
  const parsers = fields.map((f) => pg.types.getTypeParser(f.dataTypeID, 'text') as (v: string) => unknown);
  return rows.map((row) => {
    const o: Record<string, unknown> = {};
    for (const [i, f] of fields.entries()) {
      const v = row[i];
      o[f.name] = v === null || v === undefined ? null : parsers[i]!(v);
    }
    return o as T;
  });
}

async function onClient<T>(
  client: pg.PoolClient | pg.Client,
  statements: PipelinedStatement[],
): Promise<T[]> {
  const run = new Pipelined(statements);
  client.query(run as unknown as pg.Submittable);
  await run.done;
  return rowObjects<T>(run.rows, run.fields);
}

/**
 * Run one statement (its own implicit transaction, or in the caller's) and return the first column
 * of its first row as text, undefined when it returns no row. For a hot statement whose one value
 * is all its caller wants (the single append): no Describe, so no RowDescription to parse and none
 * of pg's result objects, about 4 points of the single append's rate at one writer against
 * pool.query (bench/README, session 21).
 */
export async function runFirstValue(
  db: Queryable,
  statement: PipelinedStatement,
): Promise<string | null | undefined> {
  if (!isPool(db)) return firstValueOn(db, statement);
  return withClient(db, (client) => firstValueOn(client, statement));
}

async function firstValueOn(
  client: pg.PoolClient | pg.Client,
  statement: PipelinedStatement,
): Promise<string | null | undefined> {
  const run = new FirstValue(statement);
  client.query(run as unknown as pg.Submittable);
  await run.done;
  return run.value;
}

function isPool(db: Queryable): db is pg.Pool {
  return typeof (db as pg.Pool).totalCount === 'number';
}

/**
 * Run `statements` in one round trip, in one transaction (the caller's, when `db` is a client
 * inside one); returns the last statement's rows (parsed as pg.query parses them). An error in any
 * statement rejects with pg's error and, outside a caller's transaction, rolls all of them back.
 */
export async function runPipelined<T>(db: Queryable, statements: PipelinedStatement[]): Promise<T[]> {
  if (!isPool(db)) return onClient<T>(db, statements);
  return withClient(db, (client) => onClient<T>(client, statements));
}
