-- DBeaver 25.3, the navigator's columns of a table (PostgreTableBase's attribute cache, as pg_stat_activity shows it), for bids (oid 16384)
-- params: 16384
-- expect: bids|16384|auction|20|-1|8|1|0|-1|-1|true|p|d|false|false|false|||false|true|0|0||||||
-- expect: bids|16384|bidder|20|-1|8|2|0|-1|-1|true|p|d|false|false|false|||false|true|0|0||||||
-- expect: bids|16384|price|20|-1|8|3|0|-1|-1|true|p|d|false|false|false|||false|true|0|0||||||
-- expect: bids|16384|ts|1114|-1|8|4|0|-1|-1|true|p|d|false|false|false|||false|true|0|0||||||
SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description,dep.objid
FROM pg_catalog.pg_attribute a
INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)
LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)
LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)
LEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' and dep.refobjsubid = a.attnum and dep.classid = dep.refclassid
WHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.oid=$1
ORDER BY a.attnum
