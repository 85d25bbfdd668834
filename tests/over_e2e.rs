//! OVER aggregates end to end, against Apache Flink: the same generated events
//! (`tests/data/over/events.json`: peers, NULLs, rows out of order within the
//! watermark bound), the same SQL, and the rows Flink 2.3 returned for it
//! (`tests/data/over/expected/`, from `scripts/flink/over_aggregate.py`), row for
//! row, at parallelism 1 and 3; and a pipeline killed with SIGKILL after
//! checkpoints that ends with the rows of a clean run.

mod common;

use common::flink::{same_rows_as_flink_over, script};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/over");

/// `query` over the events gives in Eddy the rows Flink gave (`expected/<name>.txt`).
#[track_caller]
fn matches_flink(name: &str, columns: &str, query: &str) {
    let events = format!(
        "CREATE TABLE events (k BIGINT, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'filesystem', 'path' = '{DATA}/events.json', 'format' = 'json');"
    );
    same_rows_as_flink_over(&events, &format!("{DATA}/expected/{name}.txt"), columns, query);
}

#[test]
fn a_rows_frame_matches_flink() {
    matches_flink(
        "rows_3_preceding",
        "k BIGINT, v BIGINT, ts TIMESTAMP(3), s BIGINT, c BIGINT, lo BIGINT, hi BIGINT",
        "SELECT k, v, ts, SUM(v) OVER w, COUNT(v) OVER w, MIN(v) OVER w, MAX(v) OVER w FROM events
         WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)",
    );
}

#[test]
fn a_range_frame_with_peers_matches_flink() {
    matches_flink(
        "range_10_seconds",
        "k BIGINT, v BIGINT, ts TIMESTAMP(3), s BIGINT, c BIGINT, lo BIGINT, hi BIGINT",
        "SELECT k, v, ts, SUM(v) OVER w, COUNT(*) OVER w, MIN(v) OVER w, MAX(v) OVER w FROM events
         WINDOW w AS (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW)",
    );
}

#[test]
fn unbounded_frames_match_flink() {
    matches_flink(
        "range_unbounded_no_partition",
        "k BIGINT, v BIGINT, ts TIMESTAMP(3), c BIGINT, s BIGINT",
        "SELECT k, v, ts, COUNT(*) OVER (ORDER BY ts), SUM(v) OVER (ORDER BY ts) FROM events",
    );
    matches_flink(
        "rows_unbounded",
        "k BIGINT, v BIGINT, ts TIMESTAMP(3), s BIGINT, hi BIGINT",
        "SELECT k, v, ts, SUM(v) OVER w, MAX(v) OVER w FROM events WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
    );
}

/// Killed (SIGKILL) right after its 2nd, 4th and 6th checkpoints and run again from
/// the same checkpoint directory each time, an OVER aggregate ends with what one
/// clean run writes, exactly once: the rows waiting for the watermark and the rows
/// in later frames at each checkpoint come back. Row `id` (time `id` s, key `id %
/// 7`) sums itself and its key's two rows before: `id - 7` and `id - 14`.
#[test]
fn an_over_aggregate_killed_after_checkpoints_resumes_with_its_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE events (id BIGINT, k AS id % 7, ts AS to_timestamp_millis(id * 1000), WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
           WITH ('connector' = 'datagen', 'rows-per-second' = '1000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '3000');
         CREATE TABLE out (id BIGINT, s BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out SELECT id, SUM(id) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM events;",
        out.display()
    );
    common::killed_at_then_finished(&script(dir.path(), &sql), &checkpoints, &["checkpoint-saved:2", "checkpoint-saved:4", "checkpoint-saved:6"]);
    let mut rows: Vec<(i64, i64)> = common::committed_rows(&out).iter().map(|row| (row["id"].as_i64().expect("id"), row["s"].as_i64().expect("s"))).collect();
    rows.sort_unstable();
    let want: Vec<(i64, i64)> = (1..=3000).map(|id| (id, [id, id - 7, id - 14].iter().filter(|&&x| x >= 1).sum())).collect();
    assert_eq!(rows.len(), want.len(), "{} rows for 3000 events", rows.len());
    assert!(rows == want, "not every event once with its sum: first difference {:?}", rows.iter().zip(&want).find(|(a, b)| a != b));
}
