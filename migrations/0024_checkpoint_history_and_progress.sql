-- Per-attempt error history of checkpoints, and a maintained sum of their positions per subscription.
-- __SCHEMA__ is replaced by the escaped schema name.

-- The last failed attempts of a checkpoint, newest first, at most 10 (the dashboard's and the REST
-- API's "attempt history"): { attempt, at, position, type, message, stack }, message and stack cut to
-- 2,000 characters. Written by the same UPDATE that records the failure (failCheckpoint), so a
-- history entry exists exactly when the failure was recorded. Kept when the checkpoint recovers or
-- an operator retries or skips it (the audit log has what they did); not an indexed column, so the
-- update stays HOT.
ALTER TABLE __SCHEMA__.checkpoints ADD COLUMN error_history jsonb NOT NULL DEFAULT '[]'::jsonb;

-- The history with one failure in front, cut to the 10 newest.
CREATE FUNCTION __SCHEMA__.push_error_history(history jsonb, err jsonb, pos bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
           'attempt', err -> 'attempt', 'at', err -> 'at', 'position', pos, 'type', err -> 'type',
           'message', left(err ->> 'message', 2000), 'stack', left(err ->> 'stack', 2000))))
      || coalesce((SELECT jsonb_agg(e ORDER BY i) FROM jsonb_array_elements(history) WITH ORDINALITY h(e, i)
                    WHERE i < 10), '[]'::jsonb)
$$;

-- The sum of a subscription's checkpoint positions (stream_position), kept by triggers on
-- checkpoints in the transaction of every statement that inserts, moves or deletes one: what the
-- lag view's throughput is measured from, without summing 100k checkpoints per refresh (1.6 s).
-- Exact whatever the interleaving: each change and its counter update commit or roll back together.
--
-- Spread over 16 rows per subscription (made with it), read as their sum. A writer adds its change
-- to the first row no other transaction holds (FOR UPDATE SKIP LOCKED, starting from its backend
-- pid): concurrent workers completing checkpoints of one subscription do not wait on each other,
-- and so cannot deadlock over these rows (one statement completes checkpoints of several
-- subscriptions, in any order), unless 16 transactions hold all of one subscription's rows at once.
CREATE TABLE __SCHEMA__.subscription_progress (
  group_name text NOT NULL,
  subscription_name text NOT NULL,
  shard smallint NOT NULL,
  processed bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (group_name, subscription_name, shard)
);

CREATE FUNCTION __SCHEMA__.add_progress(g text, s text, delta bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  first smallint := pg_backend_pid() % 16;
  k smallint;
BEGIN
  IF delta = 0 THEN RETURN; END IF;
  FOR i IN 0..15 LOOP
    k := (first + i) % 16;
    PERFORM 1 FROM __SCHEMA__.subscription_progress
      WHERE group_name = g AND subscription_name = s AND shard = k FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
      UPDATE __SCHEMA__.subscription_progress SET processed = processed + delta
       WHERE group_name = g AND subscription_name = s AND shard = k;
      RETURN;
    END IF;
  END LOOP;
  -- Every row is held by another transaction (or the subscription's rows are not committed yet):
  -- wait for ours.
  INSERT INTO __SCHEMA__.subscription_progress AS p (group_name, subscription_name, shard, processed)
  VALUES (g, s, first, delta)
  ON CONFLICT (group_name, subscription_name, shard) DO UPDATE SET processed = p.processed + excluded.processed;
END $$;

-- A subscription's 16 rows are made with it (inserted by a writer, two writers would wait on each
-- other's uncommitted row).
CREATE FUNCTION __SCHEMA__.create_progress_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO __SCHEMA__.subscription_progress (group_name, subscription_name, shard)
  SELECT NEW.group_name, NEW.name, k FROM generate_series(0, 15) k
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;

CREATE TRIGGER subscriptions_progress_rows AFTER INSERT ON __SCHEMA__.subscriptions
  FOR EACH ROW EXECUTE FUNCTION __SCHEMA__.create_progress_rows();

-- Statement-level, over the statement's transition tables: one add_progress per subscription a
-- statement moves, whatever the number of rows (a reader round creates or raises up to a batch of
-- checkpoints in one statement; a row-level trigger cost 0.1 ms per row, 10x the INSERT itself).
-- Statements that move no position (claims, lease extensions, releases) add nothing.
CREATE FUNCTION __SCHEMA__.count_checkpoint_progress() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM __SCHEMA__.add_progress(g, n, d)
       FROM (SELECT group_name AS g, subscription_name AS n, sum(stream_position)::bigint AS d
               FROM new_rows GROUP BY 1, 2) x
      WHERE d <> 0;
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM __SCHEMA__.add_progress(g, n, -d)
       FROM (SELECT group_name AS g, subscription_name AS n, sum(stream_position)::bigint AS d
               FROM old_rows GROUP BY 1, 2) x
      WHERE d <> 0;
  ELSE
    PERFORM __SCHEMA__.add_progress(g, n, d)
       FROM (SELECT g, n, sum(d)::bigint AS d FROM (
               SELECT group_name AS g, subscription_name AS n, stream_position AS d FROM new_rows
               UNION ALL
               SELECT group_name, subscription_name, -stream_position FROM old_rows) u
             GROUP BY 1, 2) x
      WHERE d <> 0;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER checkpoints_progress_insert AFTER INSERT ON __SCHEMA__.checkpoints
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.count_checkpoint_progress();
CREATE TRIGGER checkpoints_progress_update AFTER UPDATE ON __SCHEMA__.checkpoints
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.count_checkpoint_progress();
CREATE TRIGGER checkpoints_progress_delete AFTER DELETE ON __SCHEMA__.checkpoints
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.count_checkpoint_progress();
-- Emptied checkpoints count nothing (the rows stay: writers take them without waiting).
CREATE FUNCTION __SCHEMA__.clear_checkpoint_progress() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE __SCHEMA__.subscription_progress SET processed = 0 WHERE processed <> 0;
  RETURN NULL;
END $$;

CREATE TRIGGER checkpoints_progress_truncate AFTER TRUNCATE ON __SCHEMA__.checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.clear_checkpoint_progress();

-- The triggers hold a lock on checkpoints that keeps writers out until this migration commits, so
-- the sums start exact.
INSERT INTO __SCHEMA__.subscription_progress (group_name, subscription_name, shard)
SELECT s.group_name, s.name, k FROM __SCHEMA__.subscriptions s, generate_series(0, 15) k;
UPDATE __SCHEMA__.subscription_progress p SET processed = c.total
  FROM (SELECT group_name, subscription_name, sum(stream_position) AS total
          FROM __SCHEMA__.checkpoints GROUP BY group_name, subscription_name) c
 WHERE p.group_name = c.group_name AND p.subscription_name = c.subscription_name AND p.shard = 0;
