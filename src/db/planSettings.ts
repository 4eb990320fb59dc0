/*
 * Settings for one transaction of a hot statement (set_config(..., true), for the current
 * transaction only), sent before the statement runs: mostly how the statement is planned.
 *
 * A prepared statement is planned at each of its first five executions; the server then keeps its
 * generic plan (made once, without the parameters' values) unless that plan's estimate looks dearer
 * than the plans made for the values, and then it plans every execution afresh. Statements that take
 * their rows from unnest() of array parameters (estimated at 100 rows whatever the arrays hold) or
 * read from positions computed inside the statement look dear as generic plans, so once the tables
 * grew they were planned at every execution: 0.2 ms for a worker's completion, 1.7 ms for a reader
 * round, more than they took to run. Forcing the generic plan plans them once per connection. A
 * generic plan is made on the table sizes of that moment and kept until the next ANALYZE, so the
 * statements that run with it also run without sequential or bitmap scans: what remains are the
 * index lookups they are written for, whatever the table sizes when the plan was made (made on a
 * nearly empty log, the round's read the whole log at every round). Only statements whose cost does
 * not hang on a join order take these settings: made on an empty checkpoints table, a generic plan
 * of a completion joined with unnest() walked the whole group's checkpoints for each element (the
 * batched completion keeps its plans made for the arrays; a single one looks its checkpoint up by
 * key).
 */
export const GENERIC_INDEX_PLANS = [
  "set_config('plan_cache_mode', 'force_generic_plan', true)",
  "set_config('enable_seqscan', 'off', true)",
  "set_config('enable_bitmapscan', 'off', true)",
].join(', ');

/** No waiting for the WAL flush at this transaction's commit. */
export const NO_FLUSH = "set_config('synchronous_commit', 'off', true)";

/** The statement that applies `settings` (the set_config calls above) to the current transaction. */
export const setForTransaction = (...settings: string[]): string => `SELECT ${settings.join(', ')}`;
