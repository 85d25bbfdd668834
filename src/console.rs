//! What Eddy prints while it runs: query results, live samples of sink output, progress.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::error::ArrowError;
use eddy_engine::{BoxError, EventTime, PipelineMetrics, Sink};
use tokio::sync::watch;

use crate::error::EddyError;

/// Writes `text` to stdout, as `print!` does but without its panic on a closed
/// pipe: [`EddyError::StdoutClosed`] then tells the caller to stop quietly.
pub fn write_stdout(text: &str) -> Result<(), EddyError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(EddyError::StdoutClosed),
        Err(e) => {
            // A full disk behind a redirection, say: worth a word, not worth stopping the pipelines.
            eprintln!("eddy: cannot write to stdout: {e}");
            Ok(())
        }
    }
}

/// Whether `error`, or any error that caused it, is [`EddyError::StdoutClosed`].
pub fn is_stdout_closed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if matches!(e.downcast_ref::<EddyError>(), Some(EddyError::StdoutClosed)) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Prints a bare `SELECT`'s rows to stdout as aligned tables, batch by batch.
pub struct TableSink;

#[async_trait]
impl Sink for TableSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        write_stdout(&table(&batch, Footer::Hide)?)?;
        Ok(())
    }

    /// Rows of an updating query that no longer hold (its new rows follow).
    async fn retract(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        write_stdout(&format!("retracted:\n{}", table(&batch, Footer::Hide)?))?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Whether a printed table ends with psql's `(N rows)`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Footer {
    Show,
    Hide,
}

/// `batch` laid out as `eddy sql` (and psql) print results. The same formatter
/// for both, and linear in the size of the cells (arrow's pretty printer took
/// over 20 s for a 5 MB string).
fn table(batch: &RecordBatch, footer: Footer) -> Result<String, ArrowError> {
    let options = crate::client::format::PrintOptions { footer: footer == Footer::Show, ..Default::default() };
    crate::client::format::render(&batch.schema(), std::slice::from_ref(batch), &options)
}

/// Prints rows a statement answered with (`SHOW TABLES`, `EXPLAIN`) to stdout.
pub fn print_rows(batch: &RecordBatch) -> Result<(), EddyError> {
    match table(batch, Footer::Show) {
        Ok(table) => write_stdout(&table),
        Err(e) => {
            eprintln!("eddy: cannot print the result: {e}");
            Ok(())
        }
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
            write_stdout(&format!("[{}] {} new row(s), for example:\n{}", self.name, batch.num_rows(), table(&sample, Footer::Hide)?))?;
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
