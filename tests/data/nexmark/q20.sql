-- Nexmark Query 20: Expand bid with auction (nexmark/nexmark, nexmark-flink/src/main/resources/queries/q20.sql).
-- Get bids with the corresponding auction information where category is 10.
-- Illustrates a filter join.
-- `dateTime` is quoted: Flink 2.3's parser takes it for a keyword otherwise.
SELECT
    auction, bidder, price, channel, url, B.`dateTime`, B.extra,
    itemName, description, initialBid, reserve, A.`dateTime`, expires, seller, category, A.extra
FROM
    bid AS B INNER JOIN auction AS A on B.auction = A.id
WHERE A.category = 10
