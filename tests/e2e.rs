//! End-to-end: runs the real `eddy` binary on scripts and checks what it writes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{committed_ids, eddy, read_parquet_dir};
use datafusion::arrow::array::{Array, Int64Array, TimestampMillisecondArray};

fn script(dir: &Path, sql: &str) -> std::path::PathBuf {
    let path = dir.join("pipeline.sql");
    std::fs::write(&path, sql).expect("write script");
    path
}

#[test]
fn run_writes_window_results_to_parquet_and_routes_late_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("per_window");
    let late = dir.path().join("late");
    let sql = format!(
        "CREATE TABLE late_bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = '{late}', 'format' = 'json');
         CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'filesystem', 'path' = 'tests/data/bids.json', 'format' = 'json', 'late.sink' = 'late_bids');
         CREATE TABLE per_window (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, top BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'parquet');
         INSERT INTO per_window
         SELECT window_start, auction, COUNT(*), MAX(price)
         FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, auction;",
        late = late.display(),
        out = out.display()
    );
    let output = eddy().arg("run").arg(script(dir.path(), &sql)).output().expect("run eddy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "eddy run failed: {stderr}");
    // One summary line with the counts: 9 rows read, 4 window rows written, 1 late row.
    assert!(stderr.contains("1 pipeline(s) finished: 9 rows in, 4 rows out, 1 late rows dropped, 0 malformed records"), "{stderr}");

    let mut rows = BTreeSet::new();
    for batch in read_parquet_dir(&out) {
        let start = batch.column(0).as_any().downcast_ref::<TimestampMillisecondArray>().expect("ts");
        let auction = batch.column(1).as_any().downcast_ref::<Int64Array>().expect("auction");
        let bids = batch.column(2).as_any().downcast_ref::<Int64Array>().expect("bids");
        let top = batch.column(3).as_any().downcast_ref::<Int64Array>().expect("top");
        for i in 0..batch.num_rows() {
            rows.insert((start.value(i), auction.value(i), bids.value(i), top.value(i)));
        }
    }
    // 2024-01-01T00:00:00Z = 1704067200000 ms; expected rows worked out by hand from tests/data/bids.json.
    let t0 = 1_704_067_200_000i64;
    let expected: BTreeSet<_> = [(t0, 1, 4, 130), (t0, 2, 1, 50), (t0 + 10_000, 2, 1, 70), (t0 + 20_000, 3, 2, 15)].into_iter().collect();
    assert_eq!(rows, expected);

    let late_rows: String = std::fs::read_dir(&late).expect("late dir").map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read")).collect();
    assert_eq!(late_rows.lines().count(), 1, "{late_rows}");
    assert!(late_rows.contains("\"price\":80"), "{late_rows}");
}

#[test]
fn malformed_records_are_counted_reported_and_do_not_stop_the_pipeline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sql = "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3))
                 WITH ('connector' = 'filesystem', 'path' = 'tests/data/bad_bids.json', 'format' = 'json');
               CREATE TABLE out (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
               INSERT INTO out SELECT auction, price FROM bids;";
    let output = eddy().arg("run").arg(script(dir.path(), sql)).output().expect("run eddy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("2 rows in, 2 rows out, 0 late rows dropped, 2 malformed records"), "{stderr}");
    // Each bad record is reported with its position (file and line).
    assert!(stderr.contains("bad_bids.json:2"), "{stderr}");
    assert!(stderr.contains("bad_bids.json:3"), "{stderr}");
}

#[test]
fn sql_errors_name_line_and_column_and_exit_non_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sql = "CREATE TABLE t (a BIGINT)\n  WITH ('connector' = 'filesystem', 'path' = 'x.json', 'format' = 'json');\nSELECT a FROM t WHERE;";
    let output = eddy().arg("run").arg(script(dir.path(), sql)).output().expect("run eddy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("syntax error at line 3, column 22"), "{stderr}");
}

#[test]
fn a_script_of_table_less_selects_prints_their_answers_with_flink_column_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = eddy().arg("run").arg(script(dir.path(), "SELECT 1 + 1, UPPER('a') AS up, 7;")).output().expect("run eddy");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let header: Vec<&str> = stdout.lines().find(|l| l.contains("up")).expect("a header line").split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, vec!["EXPR$0", "up", "EXPR$2"], "{stdout}");
    let row: Vec<&str> = stdout.lines().find(|l| l.contains(" A ")).expect("the row").split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(row, vec!["2", "A", "7"], "{stdout}");
    assert!(!stderr.contains("nothing to run"), "the script answered a query: {stderr}");
    // A script with nothing to answer or run still says so.
    let output = eddy().arg("run").arg(script(dir.path(), "SET 'parallelism' = '1';")).output().expect("run eddy");
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing to run"));
}

