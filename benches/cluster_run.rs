//! What the Kafka shuffle of `eddy run --cluster` costs: a keyed TUMBLE over
//! `--events` JSON events (default 1,000,000 with `--bench`) in an 8-partition
//! topic on the broker the test command starts, written to JSON files, run by
//! one `eddy run` process (in-process exchange), then by 1, 2 and 3 `eddy run
//! --cluster` members (`--members M` for one count) with `--key-groups` key
//! groups (default 8), with the rows pre-aggregated before the shuffle and
//! without (`SET 'cluster.pre-aggregate' = 'false'`; `--shuffle partials|rows`
//! for one). For each: wall time, CPU seconds of the eddy processes and of the
//! broker, events per CPU-second, and how many records the shuffle carried per event.
//!
//! `cargo bench --profile dev --bench cluster_run -- --bench [--events N] [--members M] [--key-groups K] [--users U] [--commit-ms MS] [--shuffle partials|rows]`
//! (`--users`: distinct keys, default 100,000; a third of the events are one hot key;
//! `--commit-ms`: `SET 'cluster.commit-interval'`, default 100).

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::flag_value;
use eddy_connectors::kafka::testing::{broker, create_topic, produce, unique_topic, TestRecord};

mod common;

const PARTITIONS: i32 = 8;
const BASE_MS: i64 = 1_704_067_200_000;

/// CPU seconds (user + system) of process `pid`, children it waited for included.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of the children this process has waited for (getrusage).
fn children_cpu() -> f64 {
    // SAFETY: getrusage only fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The broker's run directory (scripts/kafka/start).
fn broker_run() -> std::path::PathBuf {
    std::env::var("EDDY_KAFKA_RUN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/eddy/kafka-run"))
}

fn broker_pid() -> Option<u32> {
    std::fs::read_to_string(broker_run().join("pid")).ok()?.trim().parse().ok()
}

/// Bytes the broker stores for the shuffle topics of cluster `name` (its log segments).
fn shuffled_bytes(name: &str) -> u64 {
    let prefix = format!("eddy.{name}.");
    let Ok(entries) = std::fs::read_dir(broker_run().join("data")) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix) && n.contains(".shuffle-")))
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().filter_map(|f| f.ok()))
        // Index files are preallocated: only the .log segments hold records.
        .filter(|f| f.path().extension().is_some_and(|x| x == "log"))
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum()
}

