-- The position sum of migration 0024 counted by a row trigger that fires only when a checkpoint's
-- stream_position changes, instead of a statement trigger on every UPDATE of checkpoints. The
-- statement trigger made PostgreSQL keep transition tables of every claim and lease extension and
-- run a plpgsql query over them (about 0.1 ms per statement, a quarter of a claim's server time),
-- to add nothing: only completions, failures and operators' resets move a position. The WHEN test
-- is evaluated by the executor without a function call; the function runs once per moved row.
-- Inserts and deletes keep their statement triggers (a reader round inserts up to a batch of
-- checkpoints in one statement).
DROP TRIGGER checkpoints_progress_update ON __SCHEMA__.checkpoints;

CREATE FUNCTION __SCHEMA__.count_checkpoint_move() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM __SCHEMA__.add_progress(NEW.group_name, NEW.subscription_name, NEW.stream_position - OLD.stream_position);
  RETURN NULL;
END $$;

CREATE TRIGGER checkpoints_progress_move AFTER UPDATE OF stream_position ON __SCHEMA__.checkpoints
  FOR EACH ROW WHEN (OLD.stream_position IS DISTINCT FROM NEW.stream_position)
  EXECUTE FUNCTION __SCHEMA__.count_checkpoint_move();