#[test]
fn demo_runs_for_a_duration_and_writes_parquet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("eddy-demo");
    let output = eddy().args(["demo", "--duration", "5s", "--out"]).arg(&out).output().expect("run eddy demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for table in ["bids_per_auction", "hot_items", "bidder_sessions"] {
        let rows: usize = read_parquet_dir(&out.join(table)).iter().map(|b| b.num_rows()).sum();
        assert!(rows > 0, "demo wrote no rows to {table}: {stderr}");
    }
    // Live output: progress with throughput on stderr, sample rows on stdout.
    assert!(stderr.contains("/s)"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("[bids_per_auction]"));
}

#[test]
fn an_unbounded_pipeline_publishes_part_files_at_every_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let sql = format!(
        "SET 'parallelism' = '1';
         SET 'execution.checkpointing.interval' = '300 ms';
         CREATE TABLE gen (id BIGINT, v BIGINT)
           WITH ('connector' = 'datagen', 'rows-per-second' = '2000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0');
         CREATE TABLE out (id BIGINT, v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out SELECT id, v FROM gen;",
        out.display()
    );
    let mut child = eddy().arg("run").arg(script(dir.path(), &sql)).stdout(std::process::Stdio::null()).spawn().expect("start eddy");
    // The source never ends: only checkpoints can make part files visible.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut files = 0;
    while files < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        files = std::fs::read_dir(&out).map(|d| d.filter_map(|e| e.ok()).filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count()).unwrap_or(0);
    }
    // Killed without warning: what is visible must still be whole checkpoints.
    let _ = child.kill();
    let _ = child.wait();
    assert!(files >= 3, "no part files were published while the pipeline ran");
    let ids = committed_ids(&out);
    assert!(!ids.is_empty());
    assert_eq!(ids, (0..ids.len() as i64).collect::<Vec<_>>(), "committed rows are exactly a prefix of the sequence");
}

