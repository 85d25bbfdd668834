//! What Eddy prints while it runs: query results, live samples of sink output, progress.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use eddy_engine::{BoxError, EventTime, PipelineMetrics, Sink};
use tokio::sync::watch;

/// Prints a bare `SELECT`'s rows to stdout as aligned tables, batch by batch.
pub struct TableSink;

#[async_trait]
impl Sink for TableSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        println!("{}", pretty_format_batches(&[batch])?);
        Ok(())
    }

    /// Rows of an updating query that no longer hold (its new rows follow).
    async fn retract(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        println!("retracted:\n{}", pretty_format_batches(&[batch])?);
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Prints rows a statement answered with (`SHOW TABLES`, `EXPLAIN`) to stdout.
pub fn print_rows(batch: &RecordBatch) {
    match pretty_format_batches(std::slice::from_ref(batch)) {
        Ok(table) => println!("{table}"),
        Err(e) => eprintln!("eddy: cannot print the result: {e}"),
    }
}

/// The sink for a bare `SELECT` in `eddy run`.
pub fn print_sink(_schema: &SchemaRef) -> Box<dyn Sink> {
    Box::new(TableSink)
}

/// Wraps a sink and prints a sample of what it receives, at most once per interval.
pub struct LiveSink {
    pub name: String,
    pub inner: Box<dyn Sink>,
    pub every: Duration,
    pub last: Option<Instant>,
}

#[async_trait]
impl Sink for LiveSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        if self.last.is_none_or(|t| t.elapsed() >= self.every) && batch.num_rows() > 0 {
            self.last = Some(Instant::now());
            let sample = batch.slice(0, batch.num_rows().min(3));
            println!("[{}] {} new row(s), for example:\n{}", self.name, batch.num_rows(), pretty_format_batches(&[sample])?);
        }
        self.inner.write(batch).await
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        self.inner.commit().await
    }
}

/// Prints a progress line to stderr every `secs` seconds (none when 0) until aborted.
pub fn spawn_progress(metrics: Arc<PipelineMetrics>, secs: u64, label: Option<String>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if secs == 0 {
            return;
        }
        let started = Instant::now();
        let mut previous = metrics.snapshot();
        let mut interval = tokio::time::interval(Duration::from_secs(secs));
        interval.tick().await;
        loop {
            interval.tick().await;
            let now = metrics.snapshot();
            let rate = (now.rows_in - previous.rows_in) as f64 / secs as f64;
            let watermark = EventTime(metrics.watermark_ms.load(Ordering::Relaxed));
            let (lag, problems) = metrics.source_health();
            let checkpoint = match metrics.checkpoint_id.load(Ordering::Relaxed) {
                0 => String::new(),
                id => format!(
                    "  checkpoint {id} ({} ms, {}B)",
                    metrics.checkpoint_ms.load(Ordering::Relaxed),
                    human(metrics.checkpoint_bytes.load(Ordering::Relaxed) as f64)
                ),
            };
            let null_time = match now.null_time_rows {
                0 => String::new(),
                n => format!("  null event time {n}"),
            };
            eprintln!(
                "{}{:>6.1}s  rows in {} ({}/s)  rows out {}  late {}{null_time}  malformed {}  watermark {}{}{}",
                label.as_deref().map(|l| format!("[{l}] ")).unwrap_or_default(),
                started.elapsed().as_secs_f64(),
                human(now.rows_in as f64),
                human(rate),
                human(now.rows_out as f64),
                now.late_rows,
                now.malformed_rows,
                watermark,
                lag.map(|l| format!("  lag {}", human(l as f64))).unwrap_or_default(),
                checkpoint
            );
            for problem in problems {
                eprintln!("  source problem: {problem}");
            }
            previous = now;
        }
    })
}

/// 1234567 -> "1.23M".
pub fn human(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2}G", n / 1e9),
        n if n >= 1e6 => format!("{:.2}M", n / 1e6),
        n if n >= 1e3 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// Stops the pipelines on the first Ctrl-C (they flush their sinks); a second Ctrl-C exits at once.
pub fn stop_on_ctrl_c(deadline: Option<Duration>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => eprintln!("eddy: stopping (Ctrl-C again to exit at once)"),
            _ = timer => {}
        }
        let _ = tx.send(true);
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    rx
}

