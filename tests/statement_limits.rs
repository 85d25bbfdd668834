//! End to end: no statement takes down `eddy server` or `eddy run`. Long AND and
//! UNION ALL chains (which once overflowed a worker's stack and aborted the
//! process) plan and answer up to Eddy's stated limits, on a live server and in
//! `eddy run`; bigger statements are refused with the limit and what to do; the
//! server goes on answering and its running pipelines go on running.
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{bids_table, eddy, running_bid_counts, Server};
use eddy_proto::PipelineRef;

fn bids_path() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bids.json").display().to_string()
}

/// Prices in tests/data/bids.json, read with serde_json rather than Eddy.
fn prices() -> Vec<i64> {
    let text = std::fs::read_to_string(bids_path()).unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["price"].as_i64().unwrap()).collect()
}

/// The first price an AND chain leaves out; the bids priced below it stay.
const FROM: usize = 60;

/// `price <> 60 AND price <> 61 AND ...` with `terms` comparisons: the shape of
/// the issue's first crasher (which started at 0, leaving none of these bids).
fn and_chain(terms: usize) -> String {
    (FROM..FROM + terms).map(|i| format!("price <> {i}")).collect::<Vec<_>>().join(" AND ")
}

/// `terms` times `SELECT auction FROM bids`, joined by UNION ALL (the issue's second crasher).
fn union_chain(terms: usize) -> String {
    vec!["SELECT auction FROM bids"; terms].join(" UNION ALL ")
}

/// Bids whose price is not in `FROM..FROM + terms`: what the AND chain keeps.
fn kept_by(terms: usize) -> usize {
    let kept = prices().into_iter().filter(|p| !(FROM as i64..(FROM + terms) as i64).contains(p)).count();
    assert!(kept > 0 && kept < prices().len(), "the chain must keep some bids and drop others");
    kept
}

fn assert_alive(server: &mut Server) {
    assert!(server.process.0.try_wait().unwrap().is_none(), "the server process died");
}

/// Waits until the pipeline has read more than `after` rows (it is still running).
fn wait_rows_in_past(server: &Server, runtime: &tokio::runtime::Runtime, id: &str, after: u64) -> u64 {
    let mut client = runtime.block_on(eddy::client::connect(&server.address, None)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = runtime.block_on(client.get_pipeline(PipelineRef { id: id.into() })).unwrap().into_inner();
        if p.status == "RUNNING" && p.rows_in > after {
            return p.rows_in;
        }
        assert!(Instant::now() < deadline, "pipeline {id} stopped reading: {p:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn deep_statements_answer_or_are_refused_and_the_server_and_its_pipelines_live_on() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &[]);
    server.ok(&bids_table());
    server.ok(&running_bid_counts("per_bidder", 2000));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let before = wait_rows_in_past(&server, &runtime, "per_bidder", 0);

    // The issue's two statements, which aborted the server, now answer.
    let issue = (0..700).map(|i| format!("price <> {i}")).collect::<Vec<_>>().join(" AND ");
    assert_eq!(server.ok_csv(&format!("SELECT * FROM bids WHERE {issue}")), "auction,bidder,price,ts\n", "every bid's price is under 700");
    let csv = server.ok_csv(&format!("SELECT * FROM bids WHERE {}", and_chain(700)));
    assert_eq!(csv.lines().count() - 1, kept_by(700), "{csv}");
    let csv = server.ok_csv(&union_chain(500));
    assert_eq!(csv.lines().count() - 1, 500 * prices().len());

    // At the limits, each recursive stage (parse, plan, optimize, compile, EXPLAIN) fits the stack.
    let explain = server.ok(&format!("EXPLAIN SELECT COUNT(*) FROM bids WHERE {}", and_chain(999)));
    assert!(explain.contains("Filter"), "{explain}");
    let csv = server.ok_csv(&format!("SELECT COUNT(*) AS n FROM bids WHERE {}", and_chain(999)));
    assert_eq!(csv, format!("n\n{}\n", kept_by(2499)));
    let explain = server.ok(&format!("EXPLAIN {}", union_chain(1000)));
    assert!(explain.contains("Union"), "{}", &explain[..explain.len().min(2000)]);

    // Past them: a clear error that states the limit and what to do instead.
    let (code, _, stderr) = server.sql(&["-c", &format!("SELECT * FROM bids WHERE {}", and_chain(1001))]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("too big to plan: it has more than 2000 operators"), "{stderr}");
    assert!(stderr.contains("hint: write long AND/OR chains"), "{stderr}");
    let (code, _, stderr) = server.sql(&["-c", &union_chain(1001)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("more than 2000 operators"), "{stderr}");
    // Deep parentheses, and a huge statement.
    let (code, _, stderr) = server.sql(&["-c", &format!("SELECT {}1{} FROM bids", "(".repeat(100), ")".repeat(100))]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("more than 40 levels deep"), "{stderr}");
    // (From a file: a command line that long is more than the OS passes.)
    let huge = data.path().join("huge.sql");
    std::fs::write(&huge, format!("SELECT auction FROM bids WHERE auction IN ({})", vec!["1"; 60_000].join(", "))).unwrap();
    let (code, _, stderr) = server.sql(&["-f", huge.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("tokens; Eddy plans statements of at most 100000"), "{stderr}");
    // A view counts where it is read: views of views cannot add up past the limit.
    server.ok(&format!("CREATE VIEW v1 AS SELECT * FROM bids WHERE {}", and_chain(600)));
    server.ok(&format!("CREATE VIEW v2 AS SELECT * FROM v1 WHERE {}", and_chain(350)));
    let (code, _, stderr) = server.sql(&["-c", &format!("SELECT * FROM v2 WHERE {}", and_chain(350))]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("views and WITH queries count each time they are read"), "{stderr}");

    // The server still answers, and the pipeline started before still runs.
    assert_alive(&mut server);
    assert_eq!(server.ok_csv("SELECT COUNT(*) AS n FROM bids"), format!("n\n{}\n", prices().len()));
    wait_rows_in_past(&server, &runtime, "per_bidder", before);
    assert_alive(&mut server);
    server.terminate();
}

#[test]
fn eddy_run_plans_deep_statements_and_refuses_bigger_ones_without_aborting() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("deep.sql");
    std::fs::write(
        &script,
        format!(
            "{};\nSELECT COUNT(*) AS n FROM bids WHERE {};\nSELECT COUNT(*) AS m FROM ({});\nEXPLAIN SELECT COUNT(*) FROM bids WHERE {};\n",
            bids_table(),
            and_chain(700),
            union_chain(500),
            and_chain(999)
        ),
    )
    .unwrap();
    let output = eddy().arg("run").arg(&script).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.lines().any(|l| l.trim() == kept_by(700).to_string()), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim() == (500 * prices().len()).to_string()), "{stdout}");

    // "A few thousand terms" aborted `eddy run` (exit 134); now it is a clear error, exit 1.
    std::fs::write(&script, format!("{};\nSELECT COUNT(*) FROM bids WHERE {};\n", bids_table(), and_chain(4000))).unwrap();
    let output = eddy().arg("run").arg(&script).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot plan the statement at line 2, column 1: the statement is too big to plan"), "{stderr}");
    assert!(!stderr.contains("overflow") && !stderr.contains("panicked"), "{stderr}");
}
