-- The locks and the check of a conditional append as a function of their own,
-- hold_append_condition(), which append_with_condition() now calls (it no longer inserts single
-- messages itself).
--
-- One message to one stream at an exact expected version (the common DCB case) no longer goes
-- through plpgsql at all: the client sends the locks and the store's single INSERT, gated by the
-- check, as two statements in one round trip (src/consistency/conditionSql.ts). A statement's
-- snapshot is taken before it runs, so the check must be a later statement than the locks, here
-- as there.

CREATE FUNCTION __SCHEMA__.hold_append_condition(
  p_locks bigint[],
  p_exclusive boolean[],
  p_item_types text[],
  p_item_tags text[],
  p_after_xid xid8,
  p_after_gp bigint,
  p_after_snapshot pg_snapshot
) RETURNS boolean
-- Generic plans only (see 0007): a custom plan per call re-plans every check query.
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  v_xmax xid8;
  v_xip xid8[];
  v_types text[];
  v_tags text[];
  v_match bigint;
  v_i integer;
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

  RETURN true;
END
$fn$;

CREATE OR REPLACE FUNCTION __SCHEMA__.append_with_condition(
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
LANGUAGE plpgsql AS $fn$
DECLARE
  v_stream text;
  v_current bigint;
  v_expected bigint;
  v_i integer;
  v_sel integer[];
BEGIN
  PERFORM __SCHEMA__.hold_append_condition(p_locks, p_exclusive, p_item_types, p_item_tags,
    p_after_xid, p_after_gp, p_after_snapshot);

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

