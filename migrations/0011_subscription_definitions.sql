-- Subscription definitions, for rolling deploys. During a deploy, processes of one group can run
-- different configs, and a subscription's filter (its types, category, stream, unmapped-type
-- policy) can differ between them. Only one definition of a subscription acts at a time: the one
-- recorded in subscriptions.fingerprint. The global reader dispatches and advances, and consumers
-- claim, only subscriptions whose stored fingerprint equals their own, so an old process never
-- passes messages over with a filter that is no longer current.
--
-- subscriptions.fingerprint   hash of the definition currently in charge (null: registered by an
--                             older release; the next process to register adopts it)
-- subscriptions.definition    that definition, readable: { types, category, stream, onUnmappedType }
--
-- subscription_definitions: every definition of a subscription that a process has registered.
--   fingerprint, definition   as above
--   first_seen_at             when a process first registered it: the newer definition wins
--
-- subscription_runners: which worker process runs which definition, kept alive at each heartbeat.
--   worker_id                 the worker's id (as in workers and leased_by)
--   fingerprint               the definition that worker has in its config
--   alive_until               pushed forward at every heartbeat (12 heartbeats ahead: late
--                             heartbeats of a loaded fleet must not look like a rollback); a clean
--                             stop deletes the worker's rows, a killed worker's rows expire
--
-- A definition takes over a subscription when it is newer than the one in charge, or when the one
-- in charge has no live runner (a rollback once the newer processes are gone). A subscription that
-- is in no live runner's config is marked unknown; one that a live runner still runs never is.

ALTER TABLE __SCHEMA__.subscriptions
  ADD COLUMN fingerprint text,
  ADD COLUMN definition jsonb;

CREATE TABLE __SCHEMA__.subscription_definitions (
  group_name text NOT NULL,
  subscription_name text NOT NULL,
  fingerprint text NOT NULL,
  definition jsonb NOT NULL,
  first_seen_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (group_name, subscription_name, fingerprint),
  FOREIGN KEY (group_name, subscription_name)
    REFERENCES __SCHEMA__.subscriptions (group_name, name) ON DELETE CASCADE
);

CREATE TABLE __SCHEMA__.subscription_runners (
  worker_id text NOT NULL,
  group_name text NOT NULL,
  subscription_name text NOT NULL,
  fingerprint text NOT NULL,
  alive_until timestamptz NOT NULL,
  PRIMARY KEY (worker_id, group_name, subscription_name),
  FOREIGN KEY (group_name, subscription_name)
    REFERENCES __SCHEMA__.subscriptions (group_name, name) ON DELETE CASCADE
);
CREATE INDEX subscription_runners_subscription_idx
  ON __SCHEMA__.subscription_runners (group_name, subscription_name, fingerprint);
