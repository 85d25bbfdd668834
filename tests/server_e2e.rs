//! End to end: the real `eddy server` on a free loopback port with a temporary
//! data directory, driven by the real `eddy sql` and by a tonic client.
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bids_table, chrono_ms, eddy, kafka_table, wait_finished, Server};
use eddy_proto::{ListPipelinesRequest, PipelineRef, RestartPipelineRequest};
use tonic::Code;

/// Counts of `auction` in tests/data/bids.json, read with serde_json rather than Eddy.
fn expected_counts() -> Vec<(i64, i64)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bids.json")).unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        *counts.entry(value["auction"].as_i64().unwrap()).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

#[test]
fn sql_client_runs_statements_prints_like_psql_and_reports_errors() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    assert_eq!(server.ok(&bids_table()), "CREATE TABLE\n");

    // CSV: a header line and one line per row, nothing else.
    let csv = server.ok_csv("SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction");
    let mut lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.remove(0), "auction,n");
    lines.sort_by_key(|l| l.split(',').next().unwrap().parse::<i64>().unwrap());
    let expected: Vec<String> = expected_counts().into_iter().map(|(auction, n)| format!("{auction},{n}")).collect();
    assert_eq!(lines, expected);

    // Aligned, psql's layout, with the row count.
    let aligned = server.ok("SELECT auction, COUNT(*) AS n FROM bids WHERE auction = 1 GROUP BY auction");
    let n = expected_counts().into_iter().find(|(a, _)| *a == 1).unwrap().1;
    assert_eq!(aligned, format!(" auction | n \n---------+---\n       1 | {n}\n(1 row)\n\n"));

    // ORDER BY and LIMIT over a bounded table: the query runs, then its rows are sorted and cut.
    let mut by_count = expected_counts();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: String = by_count.iter().take(2).map(|(a, n)| format!("{a},{n}\n")).collect();
    assert_eq!(server.ok_csv("SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction ORDER BY n DESC, auction LIMIT 2"), format!("auction,n\n{top}"));

    // A script file: several statements, DDL tags and SHOW.
    let script = data.path().join("script.sql");
    std::fs::write(&script, "CREATE VIEW expensive AS SELECT * FROM bids WHERE price > 100;\n\\dt\n").unwrap();
    let (code, stdout, stderr) = server.sql(&["-f", script.to_str().unwrap(), "--csv"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "CREATE VIEW\ntable,connector,kind\nbids,filesystem,bounded\n");

    // A SQL error: exit 1, psql's ERROR line, the statement's line and a caret under the column.
    let (code, _, stderr) = server.sql(&["-c", "SELECT auction\nFROM bidz"]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("ERROR:  "), "{stderr}");
    assert!(stderr.contains("bidz"), "{stderr}");
    assert!(stderr.contains("LINE 2: FROM bidz\n             ^\n"), "caret under `bidz`:\n{stderr}");

    // EXPLAIN of nothing is an error, not a crash; EXPLAIN never runs what it explains.
    let (code, _, stderr) = server.sql(&["-c", "EXPLAIN"]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("ERROR:  "), "{stderr}");
    let (code, _, _) = server.sql(&["-c", "EXPLAIN DROP TABLE bids"]);
    assert_eq!(code, 1);
    assert!(server.ok_csv("SHOW TABLES").contains("bids,filesystem"), "EXPLAIN DROP TABLE dropped the table");
    // A failing statement does not hide the answers of the ones before it.
    let (code, stdout, stderr) = server.sql(&["-c", "CREATE VIEW cheap AS SELECT * FROM bids WHERE price < 100; SELECT * FROM missing"]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "CREATE VIEW\n");
    assert!(stderr.contains("missing"), "{stderr}");

    // An unbounded SELECT is refused with advice, not left hanging.
    server.ok("CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen')");
    let (code, _, stderr) = server.sql(&["-c", "SELECT * FROM gen"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("CREATE MATERIALIZED VIEW"), "{stderr}");

    // Unknown objects are NotFound, with their names.
    let (code, _, stderr) = server.sql(&["-c", "DESCRIBE nothing_here"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("nothing_here"), "{stderr}");

    // No server there: exit 2, as psql.
    let (code, _, stderr) = eddy()
        .args(["sql", "--host", "127.0.0.1:1", "-c", "SHOW TABLES"])
        .output()
        .map(|o| (o.status.code().unwrap(), (), String::from_utf8_lossy(&o.stderr).into_owned()))
        .unwrap();
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    server.terminate();
}

/// Parses `eddy sql --csv -q` output of one row of integers.
fn one_row(csv: &str) -> Vec<i64> {
    let line = csv.lines().nth(1).unwrap_or_else(|| panic!("no row in {csv:?}"));
    line.split(',').map(|v| if v.is_empty() { 0 } else { v.parse().unwrap() }).collect()
}

const SEQUENCE_VIEW: &str = "SET 'parallelism' = '1';
SET 'execution.checkpointing.interval' = '200 ms';
CREATE TABLE seq (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '20000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1');
CREATE MATERIALIZED VIEW tens AS SELECT id % 10 AS k, COUNT(*) AS n, MAX(id) AS m FROM seq GROUP BY id % 10;";

/// One consistent read of `tens`: (sum of counts, highest id, keys). Ids arrive
/// 1, 2, 3, ... so a snapshot taken at one checkpoint has counted exactly the ids
/// up to its highest one: the sum of the counts equals the highest id.
fn read_tens(server: &Server) -> (i64, i64, i64) {
    let row = one_row(&server.ok_csv("SELECT SUM(n), MAX(m), COUNT(*) FROM tens"));
    (row[0], row[1], row[2])
}

#[test]
fn materialized_view_reads_are_consistent_snapshots_while_it_updates() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let stdout = server.ok(SEQUENCE_VIEW);
    assert!(stdout.contains("CREATE MATERIALIZED VIEW (pipeline p1)"), "{stdout}");
    let started = Instant::now();
    let mut reads = Vec::new();
    while started.elapsed() < Duration::from_secs(4) {
        let (sum, max, keys) = read_tens(&server);
        assert_eq!(sum, max, "a read saw a torn state: counts add up to {sum} but the highest id is {max}");
        if sum > 10 {
            assert_eq!(keys, 10);
        }
        reads.push(sum);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reads.windows(2).all(|w| w[0] <= w[1]), "reads went back in time: {reads:?}");
    assert!(reads.iter().collect::<std::collections::BTreeSet<_>>().len() >= 3, "the view did not keep updating: {reads:?}");

    // Point lookups and joins are ordinary SQL over the snapshot.
    let row = one_row(&server.ok_csv("SELECT n FROM tens WHERE k = 3"));
    assert!(row[0] > 0);

    // The pipeline reports itself, with the view's size.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = eddy::client::connect(&server.address, None).await.unwrap();
        let pipelines = client.list_pipelines(ListPipelinesRequest {}).await.unwrap().into_inner().pipelines;
        assert_eq!(pipelines.len(), 1);
        let p = client.get_pipeline(PipelineRef { id: "tens".into() }).await.unwrap().into_inner();
        assert_eq!((p.id.as_str(), p.status.as_str(), p.state_rows), ("p1", "RUNNING", 10));
        assert!(p.rows_in > 0 && p.checkpoint_id > 0, "{p:?}");
        let missing = client.get_pipeline(PipelineRef { id: "p9".into() }).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        let taken = eddy::client::execute(&mut client, "CREATE MATERIALIZED VIEW tens AS SELECT id FROM seq").await.err().unwrap().1;
        assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
        let taken = eddy::client::execute(&mut client, "CREATE TABLE tens (a INT) WITH ('connector' = 'blackhole')").await.err().unwrap().1;
        assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
        let bad_sql = eddy::client::execute(&mut client, "SELEC 1").await.err().unwrap().1;
        assert_eq!(bad_sql.code(), Code::InvalidArgument);
        assert_eq!(bad_sql.metadata().get("eddy-line").unwrap(), "1");
        let stopped = client.stop_pipeline(eddy_proto::StopPipelineRequest { id: "p1".into(), savepoint: false }).await.unwrap().into_inner();
        assert_eq!(stopped.status, "STOPPED");
    });
    // Stopped, the view keeps its last rows and stops changing.
    let (frozen, _, _) = read_tens(&server);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read_tens(&server).0, frozen);
    // Restarted, it resumes from its checkpoint: no id is counted twice.
    runtime.block_on(async {
        let mut client = eddy::client::connect(&server.address, None).await.unwrap();
        let restarted = client.restart_pipeline(RestartPipelineRequest { id: "p1".into(), parallelism: 0 }).await.unwrap().into_inner();
        assert_eq!(restarted.status, "RUNNING");
        let again = client.restart_pipeline(RestartPipelineRequest { id: "p1".into(), parallelism: 0 }).await.unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition);
    });
    std::thread::sleep(Duration::from_millis(800));
    let (sum, max, _) = read_tens(&server);
    assert_eq!(sum, max);
    assert!(sum > frozen, "the restarted view did not move on: {sum} <= {frozen}");
    server.terminate();
}

