-- DBeaver, the navigator's tables of a schema (PostgreSchema's table cache), for public (oid 2200)
-- params: 2200
-- expect: 16384|bids|2200|0|0|10|0|16384|0|0|-1.0|0|0|false|false|p|r|4|0|false|false|false|false|false|true|d|false|false||||||
-- expect: 16385|counts|2200|0|0|10|0|16385|0|0|-1.0|0|0|false|false|p|m|3|0|false|false|false|false|false|true|d|false|false||||||
-- expect: 16386|dear|2200|0|0|10|0|16386|0|0|-1.0|0|0|false|false|p|v|2|0|false|false|false|false|false|true|d|false|false||||||
SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as partition_expr,  pg_catalog.pg_get_partkeydef(c.oid) as partition_key 
FROM pg_catalog.pg_class c
LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass
WHERE c.relnamespace=$1 AND c.relkind not in ('i','I','c')
