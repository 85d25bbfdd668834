//! `eddy server --cluster`: real servers sharing one catalog through a command
//! log on the real Kafka broker the test command starts (see src/server/cluster.rs).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{bids_table, eddy, kafka_table, running_bid_counts, Running};
use eddy_connectors::kafka::testing::{broker, create_topic, produce_with, producer, unique_topic, TestRecord};

/// One member of a cluster, on a port of its own that it keeps when started again.
struct Member {
    process: Running,
    address: String,
    /// Where it serves `/metrics`.
    http: String,
}

/// How a test's members join the group.
#[derive(Clone, Copy)]
enum Membership {
    Dynamic,
    /// Each with `--instance-id member-I`.
    Static,
}

/// How long a member may go unheard before its pipelines move: the broker's least.
const SESSION_TIMEOUT: &str = "6s";
/// A session timeout longer than any test waits.
const LONG_SESSION_TIMEOUT: &str = "120s";

impl Member {
    /// Starts a member of `cluster` with its checkpoints in the shared `checkpoints`.
    /// `instance`: its `--instance-id`, if it is a static member.
    fn start(cluster: &str, data_dir: &Path, checkpoints: &Path, port: u16, session_timeout: &str, instance: Option<String>) -> Member {
        let mut command = eddy();
        command
            .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--http", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--checkpoints")
            .arg(checkpoints)
            .args(["--cluster", cluster, "--kafka", &broker(), "--session-timeout", session_timeout])
            .args(instance.iter().flat_map(|id| ["--instance-id", id.as_str()]))
            .env_remove("EDDY_TOKEN")
            // Armed by writing `armed` into it: see `a_member_cut_off_from_the_group_commits_nothing`.
            .env("EDDY_PAUSE_AT", format!("slot-lost:{}", data_dir.join("hold-slot-loss").display()))
            .stdout(Stdio::piped());
        let mut process = Running::start(&mut command);
        let mut line = String::new();
        BufReader::new(process.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains(&format!("member 127.0.0.1:{port} of cluster {cluster}")), "unexpected first line: {line:?}");
        let http = line.split("metrics at http://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_else(|| panic!("no metrics address in {line:?}"));
        Member { process, address: format!("127.0.0.1:{port}"), http: http.to_string() }
    }

    /// `eddy sql --csv -c SQL` against this member: (exit code, stdout, stderr).
    fn sql(&self, sql: &str) -> (i32, String, String) {
        let output = eddy().args(["sql", "--csv", "--host", &self.address, "-c", sql]).env_remove("EDDY_TOKEN").output().unwrap();
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    }

    fn ok(&self, sql: &str) -> String {
        let (code, stdout, stderr) = self.sql(sql);
        assert_eq!(code, 0, "`{sql}` on {} failed: {stderr}", self.address);
        stdout
    }

    /// Waits until `sql` succeeds with an answer `expected` accepts.
    fn wait_for(&self, sql: &str, expected: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, answer, error) = self.sql(sql);
            if code == 0 && expected(&answer) {
                return answer;
            }
            assert!(Instant::now() < deadline, "`{sql}` on {} still answers {answer}{error}", self.address);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The status column of pipeline `id` in SHOW PIPELINES (CSV).
fn status_of(pipelines: &str, id: &str) -> String {
    pipelines.lines().find(|l| l.starts_with(&format!("{id},"))).and_then(|l| l.split(',').nth(2)).unwrap_or_default().to_string()
}

/// Per bidder of tests/data/bids.json, counted here: `bidder,bids,total` lines in bidder order.
fn expected_per_bidder() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bids.json")).unwrap();
    let mut per_bidder = std::collections::BTreeMap::<i64, (i64, i64)>::new();
    for line in text.lines() {
        let bid: serde_json::Value = serde_json::from_str(line).unwrap();
        let entry = per_bidder.entry(bid["bidder"].as_i64().unwrap()).or_default();
        entry.0 += 1;
        entry.1 += bid["price"].as_i64().unwrap();
    }
    let mut lines = vec!["bidder,bids,total".to_string()];
    lines.extend(per_bidder.iter().map(|(bidder, (bids, total))| format!("{bidder},{bids},{total}")));
    lines.join("\n") + "\n"
}