#[test]
fn catalog_and_pipelines_survive_sigterm_and_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(SEQUENCE_VIEW);
    server.ok(&bids_table());
    // A later SET does not change a pipeline that exists: it resumes with the parallelism it was saved with.
    server.ok("SET 'parallelism' = '2'");
    std::thread::sleep(Duration::from_millis(1500));
    let before = read_tens(&server).0;
    assert!(before > 0);
    server.terminate();

    let server = Server::start(data.path(), &[]);
    let tables = server.ok_csv("SHOW TABLES");
    assert_eq!(tables, "table,connector,kind\nbids,filesystem,bounded\nseq,datagen,unbounded\n");
    assert!(server.ok_csv("SHOW VIEWS").contains("tens,materialized view"));
    assert!(server.ok_csv("SHOW PIPELINES").contains("p1,tens,RUNNING"));
    // Resumed from its checkpoint: it goes on from where it was, it does not start over.
    let (sum, max, _) = read_tens(&server);
    assert_eq!(sum, max);
    assert!(sum >= before, "the view restarted from scratch: {sum} < {before}");
    std::thread::sleep(Duration::from_millis(1000));
    let before_kill = read_tens(&server).0;
    let mut server = server;
    server.process.kill();

    let server = Server::start(data.path(), &[]);
    std::thread::sleep(Duration::from_millis(800));
    let (sum, max, _) = read_tens(&server);
    assert_eq!(sum, max, "after SIGKILL the view is a consistent checkpoint");
    assert!(sum >= before_kill, "rows visible before the kill were lost: {sum} < {before_kill}");
    // A stopped pipeline stays stopped across restarts.
    server.ok("STOP PIPELINE p1");
    server.terminate();
    let server = Server::start(data.path(), &[]);
    assert!(server.ok_csv("SHOW PIPELINES").contains("p1,tens,STOPPED"));
    server.terminate();
}

#[test]
fn a_token_is_required_when_the_server_has_one() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--token", "s3cret"]);
    let (code, _, stderr) = server.sql(&["-c", "SHOW TABLES"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("needs a token"), "{stderr}");
    let (code, stdout, stderr) = server.sql(&["--token", "s3cret", "--csv", "-c", "SHOW TABLES"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "table,connector,kind\n");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for token in [None, Some("wrong")] {
            let mut client = eddy::client::connect(&server.address, token).await.unwrap();
            let error = client.list_pipelines(ListPipelinesRequest {}).await.unwrap_err();
            assert_eq!(error.code(), Code::Unauthenticated, "token {token:?}");
        }
        let mut client = eddy::client::connect(&server.address, Some("s3cret")).await.unwrap();
        assert!(client.list_pipelines(ListPipelinesRequest {}).await.is_ok());
    });
    server.terminate();
}