#[test]
fn an_updating_group_by_is_refused_by_an_append_only_sink() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sql = format!(
        "CREATE TABLE gen (page BIGINT) WITH ('connector' = 'datagen', 'fields.page.min' = '0', 'fields.page.max' = '9');
         CREATE TABLE views (page BIGINT, n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO views SELECT page, COUNT(*) FROM gen GROUP BY page;",
        dir.path().join("views").display()
    );
    let output = eddy().arg("run").arg(script(dir.path(), &sql)).output().expect("run eddy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("its rows are updates of earlier rows; connector 'filesystem' only appends"), "{stderr}");
}

#[test]
fn the_progress_line_reports_the_last_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sql = "SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '1000');
         CREATE TABLE sink (id BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT id FROM gen;";
    let child = eddy()
        .arg("run")
        .arg(script(dir.path(), sql))
        .args(["--progress-secs", "1", "--checkpoint-dir"])
        .arg(dir.path().join("checkpoints"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start eddy");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let mut child = child;
    let _ = child.kill();
    let output = child.wait_with_output().expect("eddy output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().rev().find(|l| l.contains("rows in")).unwrap_or_default();
    assert!(line.contains("  checkpoint ") && line.contains(" ms, "), "{stderr}");
}

/// A script resumed after a crash does not run again a pipeline that had already
/// finished (its rows would be written twice); once all have finished, running the
/// script again with the same checkpoints says so and writes nothing.
#[test]
fn a_resumed_script_skips_the_pipelines_that_had_finished() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (quick, slow, checkpoints) = (dir.path().join("quick"), dir.path().join("slow"), dir.path().join("checkpoints"));
    let sql = format!(
        "SET 'parallelism' = '1';
         SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE few (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '100', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0');
         CREATE TABLE many (id BIGINT)
           WITH ('connector' = 'datagen', 'rows-per-second' = '1000', 'number-of-rows' = '3000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0');
         CREATE TABLE quick_out (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE slow_out (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO quick_out SELECT id FROM few;
         INSERT INTO slow_out SELECT id FROM many;",
        quick.display(),
        slow.display()
    );
    let script = script(dir.path(), &sql);
    let run = || {
        eddy()
            .arg("run")
            .arg(&script)
            .arg("--checkpoint-dir")
            .arg(&checkpoints)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start eddy")
    };
    let mut first = common::Running(run());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while (committed_ids(&quick).len() < 100 || common::newest_checkpoint(&checkpoints) == 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(committed_ids(&quick).len(), 100, "the quick pipeline finished");
    first.kill();
    assert!(committed_ids(&slow).len() < 3000, "the slow pipeline was interrupted");

    let resumed = run().wait_with_output().expect("eddy run");
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("quick_out (line 8) already ran to its end with these checkpoints; not running it again"), "{stderr}");
    assert_eq!(committed_ids(&quick), (0..100).collect::<Vec<_>>(), "the finished pipeline's rows are there once");
    assert_eq!(committed_ids(&slow), (0..3000).collect::<Vec<_>>(), "the interrupted one resumed without loss or duplicates");

    // Everything finished: running the script again with the same checkpoints reads nothing.
    let again = run().wait_with_output().expect("eddy run");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("every pipeline of this script already ran to its end"), "{stderr}");
    assert_eq!((committed_ids(&quick).len(), committed_ids(&slow).len()), (100, 3000), "a completed script writes nothing again");
}

/// Restoring state over a source that starts over would count its rows twice, so
/// the run is refused, and the message suggests the sources that can resume as the
/// connector registry lists them (the runtime names no connector of its own).
#[test]
fn state_restored_over_a_source_that_cannot_resume_is_refused_naming_the_ones_that_can() {
    let dir = tempfile::tempdir().expect("temp dir");
    let checkpoints = dir.path().join("checkpoints");
    let sql = "SET 'execution.checkpointing.interval' = '100 ms';
         CREATE TABLE person WITH ('connector' = 'nexmark', 'nexmark.table' = 'person', 'events.rate' = '1000');
         CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT id FROM person;";
    let script = script(dir.path(), sql);
    let run = |kill_at: Option<&str>| common::run_with_checkpoints(&script, &checkpoints, kill_at);
    // The source never ends, so the first saved checkpoint always comes, and the process dies there.
    let killed = run(Some("checkpoint-saved:1"));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed.status), Some(9), "{}", String::from_utf8_lossy(&killed.stderr));

    let restarted = run(None);
    let stderr = String::from_utf8_lossy(&restarted.stderr);
    assert!(!restarted.status.success(), "{stderr}");
    let resumable = eddy_engine::connector::resumable_connectors(eddy_connectors::CONNECTORS);
    assert_eq!(resumable, "filesystem, kafka, nexmark bids, datagen");
    assert!(
        stderr.contains(&format!(
            "connector 'nexmark' cannot resume from a checkpoint, and its pipeline's state was restored from one; remove the pipeline's checkpoint directory to start over, or use a source that can resume ({resumable})"
        )),
        "{stderr}"
    );
}

/// Checkpoints in an S3 bucket (`--checkpoint-dir s3://bucket/prefix`, here on an
/// S3-compatible server): a pipeline killed after some checkpoints resumes from the
/// bucket, and the file sink ends with every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_in_an_s3_bucket_survive_a_kill() {
    use eddy_connectors::testing::{s3_create_bucket, s3_environment, s3_keys, unique_name, S3};
    let endpoint = S3.shared();
    let bucket = unique_name("checkpoints").replace('_', "-");
    s3_create_bucket(&endpoint, &bucket).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let sql = format!(
        "SET 'parallelism' = '1';
         SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE seq (id BIGINT)
           WITH ('connector' = 'datagen', 'rows-per-second' = '2000', 'number-of-rows' = '8000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0');
         CREATE TABLE out (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out SELECT id FROM seq;",
        out.display()
    );
    let script = script(dir.path(), &sql);
    let location = format!("s3://{bucket}/pipelines");
    let run = || {
        let mut command = eddy();
        command.arg("run").arg(&script).arg("--checkpoint-dir").arg(&location).envs(s3_environment(&endpoint));
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        command
    };
    let mut first = common::Running::start(&mut run());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let complete = |keys: &[String]| keys.iter().filter(|k| k.ends_with("/_COMPLETE")).count();
    // The server's file backend also lists directories, as keys ending in '/'.
    let objects = |keys: Vec<String>| keys.into_iter().filter(|k| !k.ends_with('/')).collect::<Vec<_>>();
    while complete(&s3_keys(&endpoint, &bucket, "pipelines/").await) < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    first.kill();
    let saved = objects(s3_keys(&endpoint, &bucket, "pipelines/").await);
    assert!(complete(&saved) >= 2, "checkpoints are objects in the bucket: {saved:?}");
    assert!(saved.iter().all(|k| k.starts_with("pipelines/out-line6/chk-")), "{saved:?}");
    let before = committed_ids(&out).len();
    assert!(before < 8000, "killed before the end");

    let resumed = run().output().expect("eddy run");
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(committed_ids(&out), (0..8000).collect::<Vec<_>>(), "resumed from the bucket without loss or duplicates");
    let left = objects(s3_keys(&endpoint, &bucket, "pipelines/").await);
    assert_eq!(left, vec!["pipelines/out-line6/_FINISHED".to_string()], "a finished script leaves only its completion record behind");
}

/// Runs `script` with stdout a pipe its reader closes after `lines` lines;
/// returns the exit status and stderr.
fn run_into_a_closing_pipe(script: &Path, lines: usize) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, Read};
    let mut child = eddy()
        .arg("run")
        .arg(script)
        .args(["--progress-secs", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start eddy");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    for _ in 0..lines {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read a line");
    }
    // As `head -3` does: the reader goes away while Eddy still has rows to print.
    drop(stdout);
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    (child.wait().expect("wait"), stderr)
}

#[test]
fn eddy_run_exits_quietly_when_the_reader_of_its_output_goes_away() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Far more rows than a pipe buffers, so Eddy is still printing when the reader leaves.
    let sql = "CREATE TABLE gen (id BIGINT, name STRING) WITH ('connector' = 'datagen', 'rows-per-second' = '0', 'number-of-rows' = '200000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0');
               SELECT id, name FROM gen;";
    let (status, stderr) = run_into_a_closing_pipe(&script(dir.path(), sql), 3);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe") && !stderr.contains("backtrace"), "{stderr}");
    assert_eq!(stderr, "", "nothing to say when the reader has what it wanted");
    // 141, as a shell shows for a program SIGPIPE ended; not 101 (a panic) nor 134 (an abort).
    assert_eq!(status.code(), Some(141), "{status}");

    // Rows a statement answers at once (SHOW TABLES, EXPLAIN) go through another path.
    let sql = "CREATE TABLE t (a BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
               SHOW TABLES;
               EXPLAIN SELECT a FROM t;";
    let (status, stderr) = run_into_a_closing_pipe(&script(dir.path(), sql), 0);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(status.code(), Some(141), "{status} {stderr}");
}

