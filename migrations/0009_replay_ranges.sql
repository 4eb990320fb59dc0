-- Replays that compose. Migration 0005 gave a checkpoint one replay window (replay_until, then jump
-- to replay_resume), so a second bounded replay started while the first was still running replaced
-- the first one's window: two ranges #3..#5 and #1..#2 of a stream at #10 handled #1..#10 again.
--
-- replay_ranges holds every stream position still to be handled again, as a multirange; each
-- replay adds its range to it. replay_until stays what consumers read up to: the end of the first
-- range. When the checkpoint reaches it, the trigger moves it to just before the next range (the
-- positions in between are not handled again), and after the last one back to replay_resume,
-- where the checkpoint was before any of the replays.

ALTER TABLE __SCHEMA__.checkpoints ADD COLUMN replay_ranges int8multirange;

-- A replay in flight under 0005: its window is the one range.
UPDATE __SCHEMA__.checkpoints
   SET replay_ranges = int8multirange(int8range(stream_position + 1, replay_until + 1))
 WHERE replay_until IS NOT NULL AND replay_until > stream_position;

CREATE OR REPLACE FUNCTION __SCHEMA__.finish_replay_range() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  v_rest int8multirange;
  v_next int8range;
BEGIN
  IF NEW.stream_position >= NEW.replay_until THEN
    v_rest := coalesce(NEW.replay_ranges, '{}'::int8multirange)
              - int8multirange(int8range(NULL, NEW.stream_position + 1));
    IF isempty(v_rest) THEN
      NEW.stream_position := GREATEST(NEW.stream_position, coalesce(NEW.replay_resume, 0));
      NEW.replay_until := NULL;
      NEW.replay_resume := NULL;
      NEW.replay_ranges := NULL;
    ELSE
      -- unnest() returns a multirange's ranges in ascending order.
      SELECT r INTO v_next FROM unnest(v_rest) AS r LIMIT 1;
      NEW.stream_position := GREATEST(NEW.stream_position, lower(v_next) - 1);
      NEW.replay_until := upper(v_next) - 1;
      NEW.replay_ranges := v_rest;
    END IF;
  END IF;
  RETURN NEW;
END
$fn$;
