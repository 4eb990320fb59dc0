/*
 * Money transfers between account streams with the command executor.
 *   node --import jiti/register examples/transfer/run.ts
 * Uses DATABASE_URL, or the embedded PostgreSQL when it is unset. Writes to the schema
 * "example_transfer" (recreated on every run).
 */
import pg from 'pg';
import { ensureEmbedded } from '../../src/db/embedded.js';
import { CommandExecutor, createMessageStore, migrate } from '../../src/index.js';
import {
  type AccountRuleError,
  account,
  accountStream,
  type Transfer,
  transfer,
  transferBoundary,
} from './accounts.js';

const SCHEMA = 'example_transfer';

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL ?? (await ensureEmbedded(process.cwd())).url;
  const pool = new pg.Pool({ connectionString: url, max: 12 });
  await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  await migrate(pool, SCHEMA);
  const store = createMessageStore({ pool, schema: SCHEMA });
  const executor = new CommandExecutor(store, { maxAttempts: 50, baseDelayMs: 2, maxDelayMs: 50 });
  const balance = async (id: string) =>
    (await executor.load(account, { stream: accountStream(id) })).state.balance;
  const show = async (ids: string[]) =>
    (await Promise.all(ids.map(async (id) => `${id}=${await balance(id)}`))).join(' ');

  for (const [id, initialBalance] of [
    ['alice', 100],
    ['bob', 50],
    ['carol', 0],
  ] as const) {
    await executor.execute(
      account,
      { type: 'open', accountId: id, initialBalance },
      { stream: accountStream(id) },
    );
  }
  console.log(`Opened accounts: ${await show(['alice', 'bob', 'carol'])}`);

  const run = async (t: Transfer) => {
    try {
      const r = await executor.execute(transfer, t, transferBoundary(t));
      return `ok (attempts: ${r.attempts})`;
    } catch (err) {
      return `refused: ${(err as AccountRuleError).message}`;
    }
  };
  console.log(`\nalice -> bob 30: ${await run({ transferId: 't1', from: 'alice', to: 'bob', amount: 30 })}`);
  console.log(`carol -> bob 10: ${await run({ transferId: 't2', from: 'carol', to: 'bob', amount: 10 })}`);
  console.log(`Balances: ${await show(['alice', 'bob', 'carol'])}`);

  console.log('\n20 concurrent transfers of 10 around alice -> bob -> carol -> alice:');
  const ids = ['alice', 'bob', 'carol'];
  const outcomes = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      run({ transferId: `c${i}`, from: ids[i % 3]!, to: ids[(i + 1) % 3]!, amount: 10 }),
    ),
  );
  const ok = outcomes.filter((o) => o.startsWith('ok')).length;
  const retried = outcomes.filter((o) => /attempts: [2-9]/.test(o)).length;
  console.log(
    `  ${ok} committed (${retried} after retrying a version conflict), ${outcomes.length - ok} refused`,
  );
  const balances = await Promise.all(ids.map(balance));
  console.log(`Balances: ${await show(ids)} (total ${balances.reduce((a, b) => a + b, 0)}, was 150)`);

  for (let i = 0; i < 25; i++)
    await executor.execute(
      account,
      { type: 'deposit', accountId: 'carol', amount: 1 },
      { stream: accountStream('carol') },
    );
  const loaded = await executor.load(account, { stream: accountStream('carol') });
  console.log(
    `\ncarol after 25 deposits: balance ${loaded.state.balance}, version ${loaded.version}; loaded from a snapshot: ${loaded.fromSnapshot}, messages folded: ${loaded.folded}`,
  );
  console.log(`Inspect with: es read --schema ${SCHEMA} account-carol`);
  await store.close();
  await pool.end();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
