-- Nexmark Query 10: Log to File System (nexmark/nexmark, nexmark-flink/src/main/resources/queries/q10.sql).
-- Log all events to file system. Illustrates windows streaming data into partitioned file system.
-- The published query writes to a filesystem sink PARTITIONED BY (dt, hm); here its SELECT's rows are compared.
-- `dateTime` is quoted, as the latest published q15 quotes it: Flink 2.3's parser reads it unquoted as the keyword DATETIME.
SELECT auction, bidder, price, `dateTime`, extra, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd'), DATE_FORMAT(`dateTime`, 'HH:mm')
FROM bid
