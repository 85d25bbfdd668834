//! Issue 19: a file read by several tasks (split into blocks of byte ranges, or
//! of Parquet row groups) gives exactly the rows one task gives. Runs the real
//! `eddy run` at parallelism 1, 2 and 3 over JSON, CSV with a header, and Parquet
//! with several row groups, and checks every run against counts made here.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{committed_rows, eddy};
use datafusion::arrow::array::{Float64Array, Int64Array, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;

/// 2024-01-01 00:00:00 UTC.
const BASE_MS: i64 = 1_704_067_200_000;
const EVENTS: i64 = 3000;
const USERS: i64 = 13;

/// Event `i`: 100 ms apart, but each run of 7 steps back by 400 ms a step, so
/// nearly every line is earlier than the one before it, across any split
/// boundary too (at most 2.4 s out of order, within the 5 s watermark delay:
/// no row is late for any split).
fn event(i: i64) -> (i64, f64, i64) {
    (i % USERS, (i % 100) as f64 + 0.5, BASE_MS + 10_000 + i * 100 - (i % 7) * 400)
}

/// `(window_start as the sink writes it, user) -> (count, sum)` of 10 s tumbling windows.
type Windows = BTreeMap<(String, i64), (i64, f64)>;

/// The windows of the events, counted here.
fn expected() -> Windows {
    expected_of(EVENTS)
}

/// The windows of the first `events` events, counted here.
fn expected_of(events: i64) -> Windows {
    let mut out = BTreeMap::new();
    for i in 0..events {
        let (user, amount, ts) = event(i);
        let start = ts - ts.rem_euclid(10_000);
        let entry = out.entry((window_name(start), user)).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += amount;
    }
    out
}

fn window_name(start_ms: i64) -> String {
    let secs = (start_ms - BASE_MS) / 1000;
    format!("2024-01-01 {:02}:{:02}:{:02}.000", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The script of the TUMBLE query over `table_options` at parallelism N, written
/// to `dir` (`settings` before it), and the directory its windows go to.
fn tumble_script(dir: &Path, table_options: &str, parallelism: usize, settings: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = dir.join(format!("out-{parallelism}"));
    let insert = "INSERT INTO per_window SELECT window_start, user_id, COUNT(*), SUM(amount)
                  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
                  GROUP BY window_start, window_end, user_id;";
    let sql = format!(
        "SET 'parallelism' = '{parallelism}';
         {settings}
         CREATE TABLE events (user_id BIGINT, amount DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ({table_options}, 'scan.split.block-size' = '2KB', 'scan.batch-rows' = '64');
         CREATE TABLE per_window (window_start TIMESTAMP(3), user_id BIGINT, n BIGINT, total DOUBLE)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         EXPLAIN {insert}
         {insert}",
        out.display()
    );
    let script = dir.join(format!("run-{parallelism}.sql"));
    std::fs::write(&script, sql).expect("write script");
    (script, out)
}

/// The windows written to `out`, each once.
fn written_windows(out: &Path) -> Windows {
    let mut windows = BTreeMap::new();
    for row in committed_rows(out) {
        let key = (row["window_start"].as_str().expect("window_start").to_string(), row["user_id"].as_i64().expect("user_id"));
        let value = (row["n"].as_i64().expect("n"), row["total"].as_f64().expect("total"));
        assert!(windows.insert(key.clone(), value).is_none(), "window {key:?} written twice to {}", out.display());
    }
    windows
}

/// Runs the TUMBLE query over `table_options` with `eddy run` at parallelism N:
/// the windows it wrote, and the partitions EXPLAIN said it reads.
fn run(dir: &Path, table_options: &str, parallelism: usize) -> (Windows, String) {
    let (script, out) = tumble_script(dir, table_options, parallelism, "");
    // SET rather than `--parallelism`, which `eddy run` applies after the script's EXPLAIN.
    let output = eddy().arg("run").arg(&script).output().expect("run eddy");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    (written_windows(&out), stdout)
}

/// Checks `windows` against `expected`, each count exactly and each sum to rounding.
fn assert_windows(windows: &Windows, expected: &Windows, case: &str) {
    assert_eq!(windows.len(), expected.len(), "{case}");
    for (key, (n, total)) in expected {
        let got = windows.get(key).unwrap_or_else(|| panic!("window {key:?} missing: {case}"));
        assert_eq!(got.0, *n, "{key:?}: {case}");
        assert!((got.1 - total).abs() < 1e-6, "{key:?}: {case}: {} != {total}", got.1);
    }
}

/// Checks that parallelism 1, 2 and 3 all give the expected windows, with the file read whole, then in 2 and 3 splits.
fn same_windows_at_every_parallelism(dir: &Path, table_options: &str) {
    let expected = expected();
    for parallelism in [1, 2, 3] {
        let (windows, stdout) = run(dir, table_options, parallelism);
        let partitions = format!("Partitions of events (opened for {parallelism} task(s)): {parallelism}");
        assert!(stdout.contains(&partitions), "expected '{partitions}' in EXPLAIN:\n{stdout}");
        assert_windows(&windows, &expected, &format!("at parallelism {parallelism}"));
    }
}

/// Writes the first `events` events as a JSON file in `dir`: the table options that read it.
fn json_events(dir: &Path, events: i64) -> String {
    let file = dir.join("events.json");
    let lines: String = (0..events)
        .map(|i| {
            let (user, amount, ts) = event(i);
            format!("{{\"user_id\": {user}, \"amount\": {amount}, \"ts\": {ts}}}\n")
        })
        .collect();
    std::fs::write(&file, lines).expect("write events");
    format!("'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'", file.display())
}

#[test]
fn a_json_file_split_between_tasks_gives_the_windows_of_one_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    same_windows_at_every_parallelism(dir.path(), &json_events(dir.path(), EVENTS));
}

#[test]
fn a_csv_file_with_a_header_split_between_tasks_gives_the_windows_of_one_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("events.csv");
    let mut text = String::from("user_id,amount,ts\r\n");
    for i in 0..EVENTS {
        let (user, amount, ts) = event(i);
        text.push_str(&format!("{user},{amount},{ts}\r\n"));
    }
    std::fs::write(&file, text).expect("write events");
    same_windows_at_every_parallelism(
        dir.path(),
        &format!("'connector' = 'filesystem', 'path' = '{}', 'format' = 'csv', 'csv.header' = 'true'", file.display()),
    );
}

#[test]
fn a_parquet_file_split_by_row_groups_gives_the_windows_of_one_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("events.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
    ]));
    let events: Vec<(i64, f64, i64)> = (0..EVENTS).map(event).collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.0))),
            Arc::new(Float64Array::from_iter_values(events.iter().map(|e| e.1))),
            Arc::new(TimestampMillisecondArray::from_iter_values(events.iter().map(|e| e.2))),
        ],
    )
    .expect("batch");
    // 12 row groups of 250 rows.
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(250)).build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&file).expect("create"), schema, Some(props)).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    same_windows_at_every_parallelism(dir.path(), &format!("'connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet'", file.display()));
}

