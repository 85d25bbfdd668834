//! EXPLAIN's text for one statement of each plan shape, checked against the
//! snapshots in `tests/snapshots/` (reviewed by hand when they were written: a
//! change to the plan or to how it is printed fails here until a reviewer accepts
//! the new text with `cargo insta review`, or `INSTA_UPDATE=always` and a diff).
//!
//! insta never writes a snapshot over a committed one on its own: with `CI` set it
//! only compares, and locally it leaves the new text in a `.snap.new` file beside
//! the old one and fails.

use eddy::session::Outcome;
use eddy::Session;
use eddy_sql::parse_script;

/// The tables every case plans against: a bounded JSON file with a watermark (and
/// the same file split into blocks of 100 bytes between the tasks), an
/// unbounded generator (for the aggregates without a window, which update), and
/// two sinks.
const TABLES: &str = "
SET 'parallelism' = '2';
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'tests/data/bids.json', 'format' = 'json');
CREATE TABLE bids_split (
  auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'tests/data/bids.json', 'format' = 'json', 'scan.split.block-size' = '100B');
CREATE TABLE endless (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time TIMESTAMP(3), extra STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'nexmark');
CREATE TABLE per_window (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, top BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/per_window', 'format' = 'parquet');
CREATE TABLE changes (n BIGINT, auctions BIGINT) WITH ('connector' = 'print');
CREATE VIEW expensive AS SELECT auction, price FROM bids WHERE price >= 100;
CREATE TABLE bids_now (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3), proc_time AS PROCTIME())
WITH ('connector' = 'filesystem', 'path' = 'tests/data/bids.json', 'format' = 'json');
CREATE TABLE reserve_prices (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = 'tests/data/bids.json', 'format' = 'json', 'lookup.cache' = 'PARTIAL');
CREATE VIEW last_bid AS SELECT auction, price, ts FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY ts DESC) AS rn FROM bids) WHERE rn = 1;
";

/// The EXPLAIN text of `statement` (without the `EXPLAIN`) in a session holding [`TABLES`].
async fn explain(statement: &str) -> String {
    let mut session = Session::new();
    for parsed in parse_script(TABLES).expect("the tables parse") {
        session.execute(&parsed).await.unwrap_or_else(|e| panic!("{}: {e}", parsed.text));
    }
    let mut parsed = parse_script(&format!("EXPLAIN {statement}")).expect("the statement parses");
    assert_eq!(parsed.len(), 1, "one statement: {statement}");
    let outcome = session.execute(&parsed.remove(0)).await.unwrap_or_else(|e| panic!("EXPLAIN {statement}: {e}"));
    let Outcome::Rows(batch) = outcome else { panic!("EXPLAIN {statement} gave no rows") };
    let lines = batch.column(0).as_any().downcast_ref::<datafusion::arrow::array::StringArray>().expect("EXPLAIN gives one text column");
    let mut text = String::new();
    for line in lines.iter() {
        text.push_str(line.unwrap_or_default());
        text.push('\n');
    }
    text
}

/// Asserts the EXPLAIN text of `statement` against the snapshot `name`, which
/// starts with the statement itself so that a reviewer reads both together.
macro_rules! explain_snapshot {
    ($name:literal, $statement:expr) => {{
        let statement: &str = $statement;
        let text = explain(statement).await;
        insta::with_settings!({ description => statement, omit_expression => true, prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, text);
        });
    }};
}

#[tokio::test]
async fn tumble_window_into_a_file_sink() {
    explain_snapshot!(
        "tumble",
        "INSERT INTO per_window SELECT window_start, auction, COUNT(*), MAX(price)
         FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, auction"
    );
}

#[tokio::test]
async fn hop_window() {
    explain_snapshot!(
        "hop",
        "SELECT window_start, window_end, auction, COUNT(*)
         FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, auction"
    );
}

