-- message_lock_keys() (migration 0012) as plpgsql: the same keys, computed by a query planned once
-- per session. As a SQL function with a FROM clause it cannot be inlined, so every call (every
-- append_to_stream(), every SQL writer's statement) planned its UNION ALL again: about 0.3 ms per
-- call, more than the rest of the keys' work. The order of the keys is unspecified (callers take
-- them by ascending lock id).

CREATE OR REPLACE FUNCTION __SCHEMA__.message_lock_keys(p_types text[], p_tags text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
BEGIN
  RETURN ARRAY(
    SELECT '*' || chr(31) || '*'
    UNION SELECT 't=' || t || chr(31) || '*' FROM unnest(p_types) AS t
    UNION SELECT v.k
            FROM unnest(p_types, p_tags) AS u(t, g)
            CROSS JOIN LATERAL unnest(string_to_array(nullif(u.g, ''), chr(31))) AS x
            CROSS JOIN LATERAL (VALUES ('*' || chr(31) || 'g=' || x), ('t=' || u.t || chr(31) || 'g=' || x)) AS v(k));
END
$fn$;
