-- The application's own migrations (the config's `migrations.folder`), applied by es migrate after
-- beckett's, in the same advisory lock. Kept apart from schema_migrations: their names are the
-- application's file names, not beckett's version numbers, so neither can be mistaken for the other.
CREATE TABLE __SCHEMA__.app_migrations (
  name text PRIMARY KEY,
  checksum text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
