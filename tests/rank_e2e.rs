//! ROW_NUMBER() deduplication and Top-N end to end, against Apache Flink: the
//! queries of `scripts/flink/rank.py` (each planned by Flink as a Deduplicate,
//! Rank, WindowRank or WindowDeduplicate) over the orders and payments of
//! `tests/data/interval_join/`, run by `eddy run` at several parallelisms, give
//! the rows Flink 2.3 gave (`tests/data/rank/expected/`). A changelog (keeping
//! the last row, a Top-N without a window) is compared by the rows it leaves.

mod common;

use common::flink::same_rows_as_flink;

const EXPECTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rank/expected");

const T: &str = "TIMESTAMP(3)";

/// Query `name` (its SQL in `<name>.sql`, Flink's rows in `<name>.txt`) into a table of `columns`.
#[track_caller]
fn rank_matches_flink(name: &str, columns: &str) {
    let sql = std::fs::read_to_string(format!("{EXPECTED}/{name}.sql")).unwrap_or_else(|e| panic!("{name}.sql: {e}"));
    same_rows_as_flink(&format!("{EXPECTED}/{name}.txt"), columns, sql.trim());
}

#[test]
fn deduplication_keeping_the_first_row_matches_flink() {
    rank_matches_flink("first_order_per_user", &format!("order_id BIGINT, user_id BIGINT, amount BIGINT, ts {T}"));
    rank_matches_flink("first_payment_per_order", &format!("payment_id BIGINT, order_id BIGINT, paid BIGINT, ts {T}"));
}

#[test]
fn deduplication_keeping_the_last_row_leaves_the_rows_flink_leaves() {
    rank_matches_flink("last_order_per_user", &format!("order_id BIGINT, user_id BIGINT, amount BIGINT, ts {T}, rn BIGINT"));
}

#[test]
fn top_n_without_a_window_leaves_the_rows_flink_leaves() {
    rank_matches_flink("top3_orders_per_user", "order_id BIGINT, user_id BIGINT, amount BIGINT, rn BIGINT");
    rank_matches_flink("top2_payments_no_number", "payment_id BIGINT, order_id BIGINT, paid BIGINT");
    rank_matches_flink("top5_orders_overall", "order_id BIGINT, amount BIGINT, rn BIGINT");
}

#[test]
fn window_top_n_and_deduplication_match_flink() {
    rank_matches_flink("window_top2_orders", &format!("window_start {T}, window_end {T}, order_id BIGINT, user_id BIGINT, amount BIGINT, rn BIGINT"));
    rank_matches_flink("hop_top1_per_user", &format!("window_start {T}, window_end {T}, user_id BIGINT, order_id BIGINT, amount BIGINT"));
    rank_matches_flink("window_first_order_per_user", &format!("window_start {T}, window_end {T}, user_id BIGINT, order_id BIGINT, ts {T}"));
}

#[test]
fn top_n_over_a_window_aggregate_matches_flink() {
    rank_matches_flink("top3_users_per_minute", &format!("window_start {T}, window_end {T}, user_id BIGINT, total BIGINT, orders BIGINT, rn BIGINT"));
}

/// Ranks over rows that change: a LEFT join's padded rows, taken back once a
/// payment comes (Flink plans `RetractStrategy`), and the counts aggregated over
/// it (Flink: `UpdateFastStrategy`). Eddy keeps every row of a partition for both.
#[test]
fn top_n_over_updating_rows_leaves_the_rows_flink_leaves() {
    rank_matches_flink("top2_orders_per_user_over_left_join", "order_id BIGINT, user_id BIGINT, paid BIGINT, rn BIGINT");
    rank_matches_flink("top3_users_by_paid_orders", "user_id BIGINT, paid_orders BIGINT, rn BIGINT");
}

/// Killed (SIGKILL) right after its 2nd, 4th and 6th checkpoints and run again
/// from the same checkpoint directory each time, a deduplication ends with what
/// one clean run writes, exactly once: the first row of each of 1000 keys (ids 1
/// to 1000 of 3000), though the rows after each checkpoint are read again. The
/// checkpoints hold rows still waiting for the watermark and the marks of keys
/// already emitted, without which a later row of such a key would be emitted as its first.
#[test]
fn a_deduplication_killed_after_checkpoints_emits_each_key_once() {
    deduplication_killed_after_checkpoints_emits_each_key_once("ts");
}

