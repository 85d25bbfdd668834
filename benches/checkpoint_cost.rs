//! What checkpointing costs a HOP aggregate with realistic state: paced input
//! for minutes, over a million keys, run once without checkpoints and once with
//! them every 10 s (or `--interval`), in-process.
//!
//! Run: `cargo bench --profile dev --bench checkpoint_cost` (add `--release`-built
//! `cargo bench --bench checkpoint_cost` for release figures). Options after `--`:
//! `--rate R` events/s (default 100,000), `--seconds S` of input (default 180),
//! `--keys K` distinct keys (default 2,000,000), `--interval I` seconds between
//! checkpoints (default 10). Without `--bench` (as `cargo test` runs it): 5 s of
//! 20,000 events/s over 50,000 keys, 1 s checkpoints.
//!
//! The query is a 1-minute HOP sliding every 10 s, counting per key, into a
//! blackhole: each event lands in 6 windows, and with keys uniform over
//! `--keys`, each 10 s slice of the default run holds about 0.8 M keys, so the
//! state is a few million (key, slice) entries. Reported for each run: CPU
//! seconds per million events (the process: generator, operator, checkpoints),
//! wall time against the input's own duration (whether it kept up), and for the
//! checkpointed run every checkpoint's duration and size.
//!
//! On the project's 2-core machine (Dec 2026, dev profile), defaults:
//! - before lasting parts (machine otherwise idle): without checkpoints 2.26 CPU-s
//!   per M events; every 10 s 2.98 (+32 %), 17 checkpoints of 70 MB, p50 771 ms,
//!   max 1,326 ms. Each checkpoint froze every open slice's groups, merged them
//!   back into live state, and wrote every open and closed slice again.
//! - with lasting parts (`engine::state`; another build ran on the second core):
//!   1.729 CPU-s per M events without checkpoints, 1.755 with them (+1.5 %);
//!   17 checkpoints, p50 46 ms, max 124 ms; each 73 MB in all, of which it wrote
//!   13.8 MB (the slices closed or frozen since the one before); peak state 149 MB
//!   against 117 MB without checkpoints (a slice's groups frozen at a barrier and
//!   those it takes after are kept apart until its windows have fired).
//!
//! Every run kept up with the input (181.7-183.9 s wall for 180 s).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{flag_value, percentile, run_script_watching};

mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let rate = flag_value(&args, "--rate", if full { 100_000 } else { 20_000 });
    let seconds = flag_value(&args, "--seconds", if full { 180 } else { 5 });
    let keys = flag_value(&args, "--keys", if full { 2_000_000 } else { 50_000 });
    let interval = flag_value(&args, "--interval", if full { 10 } else { 1 });
    let events = rate * seconds;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let checkpoints = tempfile::tempdir().expect("temp dir");
    println!("checkpoint cost: {events} events at {rate}/s ({seconds} s) over {keys} keys, HOP 1 min / 10 s, COUNT by key, blackhole, parallelism 1");
    let mut cpu_per_million = Vec::new();
    for checkpointed in [false, true] {
        let checkpointing = if checkpointed {
            format!("SET 'execution.checkpointing.interval' = '{interval} s'; SET 'state.checkpoints.dir' = '{}';", checkpoints.path().display())
        } else {
            "SET 'execution.checkpointing.interval' = '0';".to_string()
        };
        let sql = format!(
            "{checkpointing}
             SET 'parallelism' = '1';
             CREATE TABLE ev (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH ('connector' = 'datagen', 'rows-per-second' = '{rate}', 'number-of-rows' = '{events}',
                     'fields.k.min' = '0', 'fields.k.max' = '{}');
             CREATE TABLE sink (k BIGINT, n BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3)) WITH ('connector' = 'blackhole');
             INSERT INTO sink SELECT k, COUNT(*), window_start, window_end
               FROM TABLE(HOP(TABLE ev, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE))
               GROUP BY k, window_start, window_end;",
            keys - 1
        );
        // Each completed checkpoint, by id: (duration ms, size, bytes written).
        let mut seen: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
        let mut peak_state = 0;
        let measured = run_script_watching(&runtime, &sql, Duration::from_millis(100), |metrics| {
            let id = metrics.checkpoint_id.load(Ordering::Relaxed);
            if id > 0 {
                seen.entry(id).or_insert_with(|| {
                    (
                        metrics.checkpoint_ms.load(Ordering::Relaxed),
                        metrics.checkpoint_bytes.load(Ordering::Relaxed),
                        metrics.checkpoint_written_bytes.load(Ordering::Relaxed),
                    )
                });
            }
            peak_state = peak_state.max(metrics.state_bytes.load(Ordering::Relaxed));
        });
        let measured = match measured {
            Ok(measured) => measured,
            Err(e) => {
                println!("{} failed: {e}", if checkpointed { "checkpointed run" } else { "run without checkpoints" });
                return;
            }
        };
        let per_million = measured.cpu / (measured.summary.metrics.rows_in.max(1) as f64 / 1e6);
        cpu_per_million.push(per_million);
        println!(
            "{:<28} {:.3} CPU-s per M events ({:.1} CPU-s over {} events), {:.1} s wall for {seconds} s of input, peak state {:.0} MB",
            if checkpointed { format!("checkpoints every {interval} s:") } else { "no checkpoints:".to_string() },
            per_million,
            measured.cpu,
            measured.summary.metrics.rows_in,
            measured.wall,
            peak_state as f64 / 1e6
        );
        if checkpointed {
            let sorted = |pick: &dyn Fn(&(u64, u64, u64)) -> u64, scale: f64| {
                let mut values: Vec<f64> = seen.values().map(|c| pick(c) as f64 / scale).collect();
                values.sort_by(f64::total_cmp);
                values
            };
            let (durations, sizes, written) = (sorted(&|c| c.0, 1.0), sorted(&|c| c.1, 1e6), sorted(&|c| c.2, 1e6));
            match (durations.last(), sizes.last(), written.last()) {
                (Some(duration_max), Some(size_max), Some(written_max)) => println!(
                    "  {} checkpoints: duration p50 {:.0} ms, max {duration_max:.0} ms; size median {:.1} MB, max {size_max:.1} MB; written median {:.1} MB, max {written_max:.1} MB",
                    durations.len(),
                    percentile(&durations, 0.5),
                    percentile(&sizes, 0.5),
                    percentile(&written, 0.5),
                ),
                _ => println!("  no checkpoint completed: run longer than --interval"),
            }
        }
    }
    if let [without, with] = cpu_per_million[..] {
        println!("cost of checkpointing every {interval} s: {:+.1} % CPU per event", (with / without - 1.0) * 100.0);
    }
}
