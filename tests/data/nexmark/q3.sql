-- Nexmark Query 3: Local Item Suggestion (nexmark/nexmark, nexmark-flink/src/main/resources/queries/q3.sql).
-- Who is selling in OR, ID or CA in category 10, and for what auction ids?
-- Illustrates an incremental join (a regular join). The states are lowercase,
-- as the generator writes them (the published query compares with 'OR', 'ID', 'CA').
SELECT
    P.name, P.city, P.state, A.id
FROM
    auction AS A INNER JOIN person AS P on A.seller = P.id
WHERE
    A.category = 10 and (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')
