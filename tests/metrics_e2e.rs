//! End to end: `/metrics` of `eddy run --http` and `eddy server --http`, scraped
//! while real pipelines run (over a real Kafka broker and over files) and read
//! with a strict parser of Prometheus' text format (tests/common/prometheus.rs).
//! Issue 20: every pipeline has its own figures, and a watermark shown anywhere is
//! a minimum that never goes back.
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::prometheus::{parse, scrape, Scrape};
use common::{eddy, kafka_table, Running, Server};
use eddy_connectors::kafka::testing::{broker, create_topic, produce, unique_topic, TestRecord};

/// 2024-01-01 00:00:00 UTC.
const BASE_MS: i64 = 1_704_067_200_000;

/// Records `range` of the topic: `{"k": i, "ts": BASE + i s}`, in order, all to partition 0.
fn records(range: std::ops::Range<i64>) -> Vec<TestRecord> {
    range.map(|i| TestRecord::value(0, format!(r#"{{"k": {i}, "ts": {}}}"#, BASE_MS + i * 1000))).collect()
}

/// Scrapes `address` until `ready` holds (the pipelines get there on their own;
/// the deadline only keeps a broken build from hanging the suite).
fn scrape_until(address: &str, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let scraped = scrape(address);
        if ready(&scraped) {
            return scraped;
        }
        assert!(Instant::now() < deadline, "never got {what}; last scrape: {:#?}", scraped.samples);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pipeline's watermark as `/metrics` shows it, in ms.
fn watermark_ms(scraped: &Scrape, pipeline: &str) -> Option<i64> {
    scraped.get("eddy_pipeline_watermark_timestamp_seconds", &[("pipeline", pipeline)]).map(|s| (s * 1000.0).round() as i64)
}

/// Every counter of `before` is still there in `after`, and not lower.
fn assert_counters_never_go_back(before: &Scrape, after: &Scrape) {
    for sample in before.samples.iter().filter(|s| s.name.ends_with("_total")) {
        let labels: Vec<(&str, &str)> = sample.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let now = after.value(&sample.name, &labels);
        assert!(now >= sample.value, "{} {:?} went from {} to {now}", sample.name, sample.labels, sample.value);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_each_pipelines_own_figures_over_kafka_and_a_file() {
    let bootstrap = broker();
    let topic = unique_topic("metrics");
    create_topic(&bootstrap, &topic, 1).await;
    produce(&bootstrap, &topic, &records(0..40)).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("counted.json");
    std::fs::write(&input, (0..25).map(|i| format!("{{\"k\": {i}}}\n")).collect::<String>()).unwrap();
    // Two pipelines over the same topic whose watermarks differ by an hour, and one over a bounded file.
    let script = dir.path().join("pipelines.sql");
    std::fs::write(
        &script,
        format!(
            "{};\n{};\n
             CREATE TABLE counted (k BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE early_out (k BIGINT) WITH ('connector' = 'blackhole');
             CREATE TABLE recent_out (k BIGINT) WITH ('connector' = 'blackhole');
             CREATE TABLE counted_out (k BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO early_out SELECT k FROM early;
             INSERT INTO recent_out SELECT k FROM recent;
             INSERT INTO counted_out SELECT k FROM counted;",
            kafka_table("early", "k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' HOUR", &topic, &bootstrap, ""),
            kafka_table("recent", "k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND", &topic, &bootstrap, ""),
            input.display()
        ),
    )
    .unwrap();
    let mut run = Running::start(
        eddy().args(["run", "--parallelism", "1", "--progress-secs", "1", "--http", "127.0.0.1:0"]).arg(&script).stdout(Stdio::null()).stderr(Stdio::piped()),
    );
    // Stderr, line by line: the metrics address first, then progress lines.
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (address_tx, address_rx) = mpsc::channel();
    let stderr = run.0.stderr.take().unwrap();
    let seen = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("eddy: metrics at http://") {
                let _ = address_tx.send(rest.trim_end_matches("/metrics").to_string());
            }
            seen.lock().unwrap().push(line);
        }
    });
    let address = address_rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no metrics address: {:?}", lines.lock().unwrap()));

    let lag = |s: &Scrape, pipeline: &str| s.get("eddy_source_consumer_lag_records", &[("pipeline", pipeline)]);
    let (early_1, recent_1) = (BASE_MS + 39_000 - 3_600_000, BASE_MS + 38_000);
    let first = scrape_until(&address, "every row read and both watermarks", |s| {
        watermark_ms(s, "early_out") == Some(early_1)
            && watermark_ms(s, "recent_out") == Some(recent_1)
            && lag(s, "early_out") == Some(0.0)
            && lag(s, "recent_out") == Some(0.0)
            && s.get("eddy_sink_rows_committed_total", &[("pipeline", "counted_out")]) == Some(25.0)
            // The file's pipeline ended while the others go on: it says so.
            && s.get("eddy_pipeline_status", &[("pipeline", "counted_out"), ("status", "finished")]) == Some(1.0)
    });
    assert_eq!(first.value("eddy_pipeline_status", &[("pipeline", "counted_out"), ("status", "running")]), 0.0);
    // Each pipeline's own figures: the file's rows are its pipeline's alone.
    assert_eq!(first.value("eddy_pipeline_rows_in_total", &[("pipeline", "early_out")]), 40.0);
    assert_eq!(first.value("eddy_pipeline_rows_in_total", &[("pipeline", "recent_out")]), 40.0);
    assert_eq!(first.value("eddy_pipeline_rows_in_total", &[("pipeline", "counted_out")]), 25.0);
    assert_eq!(first.value("eddy_pipeline_rows_out_total", &[("pipeline", "counted_out")]), 25.0);
    assert_eq!(first.value("eddy_sink_rows_written_total", &[("pipeline", "counted_out"), ("sink", "counted_out")]), 25.0);
    assert_eq!(first.value("eddy_source_rows_total", &[("pipeline", "counted_out"), ("source", "counted")]), 25.0);
    assert_eq!(first.value("eddy_source_offset", &[("pipeline", "early_out"), ("source", "early")]), 40.0);
    // The source partition's watermark, and how far it trails the clock (its rows are from 2024).
    let partition_watermark = first.value("eddy_source_watermark_timestamp_seconds", &[("pipeline", "recent_out")]);
    assert_eq!((partition_watermark * 1000.0).round() as i64, recent_1);
    // The lag is the clock at the scrape minus the watermark: within a second of
    // that truth, for the partition and for the pipeline (whose watermark, at its
    // sink, is the same here), bounded by the clock read just before and after.
    let clock_s = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let before = clock_s();
    let timed = scrape(&address);
    let after = clock_s();
    let truth = |at: f64| at - recent_1 as f64 / 1000.0;
    let lags: [(&str, &[(&str, &str)]); 2] = [
        ("eddy_source_watermark_lag_seconds", &[("pipeline", "recent_out"), ("source", "recent")]),
        ("eddy_pipeline_watermark_lag_seconds", &[("pipeline", "recent_out")]),
    ];
    for (name, labels) in lags {
        let lag = timed.value(name, labels);
        assert!(lag >= truth(before) - 1.0 && lag <= truth(after) + 1.0, "{name} {lag} s, truth {} to {} s", truth(before), truth(after));
    }
    // Operators: the rows every source task's first operator took are the rows read.
    assert_eq!(first.sum("eddy_operator_rows_in_total", &[("pipeline", "counted_out"), ("operator_id", "0.0")]), 25.0);
    assert_eq!(first.value("eddy_pipeline_status", &[("pipeline", "early_out"), ("status", "running")]), 1.0);

    // More input: counters go up, the lag comes back to 0, the watermarks advance.
    produce(&bootstrap, &topic, &records(40..50)).await;
    let (early_2, recent_2) = (BASE_MS + 49_000 - 3_600_000, BASE_MS + 48_000);
    let second = scrape_until(&address, "the new rows read", |s| {
        watermark_ms(s, "early_out") == Some(early_2)
            && watermark_ms(s, "recent_out") == Some(recent_2)
            && lag(s, "early_out") == Some(0.0)
            && lag(s, "recent_out") == Some(0.0)
    });
    assert_eq!(second.value("eddy_pipeline_rows_in_total", &[("pipeline", "early_out")]), 50.0);
    assert_eq!(second.value("eddy_operator_rows_in_total", &[("pipeline", "early_out"), ("operator_id", "0.0")]), 50.0);
    assert_eq!(second.value("eddy_source_offset", &[("pipeline", "early_out"), ("source", "early")]), 50.0);
    assert_counters_never_go_back(&first, &second);

    // The progress line shows the lowest watermark of the run's pipelines (not the
    // last one a sink stored), and the rows of all three.
    let shown_before = lines.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(30);
    let progress = loop {
        let new: Vec<String> = lines.lock().unwrap()[shown_before..].iter().filter(|l| l.contains("rows in")).cloned().collect();
        if let Some(line) = new.last() {
            break line.clone();
        }
        assert!(Instant::now() < deadline, "no progress line: {:?}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(progress.contains("rows in 125 ") && progress.contains("watermark 2023-12-31 23:00:49.000"), "{progress}");
    run.kill();
}

#[test]
fn server_serves_every_pipelines_figures() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--http", "127.0.0.1:0"]);
    let address = server
        .banner
        .split("metrics at http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .unwrap_or_else(|| panic!("no metrics address in {:?}", server.banner))
        .to_string();
    // A bounded pipeline over the 9 bids of tests/data/bids.json, and one that keeps running.
    server.ok(&format!(
        "{}; CREATE TABLE out (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT auction, price FROM bids",
        common::bids_table()
    ));
    server.ok(&common::running_bid_counts("per_k", 2000));
    let sink_pipeline = |s: &Scrape, sink: &str| s.find("eddy_sink_rows_written_total", &[("sink", sink)]).first().map(|x| x.labels["pipeline"].clone());
    let first = scrape_until(&address, "the bounded pipeline finished and the view's rows", |s| {
        let finished = sink_pipeline(s, "out").is_some_and(|p| s.get("eddy_pipeline_status", &[("pipeline", &p), ("status", "finished")]) == Some(1.0));
        finished && sink_pipeline(s, "per_k").is_some_and(|p| s.value("eddy_pipeline_rows_in_total", &[("pipeline", &p)]) > 0.0)
    });
    let bounded = sink_pipeline(&first, "out").unwrap();
    assert_eq!(first.value("eddy_pipeline_rows_in_total", &[("pipeline", &bounded)]), 9.0);
    assert_eq!(first.value("eddy_sink_rows_committed_total", &[("pipeline", &bounded)]), 9.0);
    assert_eq!(first.value("eddy_pipeline_uptime_seconds", &[("pipeline", &bounded)]), 0.0);
    let running = sink_pipeline(&first, "per_k").unwrap();
    assert_eq!(first.value("eddy_pipeline_status", &[("pipeline", &running), ("status", "running")]), 1.0);
    assert_eq!(first.value("eddy_pipeline_restarts_total", &[("pipeline", &running)]), 0.0);
    // The running pipeline's counters go up between scrapes.
    let rows_in = first.value("eddy_pipeline_rows_in_total", &[("pipeline", &running)]);
    let second = scrape_until(&address, "more rows", |s| s.value("eddy_pipeline_rows_in_total", &[("pipeline", &running)]) > rows_in);
    assert!(second.sum("eddy_operator_rows_in_total", &[("pipeline", &running)]) > first.sum("eddy_operator_rows_in_total", &[("pipeline", &running)]));
    assert_counters_never_go_back(&first, &second);
    // A restart counts.
    server.ok(&format!("STOP PIPELINE {running}"));
    server.ok(&format!("RESTART PIPELINE {running}"));
    let third = scrape(&address);
    assert_eq!(third.value("eddy_pipeline_restarts_total", &[("pipeline", &running)]), 1.0);
    // Anything but /metrics is not found.
    assert_eq!(common::prometheus::get(&address, "/nothing").0, 404);
}

/// With the server's `--token`, `/metrics` and the console's API need it, as
/// gRPC calls do; the console's page itself loads, and asks for it.
#[test]
fn a_server_token_guards_metrics_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(dir.path(), &["--http", "127.0.0.1:0"], vec![("EDDY_TOKEN", "s3cret".to_string())]);
    let address = server.banner.split("metrics at http://").nth(1).and_then(|rest| rest.split("/metrics").next()).unwrap().to_string();
    let get = |path: &str, token: Option<&str>| common::prometheus::get_with_token(&address, path, token);
    let (status, _, body) = get("/metrics", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("needs a token"), "{body}");
    assert_eq!(get("/metrics", Some("wrong")).0, 401);
    assert_eq!(get("/metrics", Some("s3cre")).0, 401);
    let (status, content_type, _) = get("/metrics", Some("s3cret"));
    assert_eq!((status, content_type.as_str()), (200, "text/plain; version=0.0.4; charset=utf-8"));
    let (status, content_type, body) = get("/api/pipelines", None);
    assert_eq!((status, content_type.as_str()), (401, "application/json"));
    assert!(body.contains("\"error\""), "{body}");
    assert_eq!(get("/api/pipelines", Some("s3cret")).0, 200);
    let (status, content_type, page) = get("/", None);
    assert_eq!((status, content_type.as_str()), (200, "text/html; charset=utf-8"));
    assert!(page.contains("console.js"), "{page}");
    server.terminate();
}

/// A page from another site cannot make the browser run statements on a server
/// (without a token, on loopback, nothing else would stop it): the API takes
/// POSTs only as JSON, and only from the server's own origin.
#[test]
fn the_api_refuses_posts_another_site_could_send() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--http", "127.0.0.1:0"]);
    let address = server.banner.split("metrics at http://").nth(1).and_then(|rest| rest.split("/metrics").next()).unwrap().to_string();
    let post = |headers: &str| {
        let body = r#"{"sql": "CREATE TABLE made (k BIGINT) WITH ('connector' = 'blackhole')"}"#;
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(stream, "POST /api/sql HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
    };
    assert_eq!(post("Content-Type: text/plain\r\n"), 415);
    assert_eq!(post(""), 415);
    assert_eq!(post("Content-Type: application/json\r\nOrigin: http://evil.example\r\n"), 403);
    assert!(!server.ok_csv("SHOW TABLES").contains("made"), "a refused statement ran");
    assert_eq!(post(&format!("Content-Type: application/json\r\nOrigin: http://{address}\r\n")), 200);
    assert!(server.ok_csv("SHOW TABLES").contains("made"));
    server.terminate();
}

#[test]
fn a_bad_http_address_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("x.sql");
    std::fs::write(&script, "CREATE TABLE t (k BIGINT) WITH ('connector' = 'blackhole');").unwrap();
    let output = eddy().args(["run", "--http", "localhost:http"]).arg(&script).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--http") && stderr.contains("HOST:PORT"), "{stderr}");
}

/// docs/METRICS.md describes every family `/metrics` may show, and it and the
/// Grafana dashboard name no metric that does not exist.
#[test]
fn the_docs_and_the_dashboard_name_the_real_metrics() {
    let families: std::collections::BTreeSet<&str> = eddy_engine::metrics::family_names().into_iter().collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let names_in = |text: &str| -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        for (at, _) in text.match_indices("eddy_") {
            let name: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // A summary's series are its family's.
            let family = ["_sum", "_count"].iter().find_map(|s| name.strip_suffix(s).filter(|base| families.contains(base))).unwrap_or(&name).to_string();
            names.insert(family);
        }
        names
    };
    let documented = names_in(&std::fs::read_to_string(root.join("docs/METRICS.md")).unwrap());
    let dashboard = names_in(&std::fs::read_to_string(root.join("docs/grafana/eddy.json")).unwrap());
    for family in &families {
        assert!(documented.contains(*family), "docs/METRICS.md does not describe {family}");
    }
    for name in documented.iter().chain(&dashboard) {
        assert!(families.contains(name.as_str()), "{name} is named in the docs or the dashboard but is not a metric");
    }
    let panels = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(root.join("docs/grafana/eddy.json")).unwrap()).unwrap()["panels"]
        .as_array()
        .unwrap()
        .len();
    assert!(panels >= 10, "{panels} panels");
}

#[test]
fn the_reader_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\n\"} 1\na_total{x=\"r\"} 2\n# TYPE s summary\ns_sum 1.5\ns_count 2\n";
    let scrape = parse(good).unwrap();
    assert_eq!(scrape.value("a_total", &[("x", "q\"\n")]), 1.0);
    assert_eq!(scrape.value("s_count", &[]), 2.0);
    for bad in [
        "a 1",                               // no final newline
        "a{x=\"1\"} 1\nb 2\na{x=\"2\"} 3\n", // a family split up
        "a 1\na 2\n",                        // one series twice
        "a{x=1} 1\n",                        // unquoted label
        "a{x=\"\\q\"} 1\n",                  // bad escape
        "1a 1\n",                            // bad name
        "a one\n",                           // bad value
        "a 1\n# TYPE a gauge\n",             // TYPE after samples
        "# TYPE a counter\na -1\n",          // negative counter
        "# TYPE a gauge\n# TYPE a gauge\n",  // TYPE twice
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

/// `EXPLAIN ANALYZE` shows each operator with the figures of its instances; over
/// a bounded input of known size (the 9 bids of tests/data/bids.json) they are exact.
#[test]
fn explain_analyze_shows_each_operators_figures() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.ok(&format!(
        "{}; CREATE TABLE cheap (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO cheap SELECT auction, price FROM bids WHERE price < 100",
        common::bids_table()
    ));
    // Prices under 100 among the 9 bids: 50, 90, 70, 10, 80, 15.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let csv = server.ok_csv("EXPLAIN ANALYZE cheap");
        let rows: Vec<Vec<String>> = csv.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect();
        if rows.last().is_some_and(|sink| sink[4] == "6") {
            break rows;
        }
        assert!(Instant::now() < deadline, "the pipeline never committed its rows:\n{csv}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let header = server.ok_csv("EXPLAIN ANALYZE cheap").lines().next().unwrap().to_string();
    assert_eq!(header, "stage,operator,tasks,rows_in,rows_out,rows_in_per_s,rows_out_per_s,busy,backpressured,state_bytes,state_keys,watermark");
    // The source's first operator took every bid; the filter passed 6; the sink wrote and committed 6.
    let source_prep = rows.iter().find(|r| r[1] == "SourcePrep").unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!((source_prep[0].as_str(), source_prep[2].as_str(), source_prep[3].as_str()), ("0", "1", "9"));
    let filter = rows.iter().find(|r| r[1] == "Filter").unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!((filter[3].as_str(), filter[4].as_str()), ("9", "6"));
    let sink = rows.last().unwrap();
    assert_eq!((sink[0].as_str(), sink[1].as_str(), sink[3].as_str(), sink[4].as_str()), ("sink", "Sink cheap (6 rows committed)", "6", "6"));
    // A filter holds no state: no bytes, no keys.
    assert_eq!((filter[9].as_str(), filter[10].as_str()), ("0", "0"));

    // State keys: an endless stream (none of whose rows pass its filter) joined to
    // the bids. The join keeps the 9 bids by key, the 3 auctions among them, also
    // once the file has ended.
    server.ok("CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3))
           WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.rate' = '100');
         CREATE TABLE enriched (auction BIGINT, price BIGINT, listed BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO enriched SELECT b.auction, b.price, f.price FROM bid b JOIN bids f ON b.auction = f.auction WHERE b.price < 0");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let csv = server.ok_csv("EXPLAIN ANALYZE enriched");
        // The operators show once the run has started its tasks, a moment after the INSERT.
        let join = csv.lines().skip(1).map(|l| l.split(',').collect::<Vec<_>>()).find(|r| r[1] == "RegularJoin");
        // Its rows in are the bids (the stream's rows are filtered out before it);
        // its keys are counted after each batch.
        if join.is_some_and(|join| join[3] == "9" && join[10] == "3" && join[9] != "0") {
            break;
        }
        assert!(Instant::now() < deadline, "the join never showed the 9 bids' 3 auctions as its state keys:\n{csv}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // An unknown pipeline is named as such.
    let (code, _, stderr) = server.sql(&["-c", "EXPLAIN ANALYZE nothing"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no pipeline `nothing`"), "{stderr}");
}
