import type pg from 'pg';

type Db = Pick<pg.Client, 'query'>;

/** The next transaction id the server will assign (taking none: reads the counter). */
export async function nextXid(db: Db): Promise<bigint> {
  const { rows } = await db.query<{ x: string }>(`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x`);
  return BigInt(rows[0]!.x);
}

/** The lowest power of ten above `x`. */
export function nextPowerOfTen(x: bigint): bigint {
  let p = 10n;
  while (p <= x) p *= 10n;
  return p;
}

/**
 * Consume transaction ids until the server's next one is at least `target`: committed transactions
 * that take an id and write nothing, sent in chunks of one multi-statement query (one round trip
 * for `chunk` transactions). Other sessions may take ids meanwhile, so the counter may end past it.
 */
export async function burnXidsTo(db: Db, target: bigint, chunk = 2000): Promise<bigint> {
  for (;;) {
    const next = await nextXid(db);
    if (next >= target) return next;
    const n = Number(target - next < BigInt(chunk) ? target - next : BigInt(chunk));
    await db.query('BEGIN; SELECT pg_current_xact_id(); COMMIT;'.repeat(n));
  }
}