/// Issue 20: `SHOW CREATE` shows the statement that made a table or view with
/// its secrets masked (secret options, passwords in URLs), and the catalog still
/// keeps the real values, so the table works after a restart.
#[test]
fn show_create_masks_secrets_the_catalog_keeps() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let create = "CREATE TABLE secret_src (k BIGINT) WITH ('connector' = 'kafka', 'topic' = 'password', 'properties.bootstrap.servers' = '127.0.0.1:9',
        'properties.sasl.password' = 'hunter2', 'properties.sasl.jaas.config' = 'Plain username=\"u\" password=\"hunter2\";',
        'format' = 'json', 'scan.startup.mode' = 'earliest-offset')";
    server.ok(create);
    server.ok(&format!("{}; CREATE VIEW cheap AS SELECT auction FROM bids WHERE price < 100", common::bids_table()));
    server.ok("CREATE MATERIALIZED VIEW per_auction AS SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction");
    let shown = server.ok_csv("SHOW CREATE TABLE secret_src");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("'properties.sasl.password' = '******'") && shown.contains("'properties.sasl.jaas.config' = '******'"), "{shown}");
    // Options that are not secrets are shown as written, even a value that reads like a key.
    assert!(shown.contains("'topic' = 'password'") && shown.contains("'properties.bootstrap.servers' = '127.0.0.1:9'"), "{shown}");
    assert!(server.ok_csv("SHOW CREATE VIEW cheap").contains("CREATE VIEW cheap AS SELECT auction FROM bids WHERE price < 100"));
    assert!(server.ok_csv("SHOW CREATE MATERIALIZED VIEW per_auction").contains("GROUP BY auction"));
    let (code, _, stderr) = server.sql(&["-c", "SHOW CREATE TABLE cheap"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no table named `cheap`"), "{stderr}");
    // The catalog keeps the real values: the server needs them after a restart.
    server.terminate();
    let catalog = std::fs::read_to_string(data.path().join("catalog.json")).unwrap();
    assert!(catalog.contains("hunter2"), "{catalog}");
    let server = Server::start(data.path(), &[]);
    assert!(!server.ok_csv("SHOW CREATE TABLE secret_src").contains("hunter2"));
    server.terminate();
}

/// The interactive client in a real terminal (a pty from util-linux `script`):
/// multi-line statements, backslash commands, Ctrl-C dropping the typed
/// statement, `\q`.
#[test]
fn interactive_session_in_a_terminal() {
    use std::io::Write;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&bids_table());
    // `script` runs the command through `$SHELL -c`; `exec` makes the client
    // the terminal's foreground process, so Ctrl-C reaches only the client
    // (dash, waiting on a child, would itself die of the SIGINT: exit 130).
    let command = format!("exec {} sql --host {}", common::eddy_path().display(), server.address);
    let mut terminal = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("HOME", data.path())
        .env("TERM", "dumb")
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("util-linux `script` provides the terminal");
    // The screen is read as it is drawn, and each line is typed only once the
    // client shows the prompt it answers, so a slow machine cannot reorder them.
    let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut output = terminal.stdout.take().unwrap();
    let reader = {
        let screen = std::sync::Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut output, &mut chunk) {
                screen.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        })
    };
    let prompts = || {
        let screen = screen.lock().unwrap();
        screen.matches("eddy=> ").count() + screen.matches("eddy-> ").count()
    };
    let wait_for_prompt = |seen: usize, patience: Duration| {
        let deadline = Instant::now() + patience;
        while prompts() <= seen {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    };
    assert!(wait_for_prompt(0, Duration::from_secs(60)), "no prompt:\n{}", screen.lock().unwrap());
    let mut keys = terminal.stdin.take().unwrap();
    let mut type_keys = |text: &str| {
        let seen = prompts();
        keys.write_all(text.as_bytes()).unwrap();
        keys.flush().unwrap();
        seen
    };
    for line in ["\\timing on\r", "SELECT auction, COUNT(*) AS n\r", "FROM bids WHERE auction = 2 GROUP BY auction;\r"] {
        let seen = type_keys(line);
        assert!(wait_for_prompt(seen, Duration::from_secs(60)), "no prompt after {line:?}:\n{}", screen.lock().unwrap());
    }
    type_keys("SELECT this is not sent");
    std::thread::sleep(Duration::from_millis(300));
    // A raw-mode editor answers Ctrl-C with a fresh prompt; a cooked terminal
    // just discards the typed line.
    let seen = type_keys("\x03");
    wait_for_prompt(seen, Duration::from_secs(2));
    for line in ["\\dt\r", "\\x\r", "DESCRIBE bids;\r"] {
        let seen = type_keys(line);
        assert!(wait_for_prompt(seen, Duration::from_secs(60)), "no prompt after {line:?}:\n{}", screen.lock().unwrap());
    }
    type_keys("\\q\r");
    // The terminal's input stays open until the client has gone: `script`
    // answers end-of-input by hanging up the terminal, which would race `\q`.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        match terminal.try_wait().unwrap() {
            Some(status) => break status,
            None if Instant::now() > deadline => {
                drop(keys);
                break terminal.wait().unwrap();
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    reader.join().unwrap();
    let screen = screen.lock().unwrap().replace('\r', "");
    assert!(status.success(), "the client exits 0 after \\q ({status}):\n{screen}");
    let n = expected_counts().into_iter().find(|(a, _)| *a == 2).unwrap().1;
    assert!(screen.contains("Timing is on."), "{screen}");
    assert!(screen.contains(&format!("       2 | {n}\n(1 row)")), "the two-line statement ran:\n{screen}");
    assert!(screen.contains("Time: "), "{screen}");
    assert!(!screen.contains("this is not sent\n ") && !screen.contains("ERROR"), "Ctrl-C dropped the typed statement:\n{screen}");
    assert!(screen.contains(" bids  | filesystem | bounded"), "\\dt lists tables:\n{screen}");
    assert!(screen.contains("Expanded display is on."), "{screen}");
    assert!(screen.contains("-[ RECORD 1 ]") && screen.contains("name | auction"), "expanded DESCRIBE:\n{screen}");
    assert!(data.path().join(".eddy_history").exists(), "history is saved");
    server.terminate();
}

/// `Subscribe` over gRPC: the view's rows first, then updates as `-U` / `+U` pairs.
#[test]
fn subscribe_streams_a_views_changes_with_retractions() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok("SET 'execution.checkpointing.interval' = '100 ms';
         CREATE TABLE seq (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '2000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1');
         CREATE MATERIALIZED VIEW odd_even AS SELECT id % 2 AS k, COUNT(*) AS n FROM seq GROUP BY id % 2");
    std::thread::sleep(Duration::from_millis(500));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        let mut client = eddy::client::connect(&server.address, None).await.unwrap();
        let mut stream = client.subscribe(eddy_proto::SubscribeRequest { name: "odd_even".into(), snapshot: true }).await.unwrap().into_inner();
        let mut header = Vec::new();
        // The latest count per key as the changes tell it, checked against each update's retraction.
        let mut current = std::collections::BTreeMap::new();
        let mut updates = 0;
        while updates < 6 {
            let message = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("a change within 10 s").unwrap().unwrap();
            match message.change.unwrap() {
                eddy_proto::subscribe_response::Change::ArrowSchema(bytes) => header = bytes,
                eddy_proto::subscribe_response::Change::ArrowBatch(bytes) => {
                    let (schema, batches) = eddy::ipc::decode_after(&header, &bytes).unwrap();
                    assert_eq!(schema.field(0).name(), "op");
                    for batch in batches {
                        let ops = batch.column(0).as_string::<i32>();
                        let keys = batch.column(1).as_primitive::<Int64Type>();
                        let counts = batch.column(2).as_primitive::<Int64Type>();
                        for i in 0..batch.num_rows() {
                            let (k, n) = (keys.value(i), counts.value(i));
                            match ops.value(i) {
                                "+I" => assert!(current.insert(k, n).is_none(), "+I for a key already there"),
                                "-U" => assert_eq!(current.remove(&k), Some(n), "-U retracts the row last sent"),
                                "+U" => {
                                    assert!(current.insert(k, n).is_none(), "+U follows its -U");
                                    updates += 1;
                                }
                                other => panic!("unexpected op {other}"),
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(current.len(), 2);

        // An INSERT INTO pipeline's output: the rows it writes, as it writes them.
        server.ok("CREATE TABLE hundreds (id BIGINT) WITH ('connector' = 'blackhole'); INSERT INTO hundreds SELECT id FROM seq WHERE id % 100 = 0");
        let mut output = client.subscribe(eddy_proto::SubscribeRequest { name: "hundreds".into(), snapshot: false }).await.unwrap().into_inner();
        let mut header = Vec::new();
        let mut ids = Vec::new();
        while ids.len() < 3 {
            let message = tokio::time::timeout(Duration::from_secs(10), output.message()).await.expect("rows within 10 s").unwrap().unwrap();
            match message.change.unwrap() {
                eddy_proto::subscribe_response::Change::ArrowSchema(bytes) => header = bytes,
                eddy_proto::subscribe_response::Change::ArrowBatch(bytes) => {
                    let (_, batches) = eddy::ipc::decode_after(&header, &bytes).unwrap();
                    for batch in batches {
                        assert!(batch.column(0).as_string::<i32>().iter().all(|op| op == Some("+I")));
                        ids.extend(batch.column(1).as_primitive::<Int64Type>().values().iter().copied());
                    }
                }
            }
        }
        assert!(ids.iter().all(|id| id % 100 == 0) && ids.windows(2).all(|w| w[0] + 100 == w[1]), "{ids:?}");
        let missing = client.subscribe(eddy_proto::SubscribeRequest { name: "nothing".into(), snapshot: false }).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);

        // An open subscription does not keep the server from stopping.
        server.terminate();
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    other => return other.map(|_| ()),
                }
            }
        })
        .await;
        assert!(end.is_ok(), "the subscription ended when the server stopped");
    });
}

