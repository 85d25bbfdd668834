-- Nexmark Query 8: Monitor New Users (nexmark/nexmark, nexmark-flink/src/main/resources/queries/q8.sql).
-- Select people who have entered the system and created auctions in the last period.
-- Illustrates a simple join.
-- `dateTime` is quoted: Flink 2.3's parser takes it for a keyword otherwise.
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name,
         window_start AS starttime,
         window_end AS endtime
  FROM TABLE(
             TUMBLE(TABLE person, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
  GROUP BY id, name, window_start, window_end
) P
JOIN (
  SELECT seller,
         window_start AS starttime,
         window_end AS endtime
  FROM TABLE(
             TUMBLE(TABLE auction, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
  GROUP BY seller, window_start, window_end
) A
ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime
