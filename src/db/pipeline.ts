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

/** Parse (unnamed only: named ones are prepared before), Bind, optionally Describe, Execute. */
function sendStatement(connection: Connection, s: PipelinedStatement, describe: boolean): void {
  if (s.name === undefined) connection.parse({ name: '', text: s.text, types: [] });
  connection.bind({ portal: '', statement: s.name ?? '', values: s.values ?? [], valueMapper: toParam });
  if (describe) connection.describe({ type: 'P', name: '' });
  connection.execute({ portal: '', rows: 0 });
}

/** A RowDescription's columns. */
function fieldsOf(msg: Message): PipelinedField[] {
  const fields = (msg.fields ?? []) as { name: string; dataTypeID?: number }[];
  return fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID ?? 25 }));
}

/**
 * Base of the submittables: settles on ReadyForQuery, or on an error (pg's client then drops
 * the query and reads the ReadyForQuery that follows itself, before it sends anything else).
 */
abstract class Submission {
  readonly done: Promise<void>;
  #resolve!: () => void;
  #reject!: (err: Error) => void;

  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  abstract submit(connection: Connection): void;
  handleRowDescription(_msg: Message): void {}
  handleDataRow(_msg: Message): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
  handleError(err: Error): void {
    this.#reject(err);
  }
  handleReadyForQuery(): void {
    this.#resolve();
  }
}

/** Parse (prepare) one named statement; pg's client records it as parsed on ParseComplete. */
class ParseOnly extends Submission {
  constructor(
    readonly name: string,
    readonly text: string,
  ) {
    super();
  }
  submit(connection: Connection): void {
    connection.parse({ name: this.name, text: this.text, types: [] });
    connection.sync();
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
      for (const [i, s] of this.statements.entries()) sendStatement(connection, s, i === last);
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

  constructor(readonly statements: PipelinedStatement[]) {
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
      for (const s of this.statements) sendStatement(connection, s, true);
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
      sendStatement(connection, this.statement, true);
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
      await prepareNamed(client, [statement]);
      const run = new RowsBeforeCommit(statement);
      client.query(run as unknown as pg.Submittable);
      run.ready.then(() => resolve({ rows: rowObjects<T>(run.rows, run.fields), committed }), reject);
      await run.done;
    });
    // Before the rows: the statement's failure (then nothing is committed). After: a no-op.
    committed.catch(reject);
  });
}

async function prepareNamed(
  client: pg.PoolClient | pg.Client,
  statements: PipelinedStatement[],
): Promise<void> {
  const connection = (client as unknown as { connection: Connection }).connection;
  for (const s of statements) {
    if (s.name !== undefined && connection.parsedStatements[s.name] === undefined) {
      const parse = new ParseOnly(s.name, s.text);
      client.query(parse as unknown as pg.Submittable);
      await parse.done;
    }
  }
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
): Promise<{ results: (string | null)[][][]; fields: PipelinedField[][] }> {
  await prepareNamed(client, statements);
  const run = new PipelinedEach(statements);
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
  // Named statements are prepared on first use, one round trip each, once per connection.
  await prepareNamed(client, statements);
  const run = new Pipelined(statements);
  client.query(run as unknown as pg.Submittable);
  await run.done;
  return rowObjects<T>(run.rows, run.fields);
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
