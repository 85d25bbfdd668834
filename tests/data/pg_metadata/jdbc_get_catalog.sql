-- pgjdbc 42.7.13, PgConnection.getCatalog (before getColumns)
-- expect: eddy
select current_catalog
