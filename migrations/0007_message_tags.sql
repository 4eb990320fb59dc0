-- Tags in their own table, one row per (message, tag), ordered by log position within a tag.
--
-- Conditional appends check "no message matching the query after position P". With tags only in
-- messages.tags, the check scanned every message of the whole log after P (the GIN index cannot
-- range on position, and its pending list has to be read whole by every scan), so its cost grew
-- with everyone else's write rate. With message_tags it reads only the given tag's messages after
-- P. Query reads use it too, so the GIN index goes (one index entry per tag either way).
--
-- Rows are written by the statement that inserts the message (append_to_stream() below and the
-- client's single-message INSERT in src/store/appendToStream.ts), in the same transaction, so they
-- become visible exactly when the message does; a row trigger would cost every tagged append a
-- plpgsql call (about 20% of its throughput). Deletes (retention) go through a row trigger.

CREATE TABLE __SCHEMA__.message_tags (
  tag text NOT NULL,
  transaction_id xid8 NOT NULL,
  global_position bigint NOT NULL,
  type text NOT NULL
);
CREATE INDEX message_tags_tag_log_idx ON __SCHEMA__.message_tags (tag, transaction_id, global_position);

INSERT INTO __SCHEMA__.message_tags (tag, transaction_id, global_position, type)
SELECT DISTINCT g.tag, m.transaction_id, m.global_position, m.type
  FROM __SCHEMA__.messages m CROSS JOIN LATERAL unnest(m.tags) AS g(tag);

CREATE FUNCTION __SCHEMA__.messages_tags_delete() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM __SCHEMA__.message_tags t
   WHERE t.tag = ANY(OLD.tags) AND t.transaction_id = OLD.transaction_id AND t.global_position = OLD.global_position;
  RETURN NULL;
END
$fn$;

CREATE TRIGGER messages_tags_delete AFTER DELETE ON __SCHEMA__.messages
  FOR EACH ROW WHEN (cardinality(OLD.tags) > 0) EXECUTE FUNCTION __SCHEMA__.messages_tags_delete();

DROP INDEX __SCHEMA__.messages_tags_idx;

-- append_to_stream() writes the tags of what it inserts (otherwise as in 0006).
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
  IF array_length(p_ids, 1) = 1 AND (p_tags[1] IS NULL OR p_tags[1] = '') THEN
    INSERT INTO __SCHEMA__.messages (id, stream_name, stream_position, type, data, metadata)
    VALUES (p_ids[1], p_stream, v_current + 1, p_types[1], p_data[1], coalesce(p_metadata[1], '{}'::jsonb))
    RETURNING global_position INTO last_global_position;
  ELSIF array_length(p_ids, 1) = 1 THEN
    WITH inserted AS (
      INSERT INTO __SCHEMA__.messages (id, stream_name, stream_position, type, data, metadata, tags)
      VALUES (p_ids[1], p_stream, v_current + 1, p_types[1], p_data[1], coalesce(p_metadata[1], '{}'::jsonb),
              CASE WHEN p_tags[1] IS NULL OR p_tags[1] = '' THEN '{}'::text[] ELSE string_to_array(p_tags[1], chr(31)) END)
      RETURNING global_position, transaction_id, type, tags
    ), tagged AS (
      INSERT INTO __SCHEMA__.message_tags (tag, transaction_id, global_position, type)
      SELECT DISTINCT g.tag, i.transaction_id, i.global_position, i.type
        FROM inserted i CROSS JOIN LATERAL unnest(i.tags) AS g(tag)
    )
    SELECT global_position INTO last_global_position FROM inserted;
  ELSE
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
  END IF;
  stream_version := v_current + coalesce(array_length(p_ids, 1), 0);
END
$fn$;

-- append_with_condition(), as in 0003 but for three things:
-- * the condition check reads message_tags;
-- * lock keys arrive as 64-bit hashes sorted by the client (src/consistency/lockKeys.ts), so
--   taking them is one scan of the arrays (the text-key version is dropped: a client still
--   sending text keys fails instead of hashing differently from the others);
-- * one message to one stream with an exact expected version is inserted here, like the
--   client's single-message append, without a nested append_to_stream() call.
DROP FUNCTION __SCHEMA__.append_with_condition(text[], boolean[], text[], text[], xid8, bigint, pg_snapshot,
  text[], bigint[], integer[], uuid[], text[], jsonb[], jsonb[], text[]);

CREATE FUNCTION __SCHEMA__.append_with_condition(
  p_locks bigint[],
  p_exclusive boolean[],
  p_item_types text[],
  p_item_tags text[],
  p_after_xid xid8,
  p_after_gp bigint,
  p_after_snapshot pg_snapshot,
  p_streams text[],
  p_expected bigint[],
  p_stream_idx integer[],
  p_ids uuid[],
  p_types text[],
  p_data jsonb[],
  p_metadata jsonb[],
  p_tags text[]
) RETURNS TABLE (stream_name text, stream_version bigint, last_global_position bigint, transaction_id text)
-- Generic plans only: a custom plan per call re-plans every check query (about 60 us of the
-- call), and the generic ones are the index scans the queries are written for.
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  v_xmax xid8;
  v_xip xid8[];
  v_types text[];
  v_tags text[];
  v_match bigint;
  v_stream text;
  v_current bigint;
  v_expected bigint;
  v_i integer;
  v_sel integer[];
  v_void text;
BEGIN
  -- The check must see what was committed under the locks: a transaction snapshot would not.
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION USING ERRCODE = 'BKC02',
      MESSAGE = 'append_with_condition needs READ COMMITTED (the check must see commits made under its locks)';
  END IF;
  -- Every lock in the client's order (ascending id, the same in every client, which is what
  -- rules out deadlocks between appenders).
  -- Assignments of plain expressions: plpgsql evaluates them without starting an executor.
  FOR v_i IN 1 .. coalesce(array_length(p_locks, 1), 0) LOOP
    IF p_exclusive[v_i] THEN
      v_void := pg_advisory_xact_lock(p_locks[v_i])::text;
    ELSE
      v_void := pg_advisory_xact_lock_shared(p_locks[v_i])::text;
    END IF;
  END LOOP;

  IF p_after_snapshot IS NULL AND p_after_xid IS NULL AND p_after_gp IS NOT NULL THEN
    SELECT m.transaction_id INTO p_after_xid FROM __SCHEMA__.messages m WHERE m.global_position = p_after_gp;
    -- Unknown position: count every matching message (the safe side).
    IF p_after_xid IS NULL THEN p_after_gp := NULL; END IF;
  END IF;
  IF p_after_snapshot IS NOT NULL THEN
    -- Not visible in the read's snapshot: running then (xip) or started after it (>= xmax).
    v_xmax := pg_snapshot_xmax(p_after_snapshot);
    v_xip := ARRAY(SELECT pg_snapshot_xip(p_after_snapshot));
  END IF;

  -- A later statement than the locks: a fresh snapshot that sees every commit made under them.
  -- An item with tags is looked up in message_tags by its first tag (every match carries it), so
  -- the check reads only that tag's messages after the position, however busy the rest of the
  -- log is; the type and the other tags are then filters. An item without tags scans the log
  -- after the position (the log index; the ORDER BY keeps plpgsql's cached generic plan on it).
  FOR v_i IN 1 .. coalesce(array_length(p_item_types, 1), 0) LOOP
    v_types := CASE WHEN p_item_types[v_i] = '' THEN NULL ELSE string_to_array(p_item_types[v_i], chr(31)) END;
    v_tags := CASE WHEN p_item_tags[v_i] = '' THEN NULL ELSE string_to_array(p_item_tags[v_i], chr(31)) END;
    v_match := NULL;
    IF v_tags IS NOT NULL THEN
      IF p_after_snapshot IS NOT NULL THEN
        SELECT t.global_position INTO v_match FROM __SCHEMA__.message_tags t
         WHERE t.tag = v_tags[1] AND t.transaction_id >= v_xmax
           AND (v_types IS NULL OR t.type = ANY(v_types))
           AND (cardinality(v_tags) = 1 OR EXISTS (
                 SELECT 1 FROM __SCHEMA__.messages m
                  WHERE m.global_position = t.global_position AND arraycontains(m.tags, v_tags)))
         ORDER BY t.tag, t.transaction_id, t.global_position LIMIT 1;
        IF v_match IS NULL AND cardinality(v_xip) > 0 THEN
          SELECT t.global_position INTO v_match FROM __SCHEMA__.message_tags t
           WHERE t.tag = v_tags[1] AND t.transaction_id = ANY(v_xip)
             AND (v_types IS NULL OR t.type = ANY(v_types))
             AND (cardinality(v_tags) = 1 OR EXISTS (
                   SELECT 1 FROM __SCHEMA__.messages m
                    WHERE m.global_position = t.global_position AND arraycontains(m.tags, v_tags)))
           LIMIT 1;
        END IF;
      ELSIF p_after_gp IS NOT NULL THEN
        SELECT t.global_position INTO v_match FROM __SCHEMA__.message_tags t
         WHERE t.tag = v_tags[1] AND (t.transaction_id, t.global_position) > (p_after_xid, p_after_gp)
           AND (v_types IS NULL OR t.type = ANY(v_types))
           AND (cardinality(v_tags) = 1 OR EXISTS (
                 SELECT 1 FROM __SCHEMA__.messages m
                  WHERE m.global_position = t.global_position AND arraycontains(m.tags, v_tags)))
         ORDER BY t.tag, t.transaction_id, t.global_position LIMIT 1;
      ELSE
        SELECT t.global_position INTO v_match FROM __SCHEMA__.message_tags t
         WHERE t.tag = v_tags[1]
           AND (v_types IS NULL OR t.type = ANY(v_types))
           AND (cardinality(v_tags) = 1 OR EXISTS (
                 SELECT 1 FROM __SCHEMA__.messages m
                  WHERE m.global_position = t.global_position AND arraycontains(m.tags, v_tags)))
         LIMIT 1;
      END IF;
    ELSIF p_after_snapshot IS NOT NULL THEN
      SELECT m.global_position INTO v_match FROM __SCHEMA__.messages m
       WHERE m.transaction_id >= v_xmax AND (v_types IS NULL OR m.type = ANY(v_types))
       ORDER BY m.transaction_id LIMIT 1;
      IF v_match IS NULL AND cardinality(v_xip) > 0 THEN
        SELECT m.global_position INTO v_match FROM __SCHEMA__.messages m
         WHERE m.transaction_id = ANY(v_xip) AND (v_types IS NULL OR m.type = ANY(v_types))
         LIMIT 1;
      END IF;
    ELSIF p_after_gp IS NOT NULL THEN
      SELECT m.global_position INTO v_match FROM __SCHEMA__.messages m
       WHERE (m.transaction_id, m.global_position) > (p_after_xid, p_after_gp)
         AND (v_types IS NULL OR m.type = ANY(v_types))
       ORDER BY m.transaction_id, m.global_position LIMIT 1;
    ELSE
      SELECT m.global_position INTO v_match FROM __SCHEMA__.messages m
       WHERE v_types IS NULL OR m.type = ANY(v_types) LIMIT 1;
    END IF;
    IF v_match IS NOT NULL THEN
      RAISE EXCEPTION USING ERRCODE = 'BKC01', MESSAGE = 'append condition failed', DETAIL = v_match::text;
    END IF;
  END LOOP;

  IF array_length(p_streams, 1) = 1 AND p_expected[1] >= 0 AND array_length(p_ids, 1) = 1 THEN
    -- One message, exact version: position N+1 is written only if N exists (or N is 0); a
    -- concurrent writer of N+1 makes the insert fail on the unique constraint.
    stream_name := p_streams[1];
    WITH inserted AS (
      INSERT INTO __SCHEMA__.messages AS n (id, stream_name, stream_position, type, data, metadata, tags)
      SELECT p_ids[1], p_streams[1], p_expected[1] + 1, p_types[1], p_data[1], coalesce(p_metadata[1], '{}'::jsonb),
             CASE WHEN p_tags[1] IS NULL OR p_tags[1] = '' THEN '{}'::text[] ELSE string_to_array(p_tags[1], chr(31)) END
       WHERE p_expected[1] = 0 OR EXISTS (
               SELECT 1 FROM __SCHEMA__.messages m WHERE m.stream_name = p_streams[1] AND m.stream_position = p_expected[1])
      RETURNING n.global_position, n.transaction_id, n.type, n.tags
    ), tagged AS (
      INSERT INTO __SCHEMA__.message_tags (tag, transaction_id, global_position, type)
      SELECT DISTINCT g.tag, i.transaction_id, i.global_position, i.type
        FROM inserted i CROSS JOIN LATERAL unnest(i.tags) AS g(tag)
    )
    SELECT i.global_position, i.transaction_id::text INTO last_global_position, transaction_id FROM inserted i;
    IF last_global_position IS NULL THEN
      SELECT coalesce(max(m.stream_position), 0) INTO v_current
        FROM __SCHEMA__.messages m WHERE m.stream_name = p_streams[1];
      RAISE EXCEPTION USING ERRCODE = 'BKV01', MESSAGE = 'wrong expected version', DETAIL = v_current::text;
    END IF;
    stream_version := p_expected[1] + 1;
    RETURN NEXT;
    RETURN;
  END IF;

  IF array_length(p_streams, 1) = 1 THEN
    -- One stream otherwise: append_to_stream() locks it and checks its version (BKV01 on a mismatch).
    stream_name := p_streams[1];
    SELECT a.stream_version, a.last_global_position INTO stream_version, last_global_position
      FROM __SCHEMA__.append_to_stream(p_streams[1], p_expected[1], p_ids, p_types, p_data, p_metadata, p_tags) a;
    transaction_id := pg_current_xact_id()::text;
    RETURN NEXT;
    RETURN;
  END IF;

  -- Several streams in name order (the order appendMultiple() locks them in); each version is
  -- checked here first so that a mismatch names its stream.
  FOR v_i IN SELECT s.i FROM unnest(p_streams) WITH ORDINALITY AS s(name, i) ORDER BY s.name LOOP
    v_stream := p_streams[v_i];
    v_expected := p_expected[v_i];
    PERFORM pg_advisory_xact_lock(hashtextextended('beckett.stream:' || v_stream, 0));
    SELECT coalesce(max(m.stream_position), 0) INTO v_current
      FROM __SCHEMA__.messages m WHERE m.stream_name = v_stream;
    IF (v_expected = -2 AND v_current = 0) OR (v_expected >= 0 AND v_expected <> v_current) THEN
      RAISE EXCEPTION USING ERRCODE = 'BKV02', MESSAGE = 'wrong expected version',
        DETAIL = json_build_object('stream', v_stream, 'actual', v_current)::text;
    END IF;
    v_sel := ARRAY(SELECT o FROM generate_subscripts(p_stream_idx, 1) AS o WHERE p_stream_idx[o] = v_i ORDER BY o);
    stream_name := v_stream;
    SELECT a.stream_version, a.last_global_position INTO stream_version, last_global_position
      FROM __SCHEMA__.append_to_stream(
        v_stream, v_current,
        ARRAY(SELECT p_ids[o] FROM unnest(v_sel) AS o ORDER BY o),
        ARRAY(SELECT p_types[o] FROM unnest(v_sel) AS o ORDER BY o),
        ARRAY(SELECT p_data[o] FROM unnest(v_sel) AS o ORDER BY o),
        ARRAY(SELECT p_metadata[o] FROM unnest(v_sel) AS o ORDER BY o),
        ARRAY(SELECT p_tags[o] FROM unnest(v_sel) AS o ORDER BY o)) a;
    transaction_id := pg_current_xact_id()::text;
    RETURN NEXT;
  END LOOP;
END
$fn$;
