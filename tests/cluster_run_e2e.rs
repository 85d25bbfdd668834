//! `eddy run --cluster`: real `eddy` processes sharing a script's pipelines
//! through the real Kafka broker the test command starts (src/run_cluster.rs,
//! connectors/src/kafka/shuffle.rs). Their output must equal, row for row, what
//! one process writes from the same input.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{chrono_ms, committed_rows, eddy, kafka_table, Running};
use eddy_connectors::kafka::testing::{broker, create_topic, produce, read_all, start_broker, stop_broker, unique_topic, TestRecord};

/// 2024-01-01 00:00:00 UTC.
const BASE_MS: i64 = 1_704_067_200_000;
const PARTITIONS: i32 = 8;
/// The broker's least session timeout: a killed member's share moves after it.
const SESSION_TIMEOUT: &str = "6s";

/// Event `i`: a third of them for user 1 (a hot key), the rest over 40 users;
/// 5 ms of event time apart, up to 1.8 s out of order (the watermark allows 5 s).
fn event(i: i64) -> (i32, i64, i64, i64) {
    let user = if i % 3 == 0 { 1 } else { (i * 7919) % 40 + 2 };
    let ts = BASE_MS + i * 5 - (i % 7) * 300;
    ((i % i64::from(PARTITIONS)) as i32, user, i % 100, ts)
}

