-- Subscriptions, checkpoints and workers. __SCHEMA__ is replaced by the escaped schema name.
--
-- subscription_groups: one row per group (`es worker --group NAME`).
--   name                 the group name from the config
--   reader_worker_id     the worker whose global reader last advanced the group (for display)
--   reader_at            when it last did
--   The global reader locks this row FOR UPDATE SKIP LOCKED for each batch it reads, so at most
--   one reader per group runs at a time across all processes and hosts, and a crashed reader holds
--   nothing once its connection is gone.
--
-- subscriptions: one row per (group, subscription) known to the database.
--   group_name, name     keys, as in the config
--   status               initializing (catching up on the log after registration) | active
--                        | paused (checkpoints are not claimed; the reader still records new messages)
--                        | replaying | unknown (in the database but no longer in the config)
--   log_transaction_id,  the subscription's own place in the gap-safe log: every message at or
--   log_position         before (log_transaction_id, log_position) has been dispatched to
--                        checkpoints. Kept per subscription so that a new one starting from the
--                        beginning catches up while its siblings are at the head.
--   start_from           beginning | end, as first registered
--   replay_target        reserved for replays (ops): the global position a replay runs up to
--   created_at, updated_at
--
-- checkpoints: one row per (group, subscription, stream) the subscription has seen.
--   stream_version       the last known position of the stream (raised by the global reader)
--   stream_position      the last position handled (advanced by the consumer holding the lease)
--                        The checkpoint lags while stream_position < stream_version.
--   status               active | retry (waiting for next_attempt_at) | failed (after maxRetries;
--                        only an operator moves it on)
--   attempts             failed attempts at the message after stream_position (0 when healthy)
--   last_error           jsonb { type, message, stack, attempt, at } of the last failure, or null
--   next_attempt_at      not claimed before this time (retry backoff); also the claim order
--   leased_by            the worker id (workers.id) holding the checkpoint, or null
--   lease_id             unique per claim: a consumer only advances a checkpoint while its own
--                        claim is still the current one
--   leased_until         the lease expires then (extended while a handler runs); an expired lease
--                        (a crashed worker) may be claimed again
--   created_at, updated_at
--
-- workers: one row per running worker process (heartbeat every few seconds; removed on a clean
-- stop, so a stale heartbeat_at means a crashed worker).
--   id, host, pid, group_name, concurrency, started_at, heartbeat_at

CREATE TABLE __SCHEMA__.subscription_groups (
  name text PRIMARY KEY,
  reader_worker_id text,
  reader_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE __SCHEMA__.subscriptions (
  group_name text NOT NULL REFERENCES __SCHEMA__.subscription_groups (name) ON DELETE CASCADE,
  name text NOT NULL,
  status text NOT NULL DEFAULT 'initializing'
    CHECK (status IN ('initializing', 'active', 'paused', 'replaying', 'unknown')),
  log_transaction_id xid8 NOT NULL DEFAULT '0',
  log_position bigint NOT NULL DEFAULT 0,
  start_from text NOT NULL DEFAULT 'beginning' CHECK (start_from IN ('beginning', 'end')),
  replay_target bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_name, name)
);

CREATE TABLE __SCHEMA__.checkpoints (
  group_name text NOT NULL,
  subscription_name text NOT NULL,
  stream_name text NOT NULL,
  stream_version bigint NOT NULL DEFAULT 0,
  stream_position bigint NOT NULL DEFAULT 0,
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retry', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  last_error jsonb,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  leased_by text,
  lease_id uuid,
  leased_until timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_name, subscription_name, stream_name),
  FOREIGN KEY (group_name, subscription_name)
    REFERENCES __SCHEMA__.subscriptions (group_name, name) ON DELETE CASCADE
);

-- The claim query's index: only lagging, not failed checkpoints, in claim order.
CREATE INDEX checkpoints_claimable_idx ON __SCHEMA__.checkpoints (group_name, next_attempt_at)
  WHERE stream_position < stream_version AND status <> 'failed';
CREATE INDEX checkpoints_status_idx ON __SCHEMA__.checkpoints (group_name, subscription_name, status)
  WHERE status <> 'active';

CREATE TABLE __SCHEMA__.workers (
  id text PRIMARY KEY,
  host text NOT NULL,
  pid integer NOT NULL,
  group_name text NOT NULL,
  concurrency integer NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);
