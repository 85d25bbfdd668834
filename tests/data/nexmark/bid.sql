-- The bid table of Nexmark's Flink DDL (its columns, its watermark) over the
-- bids generate.sql writes to '{path}'. Flink reads it with
-- 'json.timestamp-format.standard' = 'SQL' added (scripts/flink/nexmark_queries.py).
CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  channel STRING,
  url STRING,
  `dateTime` TIMESTAMP(3),
  extra STRING,
  WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
