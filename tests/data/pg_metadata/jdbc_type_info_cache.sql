-- pgjdbc 42.7.13, TypeInfoCache (the types on the search path, as getTypeInfo resolves names)
-- contains: false|b|int8|20
-- contains: true|b|_int8|1016
-- contains: false|b|timestamptz|1184
-- contains: false|b|numeric|1700
SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           join ( select s.r, (current_schemas(false))[s.r] as nspname                    from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  ORDER BY sp.r, pg_type.oid DESC
