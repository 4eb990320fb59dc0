import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { escapeIdentifier } from '../../src/db/identifier.js';
import { uuidv7 } from '../../src/store/uuidv7.js';

/**
 * COPY `total` OrderPlaced messages into `schema`.messages, spread round-robin over `streams`
 * streams named `<category>-<k>` (so every stream gets total/streams messages, in order). One
 * COPY per chunk: a writer that bypasses the library, as a bulk import would.
 */
export async function copyMessages(
  pool: pg.Pool,
  schema: string,
  total: number,
  streams: number,
  category = 'bench',
): Promise<void> {
  const sql = `COPY ${escapeIdentifier(schema)}.messages (id, stream_name, stream_position, type, data, metadata) FROM STDIN`;
  const chunk = 50_000;
  for (let from = 0; from < total; from += chunk) {
    const to = Math.min(total, from + chunk);
    function* rows(): Generator<string> {
      let text = '';
      for (let i = from; i < to; i++) {
        const id = uuidv7();
        const position = Math.floor(i / streams) + 1;
        text += `${id}\t${category}-${i % streams}\t${position}\tOrderPlaced\t{"orderId": "o-${i}", "sku": "SKU-42", "quantity": 3}\t{"correlationId": "${id}"}\n`;
        if (text.length > 1 << 16) {
          yield text;
          text = '';
        }
      }
      if (text) yield text;
    }
    const client = await pool.connect();
    try {
      await pipeline(Readable.from(rows()), client.query(copyFrom(sql)));
    } finally {
      client.release();
    }
  }
  await pool.query(`ANALYZE ${escapeIdentifier(schema)}.messages`);
}

/**
 * Wait until every message of `schema`.messages is below the snapshot's xmin, i.e. readable by a
 * gap-safe reader: a transaction left open anywhere in the cluster (another test, a psql session)
 * holds the log back. Returns the seconds waited; throws after `timeoutMs`, naming the oldest
 * transaction.
 */
export async function waitUntilReadable(pool: pg.Pool, schema: string, timeoutMs = 120_000): Promise<number> {
  const start = performance.now();
  for (;;) {
    const { rows } = await pool.query<{ ok: boolean }>(
      `SELECT coalesce(max(transaction_id) < pg_snapshot_xmin(pg_current_snapshot()), true) AS ok
         FROM ${escapeIdentifier(schema)}.messages`,
    );
    if (rows[0]?.ok) return (performance.now() - start) / 1000;
    if (performance.now() - start > timeoutMs) {
      const { rows: old } = await pool.query<{ pid: number; age: string; query: string }>(
        `SELECT pid, (now() - xact_start)::text AS age, left(query, 120) AS query FROM pg_stat_activity
          WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL ORDER BY xact_start LIMIT 1`,
      );
      const o = old[0];
      throw new Error(
        `the log stayed behind an open transaction for ${timeoutMs / 1000} s${o ? ` (pid ${o.pid}, open ${o.age}: ${o.query})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
