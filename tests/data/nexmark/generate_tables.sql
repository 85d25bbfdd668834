-- The bids, auctions and people the Nexmark join and Top-N queries of
-- tests/nexmark_e2e.rs read, and Flink read for its expected rows
-- (scripts/flink/nexmark_queries.py): `eddy run` of this script, '{path}'
-- replaced by a directory, writes them under it as JSON lines, one directory
-- per table.
--
-- Eddy's Nexmark generator (the reference generator's rules; deterministic for a
-- fixed base time) gives 9,200 bids, 600 auctions and 200 people of the first
-- 10,000 events, 0.1 ms apart. Each time (an auction's `expires` too) is
-- stretched from the base time by 100, so the events span 100 s and fall into
-- ten 10 s windows. Columns have the names of Nexmark's Flink DDL.
CREATE TABLE gen_bid WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '10000', 'nexmark.base-time' = '1699963200000');
CREATE TABLE gen_auction WITH ('connector' = 'nexmark', 'nexmark.table' = 'auction', 'events.num' = '10000', 'nexmark.base-time' = '1699963200000');
CREATE TABLE gen_person WITH ('connector' = 'nexmark', 'nexmark.table' = 'person', 'events.num' = '10000', 'nexmark.base-time' = '1699963200000');

CREATE TABLE bid_file (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, dateTime TIMESTAMP(3), extra STRING)
  WITH ('connector' = 'filesystem', 'path' = '{path}/bid', 'format' = 'json');
CREATE TABLE auction_file (id BIGINT, itemName STRING, description STRING, initialBid BIGINT, reserve BIGINT, dateTime TIMESTAMP(3),
  expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra STRING)
  WITH ('connector' = 'filesystem', 'path' = '{path}/auction', 'format' = 'json');
CREATE TABLE person_file (id BIGINT, name STRING, emailAddress STRING, creditCard STRING, city STRING, state STRING, dateTime TIMESTAMP(3), extra STRING)
  WITH ('connector' = 'filesystem', 'path' = '{path}/person', 'format' = 'json');

INSERT INTO bid_file
SELECT auction, bidder, price, channel, url, TO_TIMESTAMP_LTZ(1699963200000 + (CAST(date_time AS BIGINT) - 1699963200000) * 100, 3), extra
FROM gen_bid;

INSERT INTO auction_file
SELECT id, item_name, description, initial_bid, reserve,
       TO_TIMESTAMP_LTZ(1699963200000 + (CAST(date_time AS BIGINT) - 1699963200000) * 100, 3),
       TO_TIMESTAMP_LTZ(1699963200000 + (CAST(expires AS BIGINT) - 1699963200000) * 100, 3),
       seller, category, extra
FROM gen_auction;

INSERT INTO person_file
SELECT id, name, email_address, credit_card, city, state, TO_TIMESTAMP_LTZ(1699963200000 + (CAST(date_time AS BIGINT) - 1699963200000) * 100, 3), extra
FROM gen_person;
