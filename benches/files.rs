//! File benchmark: the same SQL over one newline-delimited JSON file of clickstream
//! events into a blackhole sink, in-process, as `eddy run` would run it — the
//! comparison of issue 19 (filter + project, TUMBLE, HOP, SESSION).
//!
//! The file has 6 columns (`user_id`, `page`, `action`, `amount`, `duration_ms` and a
//! millisecond timestamp `ts`), one event per millisecond of event time, up to 4 s out
//! of order, 100 k users with a power-law skew (a few users have most events) and
//! 500 pages. It is written once to the system temp directory
//! (`eddy-bench-files/events-N.json`) and kept for later runs.
//!
//! Run: `cargo bench --profile dev --bench files` (or `cargo bench --bench files` for
//! release). Options after `--`: `--events N` (default 4,000,000; 100,000 under
//! `cargo test`), `--parallelism P` (default: 1 then 2), `--whole-files` (read the file
//! with one task, as before sources split files: the same binary's baseline), and
//! workload names.
//! Reports events per CPU-second (decoding included), per wall-second, and the
//! process's peak RSS during each run (the allocator keeps freed memory, so name one
//! workload per run to read its own peak).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use common::{flag_value, run_script, Measured};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

mod common;

const EVENTS: &str = "user_id BIGINT, page STRING, action STRING, amount DOUBLE, duration_ms BIGINT, ts TIMESTAMP(3)";

/// (name, sink columns, query) — the query reads table `events`.
const WORKLOADS: &[(&str, &str, &str)] = &[
    ("filter-project", "user_id BIGINT, page STRING, amount DOUBLE, ts TIMESTAMP(3)", "SELECT user_id, page, amount, ts FROM events WHERE action = 'buy' OR amount > 90"),
    (
        "tumble",
        "window_start TIMESTAMP(3), user_id BIGINT, n BIGINT, total DOUBLE",
        "SELECT window_start, user_id, COUNT(*), SUM(amount) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, user_id",
    ),
    (
        "hop",
        "window_start TIMESTAMP(3), page STRING, n BIGINT",
        "SELECT window_start, page, COUNT(*) FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, page",
    ),
    (
        "session",
        "user_id BIGINT, n BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3)",
        "SELECT user_id, COUNT(*), window_start, window_end FROM TABLE(SESSION(TABLE events PARTITION BY user_id, DESCRIPTOR(ts), INTERVAL '30' SECOND)) GROUP BY user_id, window_start, window_end",
    ),
    (
        // One session for the whole file (an event every millisecond, a 30 s gap):
        // a key that never goes idle, whose memory must not grow with its rows.
        "session-one-key",
        "n BIGINT, total DOUBLE, window_start TIMESTAMP(3), window_end TIMESTAMP(3)",
        "SELECT COUNT(*), SUM(amount), window_start, window_end FROM TABLE(SESSION(TABLE events, DESCRIPTOR(ts), INTERVAL '30' SECOND)) GROUP BY window_start, window_end",
    ),
];

const USERS: f64 = 100_000.0;
const PAGES: u64 = 500;
const BASE_TIME_MS: i64 = 1_700_000_000_000;
const ACTIONS: [&str; 4] = ["view", "view", "click", "buy"];

/// The events file for `events` events, written on first use.
fn events_file(events: u64) -> PathBuf {
    let dir = std::env::temp_dir().join("eddy-bench-files");
    let path = dir.join(format!("events-{events}.json"));
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let partial = dir.join(format!(".events-{events}.json.{}", std::process::id()));
    write_events(&partial, events);
    std::fs::rename(&partial, &path).expect("rename bench data");
    println!("kept as {}", path.display());
    path
}

