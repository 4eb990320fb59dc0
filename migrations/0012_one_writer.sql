-- The writer's rules for SQL callers (writers outside Node), the same as the client's INSERTs in
-- src/store/appendToStream.ts:
-- * every expected version is checked against the stream's head (its highest position), never
--   against "position N exists" or "position 1 is free": retention deletes a stream's first
--   messages (and, by age, any message older than its successors) but keeps its head, so a
--   deleted position is never written again;
-- * every message written takes its advisory lock keys (src/consistency/lockKeys.ts) in shared
--   mode before it is inserted, so that a conditional append, which takes the keys its condition
--   matches exclusively, sees every write its condition could match: the write either commits
--   before the condition's check or draws its position after the conditional append committed.
--
-- A key's lock id is lock_id() below, in the database, for every writer: the client sends key
-- texts and the statement hashes them (hashtextextended, stable across versions) and takes them in
-- ascending id order, which keeps writers and conditional appenders from deadlocking.

CREATE FUNCTION __SCHEMA__.lock_id(p_key text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT hashtextextended('beckett.dcb:__SCHEMA__:' || p_key, 0)
$fn$;

-- The keys a message holds shared: (*, *), (type, *), and (*, tag) and (type, tag) per tag;
-- p_tags as in append_to_stream() (tags joined by chr(31)).
CREATE FUNCTION __SCHEMA__.message_lock_keys(p_types text[], p_tags text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT array_agg(DISTINCT k) FROM (
    SELECT '*' || chr(31) || '*' AS k
    UNION ALL
    SELECT 't=' || u.t || chr(31) || k.k
      FROM unnest(p_types, p_tags) AS u(t, g)
      CROSS JOIN LATERAL (
        SELECT '*' AS k
        UNION ALL SELECT 'g=' || x FROM unnest(string_to_array(nullif(u.g, ''), chr(31))) AS x) k
    UNION ALL
    SELECT '*' || chr(31) || 'g=' || x
      FROM unnest(p_tags) AS g, unnest(string_to_array(nullif(g, ''), chr(31))) AS x
  ) keys
$fn$;

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
  -- The messages' lock keys, shared, in ascending id order (see lock_id() above).
  PERFORM count(pg_advisory_xact_lock_shared(l.id))
     FROM (SELECT DISTINCT __SCHEMA__.lock_id(k) AS id
             FROM unnest(__SCHEMA__.message_lock_keys(p_types, p_tags)) AS k ORDER BY 1) l;
  -- An exact version takes no stream lock: two appenders expecting N both write N+1 and the
  -- unique (stream_name, stream_position) lets one of them through.
  IF p_expected < 0 THEN
    PERFORM pg_advisory_xact_lock(hashtextextended('beckett.stream:' || p_stream, 0));
  END IF;
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
    RETURNING global_position, transaction_id, type, tags
  ), tagged AS (
    INSERT INTO __SCHEMA__.message_tags (tag, transaction_id, global_position, type)
    SELECT DISTINCT g.tag, i.transaction_id, i.global_position, i.type
      FROM inserted i CROSS JOIN LATERAL unnest(i.tags) AS g(tag)
  )
  SELECT max(global_position) INTO last_global_position FROM inserted;
  stream_version := v_current + coalesce(array_length(p_ids, 1), 0);
END
$fn$;

-- A recurring occurrence whose append failed is not skipped: its row keeps the occurrence and is
-- retried after a backoff (retry_at), the schedule advancing only once the occurrence is appended.
ALTER TABLE __SCHEMA__.recurring_messages
  ADD COLUMN attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN retry_at timestamptz;
