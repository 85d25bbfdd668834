-- Nexmark Query 17: Auction Statistics Report (nexmark/nexmark, nexmark-flink/src/main/resources/queries/q17.sql).
-- How many bids on an auction made a day and what is the price?
-- Illustrates an unbounded group aggregation.
-- `dateTime` is quoted, as the latest published q15 quotes it: Flink 2.3's parser reads it unquoted as the keyword DATETIME.
SELECT
     auction,
     DATE_FORMAT(`dateTime`, 'yyyy-MM-dd') as `day`,
     count(*) AS total_bids,
     count(*) filter (where price < 10000) AS rank1_bids,
     count(*) filter (where price >= 10000 and price < 1000000) AS rank2_bids,
     count(*) filter (where price >= 1000000) AS rank3_bids,
     min(price) AS min_price,
     max(price) AS max_price,
     avg(price) AS avg_price,
     sum(price) AS sum_price
FROM bid
GROUP BY auction, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd')
