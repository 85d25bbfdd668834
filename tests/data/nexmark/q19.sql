-- Nexmark Query 19: Auction TOP-10 Price (nexmark/nexmark, nexmark-flink/src/main/resources/queries/q19.sql).
-- What's the top price 10 bids of an auction?
-- Illustrates a TOP-N query.
SELECT * FROM
(SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number FROM bid)
WHERE rank_number <= 10
