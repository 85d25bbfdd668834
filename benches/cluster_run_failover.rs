//! How long `eddy run --cluster` takes to produce a killed member's output
//! again: `--members` members (default 3) share a GROUP BY over `--keys` keys
//! (default 1,000,000 with `--bench`) of an 8-partition topic, fed at `--rate`
//! events/s after one event per key, with `--key-groups` key groups (default 8)
//! checkpointing every second. Once the shares have settled and every key group
//! saved a checkpoint holding every key, member 0 is killed with SIGKILL.
//! Reports, for the key groups it ran: the state they keep, how long until a
//! survivor took each (the group noticed the loss: about the session timeout,
//! plus a rebalance), and until each saved its next checkpoint (its state
//! restored and its rows read again; a checkpoint is when an exactly-once sink
//! commits, so this is when its output appears again).
//!
//! `cargo bench --profile dev --bench cluster_run_failover -- --bench [--keys N] [--members M] [--session-timeout 6s]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{dir_bytes, flag_value, Feeder};
use eddy_connectors::kafka::testing::{broker, create_topic, produce_with, producer, unique_topic, TestRecord};

mod common;

const PARTITIONS: i32 = 8;

struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn event(i: u64, user: u64) -> TestRecord {
    TestRecord::value((i % PARTITIONS as u64) as i32, format!(r#"{{"user_id":{user},"amount":{}}}"#, i % 100))
}

/// The key groups a member's log line names (`... key groups [1, 5]`; none for source partitions).
fn key_groups_in(line: &str) -> impl Iterator<Item = u32> + '_ {
    let groups = line.split("key groups [").nth(1).and_then(|g| g.split(']').next()).unwrap_or_default();
    groups.split(", ").filter_map(|g| g.parse().ok())
}

/// The key groups a member's log says it runs now.
fn key_groups_of(log: &Path) -> Vec<u32> {
    let mut held = std::collections::BTreeSet::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        if line.contains("this member takes ") {
            held.extend(key_groups_in(line));
        } else if line.contains("this member hands over ") {
            for group in key_groups_in(line) {
                held.remove(&group);
            }
        }
    }
    held.into_iter().collect()
}

