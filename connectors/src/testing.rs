//! The real servers tests talk to (Kafka, Redis, ClickHouse), started through
//! `scripts/<name>/start` (idempotent: it installs what is missing, starts the
//! server on 127.0.0.1 at a free port and prints its address).
//!
//! The test command starts each server once and exports its address; a test run
//! alone starts the shared server itself. Tests that stop and restart a server
//! (outages) use a private run directory so they never disturb the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use datafusion::arrow::record_batch::RecordBatch;
use eddy_engine::ChangeBatch;

/// One kind of test server and the environment variables of its scripts.
#[derive(Debug)]
pub struct TestServer {
    /// The folder under `scripts/` holding its `start` and `stop`.
    pub name: &'static str,
    /// The variable holding the shared server's address (set by the test command).
    pub address_var: &'static str,
    /// The variable naming a private run directory for `start`/`stop`.
    pub run_var: &'static str,
}

/// Apache Kafka (address `127.0.0.1:PORT`).
pub const KAFKA: TestServer = TestServer { name: "kafka", address_var: "EDDY_KAFKA_BOOTSTRAP", run_var: "EDDY_KAFKA_RUN" };
/// Redis (address `redis://127.0.0.1:PORT`).
pub const REDIS: TestServer = TestServer { name: "redis", address_var: "EDDY_REDIS_URL", run_var: "EDDY_REDIS_RUN" };
/// An S3-compatible server, S3Proxy over a local directory (endpoint `http://127.0.0.1:PORT`).
pub const S3: TestServer = TestServer { name: "s3", address_var: "EDDY_S3_ENDPOINT", run_var: "EDDY_S3_RUN" };
/// ClickHouse over HTTP (address `http://127.0.0.1:PORT`).
pub const CLICKHOUSE: TestServer = TestServer { name: "clickhouse", address_var: "EDDY_CLICKHOUSE_URL", run_var: "EDDY_CLICKHOUSE_RUN" };

impl TestServer {
    /// The repository's `scripts/<name>` directory.
    pub fn scripts_dir(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(self.name)
    }

