-- The admin API's audit log, and the indexes its pages read through.
-- __SCHEMA__ is replaced by the escaped schema name.

-- Every operator action (CLI, REST, dashboard): who, what, on what, when, and how it ended.
--   actor    'cli', 'api', or the name the host gives (a dashboard user)
--   action   the admin method: 'retry', 'skip', 'release', 'pause', 'resume', 'reset', 'replay',
--            'cancelScheduled', 'sendRecurringNow', 'append', 'applyRetention'
--   target   what it acted on (checkpoint ids, group/subscription, stream, ...), as JSON
--   result   'ok' or 'error'; detail holds the typed result or the error's code and message
CREATE TABLE __SCHEMA__.audit_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  actor text NOT NULL,
  action text NOT NULL,
  target jsonb NOT NULL DEFAULT '{}'::jsonb,
  result text NOT NULL CHECK (result IN ('ok', 'error')),
  detail jsonb
);

-- Links between messages (dashboard: "caused by", "same correlation"): each found by one index
-- probe. Every message carries a correlation id (its own id by default).
CREATE INDEX messages_correlation_idx ON __SCHEMA__.messages ((metadata ->> 'correlationId'));
CREATE INDEX messages_causation_idx ON __SCHEMA__.messages ((metadata ->> 'causationId'))
  WHERE metadata ? 'causationId';

-- Checkpoints needing an operator's eye (lagging, retrying, failed, leased), in key order for
-- keyset pages; small in a healthy system, whatever the number of checkpoints.
CREATE INDEX checkpoints_attention_idx ON __SCHEMA__.checkpoints (group_name, subscription_name, stream_name)
  WHERE status <> 'active' OR stream_position < stream_version OR leased_until IS NOT NULL;

-- A checkpoint's history page: the actions whose target names it.
CREATE INDEX audit_log_target_idx ON __SCHEMA__.audit_log USING gin (target jsonb_path_ops);