#[tokio::test]
async fn cumulate_window() {
    explain_snapshot!(
        "cumulate",
        "SELECT window_start, window_end, SUM(price)
         FROM TABLE(CUMULATE(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
         GROUP BY window_start, window_end"
    );
}

#[tokio::test]
async fn session_window() {
    explain_snapshot!(
        "session",
        "SELECT window_start, window_end, auction, COUNT(*)
         FROM TABLE(SESSION(TABLE bids PARTITION BY auction, DESCRIPTOR(ts), INTERVAL '5' SECOND))
         GROUP BY window_start, window_end, auction"
    );
}

#[tokio::test]
async fn filter_and_project() {
    explain_snapshot!("filter_project", "SELECT auction, price * 2 AS doubled FROM bids WHERE price > 100");
}

#[tokio::test]
async fn updating_aggregate() {
    explain_snapshot!("updating_aggregate", "SELECT bidder, MAX(price) FROM endless GROUP BY bidder");
}

#[tokio::test]
async fn retracting_aggregate_into_a_changelog_sink() {
    explain_snapshot!(
        "retracting_aggregate",
        "INSERT INTO changes SELECT n, COUNT(*) FROM (SELECT auction, COUNT(*) AS n FROM endless GROUP BY auction) GROUP BY n"
    );
}

#[tokio::test]
async fn union_all() {
    explain_snapshot!("union_all", "SELECT auction FROM bids WHERE price > 100 UNION ALL SELECT auction FROM bids WHERE price < 20");
}

#[tokio::test]
async fn view_read() {
    explain_snapshot!("view_read", "SELECT auction FROM expensive WHERE auction <> 2");
}

#[tokio::test]
async fn a_file_split_between_tasks() {
    explain_snapshot!(
        "split_file",
        "SELECT window_start, auction, COUNT(*)
         FROM TABLE(TUMBLE(TABLE bids_split, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, auction"
    );
}

#[tokio::test]
async fn interval_join() {
    explain_snapshot!(
        "interval_join",
        "SELECT a.auction, a.price, b.price AS next_price FROM bids a LEFT JOIN endless b
         ON a.auction = b.auction AND b.date_time BETWEEN a.ts AND a.ts + INTERVAL '1' MINUTE AND b.price > a.price"
    );
}

#[tokio::test]
async fn window_join() {
    explain_snapshot!(
        "window_join",
        "SELECT L.auction, L.window_start, L.n, R.price FROM
           (SELECT auction, window_start, window_end, price AS n FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))) L
         JOIN (SELECT * FROM TABLE(TUMBLE(TABLE endless, DESCRIPTOR(date_time), INTERVAL '10' SECOND))) R
         ON L.auction = R.auction AND L.window_start = R.window_start AND L.window_end = R.window_end"
    );
}

#[tokio::test]
async fn regular_join() {
    explain_snapshot!(
        "regular_join",
        "SELECT a.auction, a.price, b.price AS other_price FROM bids a LEFT JOIN endless b ON a.auction = b.auction AND b.price > a.price"
    );
}

/// Windows aggregated on each side and joined on their bounds (Nexmark q8) run as a window join.
#[tokio::test]
async fn window_join_of_aggregates() {
    explain_snapshot!(
        "window_join_of_aggregates",
        "SELECT L.auction, L.window_start, L.n, R.m FROM
           (SELECT auction, window_start, window_end, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end) L
         JOIN (SELECT auction, window_start, window_end, MAX(price) AS m FROM TABLE(TUMBLE(TABLE endless, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end) R
         ON L.auction = R.auction AND L.window_start = R.window_start AND L.window_end = R.window_end"
    );
}

/// An OVER aggregate: keyed by its partition, rows wait for the watermark; the source judges lateness by row time.
#[tokio::test]
async fn over_aggregate() {
    explain_snapshot!(
        "over_aggregate",
        "SELECT auction, price, SUM(price) OVER w AS recent, COUNT(*) OVER w AS n FROM bids
         WINDOW w AS (PARTITION BY auction ORDER BY ts RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW)"
    );
}

#[tokio::test]
async fn deduplication() {
    explain_snapshot!(
        "deduplication",
        "SELECT auction, bidder, price, ts FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY ts) AS rn FROM bids) WHERE rn = 1"
    );
}

#[tokio::test]
async fn window_top_n() {
    explain_snapshot!(
        "window_top_n",
        "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rn
           FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))) WHERE rn <= 3"
    );
}

#[tokio::test]
async fn top_n() {
    explain_snapshot!("top_n", "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM endless) WHERE rn <= 10");
}

#[tokio::test]
async fn temporal_join() {
    explain_snapshot!(
        "temporal_join",
        "SELECT b.auction, b.price, l.price AS last_price FROM bids_split AS b LEFT JOIN last_bid FOR SYSTEM_TIME AS OF b.ts AS l ON b.auction = l.auction AND l.price > 10"
    );
}

#[tokio::test]
async fn lookup_join() {
    explain_snapshot!(
        "lookup_join",
        "SELECT b.auction, b.price, r.price AS reserve FROM bids_now AS b LEFT JOIN reserve_prices FOR SYSTEM_TIME AS OF b.proc_time AS r ON b.auction = r.auction AND r.price > 10"
    );
}
