-- Grafana, postgresMetaQuery.ts showTables('public')
-- expect: bids
-- expect: counts
-- expect: dear
SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1
