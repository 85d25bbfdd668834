//! How long a cluster takes to run a killed member's pipeline again: `--members`
//! real `eddy server --cluster` processes (default 3) on the Kafka broker the test
//! command starts, sharing one checkpoint directory; one pipeline, a GROUP BY over
//! `--keys` keys (default 1,000,000 with `--bench`) of a Kafka topic fed at
//! `--rate` events/s, checkpointing every 2 s. Once a checkpoint holds every key,
//! the member running it is killed with SIGKILL; reports how long until another
//! member runs it (the group noticed the loss: about the session timeout) and
//! until it reads rows again (its state restored from the checkpoint).
//!
//! `cargo bench --profile dev --bench failover -- --bench [--keys N] [--session-timeout 6s]`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{dir_bytes, flag_value, Feeder};
use eddy_connectors::kafka::testing::{broker, create_topic, produce_with, producer, unique_topic, TestRecord};

mod common;

struct Member {
    process: Child,
    address: String,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// `eddy sql --csv -c SQL` against `address`: its stdout ("" when it failed).
fn sql(address: &str, statement: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_eddy")).args(["sql", "--csv", "--host", address, "-c", statement]).output().expect("eddy sql");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// p1's status and rows read, as member `address` lists it.
fn p1(address: &str) -> (String, u64) {
    let listed = sql(address, "SHOW PIPELINES");
    let row: Vec<&str> = listed.lines().find(|l| l.starts_with("p1,")).unwrap_or_default().split(',').collect();
    (row.get(2).unwrap_or(&"").to_string(), row.get(3).and_then(|n| n.parse().ok()).unwrap_or(0))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let keys = flag_value(&args, "--keys", if full { 1_000_000 } else { 10_000 });
    let members = flag_value(&args, "--members", 3) as usize;
    let rate = flag_value(&args, "--rate", 20_000);
    let session_timeout = args.iter().position(|a| a == "--session-timeout").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "6s".into());
    let bootstrap = broker();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let topic = unique_topic("failover");
    runtime.block_on(create_topic(&bootstrap, &topic, 4));
    let event = |i: u64| TestRecord::value((i % 4) as i32, format!(r#"{{"id":{i}}}"#));
    let started = Instant::now();
    let kafka = producer(&bootstrap);
    for chunk in (0..keys).collect::<Vec<_>>().chunks(200_000) {
        runtime.block_on(produce_with(&kafka, &topic, &chunk.iter().map(|i| event(*i)).collect::<Vec<_>>()));
    }
    println!("produced {keys} events (one per key) in {:.1} s", started.elapsed().as_secs_f64());

    let cluster = unique_topic("bench");
    let checkpoints = tempfile::tempdir().expect("temp dir");
    let dirs: Vec<_> = (0..members).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let mut running: Vec<Option<Member>> = dirs
        .iter()
        .map(|dir| {
            let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
            let mut process = Command::new(env!("CARGO_BIN_EXE_eddy"))
                .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
                .arg(dir.path())
                .arg("--checkpoints")
                .arg(checkpoints.path())
                .args(["--cluster", &cluster, "--kafka", &bootstrap, "--session-timeout", &session_timeout])
                .stdout(Stdio::piped())
                .spawn()
                .expect("eddy server");
            let mut line = String::new();
            BufReader::new(process.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
            Some(Member { process, address: format!("127.0.0.1:{port}") })
        })
        .collect();
    let first = running[0].as_ref().map(|m| m.address.clone()).unwrap_or_default();
    sql(
        &first,
        &format!(
            "SET 'execution.checkpointing.interval' = '2 s';
             CREATE TABLE events (id BIGINT) WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
             CREATE TABLE sink (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO sink SELECT id % {keys} AS k, COUNT(*) AS n FROM events GROUP BY id % {keys};"
        ),
    );
    // A steady input, so the pipeline has rows to read once it runs again.
    let feeder = Feeder::start(&bootstrap, &topic, rate, keys, |i| TestRecord::value((i % 4) as i32, format!(r#"{{"id":{i}}}"#)));

    // Wait until a member runs it and a checkpoint after every key was read is saved.
    let deadline = Instant::now() + Duration::from_secs(600);
    let runner = loop {
        let found = running.iter().flatten().position(|m| {
            let (status, rows) = p1(&m.address);
            status.starts_with("RUNNING") && rows >= keys
        });
        if let Some(i) = found {
            break i;
        }
        assert!(Instant::now() < deadline, "no member read every key");
        std::thread::sleep(Duration::from_millis(500));
    };
    std::thread::sleep(Duration::from_secs(5));
    let state = dir_bytes(checkpoints.path());
    let killed = running[runner].take().expect("the runner");
    let killed_address = killed.address.clone();
    let kill_at = Instant::now();
    drop(killed);
    let (mut moved, mut reading) = (None, None);
    while reading.is_none() {
        for member in running.iter().flatten() {
            let (status, rows) = p1(&member.address);
            if status.starts_with("RUNNING") {
                moved.get_or_insert(kill_at.elapsed());
                if rows > 0 {
                    reading = Some(kill_at.elapsed());
                }
            }
        }
        assert!(kill_at.elapsed() < Duration::from_secs(600), "p1 did not run again after {killed_address} was killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    feeder.stop();
    println!(
        "{members} members, session timeout {session_timeout}, {keys} keys, checkpoint directory {:.1} MB: \
         runs on another member {:.2} s after SIGKILL, reads rows again {:.2} s after",
        state as f64 / 1e6,
        moved.unwrap_or_default().as_secs_f64(),
        reading.unwrap_or_default().as_secs_f64()
    );
}
