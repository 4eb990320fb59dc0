-- Consistency models: conditional (DCB) appends and decider snapshots.
-- __SCHEMA__ is replaced by the escaped schema name.

-- Snapshots of decider state. One row per (key, state_version): the key names the decider and
-- its boundary (a stream, or a canonical query); a new state schema version starts afresh and
-- old rows are simply never read again.
CREATE TABLE __SCHEMA__.snapshots (
  key text NOT NULL,
  state_version integer NOT NULL,
  -- Stream boundary: the stream version the state includes. Query boundary: the global position
  -- of the last message folded (informational; read_snapshot says what the state includes).
  position bigint NOT NULL,
  -- Query boundary: the snapshot of the read that built the state; the tail is every matching
  -- message not visible in it.
  read_snapshot pg_snapshot,
  -- Messages folded into the state since the initial state (only ever grows for one key).
  message_count bigint NOT NULL,
  state jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (key, state_version)
);

-- Append messages to one or more streams if no message matching a condition exists after a log
-- position, atomically and in one round trip.
--
-- Race freedom. Two appenders conflict when the messages of one match the condition of the
-- other. Each condition item takes EXCLUSIVE transaction advisory locks on keys derived from its
-- types and tags, and each appended message takes SHARED locks on every key a condition matching
-- it could take (see lockKeys.ts: per type, per tag, per (type, tag), and one for everything).
-- So a checker and a writer it must see always meet on a common key, while two writers (shared)
-- never block each other and appends with disjoint conditions take disjoint keys. Keys are taken
-- in one sorted order (by their hash), so no two appenders can deadlock on them; stream locks
-- come after, in name order, as in append_to_stream().
--
-- The check runs in a later statement than the locks: in READ COMMITTED every plpgsql statement
-- takes a new snapshot, so it sees everything committed by a transaction that held a conflicting
-- lock before us.
--
-- What "after" means. Positions are assigned at INSERT and become visible at COMMIT, so a
-- transaction that inserted a lower global position can commit after the decider read past it:
-- "global_position > after" alone would miss it. Two safe forms are accepted:
-- * p_after_snapshot: the snapshot of the decider's read (readForDecision). A message counts when
--   its transaction is not visible in that snapshot: exactly what the decider did not see,
--   whatever its position, and no stall behind unrelated long transactions.
-- * p_after_xid/p_after_gp: a log position (transaction_id, global_position) from a gap-safe read
--   (readByQuery), which only returns transactions older than every running one, so every
--   matching message it did not see compares greater. p_after_xid NULL with p_after_gp given
--   means the position of the message at that global position (looked up).
-- All NULL: no matching message may exist at all.
--
-- p_keys/p_exclusive: lock keys and their mode. p_item_types/p_item_tags: one entry per
-- condition item, chr(31)-joined ('' = no filter). Messages: p_stream_idx (1-based into
-- p_streams) plus the columns as for append_to_stream().
-- Raises BKC01 (condition failed; DETAIL = global position of the first match), or on a wrong
-- expected version BKV01 (one stream; DETAIL = actual version) or BKV02 (several streams;
-- DETAIL = JSON {stream, actual}); writes nothing then.
CREATE FUNCTION __SCHEMA__.append_with_condition(
  p_keys text[],
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
BEGIN
  -- The check must see what was committed under the locks: a transaction snapshot would not.
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION USING ERRCODE = 'BKC02',
      MESSAGE = 'append_with_condition needs READ COMMITTED (the check must see commits made under its locks)';
  END IF;
  -- One statement takes every lock, in hash order (modes interleaved: sorted order across both
  -- modes is what rules out deadlocks). Keys are per schema: other schemas' messages never match.
  PERFORM count(CASE WHEN l.excl THEN pg_advisory_xact_lock(l.h)::text
                     ELSE pg_advisory_xact_lock_shared(l.h)::text END)
    FROM (SELECT k.h, bool_or(k.excl) AS excl
            FROM (SELECT hashtextextended('beckett.dcb:__SCHEMA__:' || u.key, 0) AS h, u.excl
                    FROM unnest(p_keys, p_exclusive) AS u(key, excl)) k
           GROUP BY k.h ORDER BY k.h) l;

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
  -- With a position or snapshot, only the messages after it are scanned (the log index; the
  -- ORDER BY keeps plpgsql's cached generic plan on it); tags are then a plain filter
  -- (arraycontains, not @>) so the planner does not pick the GIN index, whose pending list every
  -- GIN scan has to read. Without one, the GIN index finds the tags.
  FOR v_i IN 1 .. coalesce(array_length(p_item_types, 1), 0) LOOP
    v_types := CASE WHEN p_item_types[v_i] = '' THEN NULL ELSE string_to_array(p_item_types[v_i], chr(31)) END;
    v_tags := CASE WHEN p_item_tags[v_i] = '' THEN NULL ELSE string_to_array(p_item_tags[v_i], chr(31)) END;
    v_match := NULL;
    IF p_after_snapshot IS NOT NULL THEN
      SELECT m.global_position INTO v_match FROM __SCHEMA__.messages m
       WHERE m.transaction_id >= v_xmax
         AND (v_tags IS NULL OR arraycontains(m.tags, v_tags))
         AND (v_types IS NULL OR m.type = ANY(v_types))
       ORDER BY m.transaction_id LIMIT 1;
      IF v_match IS NULL AND cardinality(v_xip) > 0 THEN
        SELECT m.global_position INTO v_match FROM __SCHEMA__.messages m
         WHERE m.transaction_id = ANY(v_xip)
           AND (v_tags IS NULL OR arraycontains(m.tags, v_tags))
           AND (v_types IS NULL OR m.type = ANY(v_types))
         LIMIT 1;
      END IF;
    ELSIF p_after_gp IS NOT NULL THEN
      SELECT m.global_position INTO v_match FROM __SCHEMA__.messages m
       WHERE (m.transaction_id, m.global_position) > (p_after_xid, p_after_gp)
         AND (v_tags IS NULL OR arraycontains(m.tags, v_tags))
         AND (v_types IS NULL OR m.type = ANY(v_types))
       ORDER BY m.transaction_id, m.global_position LIMIT 1;
    ELSIF v_tags IS NOT NULL THEN
      SELECT m.global_position INTO v_match FROM __SCHEMA__.messages m
       WHERE m.tags @> v_tags AND (v_types IS NULL OR m.type = ANY(v_types)) LIMIT 1;
    ELSE
      SELECT m.global_position INTO v_match FROM __SCHEMA__.messages m
       WHERE v_types IS NULL OR m.type = ANY(v_types) LIMIT 1;
    END IF;
    IF v_match IS NOT NULL THEN
      RAISE EXCEPTION USING ERRCODE = 'BKC01', MESSAGE = 'append condition failed', DETAIL = v_match::text;
    END IF;
  END LOOP;

  IF array_length(p_streams, 1) = 1 THEN
    -- One stream: append_to_stream() locks it and checks its version (BKV01 on a mismatch).
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