/// The same on processing time (`ORDER BY proc_time`, a `PROCTIME()` column):
/// rows are deduplicated in the order they are read, which for the sequence is
/// the order of the ids, and a key's first row is emitted at once.
#[test]
fn a_deduplication_on_processing_time_killed_after_checkpoints_emits_each_key_once() {
    deduplication_killed_after_checkpoints_emits_each_key_once("proc_time");
}

/// A Top-N over updating rows, killed after its 2nd, 4th and 6th checkpoints
/// and run again each time, leaves in an upsert-kafka topic (keyed by rank) the
/// ranks a clean run leaves. The rows: ids 1 to 3000 in groups of 100 (`k = id /
/// 100`), each LEFT joined with its mark (so padded rows come and are taken
/// back) and counted per group, which updates the counts at each checkpoint;
/// top 3 by count, then k. Groups 1 to 3 are complete within the first 0.4 s and
/// never change again, so after a restart only the restored rank state still
/// holds them; without it, later groups take their ranks (checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_n_over_updating_rows_killed_after_checkpoints_leaves_the_final_ranks() {
    use eddy_connectors::kafka::testing::{broker, create_topic, read_all, unique_topic};
    let bootstrap = broker();
    let topic = unique_topic("top-counts");
    create_topic(&bootstrap, &topic, 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let checkpoints = dir.path().join("checkpoints");
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE events (id BIGINT, k AS id / 100)
           WITH ('connector' = 'datagen', 'rows-per-second' = '1000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '3000');
         CREATE TABLE marks (m BIGINT)
           WITH ('connector' = 'datagen', 'rows-per-second' = '1000', 'fields.m.kind' = 'sequence', 'fields.m.start' = '1', 'fields.m.end' = '3000');
         CREATE TABLE top (rn BIGINT, k BIGINT, n BIGINT, PRIMARY KEY (rn) NOT ENFORCED)
           WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}');
         INSERT INTO top SELECT rn, k, n FROM (SELECT *, ROW_NUMBER() OVER (ORDER BY n DESC, k) AS rn
           FROM (SELECT e.k, COUNT(x.m) AS n FROM events e LEFT JOIN marks x ON e.id = x.m GROUP BY e.k)) WHERE rn <= 3;"
    );
    let script = common::flink::script(dir.path(), &sql);
    tokio::task::spawn_blocking(move || {
        common::killed_at_then_finished(&script, &checkpoints, &["checkpoint-saved:2", "checkpoint-saved:4", "checkpoint-saved:6"])
    })
    .await
    .expect("the runs");
    // Each rank's newest record (a tombstone deletes it).
    let mut ranks = std::collections::BTreeMap::new();
    for record in read_all(&bootstrap, &topic) {
        let key: serde_json::Value = serde_json::from_str(record.key.as_deref().expect("a key")).expect("JSON key");
        let value = record.value.as_deref().map(|v| serde_json::from_str::<serde_json::Value>(v).expect("JSON value"));
        ranks.insert(key["rn"].as_i64().expect("rn"), value.map(|v| (v["k"].as_i64().expect("k"), v["n"].as_i64().expect("n"))));
    }
    let want = std::collections::BTreeMap::from([(1, Some((1, 100))), (2, Some((2, 100))), (3, Some((3, 100)))]);
    assert_eq!(ranks, want, "ranks 1 to 3 as (k, n)");
}

fn deduplication_killed_after_checkpoints_emits_each_key_once(order_by: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE events (id BIGINT, k AS id % 1000, ts AS to_timestamp_millis(id * 1000), proc_time AS PROCTIME(), WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
           WITH ('connector' = 'datagen', 'rows-per-second' = '1000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '3000');
         CREATE TABLE out (k BIGINT, id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out SELECT k, id FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY {order_by}) AS rn FROM events) WHERE rn = 1;",
        out.display()
    );
    let script = common::flink::script(dir.path(), &sql);
    common::killed_at_then_finished(&script, &checkpoints, &["checkpoint-saved:2", "checkpoint-saved:4", "checkpoint-saved:6"]);
    let mut rows: Vec<(i64, i64)> = common::committed_rows(&out).iter().map(|row| (row["k"].as_i64().expect("k"), row["id"].as_i64().expect("id"))).collect();
    rows.sort_unstable();
    let want: Vec<(i64, i64)> = (1..=1000).map(|id| (id % 1000, id)).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    assert_eq!(rows.len(), want.len(), "ORDER BY {order_by}: {} rows for 1000 keys", rows.len());
    assert!(rows == want, "ORDER BY {order_by}: not the first row of every key once: first difference {:?}", rows.iter().zip(&want).find(|(a, b)| a != b));
}