/// A view over a source that cannot resume (Nexmark's person generator) keeps no
/// checkpoints: after SIGKILL it starts over, running, rather than failing or
/// counting its rows twice.
#[test]
fn a_view_over_a_source_that_cannot_resume_starts_over_after_a_kill() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &[]);
    server.ok("SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE person WITH ('connector' = 'nexmark', 'nexmark.table' = 'person', 'events.rate' = '20000');
         CREATE MATERIALIZED VIEW per_auction AS SELECT state, COUNT(*) AS n FROM person GROUP BY state");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(one_row(&server.ok_csv("SELECT SUM(n) FROM per_auction"))[0] > 0);
    assert!(!data.path().join("checkpoints/p1").exists(), "no checkpoints for a source that cannot resume");
    server.process.kill();
    let server = Server::start(data.path(), &[]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(server.ok_csv("SHOW PIPELINES").contains("p1,per_auction,RUNNING"));
    assert!(one_row(&server.ok_csv("SELECT SUM(n) FROM per_auction"))[0] > 0);
    server.terminate();
}

/// `STOP PIPELINE ... WITH SAVEPOINT` takes a checkpoint at once (here the interval
/// is an hour, so it is the only one), and a restart goes on exactly from it.
#[test]
fn stop_with_savepoint_checkpoints_and_restarts_exactly_there() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&SEQUENCE_VIEW.replace("'200 ms'", "'1 h'"));
    std::thread::sleep(Duration::from_millis(800));
    let (shown, max, _) = read_tens(&server);
    assert!(shown > 0 && shown == max, "no checkpoint yet, but the view publishes between checkpoints: {shown}, {max}");
    assert_eq!(server.ok("STOP PIPELINE p1 WITH SAVEPOINT"), "STOP PIPELINE WITH SAVEPOINT 1 (pipeline p1)\n");
    let (saved, max, keys) = read_tens(&server);
    assert!(saved > 0 && saved == max && keys == 10, "the savepoint's rows are visible: {saved}, {max}, {keys}");
    assert!(server.ok_csv("SHOW PIPELINES").contains("p1,tens,STOPPED"));
    let (code, _, stderr) = server.sql(&["-c", "STOP PIPELINE p1 WITH SAVEPOINT"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not running"), "{stderr}");
    // A generator resumes only with the parallelism it was saved with: a restart
    // with another is refused before anything starts, and the pipeline stays stopped.
    let (code, _, stderr) = server.sql(&["-c", "RESTART PIPELINE p1 WITH PARALLELISM 3"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("`seq` (datagen) keeps one position per reader") && stderr.contains("parallelism 1"), "{stderr}");
    assert!(server.ok_csv("SHOW PIPELINES").contains("p1,tens,STOPPED"));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = eddy::client::connect(&server.address, None).await.unwrap();
        client.restart_pipeline(RestartPipelineRequest { id: "p1".into(), parallelism: 0 }).await.unwrap();
    });
    std::thread::sleep(Duration::from_millis(500));
    let (sum, max, _) = read_tens(&server);
    assert!(sum >= saved && sum == max, "restarted from the savepoint, the view went on from exactly its rows: {sum}, {max}, {saved}");
    assert_eq!(server.ok("STOP PIPELINE tens WITH SAVEPOINT"), "STOP PIPELINE WITH SAVEPOINT 2 (pipeline p1)\n");
    let (sum, max, _) = read_tens(&server);
    assert!(sum > saved, "the restarted pipeline went on: {sum} <= {saved}");
    assert_eq!(sum, max, "it went on exactly after the savepoint: no id lost or counted twice");
    server.terminate();
}

const VIEW_OVER_VIEW: &str = "SET 'parallelism' = '2';
SET 'execution.checkpointing.interval' = '200 ms';
CREATE TABLE ev (k BIGINT, v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '5000', 'fields.k.min' = '1', 'fields.k.max' = '40', 'fields.v.min' = '0', 'fields.v.max' = '1000');
CREATE MATERIALIZED VIEW per_k AS SELECT k, COUNT(*) AS n, MAX(v) AS best FROM ev GROUP BY k;
CREATE MATERIALIZED VIEW histogram AS SELECT n, COUNT(*) AS keys, MIN(k) AS first_k FROM per_k GROUP BY n;
CREATE MATERIALIZED VIEW overall AS SELECT COUNT(*) AS keys, SUM(n) AS rows_seen, MIN(n) AS fewest, COUNT(DISTINCT n) AS counts, MAX(best) AS best FROM per_k;
CREATE MATERIALIZED VIEW busy AS SELECT k, n FROM per_k WHERE n >= 100;";

