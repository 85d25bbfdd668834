//! End to end: what `eddy run` shows while it runs. In a terminal, over files (whose
//! size is known), a progress bar with the share read and the time left; when
//! stderr is not a terminal (logs, tests), the plain periodic line.
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use common::eddy;

/// A JSON-lines file of 300,000 rows (about 20 MB), read 100 rows a batch so the
/// run takes long enough for the bar to be drawn, and the script that reads it.
fn big_input(dir: &Path) -> std::path::PathBuf {
    let mut text = String::new();
    for i in 0..300_000 {
        writeln!(text, "{{\"k\": {i}, \"v\": {}, \"pad\": \"{}\"}}", i % 7, "x".repeat(40)).unwrap();
    }
    let data = dir.join("big.json");
    std::fs::write(&data, text).unwrap();
    let script = dir.join("big.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE big (k BIGINT, v BIGINT, pad STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json', 'scan.batch-rows' = '100');
             CREATE TABLE per_v (v BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO per_v SELECT v, COUNT(*) FROM big GROUP BY v;",
            data.display()
        ),
    )
    .unwrap();
    script
}

/// The bar's final state is drawn when the run ends, so even a run faster than
/// the first redraw (100 ms) shows it (issue 17: CI saw a 0.10 s run with no bar).
#[test]
fn a_terminal_shows_a_progress_bar_over_files() {
    let dir = tempfile::tempdir().unwrap();
    let script = big_input(dir.path());
    // `script` gives eddy a pseudo-terminal and copies what it shows to stdout.
    let command = format!("{} run --parallelism 1 {}", common::eddy_path().display(), script.display());
    let output = Command::new("script").args(["-qec", &command, "/dev/null"]).env("TERM", "xterm").output().unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    assert!(shown.contains("1 pipeline(s) finished: 300000 rows in"), "{shown}");
    // The bar: the share of the input read, its size and the time left.
    assert!(shown.contains("% of ") && shown.contains(" MiB, ") && shown.contains(" left  rows in "), "{shown}");
    // Its final state: the whole input read, and every row counted.
    assert!(shown.contains("100% of ") && shown.contains("rows in 300.0k"), "{shown}");
}

#[test]
fn logs_get_no_bar() {
    let dir = tempfile::tempdir().unwrap();
    let script = big_input(dir.path());
    let output = eddy().args(["run", "--parallelism", "1"]).arg(&script).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("% of "), "{stderr}");
}
