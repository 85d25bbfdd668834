-- Grafana, postgresMetaQuery.ts getTimescaleDBVersion(): no TimescaleDB
-- expect no rows
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'
