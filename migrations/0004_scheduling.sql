-- Scheduled and recurring messages.
-- __SCHEMA__ is replaced by the escaped schema name.

-- A message waiting for its time. Delivery claims due rows with FOR UPDATE SKIP LOCKED and appends
-- each to its stream in the transaction that deletes the row: a crash neither loses nor duplicates
-- one. The row id becomes the appended message's id, so a row scheduled twice (a retried handler)
-- is appended at most once (messages_id_key).
CREATE TABLE __SCHEMA__.scheduled_messages (
  id uuid PRIMARY KEY,
  stream_name text NOT NULL,
  type text NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  tags text[] NOT NULL DEFAULT '{}'::text[],
  deliver_at timestamptz NOT NULL,
  -- Failed delivery attempts (for example a payload its schema now refuses); retried with backoff.
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX scheduled_messages_deliver_at_idx ON __SCHEMA__.scheduled_messages (deliver_at);

-- One row per recurring message declared in the config. A worker claims a due row with
-- FOR UPDATE SKIP LOCKED, appends the occurrence and advances next_occurrence_at in the same
-- transaction, so each occurrence is appended once however many workers run.
CREATE TABLE __SCHEMA__.recurring_messages (
  name text PRIMARY KEY,
  cron text NOT NULL,
  timezone text NOT NULL,
  stream_name text NOT NULL,
  type text NOT NULL,
  data jsonb NOT NULL,
  next_occurrence_at timestamptz NOT NULL,
  last_occurrence_at timestamptz,
  last_error text,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX recurring_messages_next_idx ON __SCHEMA__.recurring_messages (next_occurrence_at);
