-- DBeaver, PostgreDatabase.SchemaCache (the navigator's schemas)
-- expect: 13000|information_schema|10||
-- expect: 11|pg_catalog|10||
-- expect: 2200|public|10||
SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n
LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass
 ORDER BY nspname
