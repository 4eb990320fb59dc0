-- Upkeep of the tables every message updates. A message costs its checkpoint a dispatch (the global
-- reader raises stream_version), a claim (the lease columns) and a completion (stream_position,
-- the lease columns); the reader also moves its subscriptions' log positions every round, and every
-- worker's heartbeat touches its workers row.
--
-- An update is HOT (no new index entries, the old version pruned from the page without a vacuum)
-- only when no indexed column changes and the new version fits on the same page. The claim and the
-- lease extension change no indexed column, nor do the reader's position moves or the heartbeats:
-- free room on each page (fillfactor) lets them stay HOT. A claim index keyed only on columns that
-- change when a checkpoint starts or stops lagging is migration 0019's.
--
-- Autovacuum's defaults wait for 20% of a table to be dead before vacuuming it: on a checkpoints
-- table of a million rows that is 200k dead rows, read by every claim's index scan meanwhile. These
-- tables are vacuumed after a fixed number of dead rows instead, without the cost-based pauses (they
-- are small and hot, their pages mostly in memory).
ALTER TABLE __SCHEMA__.checkpoints SET (
  fillfactor = 70,
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_insert_scale_factor = 0.05,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
);

ALTER TABLE __SCHEMA__.subscriptions SET (
  fillfactor = 50,
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_cost_delay = 0
);

ALTER TABLE __SCHEMA__.subscription_groups SET (
  fillfactor = 50,
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_cost_delay = 0
);

ALTER TABLE __SCHEMA__.workers SET (
  fillfactor = 50,
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 200,
  autovacuum_vacuum_cost_delay = 0
);
