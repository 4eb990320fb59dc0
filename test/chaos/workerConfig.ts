import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/*
 * The config of the chaos run's `es worker` processes (group G, category `c`), and the tables its
 * handlers write for the oracle.
 */

export const SCHEMA = 'chaos';
export const SUBS = ['rec', 'bat', 'proj'] as const;

export function writeConfig(dir: string, blockChance: number, blockMs: number): string {
  const file = join(dir, 'beckett.config.mjs');
  // rec: one call per message; bat: a batch handler; proj: a transactional projection whose rows
  // count how often each message was applied (exactly once is the promise).
  writeFileSync(
    file,
    `import { appendFileSync } from 'node:fs';
// Each rec call's start and end, on a clock shared by every process of the machine (monotonic),
// written to a file: unlike a database row, it is there even when the database is away.
const EVENTS = ${JSON.stringify(dir)} + '/calls-' + process.pid + '.log';
const ev = (e, m) => appendFileSync(EVENTS, process.hrtime.bigint() + ' ' + e + ' ' + m.streamName + ' ' + m.streamPosition + ' ' + process.pid + '\\n');
const jitter = () => (Math.random() < 0.2 ? new Promise((r) => setTimeout(r, Math.random() * 20)) : undefined);
const record = (ctx, sub, m) => ctx.store.pool.query(
  'INSERT INTO ${SCHEMA}.calls (sub, stream, pos, pid) VALUES ($1, $2, $3, $4)',
  [sub, m.streamName, m.streamPosition, process.pid]);
// Now and then a handler blocks the event loop for longer than the lease (CPU-bound work, a
// synchronous call): the lease extender cannot run meanwhile.
const block = () => {
  if (Math.random() < ${blockChance}) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${blockMs});
};
export default {
  database: { schema: '${SCHEMA}' },
  groups: {
    G: {
      subscriptions: {
        rec: { category: 'c', batchSize: 20, handler: async (m, ctx) => {
          ev('start', m);
          try {
            await jitter();
            block();
            await record(ctx, 'rec', m);
          } finally {
            ev('end', m);
          }
        } },
        bat: { category: 'c', batchSize: 15, batchHandler: async (ms, ctx) => {
          await jitter();
          for (const m of ms) await record(ctx, 'bat', m);
        } },
        proj: { category: 'c', transactional: true, batchSize: 25, handler: async (m, ctx) => {
          await jitter();
          await ctx.client.query(
            'INSERT INTO ${SCHEMA}.proj (stream, pos, n) VALUES ($1, $2, 1) ON CONFLICT (stream, pos) DO UPDATE SET n = proj.n + 1',
            [m.streamName, m.streamPosition]);
        } },
      },
    },
  },
};
`,
  );
  return file;
}

export const ORACLE_DDL = `
  CREATE TABLE ${SCHEMA}.calls (seq bigserial PRIMARY KEY, sub text NOT NULL, stream text NOT NULL, pos int NOT NULL, pid int NOT NULL);
  CREATE TABLE ${SCHEMA}.proj (stream text NOT NULL, pos int NOT NULL, n int NOT NULL, PRIMARY KEY (stream, pos));
  -- Every lease granted on a rec checkpoint (a claim: a new lease id, not an extension), with the
  -- server's clock at the grant: which holder may run the stream from when on.
  CREATE TABLE ${SCHEMA}.lease_grants (at timestamptz NOT NULL, stream text NOT NULL, lease uuid NOT NULL, holder text NOT NULL);
  CREATE FUNCTION ${SCHEMA}.log_lease_grant() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF NEW.subscription_name = 'rec' AND NEW.lease_id IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.lease_id IS DISTINCT FROM OLD.lease_id) THEN
      INSERT INTO ${SCHEMA}.lease_grants VALUES (clock_timestamp(), NEW.stream_name, NEW.lease_id, NEW.leased_by);
    END IF;
    RETURN NULL;
  END $$;
  CREATE TRIGGER log_lease_grant AFTER INSERT OR UPDATE ON ${SCHEMA}.checkpoints
    FOR EACH ROW EXECUTE FUNCTION ${SCHEMA}.log_lease_grant();`;
