import type pg from 'pg';

/** A parameter as an SQL literal (strings, numbers, booleans, null, one-dimensional arrays). */
function literal(client: pg.PoolClient, v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (Array.isArray(v))
    return client.escapeLiteral(`{${v.map((x) => (x === null ? 'NULL' : `"${String(x)}"`)).join(',')}}`);
  return client.escapeLiteral(String(v));
}

/**
 * Buffers touched by the statement prepared on `client` as `statement.name`, run with its values
 * on the plan the server cached for it, in a transaction (rolled back) after `settings` (the
 * transaction settings a worker runs it with).
 */
export async function cachedPlanBuffers(
  client: pg.PoolClient,
  settings: string,
  statement: { name?: string | undefined; values?: unknown[] | undefined },
): Promise<number> {
  await client.query('BEGIN');
  try {
    await client.query(settings);
    const args = (statement.values ?? []).map((v) => literal(client, v)).join(', ');
    const r = await client.query(
      `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE ${statement.name}(${args})`,
    );
    const plan = (
      r.rows[0] as { 'QUERY PLAN': { Plan: { 'Shared Hit Blocks': number; 'Shared Read Blocks': number } }[] }
    )['QUERY PLAN'][0]!.Plan;
    return plan['Shared Hit Blocks'] + plan['Shared Read Blocks'];
  } finally {
    await client.query('ROLLBACK');
  }
}
