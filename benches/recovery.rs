//! Checkpoint cost of a large state and recovery time: a GROUP BY over `--keys`
//! keys (default 1,000,000 with `--bench`) checkpointing every second. Reports the
//! last checkpoint's duration and size, then stops the pipeline, starts it again
//! from that checkpoint and reports how long until it reads rows again (restoring
//! every key's state included).
//!
//! `cargo bench --profile dev --bench recovery -- --bench [--keys N]`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::flag_value;
use eddy::Session;
use eddy_engine::metrics::PipelineGroup;

mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let keys = flag_value(&args, "--keys", if full { 1_000_000 } else { 10_000 });
    let checkpoints = tempfile::tempdir().expect("temp dir");
    let sql = format!(
        "SET 'parallelism' = '1';
         SET 'execution.checkpointing.interval' = '1 s';
         SET 'state.checkpoints.dir' = '{}';
         CREATE TABLE ev (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '0', 'fields.id.kind' = 'sequence');
         CREATE TABLE sink (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT id % {keys} AS k, COUNT(*) AS n FROM ev GROUP BY id % {keys};",
        checkpoints.path().display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut session = Session::new();
        let pipelines = session.execute_script(&sql).await.expect("plans");
        // First run: until every key has state and a checkpoint holds all of them.
        let group = PipelineGroup::new(pipelines.iter().map(|p| p.name.as_str()));
        let metrics = Arc::clone(group.get(0).expect("one pipeline"));
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let watcher = {
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                let mut first_full = None;
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let id = metrics.checkpoint_id.load(Ordering::Relaxed);
                    if first_full.is_none() && metrics.rows_in.load(Ordering::Relaxed) >= keys {
                        first_full = Some(id);
                    }
                    // Two checkpoints after all keys exist: the second holds every key.
                    if first_full.is_some_and(|f| id >= f + 2) {
                        let _ = stop_tx.send(true);
                        return;
                    }
                }
            })
        };
        session.run(&pipelines, &group, stop, &mut |_| unreachable!("INSERT only")).await.expect("first run");
        watcher.await.expect("watcher");
        println!(
            "{keys} keys: checkpoint {} took {} ms and holds {:.1} MB ({} rows read)",
            metrics.checkpoint_id.load(Ordering::Relaxed),
            metrics.checkpoint_ms.load(Ordering::Relaxed),
            metrics.checkpoint_bytes.load(Ordering::Relaxed) as f64 / 1e6,
            metrics.rows_in.load(Ordering::Relaxed)
        );

        // Second run: from that checkpoint; time until the first rows are read again.
        let group = PipelineGroup::new(pipelines.iter().map(|p| p.name.as_str()));
        let metrics = Arc::clone(group.get(0).expect("one pipeline"));
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let watcher = {
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                while metrics.rows_in.load(Ordering::Relaxed) == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let reading = started.elapsed();
                // The first checkpoint after the restart needs the restored state
                // loaded and the rows since then aggregated into it.
                let restored = metrics.checkpoint_id.load(Ordering::Relaxed);
                while metrics.checkpoint_id.load(Ordering::Relaxed) <= restored {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let checkpointed = started.elapsed();
                let _ = stop_tx.send(true);
                (reading, checkpointed)
            })
        };
        session.run(&pipelines, &group, stop, &mut |_| unreachable!("INSERT only")).await.expect("second run");
        let (reading, checkpointed) = watcher.await.expect("watcher");
        println!(
            "recovery: reading again {:.0} ms after the restart; first checkpoint with the restored {keys} keys done after {:.0} ms (interval 1 s)",
            reading.as_secs_f64() * 1000.0,
            checkpointed.as_secs_f64() * 1000.0
        );
    });
}
