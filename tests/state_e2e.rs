//! End to end: guards on a pipeline's state, with the real `eddy` binary. A window
//! that puts every row into very many windows is warned about at planning (by
//! `eddy run` and to `eddy sql` clients); the state a pipeline holds shows in the
//! progress line and in `GetPipeline`; `'pipeline.state.max-memory'` fails a
//! pipeline that outgrows it with a message that says what to do.
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{eddy, Server};
use eddy_proto::PipelineRef;

fn script(dir: &Path, sql: &str) -> std::path::PathBuf {
    let path = dir.join("pipeline.sql");
    std::fs::write(&path, sql).unwrap();
    path
}

fn bids_path() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bids.json").display().to_string()
}

/// A HOP of one day sliding every minute puts each row into 24 * 60 = 1440
/// windows; a HOP of 10 s sliding every 5 s into 2, which is not worth a word.
#[test]
fn a_window_that_multiplies_rows_is_warned_about_at_planning() {
    let dir = tempfile::tempdir().unwrap();
    let sql = format!(
        "CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE wide (window_start TIMESTAMP(3), n BIGINT) WITH ('connector' = 'blackhole');
         CREATE TABLE narrow (window_start TIMESTAMP(3), n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO wide SELECT window_start, COUNT(*)
           FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' DAY)) GROUP BY window_start, window_end;
         INSERT INTO narrow SELECT window_start, COUNT(*)
           FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) GROUP BY window_start, window_end;",
        bids_path()
    );
    let output = eddy().arg("run").arg(script(dir.path(), &sql)).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with("eddy: warning: wide (line 5): HOP with a size of 1 day sliding every 1 min puts every row into 1440 windows (more than 100)"),
        "{stderr}"
    );
    assert!(warnings[0].contains("SET 'pipeline.state.max-memory'"), "{stderr}");
}

/// The same warning reaches an `eddy sql` client, which prints it as psql prints a
/// WARNING; the statement is still accepted.
#[test]
fn a_server_returns_the_warning_to_the_client() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&format!(
        "CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE wide (window_start TIMESTAMP(3), n BIGINT) WITH ('connector' = 'blackhole')",
        bids_path()
    ));
    let (code, stdout, stderr) = server.sql(&[
        "-c",
        "INSERT INTO wide SELECT window_start, COUNT(*) FROM TABLE(CUMULATE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '1' HOUR)) GROUP BY window_start, window_end",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("INSERT (pipeline "), "{stdout}");
    assert!(stderr.contains("WARNING:  CUMULATE up to 1 h in steps of 1 s puts every row into 3600 windows (more than 100)"), "{stderr}");
    server.terminate();
}

