-- Ephemeral queues: jobs consumed once per queue and deleted on ack (src/queues/).
-- __SCHEMA__ is replaced by the escaped schema name.

-- A job waiting, delayed, in flight, or waiting behind its key. One column says when a dequeue may
-- take it (visible_at), so a dequeue is one range scan of queue_jobs_dequeue_idx from the start of
-- the queue up to now(): delayed jobs, jobs in flight (visible_at = end of their visibility timeout)
-- and jobs parked behind their key's head (visible_at = 'infinity', outside the partial index) lie
-- beyond it and cost nothing, however many there are.
CREATE TABLE __SCHEMA__.queue_jobs (
  id uuid PRIMARY KEY,
  queue text NOT NULL,
  -- Ordering key: one job per key is eligible at a time (the head, lowest key_seq).
  key text,
  key_seq bigint,
  type text NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- When it was asked to run (enqueue time plus delay).
  run_at timestamptz NOT NULL,
  visible_at timestamptz NOT NULL,
  -- Deliveries so far (handed to a handler, or taken and found past maxDeliveries).
  deliveries integer NOT NULL DEFAULT 0,
  -- Set by each delivery: acks, nacks and heartbeats only count with the current token, so a
  -- holder whose visibility expired and was taken over cannot ack (or extend) any more.
  lease_token uuid,
  leased_by text,
  leased_at timestamptz,
  -- One entry per failed delivery: { delivery, at, name, message, stack?, worker? }.
  errors jsonb NOT NULL DEFAULT '[]'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX queue_jobs_dequeue_idx ON __SCHEMA__.queue_jobs (queue, visible_at)
  WHERE visible_at < 'infinity';
CREATE INDEX queue_jobs_key_idx ON __SCHEMA__.queue_jobs (queue, key, key_seq) WHERE key IS NOT NULL;

-- One row per key that has jobs: how many, and the last order number given. Every enqueue with a
-- key and every end of a keyed job (ack, dead letter) updates this row, so they are serialised per
-- key: the job that ends always sees the jobs enqueued before it (and promotes the next one), and
-- the order numbers follow commit order.
CREATE TABLE __SCHEMA__.queue_keys (
  queue text NOT NULL,
  key text NOT NULL,
  pending integer NOT NULL,
  last_seq bigint NOT NULL,
  PRIMARY KEY (queue, key)
);

-- Jobs that failed maxDeliveries times, with every error; `es queue redrive` puts them back.
CREATE TABLE __SCHEMA__.queue_dead_letters (
  id uuid PRIMARY KEY,
  queue text NOT NULL,
  key text,
  type text NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb NOT NULL,
  deliveries integer NOT NULL,
  errors jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  dead_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX queue_dead_letters_queue_idx ON __SCHEMA__.queue_dead_letters (queue, dead_at, id);

-- Completed and failed deliveries per queue and minute, added by each worker every few seconds
-- (never per job: a shared row per job would serialise the acks): `es queue list` shows the rate.
CREATE TABLE __SCHEMA__.queue_stats (
  queue text NOT NULL,
  minute timestamptz NOT NULL,
  completed bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (queue, minute)
);

-- A key's job ended: count it out and make the next job of the key (lowest key_seq) visible.
CREATE FUNCTION __SCHEMA__.queue_release_key(p_queue text, p_key text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  left_over integer;
BEGIN
  UPDATE __SCHEMA__.queue_keys SET pending = pending - 1
   WHERE queue = p_queue AND key = p_key
  RETURNING pending INTO left_over;
  IF left_over IS NULL THEN
    RETURN; -- purged meanwhile
  END IF;
  IF left_over <= 0 THEN
    DELETE FROM __SCHEMA__.queue_keys WHERE queue = p_queue AND key = p_key;
    RETURN;
  END IF;
  UPDATE __SCHEMA__.queue_jobs SET visible_at = greatest(run_at, now())
   WHERE id = (SELECT id FROM __SCHEMA__.queue_jobs
                WHERE queue = p_queue AND key = p_key ORDER BY key_seq LIMIT 1)
     AND visible_at = 'infinity';
END;
$$;

-- Enqueue jobs; returns the ids actually inserted. An id still waiting, in flight or dead is not
-- enqueued again (idempotent). Keyed jobs take their key's row in key order (no deadlock between
-- two such calls); a keyed job is visible only when it is its key's only job, else it is parked.
CREATE FUNCTION __SCHEMA__.queue_enqueue(
  p_queue text, p_ids uuid[], p_keys text[], p_types text[], p_data jsonb[], p_metadata jsonb[],
  p_delays_ms double precision[], p_errors jsonb[] DEFAULT NULL
) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
  r record;
  k_pending integer;
  k_seq bigint;
BEGIN
  -- Without keys, one set-based insert.
  IF NOT EXISTS (SELECT 1 FROM unnest(p_keys) AS k(key) WHERE k.key IS NOT NULL) THEN
    RETURN QUERY
    INSERT INTO __SCHEMA__.queue_jobs AS j (id, queue, type, data, metadata, run_at, visible_at, errors)
    SELECT u.id, p_queue, u.type, u.data, u.metadata, now() + u.delay_ms * interval '1 millisecond',
           now() + u.delay_ms * interval '1 millisecond', coalesce(u.errors, '[]'::jsonb)
      FROM unnest(p_ids, p_types, p_data, p_metadata, p_delays_ms,
                  coalesce(p_errors, array_fill(NULL::jsonb, ARRAY[cardinality(p_ids)])))
           AS u(id, type, data, metadata, delay_ms, errors)
     WHERE NOT EXISTS (SELECT 1 FROM __SCHEMA__.queue_dead_letters d WHERE d.id = u.id)
    ON CONFLICT (id) DO NOTHING
    RETURNING j.id;
    RETURN;
  END IF;
  FOR r IN
    SELECT u.id, u.key, u.type, u.data, u.metadata, u.delay_ms, u.errors
      FROM unnest(p_ids, p_keys, p_types, p_data, p_metadata, p_delays_ms,
                  coalesce(p_errors, array_fill(NULL::jsonb, ARRAY[cardinality(p_ids)])))
           WITH ORDINALITY AS u(id, key, type, data, metadata, delay_ms, errors, n)
     WHERE NOT EXISTS (SELECT 1 FROM __SCHEMA__.queue_dead_letters d WHERE d.id = u.id)
     ORDER BY u.key NULLS FIRST, u.n
  LOOP
    INSERT INTO __SCHEMA__.queue_jobs (id, queue, key, type, data, metadata, run_at, visible_at, errors)
    VALUES (r.id, p_queue, r.key, r.type, r.data, r.metadata,
            now() + r.delay_ms * interval '1 millisecond',
            CASE WHEN r.key IS NULL THEN now() + r.delay_ms * interval '1 millisecond'
                 ELSE 'infinity'::timestamptz END,
            coalesce(r.errors, '[]'::jsonb))
    ON CONFLICT (id) DO NOTHING;
    CONTINUE WHEN NOT FOUND;
    IF r.key IS NOT NULL THEN
      INSERT INTO __SCHEMA__.queue_keys AS k (queue, key, pending, last_seq) VALUES (p_queue, r.key, 1, 1)
      ON CONFLICT (queue, key) DO UPDATE SET pending = k.pending + 1, last_seq = k.last_seq + 1
      RETURNING k.pending, k.last_seq INTO k_pending, k_seq;
      UPDATE __SCHEMA__.queue_jobs
         SET key_seq = k_seq, visible_at = CASE WHEN k_pending = 1 THEN run_at ELSE 'infinity'::timestamptz END
       WHERE id = r.id;
    END IF;
    RETURN NEXT r.id;
  END LOOP;
END;
$$;

-- Ack: delete the jobs still held with this token (returns those), promoting each key's next job.
CREATE FUNCTION __SCHEMA__.queue_complete(p_ids uuid[], p_tokens uuid[]) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  FOR r IN
    WITH done AS (
      DELETE FROM __SCHEMA__.queue_jobs j
       USING unnest(p_ids, p_tokens) AS t(id, token)
       WHERE j.id = t.id AND j.lease_token = t.token
      RETURNING j.id, j.queue, j.key
    )
    SELECT * FROM done ORDER BY key NULLS FIRST
  LOOP
    IF r.key IS NOT NULL THEN
      PERFORM __SCHEMA__.queue_release_key(r.queue, r.key);
    END IF;
    RETURN NEXT r.id;
  END LOOP;
END;
$$;

-- Nack: with p_dead false the job is visible again after the backoff; with p_dead true it moves to
-- the dead letters. p_error (NULL: none) is added to its error history. Returns 'retry', 'dead', or 'lost' when the token no longer holds the job.
CREATE FUNCTION __SCHEMA__.queue_fail(
  p_id uuid, p_token uuid, p_error jsonb, p_backoff_ms double precision, p_dead boolean
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  j __SCHEMA__.queue_jobs%ROWTYPE;
BEGIN
  IF NOT p_dead THEN
    UPDATE __SCHEMA__.queue_jobs
       SET visible_at = now() + p_backoff_ms * interval '1 millisecond', lease_token = NULL,
           leased_by = NULL, leased_at = NULL,
           errors = errors || CASE WHEN p_error IS NULL THEN '[]'::jsonb ELSE jsonb_build_array(p_error) END
     WHERE id = p_id AND lease_token = p_token;
    RETURN CASE WHEN FOUND THEN 'retry' ELSE 'lost' END;
  END IF;
  DELETE FROM __SCHEMA__.queue_jobs WHERE id = p_id AND lease_token = p_token RETURNING * INTO j;
  IF NOT FOUND THEN
    RETURN 'lost';
  END IF;
  INSERT INTO __SCHEMA__.queue_dead_letters (id, queue, key, type, data, metadata, deliveries, errors, created_at)
  VALUES (j.id, j.queue, j.key, j.type, j.data, j.metadata, j.deliveries,
          j.errors || CASE WHEN p_error IS NULL THEN '[]'::jsonb ELSE jsonb_build_array(p_error) END,
          j.created_at)
  ON CONFLICT (id) DO NOTHING;
  IF j.key IS NOT NULL THEN
    PERFORM __SCHEMA__.queue_release_key(j.queue, j.key);
  END IF;
  RETURN 'dead';
END;
$$;

-- Put dead letters back (all of a queue's when p_ids is NULL), keeping their error history; returns
-- the ids enqueued again.
CREATE FUNCTION __SCHEMA__.queue_redrive(p_queue text, p_ids uuid[]) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
  ids uuid[]; keys text[]; types text[]; datas jsonb[]; metas jsonb[]; errs jsonb[];
BEGIN
  WITH gone AS (
    DELETE FROM __SCHEMA__.queue_dead_letters
     WHERE queue = p_queue AND (p_ids IS NULL OR id = ANY (p_ids))
    RETURNING *
  )
  SELECT array_agg(id ORDER BY dead_at, id), array_agg(key ORDER BY dead_at, id),
         array_agg(type ORDER BY dead_at, id), array_agg(data ORDER BY dead_at, id),
         array_agg(metadata ORDER BY dead_at, id), array_agg(errors ORDER BY dead_at, id)
    INTO ids, keys, types, datas, metas, errs
    FROM gone;
  IF ids IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY SELECT * FROM __SCHEMA__.queue_enqueue(
    p_queue, ids, keys, types, datas, metas, array_fill(0::double precision, ARRAY[cardinality(ids)]), errs);
END;
$$;
