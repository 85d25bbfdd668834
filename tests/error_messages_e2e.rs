//! End to end: what a user sees when a statement is odd or wrong — carets under
//! the offending name, messages that survive the trip to the client whatever
//! their size, the statement size limit, byte-order marks, comment-only
//! commands and log lines without terminal colours when nobody is looking.
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{bids_table, eddy, Server};
use eddy_proto::ExecuteSqlRequest;
use tonic::Code;

/// The column (0-based) of the caret in `eddy sql`'s error output, and the line it points into.
fn caret(stderr: &str) -> (usize, String) {
    let lines: Vec<&str> = stderr.lines().collect();
    let at = lines.iter().position(|l| l.trim() == "^").unwrap_or_else(|| panic!("no caret line in {stderr:?}"));
    let source = lines[at - 1].to_string();
    (lines[at].find('^').unwrap(), source)
}

#[test]
fn planning_errors_put_the_caret_under_the_unknown_name() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&bids_table());

    for (sql, name) in [
        ("SELECT price FROM no_such_table", "no_such_table"),
        ("SELECT auction,\n       no_such_fn(price) FROM bids", "no_such_fn"),
        ("SELECT auction, pricey FROM bids", "pricey"),
    ] {
        let (code, _, stderr) = server.sql(&["-c", sql]);
        assert_eq!(code, 1, "{sql}: {stderr}");
        let (column, line) = caret(&stderr);
        // The caret stands under the first character of the name in the echoed line.
        assert_eq!(line.get(column..column + name.len()), Some(name), "caret under the wrong token for {sql:?}:\n{stderr}");
    }
}

#[test]
fn a_flink_function_eddy_lacks_is_named_and_date_format_reads_java_patterns() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&bids_table());
    let sql = "SELECT auction, TYPEOF(price) FROM bids";
    let (code, _, stderr) = server.sql(&["-c", sql]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("`TYPEOF` is a Flink built-in function that Eddy does not support yet"), "{stderr}");
    let (column, line) = caret(&stderr);
    assert_eq!(line.get(column..column + "TYPEOF".len()), Some("TYPEOF"), "{stderr}");
    // DataFusion's own date_format printed this pattern back as the answer.
    let out = server.ok("SELECT DATE_FORMAT(TIMESTAMP '2024-02-29 13:05:09', 'yyyy-MM-dd HH:mm')");
    assert!(out.lines().any(|l| l.trim() == "2024-02-29 13:05"), "the value row is the formatted time: {out}");
}

#[test]
fn an_error_about_a_huge_identifier_still_says_what_is_wrong() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let name = "x".repeat(20_000);
    let (code, _, stderr) = server.sql(&["-c", &format!("SELECT * FROM {name}")]);
    assert_eq!(code, 1, "{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("ERROR:  ") && first.contains("not found") && first.contains("characters elided"), "{first:.300}");
    assert!(first.len() < 4_000, "the message is abbreviated, not 20,000 characters long");
    // The server is still there.
    assert_eq!(server.ok(&bids_table()), "CREATE TABLE\n");
}

#[tokio::test]
async fn statements_up_to_the_limit_run_and_larger_ones_are_refused_clearly() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);

    // 5 MB (over tonic's 4 MB default) passes, through the real client.
    let padding = format!("/* {} */", "p".repeat(5 << 20));
    let script = data.path().join("big.sql");
    std::fs::write(&script, format!("{}\n{padding};", bids_table())).unwrap();
    let (code, stdout, stderr) = server.sql(&["-f", script.to_str().unwrap()]);
    assert_eq!((code, stdout.as_str()), (0, "CREATE TABLE\n"), "{stderr:.500}");

    // Past the limit, the client refuses before sending, saying what the limit is.
    let huge = format!("SELECT 1 /* {} */", "p".repeat(eddy_proto::MAX_STATEMENT_BYTES));
    std::fs::write(&script, &huge).unwrap();
    let (code, _, stderr) = server.sql(&["-f", script.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("the limit is 16 MB per request"), "{stderr:.500}");

    // A client that sends it anyway gets the server's own refusal, not the transport's.
    let mut client = eddy::client::connect(&server.address, None).await.unwrap();
    let status = client.execute_sql(ExecuteSqlRequest { sql: huge }).await.err().unwrap();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("the limit is 16 MB per request"), "{status:?}");
}

#[test]
fn a_script_saved_with_a_byte_order_mark_runs() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bom.sql");
    let out = dir.path().join("out");
    let sql = format!(
        "\u{feff}{};\nCREATE TABLE out (auction BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\nINSERT INTO out SELECT auction FROM bids;\n",
        bids_table(),
        out.display()
    );
    std::fs::write(&script, sql).unwrap();
    let output = eddy().args(["run", "--progress-secs", "0"]).arg(&script).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bids.json")).unwrap();
    assert_eq!(common::committed_rows(&out).len(), lines.lines().filter(|l| !l.trim().is_empty()).count());
}

#[test]
fn a_command_that_is_only_a_comment_is_not_an_argument_error() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let (code, stdout, stderr) = server.sql(&["-c", "-- just a comment"]);
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "", ""));
}

#[test]
fn log_lines_carry_no_terminal_colours_into_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("p.sql");
    std::fs::write(&script, format!("{};\nSELECT auction FROM bids;\n", bids_table())).unwrap();
    let output = eddy().args(["run", "--progress-secs", "0"]).arg(&script).env("EDDY_LOG", "debug").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("DEBUG"), "debug logging shows log lines: {stderr:.500}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in piped log lines: {stderr:.500}");
}

#[test]
fn eddy_run_prints_results_as_eddy_sql_does_even_with_megabyte_cells() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("wide.sql");
    let cell = "w".repeat(1 << 20);
    std::fs::write(&script, format!("{};\nSELECT auction, '{cell}' AS s FROM bids WHERE auction = 2;\n", bids_table())).unwrap();
    let output = eddy().args(["run", "--progress-secs", "0"]).arg(&script).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rows = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bids.json"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"auction\": 2,"))
        .count();
    assert!(rows > 0);
    // psql's aligned layout, as `eddy sql` prints: a centred header, a rule, right-aligned numbers.
    let pad = (cell.len() - 1) / 2;
    let mut want = format!(" auction | {}s{} \n---------+-{}-\n", " ".repeat(pad), " ".repeat(cell.len() - 1 - pad), "-".repeat(cell.len()));
    for _ in 0..rows {
        want.push_str(&format!("       2 | {cell}\n"));
    }
    want.push('\n');
    assert!(stdout == want, "unexpected layout; first 300 bytes: {:?}", &stdout[..stdout.len().min(300)]);
}