/// 300,000 distinct keys kept by a GROUP BY until the end of a bounded input.
const MANY_KEYS: &str = "CREATE TABLE gen (k BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '300000', 'rows-per-second' = '0',
       'fields.k.kind' = 'sequence', 'fields.k.start' = '1', 'fields.k.end' = '300000');
     CREATE TABLE per_key (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
     INSERT INTO per_key SELECT k, COUNT(*) FROM gen GROUP BY k;";

#[test]
fn a_pipeline_over_its_state_limit_fails_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let limited = format!("SET 'pipeline.state.max-memory' = '1 mb';\n{MANY_KEYS}");
    let output = eddy().args(["run", "--parallelism", "2"]).arg(script(dir.path(), &limited)).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let message = stderr.lines().find(|l| l.starts_with("eddy: pipeline `per_key` failed: it holds ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(message.contains(" MB of state, over 'pipeline.state.max-memory' = 1.0 MB. Raise the limit"), "{message}");
    assert!(message.contains("fewer distinct GROUP BY keys"), "{message}");
    // Held: more than the limit, and no more than the last batch could add to it.
    let held: f64 = message.split("it holds ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    // (Shown to one decimal: a state just over 1 MB reads "1.0 MB".)
    assert!((1.0..64.0).contains(&held), "{message}");

    // The same script under a limit it fits in runs to its end.
    let roomy = format!("SET 'pipeline.state.max-memory' = '1 gb';\n{MANY_KEYS}");
    let output = eddy().args(["run", "--parallelism", "2"]).arg(script(dir.path(), &roomy)).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("300000 rows in, 300000 rows out"), "{stderr}");
}

#[test]
fn a_bad_state_limit_is_refused_with_the_accepted_form() {
    let dir = tempfile::tempdir().unwrap();
    let output = eddy().arg("run").arg(script(dir.path(), &format!("SET 'pipeline.state.max-memory' = 'lots';\n{MANY_KEYS}"))).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("setting 'pipeline.state.max-memory' = 'lots': expected a memory size such as '512 mb'"), "{stderr}");
}

/// The progress line of `eddy run` shows the state the pipeline holds: a GROUP BY
/// over never-repeating keys, whose state only grows.
#[test]
fn the_progress_line_shows_the_state_size() {
    let dir = tempfile::tempdir().unwrap();
    let sql = "CREATE TABLE gen (k BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '20000', 'fields.k.kind' = 'sequence', 'fields.k.start' = '1');
         CREATE TABLE per_key (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO per_key SELECT k, COUNT(*) FROM gen GROUP BY k;";
    let mut child = eddy().arg("run").arg(script(dir.path(), sql)).args(["--progress-secs", "1"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let mut state = None;
    // Progress lines come once a second; the state grows from the first rows on.
    for line in stderr.lines().map_while(Result::ok).filter(|l| l.contains("rows in")).take(5) {
        seen.push(line.clone());
        state = line.split("  state ").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string).filter(|s| s != "0B");
        if state.is_some() {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let state = state.unwrap_or_else(|| panic!("no progress line with a state size: {seen:?}"));
    assert!(state.ends_with("kB") || state.ends_with("MB"), "{state}");
}

/// On a server the limit is a session setting like any other: the pipeline started
/// under it fails with the message, which `GetPipeline` shows; an INSERT INTO
/// pipeline reports the bytes its operators hold.
#[test]
fn a_server_pipeline_reports_its_state_and_fails_over_the_limit() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok("CREATE TABLE gen (k BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '50000', 'fields.k.kind' = 'sequence', 'fields.k.start' = '1');
         CREATE TABLE per_key (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
         CREATE TABLE per_key_limited (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO per_key SELECT k, COUNT(*) FROM gen GROUP BY k;
         SET 'pipeline.state.max-memory' = '2 mb';
         INSERT INTO per_key_limited SELECT k, COUNT(*) FROM gen GROUP BY k");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut client = runtime.block_on(eddy::client::connect(&server.address, None)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (unlimited, limited) = loop {
        let unlimited = runtime.block_on(client.get_pipeline(PipelineRef { id: "per_key".into() })).unwrap().into_inner();
        let limited = runtime.block_on(client.get_pipeline(PipelineRef { id: "per_key_limited".into() })).unwrap().into_inner();
        if limited.status != "RUNNING" && unlimited.state_bytes > 0 {
            break (unlimited, limited);
        }
        assert!(Instant::now() < deadline, "the limited pipeline did not fail: {limited:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(limited.status, "FAILED", "{limited:?}");
    assert!(limited.error.contains("over 'pipeline.state.max-memory' = 2.0 MB. Raise the limit"), "{limited:?}");
    assert_eq!(unlimited.status, "RUNNING", "{unlimited:?}");
    server.terminate();
}

/// Window state that no longer changes is stored once per checkpoint store
/// (`lasting/`) and only referred to by later checkpoints: killed (SIGKILL) after
/// checkpoints that stored such parts, and run again from them twice, a HOP
/// aggregate ends with the windows counted here, each once. The threshold is 1 byte,
/// so every closed slice and every part an open slice froze at a barrier is
/// stored apart, as a large state's are.
#[test]
fn window_state_stored_once_is_restored_after_kills() {
    const EVENTS: i64 = 400_000;
    const USERS: i64 = 500;
    /// 2024-01-01 00:00:00 UTC.
    const BASE_MS: i64 = 1_704_067_200_000;
    let dir = tempfile::tempdir().unwrap();
    // 10 ms apart, each run of 7 stepping back by 40 ms a step: out of order within the 1 s watermark delay.
    let event = |i: i64| (i % USERS, BASE_MS + 10_000 + i * 10 - (i % 7) * 40);
    let input = dir.path().join("events.json");
    let lines: String = (0..EVENTS).map(|i| format!("{{\"user_id\": {}, \"ts\": {}}}\n", event(i).0, event(i).1)).collect();
    std::fs::write(&input, lines).unwrap();
    let out = dir.path().join("out");
    let path = script(
        dir.path(),
        &format!(
            "SET 'parallelism' = '2';
             SET 'execution.checkpointing.interval' = '20 ms';
             SET 'state.storage.fs.memory-threshold' = '1 b';
             CREATE TABLE events (user_id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json', 'scan.batch-rows' = '64');
             CREATE TABLE per_window (window_start TIMESTAMP(3), user_id BIGINT, n BIGINT)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO per_window SELECT window_start, user_id, COUNT(*)
               FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND))
               GROUP BY window_start, window_end, user_id;",
            input.display(),
            out.display()
        ),
    );
    let checkpoints = dir.path().join("checkpoints");
    let killed = common::run_with_checkpoints(&path, &checkpoints, Some("checkpoint-saved:3"));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed.status), Some(9), "not killed:\n{}", String::from_utf8_lossy(&killed.stderr));
    let stored = walkdir(&checkpoints).into_iter().filter(|p| p.parent().and_then(|d| d.file_name()).is_some_and(|n| n == "lasting")).count();
    assert!(stored > 0, "the killed run stored no lasting part under {}", checkpoints.display());
    common::killed_at_then_finished(&path, &checkpoints, &["checkpoint-saved:2"]);

    let mut expected = std::collections::BTreeMap::new();
    for i in 0..EVENTS {
        let (user, ts) = event(i);
        let last_start = ts - ts.rem_euclid(1_000);
        for start in [last_start - 2_000, last_start - 1_000, last_start] {
            let secs = (start - BASE_MS) / 1000;
            let name = format!("2024-01-01 {:02}:{:02}:{:02}.000", secs / 3600, secs / 60 % 60, secs % 60);
            *expected.entry((name, user)).or_insert(0) += 1;
        }
    }
    let mut written = std::collections::BTreeMap::new();
    for row in common::committed_rows(&out) {
        let key = (row["window_start"].as_str().unwrap().to_string(), row["user_id"].as_i64().unwrap());
        assert!(written.insert(key.clone(), row["n"].as_i64().unwrap()).is_none(), "window {key:?} written twice");
    }
    assert_eq!(written.len(), expected.len());
    let differ: Vec<_> = expected.iter().filter(|(k, n)| written.get(*k) != Some(*n)).take(5).map(|(k, n)| (k.clone(), *n, written.get(k).copied())).collect();
    assert!(differ.is_empty(), "windows differ from those counted here (window, expected, written): {differ:?}");
}

/// Every file under `dir`, at any depth.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.filter_map(|e| e.ok()).flat_map(|e| if e.path().is_dir() { walkdir(&e.path()) } else { vec![e.path()] }).collect()
}
