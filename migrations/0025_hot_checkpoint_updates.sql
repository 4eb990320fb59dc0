-- Claims, lease extensions and the reader raising the version of a lagging checkpoint are HOT
-- updates again. An update is HOT only when no column an index reads changes, predicates included;
-- migration 0020's checkpoints_attention_idx read leased_until, stream_position and stream_version
-- in its predicate, so every claim and lease extension (leased_until) and every dispatch
-- (stream_version) added index entries to all four indexes: 0% of the updates were HOT in
-- bench/worker.throughput.ts, and the table and its indexes grew with every claim.
--
-- The same checkpoints, in terms of `claimable` (migration 0019: lagging and not failed) and
-- status: "lagging" is claimable or failed, "retrying" and "failed" are their status. A checkpoint
-- is leased only while a consumer handles it, which it claimed while it was claimable, so a
-- leased checkpoint needs attention through its lag or its status; one that an operator skipped
-- or reset to its version under a running consumer drops out of the list until that consumer's
-- next write, which the lease makes fail.
DROP INDEX __SCHEMA__.checkpoints_attention_idx;
CREATE INDEX checkpoints_attention_idx ON __SCHEMA__.checkpoints (group_name, subscription_name, stream_name)
  WHERE status <> 'active' OR claimable;
