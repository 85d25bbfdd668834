-- Grafana, public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts getVersion()
-- expect: 1600
SELECT current_setting('server_version_num')::int/100 as version
