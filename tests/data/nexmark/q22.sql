-- Nexmark Query 22: Get URL Directories (nexmark/nexmark, nexmark-flink/src/main/resources/queries/q22.sql).
-- What is the directory structure of the URL?
-- Illustrates a SPLIT_INDEX SQL.
SELECT
    auction, bidder, price, channel,
    SPLIT_INDEX(url, '/', 3) as dir1,
    SPLIT_INDEX(url, '/', 4) as dir2,
    SPLIT_INDEX(url, '/', 5) as dir3 FROM bid
