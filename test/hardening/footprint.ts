import type pg from 'pg';
import { escapeIdentifier } from '../../src/db/identifier.js';

/** Row counts of every table of a schema: what a refused input must leave unchanged. */
export async function rowCounts(pool: pg.Pool, schema: string): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables
      WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name`,
    [schema],
  );
  const counts: Record<string, number> = {};
  for (const { table_name } of rows) {
    const r = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${escapeIdentifier(schema)}.${escapeIdentifier(table_name)}`,
    );
    counts[table_name] = r.rows[0]!.n;
  }
  return counts;
}

/** Schemas whose name starts with one of the prefixes (other test files create their own meanwhile). */
export async function schemasLike(pool: pg.Pool, prefixes: string[]): Promise<string[]> {
  const { rows } = await pool.query<{ nspname: string }>(
    `SELECT nspname FROM pg_namespace WHERE nspname LIKE ANY($1::text[]) ORDER BY 1`,
    [prefixes.map((p) => `${p}%`)],
  );
  return rows.map((r) => r.nspname);
}
