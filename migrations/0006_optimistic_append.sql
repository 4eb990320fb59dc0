-- Faster appends with an exact expected version (N, or 0 for "no stream"), the common case of a
-- decider that read the stream first. They take no lock and read no max(): the messages go to
-- positions N+1.. and the unique (stream_name, stream_position) constraint settles a race, since
-- two appenders expecting the same N both try to write N+1 and only one can (the client turns the
-- unique violation into WrongExpectedVersionError). "any" and "stream_exists" still lock the stream
-- and read its version. A single message is inserted with VALUES, without the array unnest.

CREATE OR REPLACE FUNCTION __SCHEMA__.append_to_stream(
  p_stream text,
  p_expected bigint,
  p_ids uuid[],
  p_types text[],
  p_data jsonb[],
  p_metadata jsonb[],
  p_tags text[],
  OUT stream_version bigint,
  OUT last_global_position bigint
) LANGUAGE plpgsql AS $fn$
DECLARE
  v_current bigint;
BEGIN
  IF p_expected >= 0 THEN
    -- Position N must exist; that nothing follows it is checked by the insert itself.
    IF p_expected > 0 AND NOT EXISTS (
      SELECT 1 FROM __SCHEMA__.messages m WHERE m.stream_name = p_stream AND m.stream_position = p_expected
    ) THEN
      SELECT coalesce(max(m.stream_position), 0) INTO v_current
        FROM __SCHEMA__.messages m WHERE m.stream_name = p_stream;
      RAISE EXCEPTION USING ERRCODE = 'BKV01', MESSAGE = 'wrong expected version', DETAIL = v_current::text;
    END IF;
    v_current := p_expected;
  ELSE
    PERFORM pg_advisory_xact_lock(hashtextextended('beckett.stream:' || p_stream, 0));
    SELECT coalesce(max(m.stream_position), 0) INTO v_current
      FROM __SCHEMA__.messages m WHERE m.stream_name = p_stream;
    IF p_expected = -2 AND v_current = 0 THEN
      RAISE EXCEPTION USING ERRCODE = 'BKV01', MESSAGE = 'wrong expected version', DETAIL = v_current::text;
    END IF;
  END IF;
  IF array_length(p_ids, 1) = 1 THEN
    INSERT INTO __SCHEMA__.messages (id, stream_name, stream_position, type, data, metadata, tags)
    VALUES (p_ids[1], p_stream, v_current + 1, p_types[1], p_data[1], coalesce(p_metadata[1], '{}'::jsonb),
            CASE WHEN p_tags[1] IS NULL OR p_tags[1] = '' THEN '{}'::text[] ELSE string_to_array(p_tags[1], chr(31)) END)
    RETURNING global_position INTO last_global_position;
  ELSE
    WITH inserted AS (
      INSERT INTO __SCHEMA__.messages (id, stream_name, stream_position, type, data, metadata, tags)
      SELECT u.id, p_stream, v_current + u.ord, u.type, u.data, coalesce(u.metadata, '{}'::jsonb),
             CASE WHEN u.tags IS NULL OR u.tags = '' THEN '{}'::text[] ELSE string_to_array(u.tags, chr(31)) END
        FROM unnest(p_ids, p_types, p_data, p_metadata, p_tags) WITH ORDINALITY AS u(id, type, data, metadata, tags, ord)
      RETURNING global_position
    )
    SELECT max(global_position) INTO last_global_position FROM inserted;
  END IF;
  stream_version := v_current + coalesce(array_length(p_ids, 1), 0);
END
$fn$;
