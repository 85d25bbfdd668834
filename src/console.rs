//! What Eddy prints while it runs: query results, live samples of sink output, progress.

use std::io::IsTerminal;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use eddy_engine::metrics::{MetricsSnapshot, PipelineGroup};
use eddy_engine::{BoxError, ChangeBatch, Sink};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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
        // The binary's own printing, or the `print` connector's.
        if matches!(e.downcast_ref::<EddyError>(), Some(EddyError::StdoutClosed))
            || matches!(e.downcast_ref::<eddy_connectors::ConnectorError>(), Some(eddy_connectors::ConnectorError::StdoutClosed))
        {
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
    /// New rows print as a table; rows of an updating query that no longer hold
    /// (`-U`, `-D`) print under `retracted:`, before the new rows that follow them.
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        for (kind, rows) in changes.runs() {
            if kind.is_retraction() {
                write_stdout(&format!("retracted:\n{}", table(&rows, Footer::Hide)?))?;
            } else {
                write_stdout(&table(&rows, Footer::Hide)?)?;
            }
        }
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
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        let batch = changes.rows();
        if self.last.is_none_or(|t| t.elapsed() >= self.every) && batch.num_rows() > 0 {
            self.last = Some(Instant::now());
            let sample = batch.slice(0, batch.num_rows().min(3));
            write_stdout(&format!("[{}] {} new row(s), for example:\n{}", self.name, batch.num_rows(), table(&sample, Footer::Hide)?))?;
        }
        self.inner.write(changes).await
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        self.inner.commit().await
    }
}

/// How often the progress bar is redrawn (a terminal shows it moving; the plain
/// line keeps its own interval).
const BAR_REFRESH: Duration = Duration::from_millis(100);

/// Shows progress on stderr until [`Progress::finish`]: in a terminal, over
/// inputs whose size is known (files), a bar with the share read and the time
/// left; otherwise (logs, tests, Kafka or generator sources) a line every `secs`
/// seconds. Nothing when `secs` is 0. The figures are the sums over the pipelines
/// of `metrics`, and the watermark the lowest of theirs.
pub fn spawn_progress(metrics: Arc<PipelineGroup>, secs: u64, label: Option<String>) -> Progress {
    let (finish, mut finished) = watch::channel(false);
    let task = tokio::spawn(async move {
        if secs == 0 {
            return;
        }
        let terminal = std::io::stderr().is_terminal();
        let started = Instant::now();
        let mut previous = metrics.snapshot();
        let mut last_line = Instant::now();
        let mut bar: Option<ProgressBar> = None;
        let every = Duration::from_secs(secs);
        let mut interval = tokio::time::interval(if terminal { BAR_REFRESH } else { every });
        interval.tick().await;
        loop {
            let run = tokio::select! {
                _ = interval.tick() => RunState::Running,
                _ = finished.wait_for(|f| *f) => RunState::Ended,
            };
            if terminal {
                if let Some((read, total)) = metrics.input_progress() {
                    let bar = bar.get_or_insert_with(|| progress_bar(total));
                    draw_bar(bar, &metrics, read, total);
                    if run == RunState::Ended {
                        // Drawn now whatever the refresh rate, and left on the screen:
                        // a run faster than the first redraw still shows where it got.
                        bar.abandon();
                        return;
                    }
                    continue;
                }
                if last_line.elapsed() < every && run == RunState::Running {
                    continue;
                }
            }
            if run == RunState::Ended {
                // The run's summary line follows; a last progress line would repeat it.
                return;
            }
            let now = metrics.snapshot();
            let rate = (now.rows_in - previous.rows_in) as f64 / last_line.elapsed().as_secs_f64().max(0.001);
            last_line = Instant::now();
            let line = progress_line(&metrics, now, rate, started, label.as_deref());
            match &bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
            previous = now;
        }
    });
    Progress { task, finish }
}

/// The progress display of one run, which [`Progress::finish`] ends.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
    finish: watch::Sender<bool>,
}

impl Progress {
    /// Ends the display once the run has ended, drawing the bar's final state
    /// first (the share of the input read, the last counters).
    pub async fn finish(self) {
        self.finish.send_replace(true);
        let _ = self.task.await;
    }
}

/// Whether the run a progress display follows is still going.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    Ended,
}

/// Sets the bar to `read` of `total` bytes, with the row and state counters.
fn draw_bar(bar: &ProgressBar, metrics: &PipelineGroup, read: u64, total: u64) {
    bar.set_length(total.max(1));
    bar.set_position(read);
    let now = metrics.snapshot();
    bar.set_message(format!("rows in {}  rows out {}  state {}B", human(now.rows_in as f64), human(now.rows_out as f64), human(metrics.state_bytes() as f64)));
}

/// The bar for an input of `total` bytes: share read, bytes, time left, counters.
fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total.max(1)), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {percent:>3}% of {total_bytes}, {eta} left  {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// One plain progress line, with the counters, the watermark, lag and the last checkpoint.
fn progress_line(metrics: &PipelineGroup, now: MetricsSnapshot, rate: f64, started: Instant, label: Option<&str>) -> String {
    let watermark = metrics.watermark();
    let (lag, problems) = metrics.source_health();
    let checkpoint = match metrics.checkpoint() {
        None => String::new(),
        Some(c) => format!("  checkpoint {} ({} ms, {}B)", c.id, c.duration_ms, human(c.bytes as f64)),
    };
    let state = metrics.state_bytes();
    let null_time = match now.null_time_rows {
        0 => String::new(),
        n => format!("  null event time {n}"),
    };
    let mut line = format!(
        "{}{:>6.1}s  rows in {} ({}/s)  rows out {}  late {}{null_time}  malformed {}  state {}B  watermark {}{}{}",
        label.map(|l| format!("[{l}] ")).unwrap_or_default(),
        started.elapsed().as_secs_f64(),
        human(now.rows_in as f64),
        human(rate),
        human(now.rows_out as f64),
        now.late_rows,
        now.malformed_rows,
        human(state as f64),
        watermark,
        lag.map(|l| format!("  lag {}", human(l as f64))).unwrap_or_default(),
        checkpoint
    );
    for problem in problems {
        line.push_str(&format!("\n  source problem: {problem}"));
    }
    line
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

/// Stops the pipelines on the first Ctrl-C or SIGTERM (they flush their sinks);
/// a second one exits at once.
pub fn stop_on_signal(deadline: Option<Duration>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop_requested() => eprintln!("eddy: stopping (Ctrl-C again to exit at once)"),
            _ = timer => {}
        }
        let _ = tx.send(true);
        stop_requested().await;
        std::process::exit(130);
    });
    rx
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: SIGTERM is how Kubernetes, systemd
/// and `kill` ask a process to stop.
pub async fn stop_requested() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match terminate.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let interrupt = async {
        // Without a handler for it, only SIGTERM can ask.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = sigterm => {}
    }
}
