//! Helpers the end-to-end tests share.
#![allow(dead_code)] // each test binary uses a subset of these helpers
#![allow(clippy::unwrap_used)] // tests: a panic is a failure with a backtrace

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub mod flink;
pub mod prometheus;

/// `CREATE TABLE bids` over tests/data/bids.json, the small bounded table the server and client tests read.
pub fn bids_table() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bids.json");
    format!(
        "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
        path.display()
    )
}

/// A Nexmark `bid` table generating `events_per_second` and a materialized view
/// `view` counting its bids per `bidder % 7`: a pipeline that keeps running, for
/// tests that check the server's pipelines live on through what they send.
pub fn running_bid_counts(view: &str, events_per_second: u32) -> String {
    format!(
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3))
           WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.rate' = '{events_per_second}');
         CREATE MATERIALIZED VIEW {view} AS SELECT bidder % 7 AS k, COUNT(*) AS n FROM bid GROUP BY bidder % 7"
    )
}

/// `CREATE TABLE name (columns)` over the Kafka topic `topic` at `bootstrap`, read
/// from its earliest offset as JSON, with `options` (say `'scan.bounded.mode' =
/// 'latest-offset'`, or nothing) added to its `WITH` clause; without the `;`.
pub fn kafka_table(name: &str, columns: &str, topic: &str, bootstrap: &str, options: &str) -> String {
    let options = if options.trim().is_empty() { String::new() } else { format!(", {}", options.trim().trim_start_matches(',').trim()) };
    format!(
        "CREATE TABLE {name} ({columns}) WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json'{options})"
    )
}

/// The `eddy` binary under test: the one cargo built for these tests, or
/// `$EDDY_BIN` when set (checkouts that share one target directory overwrite
/// each other's `target/debug/eddy`, so each can keep a copy of its own).
pub fn eddy_path() -> std::path::PathBuf {
    std::env::var_os("EDDY_BIN").map(std::path::PathBuf::from).unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_eddy")))
}

/// The real `eddy` binary, run from the repository root.
pub fn eddy() -> Command {
    let mut command = Command::new(eddy_path());
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// `eddy run SCRIPT --checkpoint-dir CHECKPOINTS` to its end, or, with `kill_at`
/// (`point:n`, see `EDDY_KILL_AT`), until the engine kills itself there with SIGKILL.
pub fn run_with_checkpoints(script: &Path, checkpoints: &Path, kill_at: Option<&str>) -> std::process::Output {
    let mut command = eddy();
    command.arg("run").arg(script).arg("--checkpoint-dir").arg(checkpoints).stdout(std::process::Stdio::null());
    if let Some(point) = kill_at {
        command.env("EDDY_KILL_AT", point);
    }
    command.output().expect("eddy run")
}

/// Runs `script` killed (SIGKILL) at each of `points` in turn (see
/// [`run_with_checkpoints`]), from the same checkpoint directory, then once to its
/// end, which must succeed: what a crashing machine's pipeline goes through.
pub fn killed_at_then_finished(script: &Path, checkpoints: &Path, points: &[&str]) {
    for point in points {
        let killed = run_with_checkpoints(script, checkpoints, Some(point));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&killed.status),
            Some(9),
            "the run was not killed at {point}:\n{}",
            String::from_utf8_lossy(&killed.stderr)
        );
    }
    let last = run_with_checkpoints(script, checkpoints, None);
    assert!(last.status.success(), "the run after the kills at {points:?} failed:\n{}", String::from_utf8_lossy(&last.stderr));
}

/// Every row of every visible Parquet file under `dir`; fails if an in-progress file is visible.
pub fn read_parquet_dir(dir: &Path) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir exists") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        assert!(!name.ends_with(".inprogress") || name.starts_with('.'), "in-progress file left visible: {name}");
        if name.starts_with('.') || !name.ends_with(".parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
        batches.extend(reader.map(|b| b.expect("batch")));
    }
    batches
}

/// A running `eddy` that is killed when this goes out of scope, so a failing test
/// leaves no pipeline behind.
pub struct Running(pub std::process::Child);

impl Running {
    /// Starts `command`.
    pub fn start(command: &mut Command) -> Self {
        Running(command.spawn().expect("start eddy"))
    }

    /// Sends SIGTERM and waits up to 20 s for a clean exit (status 0).
    pub fn terminate(&mut self) {
        self.terminate_saying(String::new);
    }

