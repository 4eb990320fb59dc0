-- The claim reads, for each subscription that may be claimed (active, initializing, replaying),
-- its lagging checkpoints in claim order, and takes the earliest. The index on (group_name,
-- next_attempt_at) made it read the group's lagging checkpoints in one order and drop those of
-- paused or unknown subscriptions one by one after joining their subscription: 200k checkpoints
-- of a paused subscription cost every claim 200 ms. Per subscription, they are never read.
CREATE INDEX checkpoints_claim_idx ON __SCHEMA__.checkpoints (group_name, subscription_name, next_attempt_at)
  WHERE stream_position < stream_version AND status <> 'failed';
DROP INDEX __SCHEMA__.checkpoints_claimable_idx;