    /// Starts the server of `run_dir` (or the shared one) and returns its address.
    /// Panics with the script's output if it fails.
    pub fn start(&self, run_dir: Option<&Path>) -> String {
        let mut cmd = Command::new(self.scripts_dir().join("start"));
        if let Some(dir) = run_dir {
            cmd.env(self.run_var, dir);
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run scripts/{}/start: {e}", self.name));
        assert!(out.status.success(), "scripts/{}/start failed:\n{}", self.name, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server of `run_dir`, keeping its data and port for a restart.
    pub fn stop(&self, run_dir: &Path) {
        let status = Command::new(self.scripts_dir().join("stop"))
            .env(self.run_var, run_dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run scripts/{}/stop: {e}", self.name));
        assert!(status.success(), "scripts/{}/stop failed", self.name);
    }

    /// The shared server's address: the variable the test command sets, else the
    /// server started here once per process.
    pub fn shared(&self) -> String {
        static STARTED: Mutex<Option<HashMap<&'static str, String>>> = Mutex::new(None);
        if let Ok(address) = std::env::var(self.address_var) {
            return address;
        }
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        started.get_or_insert_with(HashMap::new).entry(self.name).or_insert_with(|| self.start(None)).clone()
    }
}

/// A name (topic, key prefix, database) no other test or earlier run uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

/// Drives exactly-once sinks from `open` through a run whose last commit is final
/// and a restart that replays its tail: one sink writes `before` under checkpoint 1,
/// then `tail`, and commits at its end; then, as after a kill right there, a sink
/// restored from checkpoint 1 is given `tail` again, checkpoints and ends. The
/// caller checks that `tail` landed once.
#[allow(clippy::unwrap_used)] // a test driver: a failure is a test failure
pub async fn replay_after_a_final_commit(open: impl Fn() -> Box<dyn eddy_engine::Sink>, before: RecordBatch, tail: RecordBatch) {
    let mut last = open();
    last.write(ChangeBatch::inserts(before)).await.unwrap();
    let saved = last.prepare(1).await.unwrap();
    last.commit_checkpoint(1).await.unwrap();
    last.write(ChangeBatch::inserts(tail.clone())).await.unwrap();
    last.commit().await.unwrap();
    drop(last);
    let mut replay = open();
    replay.recover(&saved).await.unwrap();
    replay.write(ChangeBatch::inserts(tail)).await.unwrap();
    replay.prepare(2).await.unwrap();
    replay.commit_checkpoint(2).await.unwrap();
    replay.commit().await.unwrap();
}

/// Runs `sql` on the ClickHouse HTTP interface at `url` with `settings` as URL
/// parameters and returns the answer; panics with the server's message when it fails.
pub async fn clickhouse_query(url: &str, sql: &str, settings: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("ClickHouse URL {url}: {e}"));
    url.query_pairs_mut().extend_pairs(settings);
    let response = reqwest::Client::new().post(url).body(sql.to_string()).send().await.unwrap_or_else(|e| panic!("ClickHouse does not answer: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_else(|e| panic!("ClickHouse answer: {e}"));
    assert!(status.is_success(), "{sql}\nfailed with {status}: {text}");
    text
}

/// A connection to the Redis server at `url`.
pub async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("Redis URL {url}: {e}"));
    client.get_multiplexed_async_connection().await.unwrap_or_else(|e| panic!("Redis at {url}: {e}"))
}

/// Deletes every key starting with `prefix` (tests clean up after themselves).
pub async fn redis_delete_prefix(url: &str, prefix: &str) {
    let mut redis = redis_connection(url).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut redis).await.unwrap_or_else(|e| panic!("KEYS: {e}"));
    if !keys.is_empty() {
        redis::cmd("DEL").arg(keys).query_async::<()>(&mut redis).await.unwrap_or_else(|e| panic!("DEL: {e}"));
    }
}

/// Creates bucket `bucket` on the S3-compatible server at `endpoint`.
pub async fn s3_create_bucket(endpoint: &str, bucket: &str) {
    let response = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.unwrap_or_else(|e| panic!("S3 at {endpoint}: {e}"));
    assert!(response.status().is_success(), "creating bucket {bucket}: {}", response.status());
}

/// Deletes the object `key` of `bucket`.
pub async fn s3_delete(endpoint: &str, bucket: &str, key: &str) {
    let response = reqwest::Client::new().delete(format!("{endpoint}/{bucket}/{key}")).send().await.unwrap_or_else(|e| panic!("S3 at {endpoint}: {e}"));
    assert!(response.status().is_success(), "deleting {bucket}/{key}: {}", response.status());
}

/// The keys under `prefix` in `bucket` (one listing page: up to 1,000).
pub async fn s3_keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let url = format!("{endpoint}/{bucket}?prefix={prefix}");
    let text = reqwest::get(&url).await.and_then(|r| r.error_for_status()).unwrap_or_else(|e| panic!("listing {url}: {e}")).text().await.unwrap_or_default();
    text.split("<Key>").skip(1).filter_map(|part| part.split_once("</Key>").map(|(key, _)| key.to_string())).collect()
}

/// The environment that points `object_store`'s S3 client at the server at `endpoint`.
pub fn s3_environment(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "eddy".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "eddy".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ]
}

/// Two rows of a BIGINT (1, then NULL), a STRING and a millisecond TIMESTAMP
/// column named `names`, with `texts` and `times_ms`: the batch the row printers
/// and encoders are checked on, with a NULL and strings that need quoting.
pub fn two_rows(names: [&str; 3], texts: [&str; 2], times_ms: [i64; 2]) -> RecordBatch {
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
    use std::sync::Arc;
    let columns: [ArrayRef; 3] = [
        Arc::new(Int64Array::from(vec![Some(1), None])),
        Arc::new(StringArray::from(texts.to_vec())),
        Arc::new(TimestampMillisecondArray::from(times_ms.to_vec())),
    ];
    RecordBatch::try_from_iter(names.into_iter().zip(columns)).expect("three columns of two rows each")
}
