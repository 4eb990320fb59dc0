-- Exact replay ranges. `es replay --to` moves a checkpoint back to the range's first message and
-- sets replay_until (the range's last message in that stream) and replay_resume (where the
-- checkpoint was). Consumers read no further than replay_until; once the checkpoint reaches it, the
-- trigger below moves it straight back to replay_resume, so messages after the range that were
-- handled before are not handled again. Any write that advances the checkpoint (a completed batch,
-- a failure after progress, an operator's skip) goes through the same jump.

ALTER TABLE __SCHEMA__.checkpoints
  ADD COLUMN replay_until bigint,
  ADD COLUMN replay_resume bigint;

CREATE FUNCTION __SCHEMA__.finish_replay_range() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.stream_position >= NEW.replay_until THEN
    NEW.stream_position := GREATEST(NEW.stream_position, coalesce(NEW.replay_resume, 0));
    NEW.replay_until := NULL;
    NEW.replay_resume := NULL;
  END IF;
  RETURN NEW;
END
$fn$;

CREATE TRIGGER checkpoints_finish_replay_range
  BEFORE UPDATE ON __SCHEMA__.checkpoints
  FOR EACH ROW WHEN (NEW.replay_until IS NOT NULL)
  EXECUTE FUNCTION __SCHEMA__.finish_replay_range();