/// Killed (SIGKILL) after checkpoints while two tasks read a split JSON file, and
/// run again from the same checkpoint directory each time, the pipeline ends with
/// the windows of one clean run, each once: every split resumes at the record after
/// the last one its checkpoint covers.
#[test]
fn a_split_file_read_killed_after_checkpoints_resumes_where_each_split_was() {
    const MANY: i64 = 200_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = json_events(dir.path(), MANY);
    let (script, out) = tumble_script(dir.path(), &options, 2, "SET 'execution.checkpointing.interval' = '20 ms';");
    let checkpoints = dir.path().join("checkpoints");
    common::killed_at_then_finished(&script, &checkpoints, &["checkpoint-saved:3", "checkpoint-saved:2"]);
    assert_windows(&written_windows(&out), &expected_of(MANY), "after two kills");
}

/// An archive written to S3 by the filesystem sink (Parquet under Hive partition
/// directories, on the S3-compatible server the test command starts) is replayed by
/// a filesystem source on `s3://`: two tasks read the mirrored files, the windows are
/// those of the rows written, a second replay fetches nothing again, an object
/// deleted from the bucket is no longer read, and a filter on the partition column
/// fetches only that partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_in_s3_is_replayed_from_a_local_mirror() {
    use eddy_connectors::testing::{s3_create_bucket, s3_delete, s3_environment, unique_name, S3};
    const ROWS: i64 = 20_000;
    let endpoint = S3.shared();
    let bucket = unique_name("archive").replace('_', "-");
    s3_create_bucket(&endpoint, &bucket).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let run_with_cache = |name: &str, sql: String, cache: &Path| {
        let path = dir.path().join(format!("{name}.sql"));
        std::fs::write(&path, sql).expect("script");
        let output = eddy().arg("run").arg(&path).envs(s3_environment(&endpoint)).env("EDDY_CACHE", cache).output().expect("eddy run");
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let run = |name: &str, sql: String| run_with_cache(name, sql, &cache);
    let archive = |name: &str, watermark: &str| {
        format!(
            "CREATE TABLE {name} (id BIGINT, k BIGINT, ts TIMESTAMP(3), part BIGINT{watermark}) PARTITIONED BY (part)
               WITH ('connector' = 'filesystem', 'path' = 's3://{bucket}/archive', 'format' = 'parquet');"
        )
    };
    run(
        "write",
        format!(
            "SET 'parallelism' = '1';
             CREATE TABLE seq (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '{ROWS}', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0');
             {}
             INSERT INTO arch SELECT id, id % 5, TO_TIMESTAMP_LTZ({BASE_MS} + id * 100, 3), id % 3 FROM seq;",
            archive("arch", "")
        ),
    );
    let out = dir.path().join("out");
    let replay = |filter: &str| {
        format!(
            "SET 'parallelism' = '2';
             {}
             CREATE TABLE per_window (window_start TIMESTAMP(3), user_id BIGINT, n BIGINT, total DOUBLE)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO per_window SELECT window_start, k, COUNT(*), CAST(SUM(id) AS DOUBLE)
               FROM TABLE(TUMBLE(TABLE replayed, DESCRIPTOR(ts), INTERVAL '10' SECOND)) {filter} GROUP BY window_start, window_end, k;",
            archive("replayed", ", WATERMARK FOR ts AS ts - INTERVAL '1' HOUR"),
            out.display()
        )
    };
    let expected_of = |wanted: &dyn Fn(i64) -> bool| {
        let mut expected: Windows = BTreeMap::new();
        for id in (0..ROWS).filter(|id| wanted(*id)) {
            let ts = BASE_MS + id * 100;
            let entry = expected.entry((window_name(ts - ts.rem_euclid(10_000)), id % 5)).or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 += id as f64;
        }
        expected
    };
    let expected = expected_of(&|_| true);
    run("replay", replay(""));
    assert_windows(&written_windows(&out), &expected, "replayed from S3");
    // The mirror holds the three partitions' files; a second replay fetches none again.
    let mirrored: Vec<(std::path::PathBuf, std::time::SystemTime)> = walk(&cache.join("s3-mirror").join(&bucket))
        .into_iter()
        .map(|p| {
            let modified = std::fs::metadata(&p).and_then(|m| m.modified()).expect("mirrored file");
            (p, modified)
        })
        .collect();
    let partitions: std::collections::BTreeSet<String> =
        mirrored.iter().filter_map(|(p, _)| p.parent()?.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    assert_eq!(partitions, ["part=0", "part=1", "part=2"].map(String::from).into(), "{mirrored:?}");
    std::fs::remove_dir_all(&out).expect("clear the output");
    run("replay-again", replay(""));
    assert_windows(&written_windows(&out), &expected, "replayed again");
    for (path, modified) in &mirrored {
        assert_eq!(std::fs::metadata(path).and_then(|m| m.modified()).ok().as_ref(), Some(modified), "{} was fetched again", path.display());
    }
    // An object deleted from the bucket is not replayed: its copy goes too.
    let gone = mirrored.iter().map(|(p, _)| p.clone()).find(|p| p.to_string_lossy().contains("/part=2/")).expect("a part=2 copy");
    let key = gone.strip_prefix(cache.join("s3-mirror").join(&bucket)).expect("in the mirror").to_string_lossy().into_owned();
    s3_delete(&endpoint, &bucket, &key).await;
    std::fs::remove_dir_all(&out).expect("clear the output");
    run("replay-after-delete", replay(""));
    assert_windows(&written_windows(&out), &expected_of(&|id| id % 3 != 2), "replayed after part=2 was deleted");
    assert!(!gone.exists(), "the copy of a deleted object is deleted");
    // A filter on the partition column: only that partition's objects are fetched
    // (into a fresh mirror) and read; the rows are those of the partition.
    std::fs::remove_dir_all(&out).expect("clear the output");
    let fresh = dir.path().join("fresh-cache");
    run_with_cache("replay-one-partition", replay("WHERE part = 1"), &fresh);
    assert_windows(&written_windows(&out), &expected_of(&|id| id % 3 == 1), "replayed with WHERE part = 1");
    let fetched: Vec<std::path::PathBuf> = walk(&fresh.join("s3-mirror").join(&bucket));
    assert!(!fetched.is_empty() && fetched.iter().all(|p| p.to_string_lossy().contains("/part=1/")), "{fetched:?}");
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
