//! Nexmark benchmark: the standard generator feeding the published queries (adapted
//! only where the dialect demands) into a blackhole sink, in-process.
//!
//! Run: `cargo bench --bench nexmark` (release) or, quicker to build,
//! `cargo bench --profile dev --bench nexmark`. Options after `--`:
//! `--events N` (default 10,000,000; 100,000 under `cargo test`), `--parallelism P` (default 1), and query names to run.
//! Reports events per CPU-second (generator included) and per wall-second.

use std::sync::Arc;
use std::time::Instant;

use common::{cpu_seconds, flag_value};
use eddy::Session;
use eddy_engine::PipelineMetrics;

mod common;

const BID: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time TIMESTAMP(3), extra STRING";

/// (name, sink columns, query) — the query reads table `bid`.
const QUERIES: &[(&str, &str, &str)] = &[
    ("q0", "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3)", "SELECT auction, bidder, price, date_time FROM bid"),
    ("q1", "auction BIGINT, bidder BIGINT, price DOUBLE, date_time TIMESTAMP(3)", "SELECT auction, bidder, 0.908 * price, date_time FROM bid"),
    ("q2", "auction BIGINT, price BIGINT", "SELECT auction, price FROM bid WHERE auction % 123 = 0"),
    (
        "q5-hop",
        "auction BIGINT, num BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3)",
        "SELECT auction, COUNT(*), window_start, window_end FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end",
    ),
    (
        "q7-tumble",
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), maxprice BIGINT",
        "SELECT window_start, window_end, MAX(price) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
    ),
    (
        "tumble-count-by-key",
        "window_start TIMESTAMP(3), auction BIGINT, bids BIGINT",
        "SELECT window_start, auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, auction",
    ),
    (
        // Not a published query: an interval self-join of the bids (each bid meets
        // the bids of the same bidder, auction and price within 100 ms, itself
        // included: about one pair per bid), for the join's cost per row.
        "interval-self-join",
        "auction BIGINT, bidder BIGINT, price BIGINT, next_price BIGINT",
        "SELECT a.auction, a.bidder, a.price, b.price FROM bid a JOIN bid b ON a.auction = b.auction AND a.bidder = b.bidder AND a.price = b.price AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '100' MILLISECOND",
    ),
    (
        "q11-session",
        "bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)",
        "SELECT bidder, COUNT(*), window_start, window_end FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY bidder, window_start, window_end",
    ),
];

fn main() {
    // As the `eddy` binary does.
    eddy::allocator::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str, default: u64| flag_value(&args, flag, default);
    // `cargo test --all-targets` runs this without `--bench`: a quick smoke run then.
    let default_events = if args.iter().any(|a| a == "--bench") { 10_000_000 } else { 100_000 };
    let events = value("--events", default_events);
    let parallelism = value("--parallelism", 1);
    let selected: Vec<&String> = args.iter().filter(|a| QUERIES.iter().any(|(n, _, _)| n == a)).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // `--checkpoint-cost`: the selected queries (default q5-hop) without checkpoints,
    // then saving checkpoints every 10 s and every 1 s.
    let checkpoint_cost = args.iter().any(|a| a == "--checkpoint-cost");
    let settings: Vec<(&str, Option<&str>)> =
        if checkpoint_cost { vec![("none", None), ("every 10 s", Some("10 s")), ("every 1 s", Some("1 s"))] } else { vec![("", Some("0"))] };
    let checkpoints = tempfile::tempdir().expect("temp dir");
    println!("nexmark: {events} events per query, parallelism {parallelism}, blackhole sink");
    for (name, columns, query) in QUERIES {
        if !selected.is_empty() && !selected.iter().any(|s| s.as_str() == *name) {
            continue;
        }
        if checkpoint_cost && selected.is_empty() && *name != "q5-hop" {
            continue;
        }
        for (label, interval) in &settings {
            let checkpointing = match interval {
                None => "SET 'execution.checkpointing.interval' = '0';".to_string(),
                Some("0") => String::new(),
                Some(every) => format!(
                    "SET 'execution.checkpointing.interval' = '{every}'; SET 'state.checkpoints.dir' = '{}';",
                    checkpoints.path().join(label.replace(' ', "-")).display()
                ),
            };
            let name = if label.is_empty() { name.to_string() } else { format!("{name} ({label})") };
            let sql = format!(
                "{checkpointing}
             SET 'parallelism' = '{parallelism}';
             CREATE TABLE bid ({BID}, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
               WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '{events}', 'nexmark.base-time' = '1700000000000');
             CREATE TABLE sink ({columns}) WITH ('connector' = 'blackhole');
             INSERT INTO sink {query};"
            );
            let result = runtime.block_on(async {
                let mut session = Session::new();
                let pipelines = session.execute_script(&sql).await?;
                let metrics = Arc::new(PipelineMetrics::default());
                let (_tx, stop) = tokio::sync::watch::channel(false);
                let cpu = cpu_seconds();
                let started = Instant::now();
                let summary = session.run(&pipelines, Arc::clone(&metrics), stop, &mut |_| unreachable!("INSERT only")).await?;
                let checkpoint = match metrics.checkpoint_id.load(std::sync::atomic::Ordering::Relaxed) {
                    0 => String::new(),
                    id => format!(
                        ", last checkpoint {id}: {} ms, {} bytes",
                        metrics.checkpoint_ms.load(std::sync::atomic::Ordering::Relaxed),
                        metrics.checkpoint_bytes.load(std::sync::atomic::Ordering::Relaxed)
                    ),
                };
                Ok::<_, eddy::EddyError>((summary, started.elapsed().as_secs_f64(), cpu_seconds() - cpu, checkpoint))
            });
            match result {
            Ok((summary, wall, cpu, checkpoint)) => println!(
                "{name:<22} {:>8.2} M events/CPU-s  {:>8.2} M events/s wall  ({} bids of {events} events in {wall:.2}s wall, {cpu:.2}s CPU, {} rows out{checkpoint})",
                summary.metrics.rows_in as f64 / cpu.max(1e-9) / 1e6,
                summary.metrics.rows_in as f64 / wall / 1e6,
                summary.metrics.rows_in,
                summary.metrics.rows_out
            ),
            Err(e) => println!("{name:<22} failed: {e}"),
        }
        }
    }
}