/// Issue 17 (leftover of issue 16): the `print` connector writes to stdout on its
/// own, and a closed stdout failed its pipeline ("Broken pipe", exit 1). It stops
/// as quietly as a bare SELECT's output does.
#[test]
fn the_print_connector_stops_quietly_when_the_reader_of_its_output_goes_away() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sql = "CREATE TABLE gen (id BIGINT, name STRING) WITH ('connector' = 'datagen', 'rows-per-second' = '0', 'number-of-rows' = '200000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0');
               CREATE TABLE out (id BIGINT, name STRING) WITH ('connector' = 'print');
               INSERT INTO out SELECT id, name FROM gen;";
    let (status, stderr) = run_into_a_closing_pipe(&script(dir.path(), sql), 1);
    assert!(!stderr.contains("Broken pipe") && !stderr.contains("failed") && !stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "", "nothing to say when the reader has what it wanted");
    assert_eq!(status.code(), Some(141), "{status}");
}

/// Runs `sql` with `eddy run`: (exit code, stderr).
fn run_script(dir: &Path, sql: &str) -> (Option<i32>, String) {
    let output = eddy().arg("run").arg(script(dir, sql)).output().expect("run eddy");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn input_problems_are_malformed_records_that_name_column_and_value_and_lose_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("bids.csv");
    // Line 2 opens a quote it never closes; line 4 has epoch milliseconds (as JSON
    // accepts); line 5 a timestamp nobody can read.
    std::fs::write(
        &csv,
        "1,100,2024-01-01 00:00:01\n2,\"200,2024-01-01 00:00:02\n3,300,2024-01-01 00:00:03\n4,400,1704067204000\n5,500,tomorrow\n6,600,2024-01-01 00:00:06\n",
    )
    .expect("write csv");
    let json = dir.path().join("bids.json");
    std::fs::write(&json, "{\"auction\": 7, \"price\": 700}\n{\"auction\": 8, \"price\": 5.5}\n").expect("write json");
    let bad = dir.path().join("bad");
    let out = dir.path().join("out");
    let json_out = dir.path().join("json_out");
    let sql = format!(
        "CREATE TABLE bad_records (source STRING, position STRING, error STRING, raw STRING)
           WITH ('connector' = 'filesystem', 'path' = '{bad}', 'format' = 'json');
         CREATE TABLE csv_bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = '{csv}', 'format' = 'csv', 'malformed.sink' = 'bad_records');
         CREATE TABLE json_bids (auction BIGINT, price BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{json}', 'format' = 'json', 'malformed.sink' = 'bad_records');
         CREATE TABLE out (auction BIGINT, price BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
         CREATE TABLE json_out (auction BIGINT, price BIGINT) WITH ('connector' = 'filesystem', 'path' = '{json_out}', 'format' = 'json');
         INSERT INTO out SELECT auction, price, ts FROM csv_bids;
         INSERT INTO json_out SELECT auction, price FROM json_bids;",
        bad = bad.display(),
        csv = csv.display(),
        json = json.display(),
        out = out.display(),
        json_out = json_out.display()
    );
    let (code, stderr) = run_script(dir.path(), &sql);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("2 pipeline(s) finished: 5 rows in, 5 rows out, 0 late rows dropped, 3 malformed records"), "{stderr}");

    // Every valid line is read, the ones after the bad quote too; epoch ms is a timestamp.
    let mut rows: Vec<(i64, i64, String)> = common::committed_rows(&out)
        .iter()
        .map(|r| (r["auction"].as_i64().expect("auction"), r["price"].as_i64().expect("price"), r["ts"].as_str().expect("ts").to_string()))
        .collect();
    rows.sort();
    let ts = |s: u32| format!("2024-01-01 00:00:0{s}.000");
    assert_eq!(rows, vec![(1, 100, ts(1)), (3, 300, ts(3)), (4, 400, ts(4)), (6, 600, ts(6))]);
    let json_rows: Vec<(i64, i64)> =
        common::committed_rows(&json_out).iter().map(|r| (r["auction"].as_i64().expect("auction"), r["price"].as_i64().expect("price"))).collect();
    assert_eq!(json_rows, vec![(7, 700)]);

    // The three bad records went to the dead-letter table, each with its line and a
    // message naming the column and the value; 5.5 was not stored as 5.
    let mut dead: Vec<(String, String, String)> = common::committed_rows(&bad)
        .iter()
        .map(|r| {
            let position = r["position"].as_str().expect("position");
            let line = position.rsplit(':').next().expect("line").to_string();
            (
                r["source"].as_str().expect("source").to_string() + ":" + &line,
                r["error"].as_str().expect("error").to_string(),
                r["raw"].as_str().expect("raw").to_string(),
            )
        })
        .collect();
    dead.sort();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!((dead[0].0.as_str(), dead[0].2.as_str()), ("csv_bids:2", "2,\"200,2024-01-01 00:00:02"));
    assert!(dead[0].1.starts_with("unbalanced quote"), "{}", dead[0].1);
    assert_eq!((dead[1].0.as_str(), dead[1].2.as_str()), ("csv_bids:5", "5,500,tomorrow"));
    assert!(dead[1].1.starts_with("column 'ts' (TIMESTAMP(3)): cannot read \"tomorrow\""), "{}", dead[1].1);
    assert_eq!(dead[2].0, "json_bids:2");
    assert!(dead[2].1.starts_with("column 'price' (BIGINT): cannot read \"5.5\": not a whole number"), "{}", dead[2].1);
    // The warning printed for each also names the file and line.
    assert!(stderr.contains(&format!("{}:5", csv.display())) && stderr.contains("\"tomorrow\""), "{stderr}");
}