/// A cluster of `n` members on fresh directories, sharing one checkpoint location.
struct Cluster {
    name: String,
    session_timeout: &'static str,
    membership: Membership,
    members: Vec<Member>,
    ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
    checkpoints: tempfile::TempDir,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Self::start_with(n, SESSION_TIMEOUT)
    }

    fn start_with(n: usize, session_timeout: &'static str) -> Cluster {
        Self::start_as(n, session_timeout, Membership::Dynamic)
    }

    fn start_as(n: usize, session_timeout: &'static str, membership: Membership) -> Cluster {
        let mut cluster = Cluster {
            name: unique_topic("cluster"),
            session_timeout,
            membership,
            members: Vec::new(),
            ports: (0..n).map(|_| free_port()).collect(),
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            checkpoints: tempfile::tempdir().unwrap(),
        };
        cluster.members = (0..n).map(|i| cluster.member(i)).collect();
        cluster
    }

    /// Starts member `i`, under its address and directory.
    fn member(&self, i: usize) -> Member {
        let instance = match self.membership {
            Membership::Dynamic => None,
            Membership::Static => Some(format!("member-{i}")),
        };
        Member::start(&self.name, self.dirs[i].path(), self.checkpoints.path(), self.ports[i], self.session_timeout, instance)
    }

    /// Starts member `i` again, under the same address and directory.
    fn restart(&mut self, i: usize) {
        self.members[i].process.kill();
        self.members[i] = self.member(i);
    }

    /// The member running pipeline `id` once every member agrees which it is
    /// (the group may still be spreading slots), with its index.
    fn runner_of(&self, id: &str) -> (usize, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let statuses: Vec<String> = self.members.iter().map(|m| status_of(&m.sql("SHOW PIPELINES").1, id)).collect();
            let named: Vec<Option<&str>> = statuses.iter().map(|s| s.split_once(" on ").map(|(_, member)| member)).collect();
            if let Some(Some(runner)) = named.first() {
                if named.iter().all(|n| n == &Some(*runner)) {
                    if let Some(i) = self.members.iter().position(|m| m.address == *runner) {
                        if !statuses[i].starts_with("REMOTE") && statuses.iter().enumerate().all(|(j, s)| j == i || s.starts_with("REMOTE")) {
                            return (i, runner.to_string());
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "the members do not agree where {id} runs: {statuses:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn members_share_one_catalog_and_a_restarted_member_catches_up() {
    let mut cluster = Cluster::start(3);
    let members = &cluster.members;

    // DDL on one member is there at once when it answers, and on the others as
    // soon as they read the log.
    members[0].ok(&bids_table());
    members[0].ok("CREATE VIEW cheap AS SELECT * FROM bids WHERE price < 60");
    assert!(members[0].ok("SHOW VIEWS").contains("cheap,view"));
    for member in members {
        member.wait_for("SHOW TABLES", |tables| tables.contains("bids,filesystem,bounded"));
        member.wait_for("SHOW VIEWS", |views| views.contains("cheap,view"));
    }

    // A materialized view runs on one member, the one its slot is given to;
    // every member answers its rows, asking that one.
    let created = members[1].ok("CREATE MATERIALIZED VIEW per_bidder AS SELECT bidder, COUNT(*) AS bids, SUM(price) AS total FROM bids GROUP BY bidder");
    assert!(created.contains("p1"), "{created}");
    let (runner, runner_address) = cluster.runner_of("p1");
    members[runner].wait_for("SHOW PIPELINES", |p| status_of(p, "p1") == format!("FINISHED on {runner_address}"));
    for member in members {
        assert_eq!(member.wait_for("SELECT * FROM per_bidder ORDER BY bidder", |_| true), expected_per_bidder(), "read on {}", member.address);
    }
    assert_eq!(members[(runner + 1) % 3].ok("SELECT total FROM per_bidder WHERE bidder = 13"), "total\n25\n");
    // Each member's /metrics shows the pipelines it runs, and no other's.
    for (i, member) in members.iter().enumerate() {
        let (_, _, metrics) = common::prometheus::get(&member.http, "/metrics");
        assert_eq!(metrics.contains("pipeline=\"p1\""), i == runner, "member {i} (p1 runs on {runner}): {metrics}");
        // Labelled by member, so sums across members keep them apart.
        if i == runner {
            let labelled = format!("eddy_pipeline_rows_in_total{{member=\"{}\",pipeline=\"p1\"}}", member.address);
            assert!(metrics.contains(&labelled), "no {labelled} in {metrics}");
        }
    }

    // A pipeline reading a view could run on a member that does not keep its rows.
    let (code, _, stderr) = members[0].sql("CREATE MATERIALIZED VIEW top AS SELECT MAX(total) AS m FROM per_bidder");
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot read materialized view `per_bidder`"), "{stderr}");

    // Only the member running a pipeline stops or restarts it, and the others say where it runs.
    let (code, _, stderr) = members[(runner + 2) % 3].sql("STOP PIPELINE p1");
    assert_ne!(code, 0);
    assert!(stderr.contains(&format!("runs on cluster member {runner_address}")), "{stderr}");

    // Two members creating one name at once: the log orders them, so the same
    // one wins on every member and the other fails on its sender.
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(|| members[0].sql("CREATE TABLE twice (from_first INT) WITH ('connector' = 'datagen')"));
        let b = s.spawn(|| members[2].sql("CREATE TABLE twice (from_third INT) WITH ('connector' = 'datagen')"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!([first.0, second.0].iter().filter(|code| **code == 0).count(), 1, "exactly one wins: {first:?} {second:?}");
    let loser = if first.0 == 0 { &second.2 } else { &first.2 };
    assert!(loser.contains("twice"), "the loser names the table: {loser}");
    let columns: Vec<String> = members.iter().map(|m| m.wait_for("DESCRIBE twice", |_| true)).collect();
    assert!(columns.iter().all(|c| *c == columns[0]), "every member holds the same table: {columns:?}");

    // A member killed misses changes, and has them once started again.
    let (killed, other) = ((runner + 1) % 3, (runner + 2) % 3);
    cluster.members[killed].process.kill();
    cluster.members[other].ok("CREATE TABLE later (a INT) WITH ('connector' = 'datagen'); DROP VIEW cheap; SET 'parallelism' = '3'");
    let tables_elsewhere = cluster.members[other].ok("SHOW TABLES");
    cluster.restart(killed);
    let members = &cluster.members;
    assert_eq!(members[killed].ok("SHOW TABLES"), tables_elsewhere);
    assert!(!members[killed].ok("SHOW VIEWS").contains("cheap"));
    assert_eq!(members[killed].ok("DESCRIBE twice"), columns[0]);
    assert_eq!(members[killed].ok("SELECT * FROM per_bidder ORDER BY bidder"), expected_per_bidder());
    // Pipeline ids come from the log, so the next one is the same on every member.
    let second_view = members[killed].ok("CREATE MATERIALIZED VIEW n_bids AS SELECT COUNT(*) AS n FROM bids");
    assert!(second_view.contains("p2"), "{second_view}");
    for member in members {
        member.wait_for("SELECT n FROM n_bids", |rows| rows == "n\n9\n");
    }

    // A member that could not resume the others' pipelines refuses to join.
    let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let refused = eddy()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--checkpoints")
        .arg(elsewhere.path())
        .args(["--cluster", &cluster.name, "--kafka", &broker()])
        .env_remove("EDDY_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("keeps its checkpoints at {}", cluster.checkpoints.path().display())), "{stderr}");
    assert!(stderr.contains(&elsewhere.path().display().to_string()), "{stderr}");
}

/// 2024-01-01 00:00:00 UTC.
const BASE_MS: i64 = 1_704_067_200_000;
/// Events per one-second window: one every 10 ms of event time.
const PER_WINDOW: i64 = 100;

/// Event `i` of the failover tests: id `i` at 10 ms of event time each, on one of 4 partitions.
fn event(i: i64) -> TestRecord {
    TestRecord::value((i % 4) as i32, format!(r#"{{"id":{i},"ts":{}}}"#, BASE_MS + i * 10))
}

/// One-second windows the failover tests count.
const WINDOWS: i64 = 600;

/// A TUMBLE count of a Kafka topic into JSON files, run by a cluster: the
/// pipeline (`p1`) that the failover tests kill, stop and fence the member of.
struct Counting {
    runtime: tokio::runtime::Runtime,
    producer: rdkafka::producer::FutureProducer,
    topic: String,
    out: tempfile::TempDir,
}

impl Counting {
    /// Creates the pipeline with a third of the events in its topic, and waits
    /// until it has committed output and saved checkpoints.
    fn start(cluster: &Cluster) -> Counting {
        let bootstrap = broker();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let topic = unique_topic("cluster-events");
        runtime.block_on(create_topic(&bootstrap, &topic, 4));
        let counting = Counting { producer: producer(&bootstrap), topic, out: tempfile::tempdir().unwrap(), runtime };
        counting.produce(0..WINDOWS * PER_WINDOW / 3);
        let members = &cluster.members;
        members[0].ok("SET 'execution.checkpointing.interval' = '300 ms'");
        members[0].ok(&kafka_table("events", "id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts", &counting.topic, &bootstrap, ""));
        members[0].ok(&format!(
            "CREATE TABLE per_second (window_start TIMESTAMP(3), n BIGINT, ids BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            counting.out.path().display()
        ));
        members[2].ok("INSERT INTO per_second SELECT window_start, COUNT(*) AS n, SUM(id) AS ids FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end");
        let deadline = Instant::now() + Duration::from_secs(60);
        while counting.committed() == 0 || common::newest_checkpoint(cluster.checkpoints.path()) < 2 {
            assert!(Instant::now() < deadline, "no output committed yet");
            std::thread::sleep(Duration::from_millis(100));
        }
        counting
    }

    fn produce(&self, ids: std::ops::Range<i64>) {
        self.runtime.block_on(produce_with(&self.producer, &self.topic, &ids.map(event).collect::<Vec<_>>()));
    }

    /// The rest of the events.
    fn produce_rest(&self) {
        self.produce(WINDOWS * PER_WINDOW / 3..WINDOWS * PER_WINDOW);
    }

    fn committed(&self) -> usize {
        common::committed_rows(self.out.path()).len()
    }

    /// Closes the last window (an event past it on every partition), waits for
    /// every window, and checks each is written once, with every event of it once.
    fn close_and_check(&self) {
        let closing: Vec<TestRecord> = (0..4).map(|p| TestRecord::value(p, format!(r#"{{"id":-1,"ts":{}}}"#, BASE_MS + WINDOWS * 1000 + 5000))).collect();
        self.runtime.block_on(produce_with(&self.producer, &self.topic, &closing));
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.committed() < WINDOWS as usize {
            assert!(Instant::now() < deadline, "{} of {WINDOWS} windows written", self.committed());
            std::thread::sleep(Duration::from_millis(200));
        }
        // Anything written twice would come with the next commit.
        std::thread::sleep(Duration::from_secs(1));
        let mut rows: Vec<(String, i64, i64)> = common::committed_rows(self.out.path())
            .iter()
            .map(|r| (r["window_start"].as_str().unwrap().to_string(), r["n"].as_i64().unwrap(), r["ids"].as_i64().unwrap()))
            .collect();
        rows.sort();
        assert_eq!(rows.len(), WINDOWS as usize, "each window written once");
        for (w, (start, n, ids)) in rows.iter().enumerate() {
            let first = w as i64 * PER_WINDOW;
            assert_eq!((*n, *ids), (PER_WINDOW, (first..first + PER_WINDOW).sum::<i64>()), "window {start}");
        }
    }
}

/// Waits until member `watcher` sees p1 run on a member other than `gone`; that member.
fn moved_off(watcher: &Member, gone: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status_of(&watcher.ok("SHOW PIPELINES"), "p1");
        match status.strip_prefix("RUNNING on ").or_else(|| status.strip_prefix("REMOTE on ")) {
            Some(member) if member != gone => return member.to_string(),
            _ => {}
        }
        assert!(Instant::now() < deadline, "p1 did not move off {gone}: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_members_pipeline_resumes_on_another_and_writes_each_row_once() {
    let mut cluster = Cluster::start(3);
    let counting = Counting::start(&cluster);
    let (runner, runner_address) = cluster.runner_of("p1");

    // Killed while it runs: after the session timeout the group gives its slots
    // to the others, and one of them resumes the pipeline from its checkpoint.
    cluster.members[runner].process.kill();
    let killed_at = Instant::now();
    counting.produce_rest();
    let resumed_on = moved_off(&cluster.members[(runner + 1) % 3], &runner_address);
    eprintln!("p1 moved from {runner_address} to {resumed_on} {:.1} s after the kill", killed_at.elapsed().as_secs_f64());
    counting.close_and_check();

    // A pipeline stopped by the member running it stays stopped when it moves again.
    let now_runs = cluster.members.iter().position(|m| m.address == resumed_on).unwrap();
    cluster.members[now_runs].ok("STOP PIPELINE p1");
    cluster.members[now_runs].process.kill();
    let other = &cluster.members[(0..3).find(|i| *i != now_runs && *i != runner).unwrap()];
    other.wait_for("SHOW PIPELINES", |p| status_of(p, "p1") == format!("STOPPED on {}", other.address));
}

#[test]
fn a_static_member_killed_and_started_again_runs_its_pipeline_again_before_the_session_timeout() {
    // With a session timeout longer than the test waits, a dynamic member's
    // pipelines would stay with its dead self; a static one takes them back.
    let mut cluster = Cluster::start_as(3, LONG_SESSION_TIMEOUT, Membership::Static);
    let counting = Counting::start(&cluster);
    let (runner, runner_address) = cluster.runner_of("p1");
    // Heartbeats are 3 s apart: let any rebalance still spreading slots end.
    std::thread::sleep(Duration::from_secs(7));
    let killed = Instant::now();
    cluster.restart(runner);
    counting.produce_rest();
    cluster.members[runner].wait_for("SHOW PIPELINES", |p| status_of(p, "p1") == format!("RUNNING on {runner_address}"));
    eprintln!("p1 ran again on the restarted static member {:.1} s after it was killed", killed.elapsed().as_secs_f64());
    counting.close_and_check();
}

#[test]
fn a_member_stopped_cleanly_hands_its_pipelines_over_at_once() {
    // The session timeout is longer than the test waits: the other member can
    // only take the pipeline over because the stopped one left the group.
    let mut cluster = Cluster::start_with(2, LONG_SESSION_TIMEOUT);
    cluster.members[0].ok(&running_bid_counts("counts", 1_000));
    let (runner, _) = cluster.runner_of("p1");
    let member = cluster.members.remove(runner);
    let pid = member.process.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut process = member.process;
    assert!(process.0.wait().unwrap().success(), "a member stops cleanly on SIGTERM");
    let other = &cluster.members[0];
    other.wait_for("SHOW PIPELINES", |p| status_of(p, "p1") == format!("RUNNING on {}", other.address));
    other.wait_for("SELECT SUM(n) AS n FROM counts", |rows| rows.lines().nth(1).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0) > 0);
}

#[test]
fn a_member_cut_off_from_the_group_commits_nothing() {
    let cluster = Cluster::start(3);
    let counting = Counting::start(&cluster);
    let (runner, runner_address) = cluster.runner_of("p1");
    let pid = cluster.members[runner].process.0.id().to_string();
    let hold = cluster.dirs[runner].path().join("hold-slot-loss");
    std::fs::write(&hold, "armed").unwrap();

    // Stopped past the session timeout, the member is presumed dead and another
    // resumes its pipeline from the shared checkpoints.
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    counting.produce_rest();
    let survivor = &cluster.members[(runner + 1) % 3];
    let resumed_on = moved_off(survivor, &runner_address);
    let newest = common::newest_checkpoint(cluster.checkpoints.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::newest_checkpoint(cluster.checkpoints.path()) < newest + 3 {
        assert!(Instant::now() < deadline, "{resumed_on} saves no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }

    // When it comes back it is held before it acts on the loss, as a member cut
    // off from the broker but not from the checkpoints would be: its pipeline
    // runs on, and would commit the windows the other run commits, but the other
    // run saved the checkpoints it saves, so it is fenced and commits nothing.
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&hold).unwrap() != "paused" {
        assert!(Instant::now() < deadline, "the member did not learn it lost its slots");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    std::fs::remove_file(&hold).unwrap();
    cluster.members[runner].wait_for("SHOW PIPELINES", |p| status_of(p, "p1") == format!("REMOTE on {resumed_on}"));
    counting.close_and_check();
}
