-- DBeaver, PostgreDatabase.readDatabaseInfo (on connecting), for database eddy
-- params: eddy
-- expect: 16383|eddy|10|6|C.UTF-8|C.UTF-8|false|true|-1|1663|
SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname=$1