/// Views over a view: the first view's groups keep updating, so the views over
/// it get a changelog (each update retracts the old row). A histogram of its
/// counts moves keys between buckets, a MIN over its counts must forget counts
/// that grew, and a filter passes updates on. Once the source stops, every view
/// over it equals the same query run over the first view's final rows.
#[test]
fn views_over_a_view_follow_its_changelog_with_retractions() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &[]);
    server.ok(VIEW_OVER_VIEW);
    std::thread::sleep(Duration::from_millis(1500));
    // Killed and started again: per_k resumes from its checkpoint, and the views
    // over it start over from its restored rows (not from the empty view a
    // restarting pipeline begins with).
    server.process.kill();
    let server = Server::start(data.path(), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    // Stop the source's pipeline; the views over it settle on its last rows.
    server.ok("STOP PIPELINE per_k");
    let csv_rows = |sql: &str| -> Vec<String> {
        let mut rows: Vec<String> = server.ok_csv(sql).lines().skip(1).map(str::to_string).collect();
        rows.sort();
        rows
    };
    let expected_histogram = || csv_rows("SELECT n, COUNT(*) AS keys, MIN(k) AS first_k FROM per_k GROUP BY n");
    let expected_overall = || csv_rows("SELECT COUNT(*), SUM(n), MIN(n), COUNT(DISTINCT n), MAX(best) FROM per_k");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let settled = csv_rows("SELECT n, keys, first_k FROM histogram") == expected_histogram()
            && csv_rows("SELECT keys, rows_seen, fewest, counts, best FROM overall") == expected_overall()
            && csv_rows("SELECT k, n FROM busy") == csv_rows("SELECT k, n FROM per_k WHERE n >= 100");
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the views over per_k did not settle on its final rows:\nhistogram {:?}\nexpected  {:?}\noverall {:?}\nexpected {:?}",
            csv_rows("SELECT n, keys, first_k FROM histogram"),
            expected_histogram(),
            csv_rows("SELECT * FROM overall"),
            expected_overall()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let overall = one_row(&server.ok_csv("SELECT keys, rows_seen, fewest FROM overall"));
    assert_eq!(overall[0], 40, "every key was seen");
    assert!(overall[1] > 2000, "the source ran for a while: {overall:?}");
    // Counts grew past their first values, so buckets were retracted along the way:
    // MIN(n) must be the smallest final count, not an early one.
    assert!(overall[2] > 1, "MIN(n) kept a retracted count: {overall:?}");
    assert!(csv_rows("SELECT k FROM busy").len() == 40, "busy holds every key once counts pass 100");

    // EXPLAIN shows the retracting aggregate and the live size of the views involved.
    let explain = server.ok_csv("EXPLAIN CREATE MATERIALIZED VIEW histogram AS SELECT n, COUNT(*) AS keys, MIN(k) AS first_k FROM per_k GROUP BY n");
    assert!(explain.contains("over a changelog: retractions and updates at each checkpoint"), "{explain}");
    assert!(explain.contains("state of materialized view `per_k`: 40 rows"), "{explain}");
    assert!(explain.contains("state of materialized view `histogram`: "), "{explain}");
    // Per operator: the view it reads is a changelog source, the aggregate runs
    // the session's 2 tasks behind an exchange on its key and keeps group rows.
    let source = line_after(&explain, "Source: per_k");
    assert!(source.contains("watermark: the view's, at each of its checkpoints") && source.contains("state: position in the view's changelog"), "{explain}");
    let aggregate = line_after(&explain, "WindowAggregate: ");
    assert!(aggregate.contains("tasks: 2, behind a hash exchange on [n@"), "{explain}");
    assert!(aggregate.contains("state: every group's input rows"), "{explain}");

    // What a view over a changelog cannot be, said before anything runs.
    let (code, _, stderr) = server.sql(&["-c", "CREATE MATERIALIZED VIEW counts_only AS SELECT n FROM per_k"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("must select its key columns (k)"), "{stderr}");
    // A LEFT regular join of two append-only tables takes padded rows back: a view
    // has no key to find them by, and says which operator takes them back.
    let (code, _, stderr) = server.sql(&["-c", "CREATE MATERIALIZED VIEW padded AS SELECT a.k, b.v FROM ev a LEFT JOIN ev b ON a.k = b.v"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("a materialized view cannot keep this query's rows: RegularJoin (a LEFT OUTER join without time bounds)"), "{stderr}");
    server.ok("CREATE TABLE archive (k BIGINT, n BIGINT) WITH ('connector' = 'filesystem', 'path' = '/tmp/never', 'format' = 'json')");
    let (code, _, stderr) = server.sql(&["-c", "INSERT INTO archive SELECT k, n FROM per_k"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot delete them"), "{stderr}");
    let (code, _, stderr) = server.sql(&["-c", "INSERT INTO histogram SELECT n, 1, 1 FROM per_k"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is a materialized view: its rows come from its own query"), "{stderr}");
    let (code, _, stderr) = server.sql(&["-c", "DROP MATERIALIZED VIEW per_k"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is read by running pipeline"), "{stderr}");
    // SHOW TABLES lists tables only; the views are views.
    assert_eq!(server.ok_csv("SHOW TABLES"), "table,connector,kind\narchive,filesystem,bounded\nev,datagen,unbounded\n");
    // After a restart the stopped view still shows its rows, and the views over it
    // start over from them.
    let before = csv_rows("SELECT k, n FROM per_k");
    let hist_before = csv_rows("SELECT n, keys, first_k FROM histogram");
    server.terminate();
    let server = Server::start(data.path(), &[]);
    let rows = |sql: &str| -> Vec<String> {
        let mut rows: Vec<String> = server.ok_csv(sql).lines().skip(1).map(str::to_string).collect();
        rows.sort();
        rows
    };
    assert_eq!(rows("SELECT k, n FROM per_k"), before, "the stopped view's rows after a restart");
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows("SELECT n, keys, first_k FROM histogram") != hist_before {
        assert!(Instant::now() < deadline, "the histogram did not come back: {:?}", rows("SELECT n, keys, first_k FROM histogram"));
        std::thread::sleep(Duration::from_millis(200));
    }
    server.terminate();
}

// Parallelism 1: a single sequence reader, so each checkpoint has read ids 1..=n.
const NESTED_AND_HAVING: &str = "SET 'parallelism' = '1';
SET 'execution.checkpointing.interval' = '200 ms';
CREATE TABLE seq (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '20000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1');
CREATE MATERIALIZED VIEW spread AS SELECT COUNT(*) AS keys, SUM(n) AS total, MIN(n) AS low, MAX(n) AS high, MAX(last_id) AS last_id
  FROM (SELECT id % 10 AS k, COUNT(*) AS n, MAX(id) AS last_id FROM seq GROUP BY id % 10);
CREATE MATERIALIZED VIEW even AS SELECT id % 10 AS k, COUNT(*) AS n, MAX(id) AS last_id FROM seq GROUP BY id % 10 HAVING COUNT(*) % 2 = 0;";

/// An aggregate over a continuous GROUP BY, and a HAVING over one, in one
/// pipeline each: the inner aggregate emits retractions of its old rows. Ids arrive
/// 1, 2, 3, ... so every consistent read has invariants: the inner counts add up to
/// the highest id and differ by at most one (a MIN or MAX that kept a retracted count
/// breaks that), and the HAVING view holds only even counts of one checkpoint (a group
/// whose count turned odd must have been deleted, not left behind).
#[test]
fn an_aggregate_over_a_group_by_and_having_retract_what_changed() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(NESTED_AND_HAVING);
    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let csv = server.ok_csv("SELECT keys, total, low, high, last_id FROM spread");
        let spread: Vec<i64> = csv.lines().nth(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).unwrap_or_default();
        if spread.first() == Some(&10) {
            let [_, total, low, high, top] = spread[..] else { unreachable!() };
            assert_eq!(total, top, "a read saw a torn or double-counted state: {spread:?}");
            assert!(high - low <= 1, "MIN/MAX kept a retracted count: {spread:?}");
            reads += 1;
        }
        let rows: Vec<Vec<i64>> =
            server.ok_csv("SELECT k, n, last_id FROM even").lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
        for row in &rows {
            let [k, n, top] = row[..] else { unreachable!() };
            assert_eq!(n % 2, 0, "HAVING let an odd count through: {rows:?}");
            assert_eq!(n, if k == 0 { top / 10 } else { (top - k) / 10 + 1 }, "row of another checkpoint: {rows:?}");
        }
        if let (Some(min), Some(max)) = (rows.iter().map(|r| r[2]).min(), rows.iter().map(|r| r[2]).max()) {
            assert!(max - min < 10, "a group whose count turned odd was not deleted: {rows:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(reads >= 5, "the nested view did not update: {reads} reads");
    let explain = server.ok_csv("EXPLAIN SELECT k, n FROM (SELECT id % 10 AS k, COUNT(*) AS n FROM seq GROUP BY id % 10) WHERE n > 5");
    let filter = line_after(&explain, "Filter: ");
    assert!(filter.contains("| tasks: chained into its input's task(s) | watermark: passed through | state: none"), "{explain}");
    assert!(line_after(&explain, "WindowAggregate: ").contains("tasks: 1, behind a hash exchange on ["), "{explain}");
    server.terminate();
}

/// `eddy server --checkpoints s3://bucket/prefix`: pipelines checkpoint into the
/// bucket, and a server killed with SIGKILL finds a stopped view's savepoint there.
#[test]
fn checkpoints_can_live_in_an_s3_bucket() {
    use eddy_connectors::testing::{s3_create_bucket, s3_environment, s3_keys, unique_name, S3};
    let endpoint = S3.shared();
    let bucket = unique_name("server").replace('_', "-");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(s3_create_bucket(&endpoint, &bucket));
    let data = tempfile::tempdir().unwrap();
    let location = format!("s3://{bucket}/eddy");
    let start = || Server::start_with_env(data.path(), &["--checkpoints", &location], s3_environment(&endpoint));
    let mut server = start();
    server.ok(SEQUENCE_VIEW);
    std::thread::sleep(Duration::from_millis(800));
    assert!(server.ok("STOP PIPELINE p1 WITH SAVEPOINT").starts_with("STOP PIPELINE WITH SAVEPOINT"));
    let (saved, max, keys) = read_tens(&server);
    assert!(saved > 0 && saved == max && keys == 10, "{saved}, {max}, {keys}");
    let objects = runtime.block_on(s3_keys(&endpoint, &bucket, "eddy/p1/"));
    assert!(objects.iter().any(|k| k.ends_with("/_COMPLETE")), "the savepoint is in the bucket: {objects:?}");
    assert!(!data.path().join("checkpoints").exists(), "nothing under the data dir");

    server.process.kill();
    let server = start();
    assert_eq!(read_tens(&server), (saved, max, keys), "the stopped view shows its savepoint, read back from the bucket");
    server.terminate();
}

/// Rows of `eddy sql --csv` output after the header, each split at commas.
fn csv_rows(csv: &str) -> Vec<Vec<String>> {
    csv.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

/// Nexmark bids at 20,000 events/s feed a keyed view (updated in place) and a
/// windowed view (a row per closed window); both are read while they update.
#[test]
fn views_over_nexmark_bids_read_consistently_while_they_update() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok("SET 'parallelism' = '2';
         SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
                           WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
           WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.rate' = '20000');
         CREATE MATERIALIZED VIEW per_bidder AS SELECT bidder % 7 AS k, COUNT(*) AS n FROM bid GROUP BY bidder % 7;
         CREATE MATERIALIZED VIEW per_second AS
           SELECT window_start, window_end, COUNT(*) AS n, MAX(price) AS highest
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY window_start, window_end;");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut client = runtime.block_on(eddy::client::connect(&server.address, None)).unwrap();
    let mut totals = Vec::new();
    let mut windows_seen: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        // One query reads the per-key rows and their total: both come from one snapshot.
        let rows = csv_rows(&server.ok_csv("SELECT k, n FROM per_bidder UNION ALL SELECT -1 AS k, SUM(n) AS n FROM per_bidder"));
        let value = |r: &Vec<String>| r[1].parse::<i64>().unwrap_or(0);
        let per_key: i64 = rows.iter().filter(|r| r[0] != "-1").map(value).sum();
        let total = rows.iter().find(|r| r[0] == "-1").map(value).unwrap();
        assert_eq!(per_key, total, "a read saw a torn state: {rows:?}");
        assert!(rows.iter().filter(|r| r[0] != "-1").all(|r| (0..7).contains(&r[0].parse::<i64>().unwrap())), "{rows:?}");
        totals.push(total);

        // A window is shown once it has closed, and never changes after that.
        let windows = csv_rows(&server.ok_csv("SELECT window_start, window_end, n, highest FROM per_second ORDER BY window_start"));
        let p = runtime.block_on(client.get_pipeline(PipelineRef { id: "per_second".into() })).unwrap().into_inner();
        let watermark = p.watermark_ms.expect("a running windowed pipeline reports its watermark");
        for w in &windows {
            let end = w[1].replace(' ', "T");
            let end_ms = chrono_ms(&end);
            assert!(end_ms <= watermark, "window ending {end} is shown before the watermark {watermark} passed it");
            let earlier = windows_seen.entry(w[0].clone()).or_insert_with(|| w.clone());
            assert_eq!(earlier, w, "a closed window changed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(totals.windows(2).all(|w| w[0] <= w[1]), "reads went back in time: {totals:?}");
    assert!(totals.iter().collect::<std::collections::BTreeSet<_>>().len() >= 3, "the keyed view did not keep updating: {totals:?}");
    assert!(windows_seen.len() >= 2, "windows did not appear as they closed: {windows_seen:?}");
    // Windows are consecutive seconds, each with bids in it.
    let starts: Vec<i64> = windows_seen.keys().map(|s| chrono_ms(s)).collect();
    assert!(starts.windows(2).all(|w| w[1] - w[0] == 1000), "{starts:?}");
    assert!(windows_seen.values().all(|w| w[2].parse::<i64>().unwrap() > 0));

    // The pipeline reports what it is and how far it got.
    let p = runtime.block_on(client.get_pipeline(PipelineRef { id: "per_bidder".into() })).unwrap().into_inner();
    assert_eq!((p.status.as_str(), p.state_rows), ("RUNNING", 7), "{p:?}");
    assert!(p.sql.contains("bidder % 7"), "{p:?}");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now_ms - 60_000..=now_ms).contains(&p.started_at_ms), "{p:?}");
    assert!(p.rows_in > 0 && p.rows_out > 0 && p.state_bytes > 0, "{p:?}");
    server.terminate();
}

#[test]
fn a_query_joins_two_views() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&bids_table());
    server.ok("CREATE MATERIALIZED VIEW counts AS SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction;
         CREATE MATERIALIZED VIEW tops AS SELECT auction, MAX(price) AS top FROM bids GROUP BY auction;");
    wait_finished(&server, 2);
    // Expected: counts and top prices per auction, read from the file with serde_json.
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bids.json")).unwrap();
    let mut expected: std::collections::BTreeMap<i64, (i64, i64)> = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let e = expected.entry(v["auction"].as_i64().unwrap()).or_insert((0, i64::MIN));
        e.0 += 1;
        e.1 = e.1.max(v["price"].as_i64().unwrap());
    }
    let expected: String = expected.iter().map(|(a, (n, top))| format!("{a},{n},{top}\n")).collect();
    let joined = server.ok_csv("SELECT c.auction, c.n, t.top FROM counts c JOIN tops t ON c.auction = t.auction ORDER BY c.auction");
    assert_eq!(joined, format!("auction,n,top\n{expected}"));
    server.terminate();
}

/// A SELECT whose answer explodes (a chain of self-joins on the auction: auction 1
/// has 4 bids, so 12 joins give 4^13 rows) is stopped once its answer passes the
/// server's limit, with a message saying what to do; the server answers the next
/// statement at once.
#[test]
fn an_answer_with_too_many_rows_is_stopped_with_a_message() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&bids_table());
    let joins: String = (1..=12).map(|i| format!(" JOIN bids b{i} ON b{i}.auction = b0.auction")).collect();
    let (code, _, stderr) = server.sql(&["-c", &format!("SELECT b0.price FROM bids b0{joins}")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the answer has more than 1000000 rows, more than an ad-hoc query may return, so the query was stopped"), "{stderr}");
    assert!(stderr.contains("CREATE MATERIALIZED VIEW"), "{stderr}");
    assert_eq!(server.ok_csv("SELECT COUNT(*) AS n FROM bids"), "n\n9\n");
    server.terminate();
}

#[test]
fn an_insert_pipeline_runs_again_after_a_kill_without_losing_or_repeating_rows() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &[]);
    let stdout = server.ok(&format!(
        "SET 'parallelism' = '1';
         SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE seq (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '2000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1');
         CREATE TABLE out (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out SELECT id FROM seq;",
        out.path().display()
    ));
    assert!(stdout.contains("(pipeline p1)"), "{stdout}");
    std::thread::sleep(Duration::from_millis(1500));
    let before = common::committed_ids(out.path());
    assert!(!before.is_empty(), "nothing was committed before the kill");
    server.process.kill();

    let server = Server::start(data.path(), &[]);
    let pipelines = server.ok_csv("SHOW PIPELINES");
    assert!(pipelines.lines().any(|l| l.starts_with("p1,") && l.contains("RUNNING")), "{pipelines}");
    std::thread::sleep(Duration::from_millis(1500));
    server.ok("STOP PIPELINE p1");
    let after = common::committed_ids(out.path());
    assert!(after.len() > before.len(), "the pipeline did not run again: {} rows before, {} after", before.len(), after.len());
    // Every id from 1 up, once: resumed from its checkpoint, nothing lost or written twice.
    let expected: Vec<i64> = (1..=after.len() as i64).collect();
    assert!(after == expected, "ids are not 1..={}: first differences {:?}", after.len(), after.iter().zip(&expected).find(|(a, e)| a != e));
    server.terminate();
}

#[test]
fn piped_input_mixes_statements_and_backslash_commands() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&bids_table());
    let script = data.path().join("total.sql");
    std::fs::write(&script, "SELECT COUNT(*) AS total FROM bids;\n").unwrap();
    let input = format!(
        "\\pset format csv\nSELECT auction, COUNT(*) AS n\n  FROM bids WHERE auction = 1 GROUP BY auction;\n\\i {}\n\\dt\n\\q\nSELECT 1 / 0;\n",
        script.display()
    );
    let mut child = eddy()
        .args(["sql", "--host", &server.address])
        .env_remove("EDDY_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let n = expected_counts().into_iter().find(|(a, _)| *a == 1).unwrap().1;
    let total: i64 = expected_counts().iter().map(|(_, n)| n).sum();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("auction,n\n1,{n}\ntotal\n{total}\ntable,connector,kind\nbids,filesystem,bounded\n"),
        "stderr: {stderr}"
    );
    server.terminate();
}

/// The line after the first one holding `operator` in an `EXPLAIN` answer: that operator's tasks, watermark and state.
fn line_after<'a>(explain: &'a str, operator: &str) -> &'a str {
    let mut lines = explain.lines().skip_while(|l| !l.contains(operator));
    assert!(lines.next().is_some(), "no {operator} in:\n{explain}");
    lines.next().unwrap_or_default()
}

/// Waits until SHOW PIPELINES lists a pipeline with `status`, and returns the listing.
fn wait_status(server: &Server, status: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listing = server.ok_csv("SHOW PIPELINES");
        if listing.contains(status) {
            return listing;
        }
        assert!(Instant::now() < deadline, "no pipeline reached {status}: {listing}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reading_a_view_whose_pipeline_failed_is_an_error_naming_the_failure() {
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("values.json");
    std::fs::write(&input, "{\"k\": 1, \"v\": 5}\n{\"k\": 1, \"v\": 0}\n{\"k\": 2, \"v\": 4}\n").unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&format!("CREATE TABLE vals (k BIGINT, v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')", input.display()));
    server.ok("CREATE MATERIALIZED VIEW healthy AS SELECT k, COUNT(*) AS n FROM vals GROUP BY k");
    server.ok("CREATE MATERIALIZED VIEW ratios AS SELECT k, SUM(100 / v) AS s FROM vals GROUP BY k");
    let listing = wait_status(&server, "FAILED");
    let failed: Vec<&str> = listing.lines().filter(|l| l.contains("FAILED")).collect();
    assert_eq!(failed.len(), 1, "{listing}");
    assert!(failed[0].contains("ratios") && failed[0].contains("Divide by zero"), "{listing}");
    let pipeline_id = failed[0].split(',').next().unwrap();

    // The failed view: an error (exit 1) naming the view, its pipeline and the failure, not "(0 rows)".
    let (code, stdout, stderr) = server.sql(&["-c", "SELECT * FROM ratios"]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stdout.contains("rows)"), "{stdout}");
    assert!(stderr.starts_with("ERROR:  materialized view `ratios` cannot be read: its pipeline "), "{stderr}");
    assert!(stderr.contains(pipeline_id) && stderr.contains("Divide by zero"), "{stderr}");
    // So is following its changes: nothing would ever come.
    let (code, _, stderr) = server.sql(&["-c", "\\subscribe ratios"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("`ratios` cannot be read") && stderr.contains("Divide by zero"), "{stderr}");
    // So is any query that reads it, among other views.
    let (code, _, stderr) = server.sql(&["-c", "SELECT h.k FROM healthy h JOIN ratios r ON h.k = r.k"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("`ratios`") && stderr.contains("Divide by zero"), "{stderr}");

    // A view whose pipeline did not fail still answers.
    wait_status(&server, "FINISHED");
    assert_eq!(server.ok_csv("SELECT k, n FROM healthy ORDER BY k"), "k,n\n1,2\n2,1\n");
    server.terminate();
}

#[test]
fn a_second_server_on_a_data_dir_in_use_is_refused_and_a_killed_holder_leaves_no_stale_lock() {
    let data = tempfile::tempdir().unwrap();
    let mut first = Server::start(data.path(), &[]);
    first.ok(&bids_table());
    let pid = first.process.0.id();

    let second = eddy().args(["server", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data.path()).env_remove("EDDY_TOKEN").output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the data directory {} is in use by another eddy server (pid {pid})", data.path().display())),
        "the refusal names the directory and the holder: {stderr}"
    );
    assert!(second.stdout.is_empty(), "the second server must not start: {}", String::from_utf8_lossy(&second.stdout));
    // The first one is untouched.
    assert!(first.ok_csv("SHOW TABLES").contains("bids,filesystem"));

    // SIGKILL gives no chance to clean up; the kernel releases the lock anyway.
    first.process.kill();
    let again = Server::start(data.path(), &[]);
    assert!(again.ok_csv("SHOW TABLES").contains("bids,filesystem"));
    again.terminate();
}

/// Views are fresh within a second or two at the default settings (a 10 s
/// checkpoint interval): a row produced to a Kafka topic shows in a new keyed view
/// and in an append-only view long before the first checkpoint, and so does each
/// later row. (Before views published between checkpoints, the first row showed
/// only at the first checkpoint, 10 s in.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_shows_a_new_row_within_seconds_at_the_default_checkpoint_interval() {
    use eddy_connectors::kafka::testing::{broker, create_topic, produce, unique_topic, TestRecord};
    let bootstrap = broker();
    let topic = unique_topic("fresh-view");
    create_topic(&bootstrap, &topic, 1).await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&kafka_table("events", "k BIGINT, v BIGINT", &topic, &bootstrap, ""));
    server.ok("CREATE MATERIALIZED VIEW totals AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM events GROUP BY k");
    server.ok("CREATE MATERIALIZED VIEW positive AS SELECT k, v FROM events WHERE v > 0");
    for round in 1..=3i64 {
        produce(&bootstrap, &topic, &[TestRecord::value(0, format!(r#"{{"k":7,"v":{round}}}"#))]).await;
        let produced = Instant::now();
        let want = (format!("n,total\n{round},{}\n", round * (round + 1) / 2), format!("count\n{round}\n"));
        loop {
            let seen = (server.ok_csv("SELECT n, total FROM totals WHERE k = 7"), server.ok_csv("SELECT COUNT(*) AS count FROM positive"));
            if seen == want {
                break;
            }
            assert!(produced.elapsed() < Duration::from_secs(5), "row {round} not in the views 5 s after it was produced: {seen:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("row {round} in both views after {:?}", produced.elapsed());
    }
}

/// Issue 17 (leftover of issue 16): a SELECT whose client went away (Ctrl-C in
/// `eddy sql` drops the stream) went on running in the server, reading its input
/// to the end. It stops: SHOW PIPELINES lists a SELECT while it runs, and no
/// longer once its client is gone.
#[test]
fn a_select_stops_when_its_client_goes_away() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    // Bounded, but a day long: 10 rows a second of a million, and COUNT(*) answers only at the end.
    server.ok("CREATE TABLE slow (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '10', 'number-of-rows' = '1000000')");
    let mut client = common::Running::start(
        common::eddy()
            .args(["sql", "--host", &server.address, "-c", "SELECT COUNT(*) FROM slow"])
            .env_remove("EDDY_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let listing = wait_status(&server, "select@1,RUNNING");
    assert!(listing.contains("SELECT COUNT(*) FROM slow"), "{listing}");
    // Ctrl-C: the client cancels the statement and exits.
    assert!(Command::new("kill").args(["-INT", &client.0.id().to_string()]).status().unwrap().success());
    let status = client.0.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a cancelled statement is a failed one, as in psql");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listing = server.ok_csv("SHOW PIPELINES");
        if !listing.contains("select@1") {
            break;
        }
        assert!(Instant::now() < deadline, "the SELECT still runs after its client went away: {listing}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.terminate();
}

/// Issue 17 (leftover of issue 16): the server planned every statement under
/// one lock, so a statement slow to plan held up every other client. Here one
/// client's INSERT is held at planning (a pause point), and another client's
/// statements and view reads answer meanwhile; then the INSERT goes on.
#[test]
fn other_clients_are_answered_while_a_statement_is_being_planned() {
    let data = tempfile::tempdir().unwrap();
    let paused = data.path().join("planning.paused");
    let server = Server::start_with_env(data.path(), &[], vec![("EDDY_PAUSE_AT", format!("planning:{}", paused.display()))]);
    server.ok(&bids_table());
    server.ok("CREATE TABLE out (auction BIGINT) WITH ('connector' = 'blackhole')");
    server.ok("CREATE MATERIALIZED VIEW per_auction AS SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction");
    wait_finished(&server, 1);
    // The next statement planned pauses there.
    std::fs::write(&paused, "armed").unwrap();
    let mut first = common::Running::start(
        eddy().args(["sql", "--host", &server.address, "-c", "INSERT INTO out SELECT auction FROM bids"]).env_remove("EDDY_TOKEN").stdout(Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&paused).unwrap() != "paused" {
        assert!(Instant::now() < deadline, "the INSERT never reached planning");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Another client, while the INSERT is being planned: each statement must answer.
    let answer = |sql: &str| {
        let mut other = eddy().args(["sql", "--csv", "--host", &server.address, "-c", sql]).env_remove("EDDY_TOKEN").stdout(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while other.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = other.kill();
                panic!("`{sql}` got no answer while another client's statement was being planned");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = other.wait_with_output().unwrap();
        assert!(output.status.success(), "`{sql}` failed");
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(answer("SHOW TABLES").contains("bids,filesystem,bounded"));
    let counts: String = expected_counts().iter().map(|(auction, n)| format!("{auction},{n}\n")).collect();
    assert_eq!(answer("SELECT auction, n FROM per_auction ORDER BY auction"), format!("auction,n\n{counts}"));
    assert!(answer("DESCRIBE bids").contains("price,BIGINT"));
    assert!(answer("SHOW PIPELINES").starts_with("id,name,status"));
    assert_eq!(answer("SELECT COUNT(*) AS n FROM bids"), format!("n\n{}\n", expected_counts().iter().map(|(_, n)| n).sum::<i64>()));
    assert!(answer("EXPLAIN SELECT auction FROM bids").contains("Source"));
    // Still paused: the INSERT has not answered.
    assert!(first.0.try_wait().unwrap().is_none(), "the INSERT finished while it was held at planning");
    std::fs::remove_file(&paused).unwrap();
    assert!(first.0.wait().unwrap().success(), "the INSERT failed once planning went on");
    assert!(server.ok_csv("SHOW PIPELINES").contains("p2,out,"));
    server.terminate();
}

/// An ad-hoc SELECT whose plan takes rows back (a LEFT join's padded rows, a
/// Top-N over them, counts over the join) answers, once its tables end, with
/// the rows its changelog leaves: those Flink 2.3 leaves for the same SQL.
#[test]
fn an_ad_hoc_select_over_a_changelog_answers_with_the_rows_it_leaves() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ok(&common::flink::orders_and_payments());
    let expected = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rank/expected");
    for name in ["top2_orders_per_user_over_left_join", "top3_users_by_paid_orders"] {
        let sql = std::fs::read_to_string(format!("{expected}/{name}.sql")).unwrap();
        let csv = server.ok_csv(sql.trim());
        let mut rows: Vec<String> =
            csv.lines().skip(1).map(|line| line.split(',').map(|v| if v.is_empty() { "null" } else { v }).collect::<Vec<_>>().join(",")).collect();
        rows.sort();
        assert_eq!(rows, common::flink::flink_rows(&format!("{expected}/{name}.txt")), "{name}");
    }
    // Flink leaves 321 rows of the LEFT join, 235 of them with a payment (tests/slt/join/regular.slt).
    let counts = server.ok_csv("SELECT COUNT(*) AS n, COUNT(p.payment_id) AS paid FROM orders o LEFT JOIN payments p ON o.order_id = p.order_id");
    assert_eq!(counts, "n,paid\n321,235\n");
}