fn script(topic: &str, out: &std::path::Path, key_groups: u64, pre_aggregate: bool, commit_ms: u64) -> String {
    format!(
        "SET 'cluster.key-groups' = '{key_groups}';
         SET 'cluster.pre-aggregate' = '{pre_aggregate}';
         SET 'cluster.commit-interval' = '{commit_ms} ms';
         CREATE TABLE events (user_id BIGINT, amount BIGINT, url STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}', 'format' = 'json',
                 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE per_user (window_start TIMESTAMP(3), user_id BIGINT, n BIGINT, total BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO per_user SELECT window_start, user_id, COUNT(*), SUM(amount)
           FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, user_id;",
        broker(),
        out.display()
    )
}

fn eddy(script: &std::path::Path, cluster: Option<(&str, &std::path::Path)>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command.arg("run").arg(script).args(["--progress-secs", "0"]).stdout(Stdio::null()).stderr(Stdio::null());
    if let Some((name, checkpoints)) = cluster {
        command.args(["--cluster", name, "--session-timeout", "6s", "--checkpoint-dir"]).arg(checkpoints);
    }
    command.spawn().expect("eddy run")
}

/// Records (rows, markers and transaction marks) in the shuffle topics of cluster `name`.
fn shuffled(name: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", broker()).create().expect("consumer");
    let Ok(metadata) = consumer.fetch_metadata(None, std::time::Duration::from_secs(30)) else { return 0 };
    let prefix = format!("eddy.{name}.");
    let mut total = 0;
    for topic in metadata.topics().iter().filter(|t| t.name().starts_with(&prefix) && t.name().ends_with(".shuffle")) {
        for p in topic.partitions() {
            if let Ok((low, high)) = consumer.fetch_watermarks(topic.name(), p.id(), std::time::Duration::from_secs(10)) {
                total += high - low;
            }
        }
    }
    total
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let events = flag_value(&args, "--events", if full { 1_000_000 } else { 20_000 }) as i64;
    let key_groups = flag_value(&args, "--key-groups", 8);
    let users = flag_value(&args, "--users", 100_000) as i64;
    let commit_ms = flag_value(&args, "--commit-ms", 100);
    let member_counts: Vec<u64> = match flag_value(&args, "--members", 0) {
        0 if full => vec![1, 2, 3],
        0 => vec![2],
        m => vec![m],
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let topic = unique_topic("bench-cluster");
    runtime.block_on(create_topic(&broker(), &topic, PARTITIONS));
    let records: Vec<TestRecord> = (0..events)
        .map(|i| {
            let user = if i % 3 == 0 { 1 } else { (i * 7919) % users };
            let ts = BASE_MS + i - (i % 7) * 300;
            let json = format!(r#"{{"user_id":{user},"amount":{},"url":"https://shop.example.com/items/{}?ref=feed","ts":{ts}}}"#, i % 100, i % 5000);
            TestRecord::value((i % i64::from(PARTITIONS)) as i32, json)
        })
        .collect();
    runtime.block_on(produce(&broker(), &topic, &records));
    drop(records);
    println!("cluster_run: {events} events in {PARTITIONS} partitions, TUMBLE 10 s by user ({users} users) into JSON files, {key_groups} key groups, commits every {commit_ms} ms");
    let broker = broker_pid();
    let measure = |members: Option<u64>, pre_aggregate: bool| {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("script.sql");
        std::fs::write(&path, script(&topic, &dir.path().join("out"), key_groups, pre_aggregate, commit_ms)).expect("script");
        let checkpoints = dir.path().join("checkpoints");
        let name = unique_topic("bench");
        let (cpu_before, broker_before) = (children_cpu(), broker.map_or(0.0, cpu_of));
        let started = Instant::now();
        let mut children: Vec<Child> = match members {
            None => vec![eddy(&path, None)],
            Some(m) => (0..m).map(|_| eddy(&path, Some((&name, &checkpoints)))).collect(),
        };
        for child in &mut children {
            let status = child.wait().expect("wait");
            assert!(status.success(), "a run failed: {status}");
        }
        let wall = started.elapsed().as_secs_f64();
        let (cpu, broker_cpu) = (children_cpu() - cpu_before, broker.map_or(0.0, cpu_of) - broker_before);
        let shuffled = members.map_or(0, |_| shuffled(&name));
        let bytes = members.map_or(0, |_| shuffled_bytes(&name));
        let label = members.map_or("one process (in-process exchange)".to_string(), |m| {
            format!("{m} member(s), shuffle of {}", if pre_aggregate { "partials" } else { "records" })
        });
        println!(
            "{label:<36} {wall:>6.2}s wall  eddy {cpu:>6.2} CPU-s ({:.2} M events/CPU-s)  broker {broker_cpu:>6.2} CPU-s  all {:.2} M events/CPU-s  shuffle {:.4} records/event, {:.1} bytes/event",
            events as f64 / cpu / 1e6,
            events as f64 / (cpu + broker_cpu) / 1e6,
            shuffled as f64 / events as f64,
            bytes as f64 / events as f64
        );
    };
    let modes: Vec<bool> = match args.iter().position(|a| a == "--shuffle").and_then(|i| args.get(i + 1)).map(String::as_str) {
        Some("partials") => vec![true],
        Some("rows") => vec![false],
        _ => vec![true, false],
    };
    measure(None, true);
    for m in member_counts {
        for pre_aggregate in &modes {
            measure(Some(m), *pre_aggregate);
        }
    }
}
