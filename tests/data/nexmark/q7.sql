-- Nexmark Query 7: Highest Bid (nexmark/nexmark, nexmark-flink/src/main/resources/queries/q7.sql).
-- What are the highest bids per period?
-- Deliberately implemented using a side input to illustrate fanout.
-- `dateTime` is quoted: Flink 2.3's parser takes it for a keyword otherwise.
SELECT B.auction, B.price, B.bidder, B.`dateTime`, B.extra
from bid B
JOIN (
  SELECT MAX(price) AS maxprice, window_end as `dateTime`
  FROM TABLE(
          TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end
) B1
ON B.price = B1.maxprice
WHERE B.`dateTime` BETWEEN B1.`dateTime`  - INTERVAL '10' SECOND AND B1.`dateTime`