/// One event per millisecond of event time, each up to 4 s late.
fn write_events(path: &Path, events: u64) {
    let started = Instant::now();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create bench data"));
    let mut rng = SmallRng::seed_from_u64(19);
    for i in 0..events {
        // u^4 puts most of the mass near 0: user 0 is the hottest.
        let user = (USERS * rng.gen::<f64>().powi(4)) as u64;
        let page = rng.gen_range(0..PAGES);
        let action = ACTIONS[rng.gen_range(0..ACTIONS.len())];
        let amount = rng.gen_range(0..10_000) as f64 / 100.0;
        let duration = rng.gen_range(10..60_000);
        let ts = BASE_TIME_MS + i as i64 - rng.gen_range(0..4_000);
        writeln!(out, r#"{{"user_id":{user},"page":"/products/item-{page}","action":"{action}","amount":{amount},"duration_ms":{duration},"ts":{ts}}}"#)
            .expect("write bench data");
    }
    out.flush().expect("write bench data");
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!("wrote {events} events ({:.1} MB) to {} in {:.1}s", size as f64 / 1e6, path.display(), started.elapsed().as_secs_f64());
}

/// The process's resident set in MB now, from /proc/self/status.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}

/// Samples the resident set every 10 ms until dropped, keeping the highest: each
/// run's own peak (the kernel's VmHWM only ever grows over the whole process).
struct PeakRss {
    at_start: f64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    sampler: Option<std::thread::JoinHandle<f64>>,
}

impl PeakRss {
    fn start() -> Self {
        let at_start = rss_mb();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let sampler = std::thread::spawn(move || {
            let mut peak = rss_mb();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_mb());
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            peak.max(rss_mb())
        });
        PeakRss { at_start, stop, sampler: Some(sampler) }
    }

    /// The resident set when sampling started and its peak since, in MB.
    fn finish(mut self) -> (f64, f64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (self.at_start, self.sampler.take().map(|s| s.join().unwrap_or(0.0)).unwrap_or(0.0))
    }
}

fn main() {
    // As the `eddy` binary does.
    eddy::allocator::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --all-targets` runs this without `--bench`: a quick smoke run then.
    let default_events = if args.iter().any(|a| a == "--bench") { 4_000_000 } else { 100_000 };
    let events = flag_value(&args, "--events", default_events);
    let parallelisms: Vec<u64> = match args.iter().any(|a| a == "--parallelism") {
        true => vec![flag_value(&args, "--parallelism", 1)],
        false => vec![1, 2],
    };
    let split_option = if args.iter().any(|a| a == "--whole-files") { ", 'scan.split.block-size' = '1TB'" } else { "" };
    let selected: Vec<&String> = args.iter().filter(|a| WORKLOADS.iter().any(|(n, _, _)| n == a)).collect();
    let file = events_file(events);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("files: {events} JSON events from {}, blackhole sink{}", file.display(), if split_option.is_empty() { "" } else { ", whole files" });
    for parallelism in parallelisms {
        for (name, columns, query) in WORKLOADS {
            if !selected.is_empty() && !selected.iter().any(|s| s.as_str() == *name) {
                continue;
            }
            let sql = format!(
                "SET 'parallelism' = '{parallelism}';
                 CREATE TABLE events ({EVENTS}, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
                   WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json'{split_option});
                 CREATE TABLE sink ({columns}) WITH ('connector' = 'blackhole');
                 INSERT INTO sink {query};",
                file.display()
            );
            let peak = PeakRss::start();
            let result = run_script(&runtime, &sql);
            let (at_start, peak) = peak.finish();
            let label = format!("{name} p{parallelism}");
            match result {
                Ok(Measured { summary, wall, cpu, .. }) => {
                    assert_eq!(summary.metrics.rows_in, events, "{label}: every event of the file is read once");
                    println!(
                        "{label:<18} {:>6.2} M events/CPU-s  {:>6.2} M events/s wall  ({wall:.2}s wall, {cpu:.2}s CPU, {} rows out, peak RSS {:.0} MB from {:.0} MB)",
                        summary.metrics.rows_in as f64 / cpu.max(1e-9) / 1e6,
                        summary.metrics.rows_in as f64 / wall / 1e6,
                        summary.metrics.rows_out,
                        peak,
                        at_start
                    )
                }
                Err(e) => println!("{label:<18} failed: {e}"),
            }
        }
    }
}