    /// [`Running::terminate`], adding `context()` (its logs, say) to a failure.
    pub fn terminate_saying(&mut self, context: impl Fn() -> String) {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "eddy did not stop within 20 s of SIGTERM\n{}", context());
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "eddy exits 0 on SIGTERM, got {status}\n{}", context());
    }

    /// Kills it now, as SIGKILL does: no chance to flush or commit.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The newest complete checkpoint id under `dir` (0 when there is none).
pub fn newest_checkpoint(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .map(|p| match p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("chk-")) {
            Some(id) if p.join("_COMPLETE").exists() => id.parse().unwrap_or(0),
            _ if p.is_dir() => newest_checkpoint(&p),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Every row of the visible JSON or Parquet part files under `dir` (hidden
/// in-progress files left out), as JSON objects.
pub fn committed_rows(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return rows };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let text = if name.ends_with(".parquet") {
            let file = std::fs::File::open(entry.path()).expect("open parquet");
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
            for batch in ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader") {
                writer.write(&batch.expect("batch")).expect("rows as JSON");
            }
            writer.finish().expect("rows as JSON");
            String::from_utf8(writer.into_inner()).expect("UTF-8")
        } else {
            std::fs::read_to_string(entry.path()).expect("part file")
        };
        for line in text.lines() {
            rows.push(serde_json::from_str(line).expect("whole JSON rows only"));
        }
    }
    rows
}

/// Every `id` in the visible JSON part files under `dir`, sorted (duplicates kept).
pub fn committed_ids(dir: &std::path::Path) -> Vec<i64> {
    let mut ids: Vec<i64> = committed_rows(dir).iter().map(|row| row["id"].as_i64().expect("id")).collect();
    ids.sort_unstable();
    ids
}

/// A running server and the address it printed.
pub struct Server {
    pub process: Running,
    pub address: String,
    /// The server's first line ("eddy server listening on ..."), which names its other listeners too.
    pub banner: String,
}

impl Server {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, extra, Vec::new())
    }

    /// [`Server::start`] with more environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: Vec<(&str, String)>) -> Server {
        Self::launch(data_dir, extra, env, Stdio::inherit())
    }

    /// [`Server::start`] with its standard error going to `stderr` (a file a test reads).
    pub fn start_with_stderr(data_dir: &Path, extra: &[&str], stderr: std::fs::File) -> Server {
        Self::launch(data_dir, extra, Vec::new(), Stdio::from(stderr))
    }

    fn launch(data_dir: &Path, extra: &[&str], env: Vec<(&str, String)>, stderr: Stdio) -> Server {
        let mut command = eddy();
        command
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env_remove("EDDY_TOKEN")
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut process = Running::start(&mut command);
        let stdout = process.0.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let address = line
            .strip_prefix("eddy server listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"))
            .to_string();
        Server { process, address, banner: line }
    }

    /// `eddy sql --host ADDRESS ARGS...`: (exit code, stdout, stderr).
    pub fn sql(&self, args: &[&str]) -> (i32, String, String) {
        let output = eddy().args(["sql", "--host", &self.address]).args(args).env_remove("EDDY_TOKEN").output().unwrap();
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// `eddy sql -c SQL`, which must succeed; its stdout.
    pub fn ok(&self, sql: &str) -> String {
        let (code, stdout, stderr) = self.sql(&["-c", sql]);
        assert_eq!(code, 0, "`{sql}` failed: {stderr}");
        stdout
    }

    /// `eddy sql --csv -c SQL`, which must succeed; its stdout.
    pub fn ok_csv(&self, sql: &str) -> String {
        let (code, stdout, stderr) = self.sql(&["--csv", "-c", sql]);
        assert_eq!(code, 0, "`{sql}` failed: {stderr}");
        stdout
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) {
        self.process.terminate();
    }
}

/// Waits until SHOW PIPELINES lists `count` finished pipelines (a view over a
/// bounded table has all its rows once its pipeline finished).
pub fn wait_finished(server: &Server, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.ok_csv("SHOW PIPELINES").matches("FINISHED").count() < count {
        assert!(Instant::now() < deadline, "pipelines did not finish: {}", server.ok_csv("SHOW PIPELINES"));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` or `YYYY-MM-DDTHH:MM:SS[.fff]` (UTC) to epoch
/// milliseconds, computed here rather than by Eddy.
pub fn chrono_ms(text: &str) -> i64 {
    let (date, time) = text.split_once(['T', ' ']).unwrap();
    let d: Vec<i64> = date.split('-').map(|v| v.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|v| v.parse().unwrap()).collect();
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let millis: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    ((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + millis
}
