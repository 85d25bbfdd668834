-- psycopg 3.3.9, psycopg/_typeinfo.py TypeInfo._get_info_query (TypeInfo.fetch(conn, "int8"))
-- params: int8
-- expect: int8|20|1016|bigint|,
SELECT
    typname AS name, oid, typarray AS array_oid,
    oid::regtype::text AS regtype, typdelim AS delimiter
FROM pg_type t
WHERE t.oid = to_regtype($1)
ORDER BY t.oid
