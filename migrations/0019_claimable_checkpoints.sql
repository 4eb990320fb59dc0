-- The claim index keyed on a column that changes only when a checkpoint starts or stops being
-- claimable. An update is HOT only when no column the table's indexes read changes, their
-- predicates included: with the lag test (stream_position < stream_version) in the claim index's
-- predicate, every dispatch (the reader raising stream_version) and every completion (moving
-- stream_position) had to add index entries, even for a checkpoint that lagged before and after.
-- `claimable` is computed from the same test; PostgreSQL compares old and new values, so raising
-- stream_version of a checkpoint that already lags, or a completion that leaves it lagging, no
-- longer blocks HOT on its account (next_attempt_at, which a completion moves, still does).
--
-- Adding a stored generated column rewrites the table, under an exclusive lock, once. Workers of
-- the previous version claim with the old predicate, which this index does not serve: their claims
-- scan until they are replaced, so upgrade the workers together.
ALTER TABLE __SCHEMA__.checkpoints
  ADD COLUMN claimable boolean GENERATED ALWAYS AS (stream_position < stream_version AND status <> 'failed') STORED;

CREATE INDEX checkpoints_claim_order_idx ON __SCHEMA__.checkpoints (group_name, subscription_name, next_attempt_at)
  WHERE claimable;
DROP INDEX __SCHEMA__.checkpoints_claim_idx;
