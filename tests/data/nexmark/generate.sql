-- The bids every Nexmark query of tests/nexmark_e2e.rs reads, and Flink read for
-- its expected rows (scripts/flink/nexmark_queries.py): `eddy run` of this script,
-- '{path}' replaced by a directory, writes them there as JSON lines.
--
-- Eddy's Nexmark generator (the reference generator's rules; deterministic for a
-- fixed base time) gives 920 bids of the first 1000 events. It spaces events
-- 0.1 ms apart (10,000 events/s), so they would all fall in one second: each
-- bid's time is stretched from the base time by 1,080,000 (a millisecond becomes
-- 18 minutes), which spreads them over 30 hours, from 2023-11-14 12:00 to
-- 2023-11-15 18:00 UTC, two calendar days and every hour of the day (bids of one
-- generated millisecond share their stretched time). The column is named
-- `dateTime`, as Nexmark's Flink DDL names it.
CREATE TABLE generated WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '1000', 'nexmark.base-time' = '1699963200000');

CREATE TABLE bids_file (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, dateTime TIMESTAMP(3), extra STRING)
  WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');

INSERT INTO bids_file
SELECT auction, bidder, price, channel, url,
       TO_TIMESTAMP_LTZ(1699963200000 + (CAST(date_time AS BIGINT) - 1699963200000) * 1080000, 3),
       extra
FROM generated;
