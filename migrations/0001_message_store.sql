-- The message store: one append-only log of messages, each in a stream.
-- __SCHEMA__ is replaced by the escaped schema name.

CREATE TABLE __SCHEMA__.messages (
  global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id uuid NOT NULL,
  stream_name text NOT NULL,
  stream_position bigint NOT NULL CHECK (stream_position > 0),
  type text NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  tags text[] NOT NULL DEFAULT '{}'::text[],
  -- The writing transaction: commits land out of position order, so the log is read in
  -- (transaction_id, global_position) order below the oldest running transaction.
  transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT messages_stream_position_key UNIQUE (stream_name, stream_position),
  CONSTRAINT messages_id_key UNIQUE (id)
);

CREATE INDEX messages_log_idx ON __SCHEMA__.messages (transaction_id, global_position);
CREATE INDEX messages_category_idx ON __SCHEMA__.messages (split_part(stream_name, '-', 1), transaction_id, global_position);
CREATE INDEX messages_tags_idx ON __SCHEMA__.messages USING gin (tags);

-- Append messages to one stream with an expected version, in one round trip.
-- p_expected: -1 any, -2 the stream must exist, 0 no stream, N exact version.
-- A transaction advisory lock per stream serialises appenders of the same stream, so that the
-- version read here is the version the insert extends (plpgsql takes a new snapshot per statement).
-- On a mismatch it raises SQLSTATE BKV01 with the actual version in DETAIL and writes nothing.
CREATE FUNCTION __SCHEMA__.append_to_stream(
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
  PERFORM pg_advisory_xact_lock(hashtextextended('beckett.stream:' || p_stream, 0));
  SELECT coalesce(max(m.stream_position), 0) INTO v_current
    FROM __SCHEMA__.messages m WHERE m.stream_name = p_stream;
  IF (p_expected = -2 AND v_current = 0) OR (p_expected >= 0 AND p_expected <> v_current) THEN
    RAISE EXCEPTION USING ERRCODE = 'BKV01', MESSAGE = 'wrong expected version', DETAIL = v_current::text;
  END IF;
  WITH inserted AS (
    INSERT INTO __SCHEMA__.messages (id, stream_name, stream_position, type, data, metadata, tags)
    SELECT u.id, p_stream, v_current + u.ord, u.type, u.data, coalesce(u.metadata, '{}'::jsonb),
           CASE WHEN u.tags IS NULL OR u.tags = '' THEN '{}'::text[] ELSE string_to_array(u.tags, chr(31)) END
      FROM unnest(p_ids, p_types, p_data, p_metadata, p_tags) WITH ORDINALITY AS u(id, type, data, metadata, tags, ord)
    RETURNING global_position
  )
  SELECT max(global_position) INTO last_global_position FROM inserted;
  stream_version := v_current + coalesce(array_length(p_ids, 1), 0);
END
$fn$;
