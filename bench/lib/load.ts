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