/// The rows a member's last progress line says it shuffled.
fn shuffled(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = text.lines().rev().find(|l| l.contains(" rows shuffled")).unwrap_or_default();
    last.split("; ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Each key group's checkpoint directory under `root`, by key group.
fn key_group_dirs(root: &Path) -> BTreeMap<u32, PathBuf> {
    std::fs::read_dir(root)
        .map(|entries| {
            entries.filter_map(|e| e.ok()).filter_map(|e| Some((e.file_name().to_str()?.rsplit_once("-key-group-")?.1.parse().ok()?, e.path()))).collect()
        })
        .unwrap_or_default()
}

/// The newest complete checkpoint's id in a key group's directory (0: none).
fn newest(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("_COMPLETE").exists())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let keys = flag_value(&args, "--keys", if full { 1_000_000 } else { 20_000 });
    let members = flag_value(&args, "--members", 3) as usize;
    let key_groups = flag_value(&args, "--key-groups", 8);
    let rate = flag_value(&args, "--rate", 10_000);
    let session_timeout = args.iter().position(|a| a == "--session-timeout").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "6s".into());
    let bootstrap = broker();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let topic = unique_topic("run-failover");
    runtime.block_on(create_topic(&bootstrap, &topic, PARTITIONS));
    let started = Instant::now();
    let kafka = producer(&bootstrap);
    for chunk in (0..keys).collect::<Vec<_>>().chunks(200_000) {
        runtime.block_on(produce_with(&kafka, &topic, &chunk.iter().map(|i| event(*i, *i)).collect::<Vec<_>>()));
    }
    println!("produced {keys} events (one per key) in {:.1} s", started.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().expect("temp dir");
    let checkpoints = dir.path().join("checkpoints");
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "SET 'cluster.key-groups' = '{key_groups}';
             SET 'execution.checkpointing.interval' = '1 s';
             CREATE TABLE events (user_id BIGINT, amount BIGINT)
               WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json', 'scan.startup.mode' = 'earliest-offset');
             CREATE TABLE totals (user_id BIGINT, n BIGINT, total BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO totals SELECT user_id, COUNT(*), SUM(amount) FROM events GROUP BY user_id;"
        ),
    )
    .expect("script");
    let cluster = unique_topic("bench");
    let logs: Vec<PathBuf> = (0..members).map(|i| dir.path().join(format!("member{i}.log"))).collect();
    let mut running: Vec<Option<Member>> = logs
        .iter()
        .map(|log| {
            let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
                .arg("run")
                .arg(&script)
                .args(["--cluster", &cluster, "--session-timeout", &session_timeout, "--progress-secs", "1", "--checkpoint-dir"])
                .arg(&checkpoints)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).expect("log"))
                .spawn()
                .expect("eddy run");
            Some(Member(child))
        })
        .collect();

    // A steady input, so the key groups have rows to read once they run again.
    let feeder = Feeder::start(&bootstrap, &topic, rate, keys, move |i| event(i, (i * 7919) % keys));

    // Wait until every event per key was shuffled, the shares have not moved for
    // 5 s, and every key group saved two checkpoints since.
    let deadline = Instant::now() + Duration::from_secs(900);
    let shares = || logs.iter().map(|l| key_groups_of(l)).collect::<Vec<_>>();
    let (mut last, mut since) = (shares(), Instant::now());
    loop {
        let now = shares();
        let settled = now.iter().all(|s| !s.is_empty()) && now.iter().map(Vec::len).sum::<usize>() == key_groups as usize;
        if now != last {
            (last, since) = (now, Instant::now());
        } else if settled && since.elapsed() > Duration::from_secs(5) && logs.iter().map(|l| shuffled(l)).sum::<u64>() >= keys {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster did not read every key within 900 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let marks: BTreeMap<u32, u64> = key_group_dirs(&checkpoints).iter().map(|(k, d)| (*k, newest(d))).collect();
    while key_group_dirs(&checkpoints).iter().any(|(k, d)| newest(d) < marks.get(k).copied().unwrap_or(0) + 2) {
        assert!(Instant::now() < deadline, "the key groups saved no checkpoint");
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("shares settled and every key read after {:.1} s", started.elapsed().as_secs_f64());

    let dead = key_groups_of(&logs[0]);
    let dirs = key_group_dirs(&checkpoints);
    let state: u64 = dead.iter().filter_map(|k| dirs.get(k)).map(|d| dir_bytes(d)).sum();
    let said_before: Vec<usize> = logs.iter().map(|l| std::fs::read_to_string(l).unwrap_or_default().lines().count()).collect();
    drop(running[0].take());
    let killed_at = Instant::now();
    let before: BTreeMap<u32, u64> = dead.iter().map(|k| (*k, dirs.get(k).map_or(0, |d| newest(d)))).collect();
    let (mut taken, mut output): (BTreeMap<u32, Duration>, BTreeMap<u32, Duration>) = (BTreeMap::new(), BTreeMap::new());
    while output.len() < dead.len() {
        for (i, log) in logs.iter().enumerate().skip(1) {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let new_lines = text.lines().skip(said_before[i]).filter(|l| l.contains("this member takes "));
            for group in new_lines.flat_map(key_groups_in) {
                taken.entry(group).or_insert_with(|| killed_at.elapsed());
            }
        }
        for (group, was) in &before {
            if dirs.get(group).is_some_and(|d| newest(d) > *was) {
                output.entry(*group).or_insert_with(|| killed_at.elapsed());
            }
        }
        assert!(killed_at.elapsed() < Duration::from_secs(600), "the killed member's key groups did not run again: {output:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    feeder.stop();
    running.clear();
    let span = |times: &BTreeMap<u32, Duration>| {
        let (low, high) = (times.values().min().copied().unwrap_or_default(), times.values().max().copied().unwrap_or_default());
        format!("{:.2} to {:.2} s", low.as_secs_f64(), high.as_secs_f64())
    };
    println!(
        "{members} members, session timeout {session_timeout}, {keys} keys in {key_groups} key groups; the killed member ran key groups {dead:?}, \
         {:.1} MB of checkpoints: taken by survivors {} after SIGKILL, next checkpoint (output again) {} after",
        state as f64 / 1e6,
        span(&taken),
        span(&output)
    );
}