/// The topic, filled with `events` events.
fn topic_with(events: i64) -> String {
    let bootstrap = broker();
    let topic = unique_topic("cluster-run");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(create_topic(&bootstrap, &topic, PARTITIONS));
    let records: Vec<TestRecord> = (0..events)
        .map(|i| {
            let (partition, user, amount, ts) = event(i);
            TestRecord::value(partition, format!(r#"{{"user_id":{user},"amount":{amount},"ts":{ts}}}"#))
        })
        .collect();
    runtime.block_on(produce(&bootstrap, &topic, &records));
    topic
}

/// Where one run's three pipelines write.
struct Outputs {
    dir: tempfile::TempDir,
}

impl Outputs {
    fn new() -> Self {
        Outputs { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Every row a pipeline committed, as sorted JSON texts (duplicates kept).
    fn rows(&self, name: &str) -> Vec<String> {
        let mut rows: Vec<String> = committed_rows(&self.path(name)).iter().map(|r| r.to_string()).collect();
        rows.sort();
        rows
    }
}

/// TUMBLE, HOP and SESSION aggregates of the topic into Parquet files.
fn script(topic: &str, out: &Outputs, key_groups: u32) -> String {
    let bootstrap = broker();
    let events = kafka_table(
        "events",
        "user_id BIGINT, amount BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND",
        topic,
        &bootstrap,
        "'scan.bounded.mode' = 'latest-offset'",
    );
    let sink = |name: &str, columns: &str| {
        format!("CREATE TABLE {name} ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');", out.path(name).display())
    };
    format!(
        "SET 'cluster.key-groups' = '{key_groups}';
         SET 'execution.checkpointing.interval' = '500 ms';
         {events};
         {}
         {}
         {}
         INSERT INTO tumbled SELECT window_start, user_id, COUNT(*) AS n, SUM(amount) AS total
           FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, user_id;
         INSERT INTO hopped SELECT window_start, user_id, COUNT(*) AS n
           FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND)) GROUP BY window_start, window_end, user_id;
         INSERT INTO sessions SELECT window_start, window_end, user_id, COUNT(*) AS n, MAX(amount) AS top
           FROM TABLE(SESSION(TABLE events PARTITION BY user_id, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY window_start, window_end, user_id;",
        sink("tumbled", "window_start TIMESTAMP(3), user_id BIGINT, n BIGINT, total BIGINT"),
        sink("hopped", "window_start TIMESTAMP(3), user_id BIGINT, n BIGINT"),
        sink("sessions", "window_start TIMESTAMP(3), window_end TIMESTAMP(3), user_id BIGINT, n BIGINT, top BIGINT"),
    )
}

fn write_script(dir: &Path, sql: &str) -> PathBuf {
    let path = dir.join("script.sql");
    std::fs::write(&path, sql).unwrap();
    path
}

/// One `eddy run --cluster` process, its progress lines every second to `stderr`.
fn member(script: &Path, cluster: &str, checkpoints: &Path, stderr: Stdio) -> Running {
    member_with(script, cluster, checkpoints, stderr, &["--session-timeout", SESSION_TIMEOUT])
}

/// [`member`] with other options than the session timeout.
fn member_with(script: &Path, cluster: &str, checkpoints: &Path, stderr: Stdio, options: &[&str]) -> Running {
    let mut command = eddy();
    command
        .arg("run")
        .arg(script)
        .args(["--cluster", cluster, "--progress-secs", "1", "--checkpoint-dir"])
        .arg(checkpoints)
        .args(options)
        .stdout(Stdio::null())
        .stderr(stderr);
    Running::start(&mut command)
}

/// The body of `GET path` from the HTTP server at `address` (empty when it does not answer).
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return String::new() };
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// What a member's log says it holds now, per pipeline: `p3` for source
/// partition 3, `k5` for key group 5 (from its "takes" and "hands over" lines).
fn shares(log: &Path) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut shares: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let Some(rest) = line.strip_prefix("eddy: ") else { continue };
        let Some((pipeline, said)) = rest.split_once(": this member ") else { continue };
        let (taking, what) = match (said.strip_prefix("takes "), said.strip_prefix("hands over ")) {
            (Some(what), _) => (true, what),
            (_, Some(what)) => (false, what),
            _ => continue,
        };
        let (kind, list) = what.split_once(" [").unwrap();
        let tag = if kind == "source partitions" { "p" } else { "k" };
        let slots = list.split(']').next().unwrap().split(", ").filter(|s| !s.is_empty()).map(|n| format!("{tag}{n}"));
        let held = shares.entry(pipeline.to_string()).or_default();
        for slot in slots {
            if taking {
                held.insert(slot);
            } else {
                held.remove(&slot);
            }
        }
    }
    shares.retain(|_, held| !held.is_empty());
    shares
}

/// How many source partitions and key groups of `pipeline` a member's log says it holds.
fn held(log: &Path, pipeline: &str) -> (usize, usize) {
    let shares = shares(log);
    let of = |kind: char| shares.get(pipeline).map_or(0, |s| s.iter().filter(|slot| slot.starts_with(kind)).count());
    (of('p'), of('k'))
}

/// What the members wrote to their logs, one after another.
fn said(logs: &[PathBuf]) -> String {
    logs.iter().map(|l| std::fs::read_to_string(l).unwrap_or_default()).collect::<Vec<_>>().join("\n----\n")
}

/// How many times a member's log says its share changed.
fn share_changes(log: &Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().lines().filter(|l| l.contains(": this member takes ") || l.contains(": this member hands over ")).count()
}

/// Waits until every member has exited successfully.
fn wait_all(members: &mut [Running], within: Duration) {
    let deadline = Instant::now() + within;
    for member in members.iter_mut() {
        loop {
            if let Some(status) = member.0.try_wait().unwrap() {
                assert!(status.success(), "a member failed: {status}");
                break;
            }
            assert!(Instant::now() < deadline, "the cluster did not finish within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The per-second per-user counts and sums of `events` events, counted here.
fn expected_tumbles(events: i64) -> BTreeMap<(i64, i64), (i64, i64)> {
    let mut expected = BTreeMap::new();
    for i in 0..events {
        let (_, user, amount, ts) = event(i);
        let entry = expected.entry((ts.div_euclid(1000) * 1000, user)).or_insert((0, 0));
        entry.0 += 1;
        entry.1 += amount;
    }
    expected
}

/// The output of one process over the same input, for the cluster's to equal.
fn alone(topic: &str, key_groups: u32) -> Outputs {
    let out = Outputs::new();
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(dir.path(), &script(topic, &out, key_groups));
    let status = eddy().arg("run").arg(&path).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    out
}

fn assert_same_output(cluster: &Outputs, alone: &Outputs, events: i64) {
    for name in ["tumbled", "hopped", "sessions"] {
        let (theirs, ours) = (alone.rows(name), cluster.rows(name));
        assert!(!ours.is_empty(), "{name}: nothing written");
        assert_eq!(ours.len(), theirs.len(), "{name}: {} rows from the cluster, {} from one process", ours.len(), theirs.len());
        assert!(ours == theirs, "{name}: the cluster's rows differ from one process's");
    }
    // And one of them against what the test counts itself.
    let tumbles: BTreeMap<(i64, i64), (i64, i64)> = committed_rows(&cluster.path("tumbled"))
        .iter()
        .map(|r| {
            let start = chrono_ms(r["window_start"].as_str().unwrap());
            ((start, r["user_id"].as_i64().unwrap()), (r["n"].as_i64().unwrap(), r["total"].as_i64().unwrap()))
        })
        .collect();
    assert_eq!(tumbles, expected_tumbles(events));
}

/// A topic of events, what one process writes from it, and members of one
/// cluster running the same script over it.
struct ClusterRun {
    events: i64,
    alone: Outputs,
    out: Outputs,
    script: PathBuf,
    name: String,
    checkpoints: tempfile::TempDir,
    dir: tempfile::TempDir,
    members: Vec<Running>,
}

impl ClusterRun {
    /// Three members over `events` events, with `key_groups` key groups.
    fn start(events: i64, key_groups: u32) -> ClusterRun {
        let topic = topic_with(events);
        let (dir, out) = (tempfile::tempdir().unwrap(), Outputs::new());
        let script = write_script(dir.path(), &script(&topic, &out, key_groups));
        let mut run = ClusterRun {
            events,
            alone: alone(&topic, key_groups),
            out,
            script,
            name: unique_topic("run"),
            checkpoints: tempfile::tempdir().unwrap(),
            dir,
            members: Vec::new(),
        };
        run.members = (0..3).map(|_| run.member()).collect();
        run
    }

    fn member(&self) -> Running {
        member(&self.script, &self.name, self.checkpoints.path(), Stdio::inherit())
    }

    fn assert_running(&mut self, why: &str) {
        assert!(self.members.iter_mut().all(|m| m.0.try_wait().unwrap().is_none()), "the cluster finished before {why}: read more");
    }

    /// Waits for every member to finish; the output must be one process's.
    fn finish(&mut self) {
        wait_all(&mut self.members, Duration::from_secs(240));
        assert_same_output(&self.out, &self.alone, self.events);
    }
}

#[test]
fn three_members_write_what_one_process_writes() {
    let mut run = ClusterRun::start(1_000_000, 4);
    // One more member, whose progress lines and /metrics are read.
    let log = run.dir.path().join("member.log");
    let stderr = Stdio::from(std::fs::File::create(&log).unwrap());
    run.members.push(member_with(&run.script, &run.name, run.checkpoints.path(), stderr, &["--session-timeout", SESSION_TIMEOUT, "--http", "127.0.0.1:0"]));
    // While it runs, its key groups are at /metrics, each sample labelled with the member.
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let said = std::fs::read_to_string(&log).unwrap();
        let address = said.split("key groups at http://").nth(1).and_then(|rest| rest.split("/metrics").next());
        let page = address.map(|address| http_get(address, "/metrics")).unwrap_or_default();
        if page.lines().any(|l| l.starts_with("eddy_pipeline_rows_in_total{") && l.contains("key-group-") && !l.ends_with(" 0")) {
            break page;
        }
        assert!(Instant::now() < deadline, "no key group counted rows at /metrics; the member said:\n{said}\nthe page:\n{page}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let sample = metrics.lines().find(|l| l.starts_with("eddy_pipeline_rows_in_total{") && l.contains("key-group-")).unwrap();
    assert!(sample.contains("{member=\"") && sample.contains(",pipeline=\""), "{sample}");
    // And the member's re-partitioners of each pipeline, with their late rows.
    assert!(metrics.lines().any(|l| l.starts_with("eddy_pipeline_late_rows_total{") && l.contains("pipeline=\"tumbled-line7/re-partitioners\"")), "{metrics}");
    run.finish();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("key groups; ") && said.contains(" rows shuffled, 0 late, 0 malformed"), "{said}");
    assert!(said.contains("tumbled-line7: every key group ran to its end"), "{said}");
    // TUMBLE and HOP are pre-aggregated: their shuffle carries partials, a record
    // per key group and commit, not a record per event. SESSION carries the events.
    assert!(said.contains("tumbled-line7: this member reads") && said.contains(" partial aggregates, 0 late"), "{said}");
    let carried = |pipeline: &str| read_all(&broker(), &format!("eddy.{}.{pipeline}.shuffle", run.name)).iter().filter(|r| r.value.is_some()).count() as i64;
    let partials = carried("tumbled-line7");
    assert!(partials > 0 && partials < run.events / 50, "the TUMBLE's shuffle carried {partials} records for {} events", run.events);
}

#[test]
fn members_killed_restarted_and_added_mid_run_still_write_each_row_once() {
    let mut run = ClusterRun::start(300_000, 8);
    // Kill one member at a time with SIGKILL and start it again at once; add a
    // fourth member between. Each kill leaves the dead member's share with it
    // until the session timeout: open transactions, prepared sink commits.
    let started = Instant::now();
    for (at, kill) in [(2, Some(0)), (5, Some(1)), (7, None), (9, Some(2))] {
        std::thread::sleep(Duration::from_secs(at).saturating_sub(started.elapsed()));
        run.assert_running("its members were killed");
        let member = run.member();
        match kill {
            Some(i) => {
                run.members[i].kill();
                run.members[i] = member;
            }
            None => run.members.push(member),
        }
    }
    run.finish();
}

#[test]
fn a_member_stopped_past_its_session_commits_nothing_when_it_wakes() {
    let mut run = ClusterRun::start(300_000, 8);
    std::thread::sleep(Duration::from_secs(3));
    run.assert_running("a member was stopped");
    // SIGSTOP past the session timeout: the others take its source partitions
    // (fencing its producers) and its key groups (resuming their checkpoints).
    // Woken, it still holds open transactions and unsaved checkpoints.
    let pid = run.members[0].0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_secs(12));
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    run.finish();
}

#[test]
fn a_static_member_started_again_gets_its_share_back_and_nothing_moves() {
    // A session timeout far longer than a restart: a dynamic member's share would
    // move only after it, to whoever the group picks.
    const TIMEOUT: &str = "20s";
    // An input that never ends, so no pipeline finishes while the test watches.
    let topic = topic_with(20_000);
    let (dir, out) = (tempfile::tempdir().unwrap(), Outputs::new());
    let sql = script(&topic, &out, 8).replace(", 'scan.bounded.mode' = 'latest-offset'", "");
    assert!(!sql.contains("scan.bounded.mode"), "the script still ends: {sql}");
    let path = write_script(dir.path(), &sql);
    let (checkpoints, name) = (tempfile::tempdir().unwrap(), unique_topic("static"));
    let logs: Vec<PathBuf> = (0..4).map(|i| dir.path().join(format!("member{i}.log"))).collect();
    let start = |id: usize, log: &Path| {
        let instance = format!("member-{id}");
        let stderr = Stdio::from(std::fs::File::create(log).unwrap());
        member_with(&path, &name, checkpoints.path(), stderr, &["--session-timeout", TIMEOUT, "--instance-id", &instance])
    };
    let mut members: Vec<Running> = (0..3).map(|i| start(i, &logs[i])).collect();
    // Wait until each pipeline's 8 source partitions and 8 key groups are spread evenly: 3, 3 and 2 of each.
    let deadline = Instant::now() + Duration::from_secs(90);
    let balanced = |logs: &[PathBuf]| {
        logs[..3].iter().all(|log| {
            ["tumbled-line7", "hopped-line9", "sessions-line11"].iter().all(|p| {
                let (partitions, key_groups) = held(log, p);
                matches!(partitions, 2 | 3) && matches!(key_groups, 2 | 3)
            })
        })
    };
    while !balanced(&logs) {
        assert!(Instant::now() < deadline, "the members' shares did not settle: {:?}", logs.iter().map(|l| shares(l)).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = shares(&logs[1]);
    let survivors_changed = (share_changes(&logs[0]), share_changes(&logs[2]));
    members[1].kill();
    let restarted = Instant::now();
    members[1] = start(1, &logs[3]);
    while shares(&logs[3]) != before {
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "the restarted member did not get its share back before the session timeout: it had {before:?}, it has {:?}; the members said:\n{}",
            shares(&logs[3]),
            logs.iter().map(|l| std::fs::read_to_string(l).unwrap_or_default()).collect::<Vec<_>>().join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("the restarted member had its share again {:.1} s after the kill", restarted.elapsed().as_secs_f64());
    // Two heartbeats more: a rebalance the restart set off would have moved something by now.
    std::thread::sleep(Duration::from_secs(7));
    assert!(members.iter_mut().all(|m| m.0.try_wait().unwrap().is_none()), "a member stopped");
    assert_eq!(shares(&logs[3]), before, "the restarted member's share changed later");
    assert_eq!((share_changes(&logs[0]), share_changes(&logs[2])), survivors_changed, "the survivors' shares moved");
}

#[test]
fn explain_shows_the_cut_and_the_script_s_answers_are_printed_once() {
    let topic = topic_with(2_000);
    let (dir, out) = (tempfile::tempdir().unwrap(), Outputs::new());
    let explain = "EXPLAIN INSERT INTO tumbled SELECT window_start, user_id, COUNT(*) AS n, SUM(amount) AS total
           FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, user_id;";
    let sql = script(&topic, &out, 4).replacen("INSERT INTO tumbled", &format!("{explain}\n         INSERT INTO tumbled"), 1);
    let path = write_script(dir.path(), &sql);
    let (checkpoints, name) = (tempfile::tempdir().unwrap(), unique_topic("explained"));
    let output = eddy()
        .arg("run")
        .arg(&path)
        .args(["--cluster", &name, "--session-timeout", SESSION_TIMEOUT, "--checkpoint-dir"])
        .arg(checkpoints.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The EXPLAIN is on line 7: its topics are named after it, as an INSERT there would be.
    for said in [
        format!("Cluster {name}: cut below the aggregate, keyed by (user_id), into 4 key groups (named after this statement's line: tumbled-line7)"),
        format!("one per partition of topic {topic}, on the member the group eddy.{name}.tumbled-line7.sources gives it to"),
        format!("to key group hash(key) % 4, partition of eddy.{name}.tumbled-line7.shuffle"),
        format!("transactional.id eddy.{name}.tumbled-line7.PARTITION, offsets in group eddy.{name}.tumbled-line7.offsets"),
        "with checkpoints in CHECKPOINT-DIR/tumbled-line7-key-group-K".to_string(),
    ] {
        assert!(stdout.contains(&said), "EXPLAIN does not say {said:?}:\n{stdout}");
    }
    // Each key group plans the script again; its EXPLAIN is not printed again.
    assert_eq!(stdout.matches("pipeline `tumbled`").count(), 1, "{stdout}");
    assert_eq!(committed_rows(&out.path("tumbled")).len(), expected_tumbles(2_000).len());
}

#[test]
fn a_member_whose_instance_id_another_takes_stops_and_says_why() {
    let events = 300_000;
    let topic = topic_with(events);
    let (dir, out) = (tempfile::tempdir().unwrap(), Outputs::new());
    let path = write_script(dir.path(), &script(&topic, &out, 4));
    let (checkpoints, name) = (tempfile::tempdir().unwrap(), unique_topic("twins"));
    let logs = [dir.path().join("first.log"), dir.path().join("second.log")];
    let start = |log: &Path| {
        let stderr = Stdio::from(std::fs::File::create(log).unwrap());
        member_with(&path, &name, checkpoints.path(), stderr, &["--session-timeout", SESSION_TIMEOUT, "--instance-id", "twin"])
    };
    let mut first = start(&logs[0]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while shares(&logs[0]).is_empty() {
        assert!(Instant::now() < deadline, "the first member took nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A second member under the same ID (a copy-pasted command line): the group
    // gives it the first one's share, and drops the first.
    let mut second = [start(&logs[1])];
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = first.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the first member still runs beside its twin");
        std::thread::sleep(Duration::from_millis(100));
    };
    let said = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(!status.success(), "{said}");
    assert!(said.contains("another member joined with the same --instance-id twin"), "{said}");
    wait_all(&mut second, Duration::from_secs(240));
    assert_same_output(&out, &alone(&topic, 4), events);
}

/// Forwards every connection to `address` from a new listener on `port`.
fn forward(port: u16, address: String) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(&address) else { continue };
            for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                std::thread::spawn(move || std::io::copy(&mut from, &mut to));
            }
        }
    });
}

#[test]
fn a_member_started_before_its_brokers_waits_for_them_and_says_so() {
    let topic = topic_with(2_000);
    let (dir, out) = (tempfile::tempdir().unwrap(), Outputs::new());
    // The script names brokers at a port nothing listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let absent = format!("127.0.0.1:{port}");
    let path = write_script(dir.path(), &script(&topic, &out, 4).replace(&broker(), &absent));
    let (log, checkpoints) = (dir.path().join("member.log"), tempfile::tempdir().unwrap());
    let mut member = [member(&path, &unique_topic("waits"), checkpoints.path(), Stdio::from(std::fs::File::create(&log).unwrap()))];
    let said = |what: &str| std::fs::read_to_string(&log).unwrap().contains(what);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !said(&format!("cannot reach the brokers at {absent}")) {
        assert!(Instant::now() < deadline, "the member does not say it cannot reach the brokers: {}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(member[0].0.try_wait().unwrap().is_none(), "the member gave up: {}", std::fs::read_to_string(&log).unwrap());
    // The brokers appear: the member joins and runs the script to its end.
    forward(port, broker());
    wait_all(&mut member, Duration::from_secs(120));
    assert!(said(&format!("the brokers at {absent} answer after")), "{}", std::fs::read_to_string(&log).unwrap());
    let tumbles = committed_rows(&out.path("tumbled"));
    assert_eq!(tumbles.len(), expected_tumbles(2_000).len());
}

#[test]
fn a_key_computed_in_the_query_and_the_source_partition_are_pre_aggregated_where_the_rows_are_read() {
    // Partials are keyed by the aggregate's own keys, computed where the source
    // topic is read: a computed key and the `partition` metadata column work, which a
    // shuffle of records cannot do (it refuses them, below). Rows fold for a second
    // (the longest commit interval) before they are sent.
    let events = 60_000;
    let topic = topic_with(events);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("buckets");
    let script = |pre_aggregate: &str| {
        format!(
            "SET 'cluster.key-groups' = '4';
             SET 'cluster.pre-aggregate' = '{pre_aggregate}';
             SET 'cluster.commit-interval' = '1 s';
             {};
             CREATE TABLE buckets (window_start TIMESTAMP(3), bucket BIGINT, n BIGINT, total BIGINT, top_part INT)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO buckets SELECT window_start, user_id % 5 AS bucket, COUNT(*) AS n, SUM(amount) AS total, MAX(part) AS top_part
               FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, user_id % 5;",
            kafka_table(
                "events",
                "user_id BIGINT, amount BIGINT, ts TIMESTAMP(3), part INT METADATA FROM 'partition' VIRTUAL, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND",
                &topic,
                &broker(),
                "'scan.bounded.mode' = 'latest-offset'",
            ),
            out.display()
        )
    };
    let path = write_script(dir.path(), &script("true"));
    let (name, checkpoints) = (unique_topic("run"), tempfile::tempdir().unwrap());
    let mut members: Vec<Running> = (0..2).map(|_| member(&path, &name, checkpoints.path(), Stdio::inherit())).collect();
    wait_all(&mut members, Duration::from_secs(180));
    let mut expected: BTreeMap<(i64, i64), (i64, i64, i64)> = BTreeMap::new();
    for i in 0..events {
        let (partition, user, amount, ts) = event(i);
        let entry = expected.entry((ts.div_euclid(1000) * 1000, user % 5)).or_insert((0, 0, -1));
        *entry = (entry.0 + 1, entry.1 + amount, entry.2.max(i64::from(partition)));
    }
    let rows = committed_rows(&out);
    let written: BTreeMap<(i64, i64), (i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            let start = chrono_ms(r["window_start"].as_str().unwrap());
            ((start, r["bucket"].as_i64().unwrap()), (r["n"].as_i64().unwrap(), r["total"].as_i64().unwrap(), r["top_part"].as_i64().unwrap()))
        })
        .collect();
    assert_eq!(rows.len(), written.len(), "each window and bucket once");
    assert_eq!(written, expected);
    // Shuffling records, the cluster cannot compute that key: it refuses, saying why.
    let path = write_script(dir.path(), &script("false"));
    let output = eddy().arg("run").arg(&path).args(["--cluster", &unique_topic("run"), "--checkpoint-dir"]).arg(checkpoints.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("is an expression; group by a column of the table"), "{stderr}");
}

#[test]
fn members_whose_broker_goes_away_mid_run_say_so_and_write_each_window_once_when_it_is_back() {
    // A broker of its own, stopped mid-run and started again (same port, same data).
    let dir = tempfile::tempdir().unwrap();
    let kafka = dir.path().join("kafka");
    let bootstrap = start_broker(Some(&kafka));
    // Stopped however the test ends, so a failure leaves no broker behind.
    struct Stopped<'a>(&'a Path);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            stop_broker(self.0);
        }
    }
    let _stopped = Stopped(&kafka);
    let topic = unique_topic("cluster-outage");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(create_topic(&bootstrap, &topic, PARTITIONS));
    let records = |range: std::ops::Range<i64>| -> Vec<TestRecord> {
        range
            .map(|i| {
                let (partition, user, amount, ts) = event(i);
                TestRecord::value(partition, format!(r#"{{"user_id":{user},"amount":{amount},"ts":{ts}}}"#))
            })
            .collect()
    };
    let (first, second) = (100_000, 200_000);
    runtime.block_on(produce(&bootstrap, &topic, &records(0..first)));
    let out = dir.path().join("tumbled");
    let script = format!(
        "SET 'cluster.key-groups' = '4';
         SET 'execution.checkpointing.interval' = '500 ms';
         {};
         CREATE TABLE tumbled (window_start TIMESTAMP(3), user_id BIGINT, n BIGINT, total BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO tumbled SELECT window_start, user_id, COUNT(*) AS n, SUM(amount) AS total
           FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, user_id;",
        kafka_table(
            "events",
            "user_id BIGINT, amount BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND",
            &topic,
            &bootstrap,
            "'properties.reconnect.backoff.max.ms' = '1000'"
        ),
        out.display()
    );
    let path = write_script(dir.path(), &script);
    let (name, checkpoints) = (unique_topic("run"), tempfile::tempdir().unwrap());
    let logs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("member-{i}.log"))).collect();
    let mut members: Vec<Running> = logs.iter().map(|log| member(&path, &name, checkpoints.path(), Stdio::from(std::fs::File::create(log).unwrap()))).collect();
    let said = || said(&logs);
    // Windows are being written: the members are under way.
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed_rows(&out).len() < 1_000 {
        assert!(Instant::now() < deadline, "no windows written; the members said:\n{}", said());
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_broker(&kafka);
    let stopped = Instant::now();
    while !said().contains("; retrying: ") {
        assert!(stopped.elapsed() < Duration::from_secs(60), "no progress line said the work is retrying; the members said:\n{}", said());
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("while the broker was away: {}", said().lines().find(|l| l.contains("; retrying: ")).unwrap_or_default());
    assert!(members.iter_mut().all(|m| m.0.try_wait().unwrap().is_none()), "a member gave up while its broker was away:\n{}", said());
    assert_eq!(start_broker(Some(&kafka)), bootstrap, "the broker comes back on its port");
    // The rest of the events, then, once all are acknowledged, one far ahead in every
    // partition, so every window of the events closes. (The test producer is
    // idempotent: a broker just started again refuses some requests at first, and
    // plain retries could put an event behind a later one.)
    runtime.block_on(produce(&bootstrap, &topic, &records(first..second)));
    let far = BASE_MS + second * 5 + 60_000;
    let far: Vec<TestRecord> = (0..PARTITIONS).map(|p| TestRecord::value(p, format!(r#"{{"user_id":-1,"amount":0,"ts":{far}}}"#))).collect();
    runtime.block_on(produce(&bootstrap, &topic, &far));
    let expected = expected_tumbles(second);
    let deadline = Instant::now() + Duration::from_secs(180);
    while committed_rows(&out).len() < expected.len() {
        assert!(Instant::now() < deadline, "{} of {} windows written; the members said:\n{}", committed_rows(&out).len(), expected.len(), said());
        std::thread::sleep(Duration::from_millis(500));
    }
    let rows = committed_rows(&out);
    let written: BTreeMap<(i64, i64), (i64, i64)> = rows
        .iter()
        .map(|r| ((chrono_ms(r["window_start"].as_str().unwrap()), r["user_id"].as_i64().unwrap()), (r["n"].as_i64().unwrap(), r["total"].as_i64().unwrap())))
        .collect();
    assert_eq!(rows.len(), written.len(), "each window once");
    assert_eq!(written, expected);
    drop(members);
}

#[test]
fn a_key_group_handed_over_in_order_resumes_at_its_savepoint() {
    // An input that never ends: one member runs everything, then a second joins and
    // the group moves half the key groups to it, in order.
    let topic = topic_with(20_000);
    let (dir, out) = (tempfile::tempdir().unwrap(), Outputs::new());
    let sql = script(&topic, &out, 4).replace(", 'scan.bounded.mode' = 'latest-offset'", "");
    let path = write_script(dir.path(), &sql);
    let (name, checkpoints) = (unique_topic("handover"), tempfile::tempdir().unwrap());
    let logs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("member-{i}.log"))).collect();
    let start = |log: &Path| {
        let mut command = eddy();
        command
            .arg("run")
            .arg(&path)
            .args(["--cluster", &name, "--session-timeout", SESSION_TIMEOUT, "--checkpoint-dir"])
            .arg(checkpoints.path())
            .env("EDDY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
        Running::start(&mut command)
    };
    let said = || said(&logs);
    let holds = |log: &Path, partitions: usize, key_groups: usize| {
        ["tumbled-line7", "hopped-line9", "sessions-line11"].iter().all(|p| held(log, p) == (partitions, key_groups))
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done() {
            assert!(Instant::now() < deadline, "{what}; the members said:\n{}", said());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let _first = start(&logs[0]);
    wait("the first member did not take everything", &|| holds(&logs[0], 8, 4));
    // Its key groups have checkpoints by now (every 500 ms).
    std::thread::sleep(Duration::from_secs(2));
    let _second = start(&logs[1]);
    wait("the shares did not settle", &|| holds(&logs[0], 4, 2) && holds(&logs[1], 4, 2));
    // Each key group the first member handed over took a savepoint, and the second
    // member resumed it from exactly that checkpoint.
    let first = std::fs::read_to_string(&logs[0]).unwrap();
    let saved: Vec<(String, String)> = first
        .lines()
        .filter_map(|line| {
            let rest = line.split("cluster: key group ").nth(1)?;
            let (group, rest) = rest.split_once(" of ")?;
            let (pipeline, rest) = rest.split_once(" before it moves: ")?;
            let id = rest.strip_prefix("Saved(")?.split(')').next()?;
            Some((format!("{pipeline}-key-group-{group}"), id.to_string()))
        })
        .collect();
    assert_eq!(saved.len(), 6, "two key groups of each of three pipelines moved, each after a savepoint; the members said:\n{}", said());
    // (It says so once it has restored, a moment after it says it takes them.)
    let resumed = |store: &str, id: &str| {
        let second = std::fs::read_to_string(&logs[1]).unwrap();
        second.lines().any(|l| l.contains(&format!("resuming from checkpoint {id} in ")) && l.contains(store))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !saved.iter().all(|(store, id)| resumed(store, id)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (store, id) in &saved {
        assert!(resumed(store, id), "{store} was saved as checkpoint {id}, but the second member did not resume from it; the members said:\n{}", said());
    }
}

#[test]
fn late_rows_reach_the_late_sink_as_they_do_in_one_process() {
    // Per partition: 200 events 100 ms apart; once the members' shares are settled,
    // one event 14 s behind them (the watermark allows 5 s: late for both windows),
    // 20 more on time, and one far ahead that closes their windows.
    let bootstrap = broker();
    let topic = unique_topic("cluster-late");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(create_topic(&bootstrap, &topic, PARTITIONS));
    let event = |user: i64, amount: i64, ts: i64, p: i32| TestRecord::value(p, format!(r#"{{"user_id":{user},"amount":{amount},"ts":{ts}}}"#));
    let on_time = |k: i64, p: i32| event(k % 7, k, BASE_MS + k * 100, p);
    let late_user = |p: i32| 1_000 + i64::from(p);
    let (mut first, mut then) = (Vec::new(), Vec::new());
    for p in 0..PARTITIONS {
        first.extend((0..200).map(|k| on_time(k, p)));
        then.push(event(late_user(p), late_user(p) * 10, BASE_MS + 6_000, p));
        then.extend((200..220).map(|k| on_time(k, p)));
        then.push(event(-1, 0, BASE_MS + 120_000, p));
    }
    runtime.block_on(produce(&bootstrap, &topic, &first));
    let script = |out: &Outputs, bounded: &str| {
        let sink = |name: &str, columns: &str| {
            format!("CREATE TABLE {name} ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');", out.path(name).display())
        };
        format!(
            "SET 'cluster.key-groups' = '4';
             SET 'execution.checkpointing.interval' = '500 ms';
             {}
             {};
             {}
             {}
             INSERT INTO tumbled SELECT window_start, user_id, COUNT(*) AS n, SUM(amount) AS total
               FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, user_id;
             INSERT INTO sessions SELECT window_start, window_end, user_id, COUNT(*) AS n, MAX(amount) AS top
               FROM TABLE(SESSION(TABLE events PARTITION BY user_id, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY window_start, window_end, user_id;",
            sink("late_events", "user_id BIGINT, amount BIGINT, ts TIMESTAMP(3)"),
            kafka_table(
                "events",
                "user_id BIGINT, amount BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND",
                &topic,
                &bootstrap,
                &format!("'late.sink' = 'late_events'{bounded}")
            ),
            sink("tumbled", "window_start TIMESTAMP(3), user_id BIGINT, n BIGINT, total BIGINT"),
            sink("sessions", "window_start TIMESTAMP(3), window_end TIMESTAMP(3), user_id BIGINT, n BIGINT, top BIGINT"),
        )
    };
    // Two members, each with a share of both pipelines' source partitions and key groups.
    // TUMBLE shuffles partial aggregates, SESSION records: late rows cross both alike.
    let (dir, out) = (tempfile::tempdir().unwrap(), Outputs::new());
    let path = write_script(dir.path(), &script(&out, ""));
    let (name, checkpoints) = (unique_topic("run"), tempfile::tempdir().unwrap());
    let logs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("member-{i}.log"))).collect();
    let mut members: Vec<Running> = logs.iter().map(|log| member(&path, &name, checkpoints.path(), Stdio::from(std::fs::File::create(log).unwrap()))).collect();
    let said = || said(&logs);
    let settled = || logs.iter().all(|log| ["tumbled-line7", "sessions-line9"].iter().all(|p| held(log, p) == (4, 2)));
    let deadline = Instant::now() + Duration::from_secs(90);
    while !settled() {
        assert!(Instant::now() < deadline, "the members' shares did not settle; they said:\n{}", said());
        std::thread::sleep(Duration::from_millis(100));
    }
    runtime.block_on(produce(&bootstrap, &topic, &then));
    // One process over the whole topic, to its end.
    let alone = Outputs::new();
    let status = eddy()
        .arg("run")
        .arg(write_script(alone.dir.path(), &script(&alone, ", 'scan.bounded.mode' = 'latest-offset'")))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // The far-ahead events' own windows close only at the end of one process's input.
    let closed = |out: &Outputs, name: &str| out.rows(name).into_iter().filter(|r| !r.contains(r#""user_id":-1"#)).collect::<Vec<_>>();
    let deadline = Instant::now() + Duration::from_secs(90);
    while ["tumbled", "sessions"].iter().any(|n| closed(&out, n).len() < closed(&alone, n).len()) {
        assert!(Instant::now() < deadline, "the cluster did not write every window; the members said:\n{}", said());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Stopped as an operator would; the late sink is written as a pipeline stops.
    for member in &mut members {
        let asked = Instant::now();
        member.terminate_saying(|| format!("the members said:\n{}", said()));
        eprintln!("a member stopped {:.1} s after SIGTERM", asked.elapsed().as_secs_f64());
    }
    let late_rows = |out: &Outputs| -> Vec<(i64, i64, i64)> {
        let mut rows: Vec<(i64, i64, i64)> = committed_rows(&out.path("late_events"))
            .iter()
            .map(|r| (r["user_id"].as_i64().unwrap(), r["amount"].as_i64().unwrap(), chrono_ms(r["ts"].as_str().unwrap())))
            .collect();
        rows.sort();
        rows
    };
    // Each late event once per pipeline that reads the table, with every column.
    let expected: Vec<(i64, i64, i64)> = (0..PARTITIONS).flat_map(|p| [(late_user(p), late_user(p) * 10, BASE_MS + 6_000); 2]).collect();
    assert_eq!(late_rows(&alone), expected, "one process's late rows");
    assert_eq!(late_rows(&out), expected, "the cluster's late rows; the members said:\n{}", said());
    for name in ["tumbled", "sessions"] {
        let (theirs, ours) = (closed(&alone, name), closed(&out, name));
        assert!(ours == theirs, "{name}: the cluster wrote {} rows, one process {}", ours.len(), theirs.len());
        assert!(!ours.iter().any(|r| r.contains(r#""user_id":100"#)), "{name}: a late row was aggregated");
    }
}

#[test]
fn a_pipeline_the_cluster_cannot_cut_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(
        dir.path(),
        "CREATE TABLE numbers (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
         CREATE TABLE out (n BIGINT) WITH ('connector' = 'blackhole');
         EXPLAIN INSERT INTO out SELECT n FROM numbers;
         INSERT INTO out SELECT n FROM numbers;",
    );
    let output = eddy().arg("run").arg(&path).args(["--cluster", "refused", "--checkpoint-dir"]).arg(dir.path().join("checkpoints")).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("out (line 4): --cluster runs pipelines that read one Kafka topic and aggregate it"), "{stderr}");
    assert!(stderr.contains("no keyed operator"), "{stderr}");
    // EXPLAIN says so before anything runs.
    let explained = String::from_utf8_lossy(&output.stdout);
    assert!(explained.contains("Cluster refused: every member would refuse this pipeline: out (line 3): --cluster runs pipelines"), "{explained}");
    // --cluster without a checkpoint location every member shares is refused by the command line.
    let output = eddy().arg("run").arg(&path).args(["--cluster", "refused"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--checkpoint-dir"));
}

#[test]
fn a_member_that_disagrees_with_the_cluster_refuses_to_start_and_says_why() {
    let topic = topic_with(1_000);
    let (dir, out) = (tempfile::tempdir().unwrap(), Outputs::new());
    let first_script = write_script(dir.path(), &script(&topic, &out, 4));
    let (name, checkpoints) = (unique_topic("run"), tempfile::tempdir().unwrap());
    let mut first = [member(&first_script, &name, checkpoints.path(), Stdio::inherit())];
    wait_all(&mut first, Duration::from_secs(120));
    // Another checkpoint location, and another script (its key groups differ).
    let elsewhere = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let other_script = write_script(other.path(), &script(&topic, &out, 8));
    for (script, checkpoints, expected) in [
        (
            &first_script,
            elsewhere.path(),
            format!("--checkpoint-dir is {} here but {} in the cluster", elsewhere.path().display(), checkpoints.path().display()),
        ),
        (&other_script, checkpoints.path(), "its script differs from the one the cluster's first member ran".to_string()),
        (&other_script, checkpoints.path(), "'cluster.key-groups' is 8 here but 4 in the cluster".to_string()),
    ] {
        let output = eddy()
            .arg("run")
            .arg(script)
            .args(["--cluster", &name, "--session-timeout", SESSION_TIMEOUT, "--checkpoint-dir"])
            .arg(checkpoints)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("this member cannot join") && stderr.contains(&expected), "{stderr}");
    }
}
