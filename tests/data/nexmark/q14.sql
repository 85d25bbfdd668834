-- Nexmark Query 14: Calculation (nexmark/nexmark, nexmark-flink/src/main/resources/queries/q14.sql).
-- Convert bid timestamp into types and find bids with specific price.
-- Illustrates duplicate expressions and usage of user-defined-functions.
-- The published query's c_counts is the UDF count_char(extra, 'c') (how many 'c' the text holds),
-- computed here with standard functions as CHAR_LENGTH(extra) - CHAR_LENGTH(REPLACE(extra, 'c', '')).
-- `dateTime` is quoted, as the latest published q15 quotes it: Flink 2.3's parser reads it unquoted as the keyword DATETIME.
SELECT
    auction,
    bidder,
    0.908 * price as price,
    CASE
        WHEN HOUR(`dateTime`) >= 8 AND HOUR(`dateTime`) <= 18 THEN 'dayTime'
        WHEN HOUR(`dateTime`) <= 6 OR HOUR(`dateTime`) >= 20 THEN 'nightTime'
        ELSE 'otherTime'
    END AS bidTimeType,
    `dateTime`,
    extra,
    CHAR_LENGTH(extra) - CHAR_LENGTH(REPLACE(extra, 'c', '')) AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000
