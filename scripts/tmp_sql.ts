import { resolveConfig } from '../src/config/validate.js';
import { roundStatement } from '../src/subscriptions/globalReader.js';

const config = resolveConfig({
  database: { schema: 'exp_tp' },
  messages: { OrderPlaced: {} },
  groups: { bench: { concurrency: 4, subscriptions: { noop: { category: 'bench', handler: () => {} } } } },
});
const st = roundStatement(
  { schema: 'exp_tp', s: 'exp_tp', prepared: true },
  config.groups.get('bench')!,
  'w',
  1000,
);
const lit = (v: unknown): string =>
  v === null
    ? 'NULL'
    : Array.isArray(v)
      ? `'{${v.map((x) => (x === null ? 'NULL' : `"${x}"`)).join(',')}}'`
      : typeof v === 'number'
        ? String(v)
        : `'${v}'`;
const types = [
  'text',
  'text[]',
  'text[]',
  'text',
  'int',
  'text',
  'text[]',
  'text[]',
  'boolean[]',
  'text[]',
  'text[]',
];
console.log(
  `DELETE FROM exp_tp.checkpoints; UPDATE exp_tp.subscriptions SET log_transaction_id = '0', log_position = 0;`,
);
console.log(`PREPARE r(${types.join(',')}) AS ${st.text};`);
console.log(`BEGIN; EXPLAIN (ANALYZE, BUFFERS) EXECUTE r(${st.values!.map(lit).join(', ')}); ROLLBACK;`);
