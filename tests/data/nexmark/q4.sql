-- Nexmark Query 4: Average Price for a Category (nexmark/nexmark, nexmark-flink/src/main/resources/queries/q4.sql).
-- Select the average of the wining bid prices for all auctions in each category.
-- Illustrates complex join and aggregation.
-- `dateTime` is quoted: Flink 2.3's parser takes it for a keyword otherwise.
SELECT
    Q.category,
    AVG(Q.final)
FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.`dateTime` BETWEEN A.`dateTime` AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category