#[test]
fn rows_with_a_null_event_time_are_counted_as_such_not_as_late() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("bids.json");
    std::fs::write(
        &input,
        "{\"auction\": 1, \"ts\": \"2024-01-01 00:00:01\"}\n{\"auction\": 2, \"ts\": null}\n{\"auction\": 3}\n{\"auction\": 4, \"ts\": \"2024-01-01 00:00:20\"}\n{\"auction\": 5, \"ts\": \"2024-01-01 00:00:02\"}\n",
    )
    .expect("write input");
    let sql = format!(
        "CREATE TABLE bids (auction BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE out (window_start TIMESTAMP(3), n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end;",
        input.display()
    );
    let (code, stderr) = run_script(dir.path(), &sql);
    assert_eq!(code, Some(0), "{stderr}");
    // Auction 5 (00:00:02) came after the watermark passed 00:00:15: late. Auctions 2 and 3 have no time.
    assert!(stderr.contains("5 rows in, 2 rows out, 1 late rows dropped, 2 rows with a NULL event time dropped, 0 malformed records"), "{stderr}");
}

#[test]
fn a_run_that_read_nothing_valid_says_so_and_exits_non_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv_as_json = dir.path().join("bids.json");
    std::fs::write(&csv_as_json, "1,100\n2,200\n").expect("write input");
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "").expect("write input");
    let good = dir.path().join("good.json");
    std::fs::write(&good, "{\"auction\": 1}\n").expect("write input");
    let table = |name: &str, path: &Path| {
        format!("CREATE TABLE {name} (auction BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');", path.display())
    };
    let sink = "CREATE TABLE out (auction BIGINT) WITH ('connector' = 'blackhole');";

    // Every record malformed: the summary, then an error naming the table; exit 1.
    let (code, stderr) = run_script(dir.path(), &format!("{}{sink} INSERT INTO out SELECT auction FROM bids;", table("bids", &csv_as_json)));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("0 rows in, 0 rows out, 0 late rows dropped, 2 malformed records"), "{stderr}");
    assert!(stderr.contains("nothing valid was read from `bids` (2 malformed records)"), "{stderr}");
    // An empty input, and a filter that drops every valid row, are not failures.
    let (code, stderr) = run_script(dir.path(), &format!("{}{sink} INSERT INTO out SELECT auction FROM empty;", table("empty", &empty)));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = run_script(dir.path(), &format!("{}{sink} INSERT INTO out SELECT auction FROM good WHERE auction > 1;", table("good", &good)));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("1 rows in, 0 rows out"), "{stderr}");
}
