//! Counters a running pipeline exposes: what came in, what went out, what was set
//! aside, and each task's and operator's own figures.
//!
//! - this file: [`PipelineMetrics`], one per running pipeline, and the tasks' counters registered with it.
//! - `task.rs`: the counters of one task, its operators, its source partition, and the sink.
//! - `group.rs`: [`PipelineGroup`], the pipelines `eddy run` and `eddy demo` run together, summed up.
//! - `exposition.rs`: every figure in Prometheus' text format, for `/metrics`.

mod exposition;
mod group;
mod task;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use exposition::{family_names, render, render_labelled, ExposedPipeline, PipelineState};
pub use group::{CheckpointFigures, PipelineGroup};
pub use task::{advance, OperatorMetrics, OperatorPlace, SinkMetrics, SourcePartitionMetrics, TaskMetrics, NO_WATERMARK};

use crate::connector::ReaderStatus;
use crate::graph::Link;
use crate::message::EventTime;

/// Shared, lock-free counters for one pipeline; cloned into every task as an `Arc`.
#[derive(Debug)]
pub struct PipelineMetrics {
    /// Rows read from sources (decoded successfully).
    pub rows_in: AtomicU64,
    /// Rows written to the pipeline's sink.
    pub rows_out: AtomicU64,
    /// Rows that arrived after their window closed.
    pub late_rows: AtomicU64,
    /// Rows a window could not place because their event time is NULL (Flink
    /// drops them too, as `numNullRowTimeRecordsDropped`); not late, so counted apart.
    pub null_time_rows: AtomicU64,
    /// Records sources could not decode.
    pub malformed_rows: AtomicU64,
    /// The pipeline's watermark, in ms ([`NO_WATERMARK`] until one arrives): what
    /// reached its sink, which is the minimum over every source partition that has
    /// not ended. Only [`PipelineMetrics::advance_watermark`] moves it, and never back.
    watermark_ms: AtomicI64,
    /// The newest checkpoint saved (0: none yet).
    pub checkpoint_id: AtomicU64,
    /// The id of the last savepoint asked for (its barrier), so whoever asked can
    /// wait for that checkpoint and not one that was already on its way.
    pub savepoint_id: AtomicU64,
    /// How long saving it took, from the barrier's first snapshot to `_COMPLETE`, in ms.
    pub checkpoint_ms: AtomicU64,
    /// Its size on disk, in bytes (what a restore reads).
    pub checkpoint_bytes: AtomicU64,
    /// The bytes it wrote: less than its size when it refers to state an earlier one stored.
    pub checkpoint_written_bytes: AtomicU64,
    /// When it completed, in ms since the Unix epoch (0: none yet), so status can say how old it is.
    pub checkpoint_at_ms: AtomicI64,
    /// Checkpoints saved, and checkpoints that could not be saved, since the run started.
    pub checkpoints_completed: AtomicU64,
    pub checkpoint_failures: AtomicU64,
    /// Another run of the pipeline saved a checkpoint this run was saving (see
    /// [`crate::checkpoint`]): this run commits nothing more, and is to be stopped.
    pub fenced: std::sync::atomic::AtomicBool,
    /// The time of the last refresh the sink showed (ms since the Unix epoch; 0:
    /// none): a view shows what its pipeline had read by then.
    pub refreshed_at_ms: AtomicU64,
    /// Bytes of operator state held in memory now, over every task (see
    /// [`crate::operator::Operator::state_bytes`]).
    pub state_bytes: AtomicU64,
    /// Lag and problems of every source partition, by `"table partition"`.
    readers: Mutex<BTreeMap<String, ReaderStatus>>,
    /// What each source table's partitions that ran to their end yielded, by table:
    /// how a run tells a source whose every record was malformed.
    ended_sources: Mutex<BTreeMap<String, SourceTotals>>,
    /// When the figures started: the run's uptime.
    pub started: Instant,
    /// Every task's own counters, as the runtime starts them.
    tasks: Mutex<Vec<Arc<TaskMetrics>>>,
    /// The sink's counters, once its task started.
    sink: Mutex<Option<Arc<SinkMetrics>>>,
    /// The stages and their links, once the run started: what a console draws the
    /// operators' figures on.
    stages: Mutex<Vec<StageShape>>,
}

/// One stage of a running pipeline as figures are shown on it: which stage its
/// output feeds, so a console can draw the graph (a join's two sides meet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageShape {
    /// The stage's name (`Source events`, `Keyed`, `Sink`).
    pub name: String,
    /// Where its rows come from.
    pub kind: StageShapeKind,
    /// How many tasks (instances) it runs.
    pub tasks: usize,
    /// The stage its output goes to, and as which input (a join's side); `None` for the sink.
    pub output: Option<Link>,
}

/// What feeds a [`StageShape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageShapeKind {
    /// A source's partitions.
    Source,
    /// A hash exchange on keys (an aggregate, a join).
    Keyed,
    /// The pipeline's sink.
    Sink,
}

/// The wall clock in ms since the Unix epoch (0 if the clock is before it): what
/// checkpoint times are stamped with and watermark lags are measured against.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What the partitions of one source table yielded, once they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceTotals {
    /// Rows decoded.
    pub rows: u64,
    /// Records that could not be decoded.
    pub malformed: u64,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        PipelineMetrics {
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            null_time_rows: AtomicU64::new(0),
            malformed_rows: AtomicU64::new(0),
            watermark_ms: AtomicI64::new(i64::MIN),
            checkpoint_id: AtomicU64::new(0),
            savepoint_id: AtomicU64::new(0),
            checkpoint_ms: AtomicU64::new(0),
            checkpoint_bytes: AtomicU64::new(0),
            checkpoint_written_bytes: AtomicU64::new(0),
            checkpoint_at_ms: AtomicI64::new(0),
            checkpoints_completed: AtomicU64::new(0),
            checkpoint_failures: AtomicU64::new(0),
            fenced: std::sync::atomic::AtomicBool::new(false),
            refreshed_at_ms: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            readers: Mutex::new(BTreeMap::new()),
            ended_sources: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            tasks: Mutex::new(Vec::new()),
            sink: Mutex::new(None),
            stages: Mutex::new(Vec::new()),
        }
    }
}

/// A point-in-time copy of [`PipelineMetrics`], for printing and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub rows_in: u64,
    pub rows_out: u64,
    pub late_rows: u64,
    pub null_time_rows: u64,
    pub malformed_rows: u64,
}

impl PipelineMetrics {
    /// Reads every counter once.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            rows_in: self.rows_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            late_rows: self.late_rows.load(Ordering::Relaxed),
            null_time_rows: self.null_time_rows.load(Ordering::Relaxed),
            malformed_rows: self.malformed_rows.load(Ordering::Relaxed),
        }
    }

    /// Records the latest status of one source partition.
    pub fn set_reader_status(&self, partition: &str, status: ReaderStatus) {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        match readers.get_mut(partition) {
            Some(old) if *old == status => {}
            Some(old) => *old = status,
            None => {
                readers.insert(partition.to_string(), status);
            }
        }
    }

    /// Drops one source partition's status: it is read elsewhere now (a cluster
    /// member handed it over), so its lag and problems are no longer this one's.
    pub fn forget_reader_status(&self, partition: &str) {
        self.readers.lock().unwrap_or_else(|e| e.into_inner()).remove(partition);
    }

    /// Every source partition's status, by `"table partition"`.
    pub fn reader_statuses(&self) -> BTreeMap<String, ReaderStatus> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Total lag over partitions that report one (`None` when none does), and
    /// the problems sources are retrying through, as `"table partition: problem"`.
    pub fn source_health(&self) -> (Option<u64>, Vec<String>) {
        let readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        let lag = readers.values().filter_map(|s| s.lag).reduce(|a, b| a + b);
        let problems = readers.iter().filter_map(|(k, s)| s.problem.as_ref().map(|p| format!("{k}: {p}"))).collect();
        (lag, problems)
    }

    /// How much of the input has been read, as `(read, total)` bytes over every
    /// source partition, when every partition that reported knows it (files do,
    /// unbounded sources do not); `None` otherwise.
    pub fn input_progress(&self) -> Option<(u64, u64)> {
        let readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if readers.is_empty() {
            return None;
        }
        readers.values().try_fold((0u64, 0u64), |(read, total), s| s.input_bytes.map(|(r, t)| (read + r, total + t)))
    }

    /// Adds what a partition of `table` yielded, once it reached its end.
    pub fn add_ended_source(&self, table: &str, yielded: SourceTotals) {
        let mut sources = self.ended_sources.lock().unwrap_or_else(|e| e.into_inner());
        let totals = sources.entry(table.to_string()).or_default();
        totals.rows += yielded.rows;
        totals.malformed += yielded.malformed;
    }

    /// What each source table whose partitions ended yielded, by table.
    pub fn ended_sources(&self) -> BTreeMap<String, SourceTotals> {
        self.ended_sources.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The pipeline's watermark ([`EventTime::MIN`] until one arrives).
    pub fn watermark(&self) -> EventTime {
        EventTime(self.watermark_ms.load(Ordering::Relaxed))
    }

    /// Moves the pipeline's watermark to `w` if that is later: the sink's
    /// watermark is already a minimum over the sources, and what is shown never goes back.
    pub fn advance_watermark(&self, w: EventTime) {
        advance(&self.watermark_ms, w);
    }

    /// Keeps a task's counters, so they are shown; returns them for the task to update.
    pub fn register_task(&self, task: TaskMetrics) -> Arc<TaskMetrics> {
        let task = Arc::new(task);
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&task));
        task
    }

    /// Every task's counters, in the order they started.
    pub fn tasks(&self) -> Vec<Arc<TaskMetrics>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps the sink's counters, so they are shown; returns them for the sink task to update.
    pub fn register_sink(&self, table: &str) -> Arc<SinkMetrics> {
        let sink = Arc::new(SinkMetrics::new(table));
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&sink));
        sink
    }

    /// The sink's counters, once its task started.
    pub fn sink(&self) -> Option<Arc<SinkMetrics>> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the run's stages, as it starts them.
    pub fn set_stages(&self, stages: Vec<StageShape>) {
        *self.stages.lock().unwrap_or_else(|e| e.into_inner()) = stages;
    }

    /// The run's stages (empty before it started).
    pub fn stages(&self) -> Vec<StageShape> {
        self.stages.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(input_bytes: Option<(u64, u64)>) -> ReaderStatus {
        ReaderStatus { input_bytes, ..Default::default() }
    }

    #[test]
    fn input_progress_adds_up_partitions_that_know_their_size() {
        let metrics = PipelineMetrics::default();
        assert_eq!(metrics.input_progress(), None);
        metrics.set_reader_status("t a.json", status(Some((10, 100))));
        metrics.set_reader_status("t b.json", status(Some((50, 50))));
        assert_eq!(metrics.input_progress(), Some((60, 150)));
        // One partition without a known size (a Kafka topic, a generator): no share to show.
        metrics.set_reader_status("k 0", status(None));
        assert_eq!(metrics.input_progress(), None);
    }

    /// A source partition a cluster member handed over no longer counts in its lag or problems.
    #[test]
    fn a_forgotten_reader_no_longer_counts() {
        let metrics = PipelineMetrics::default();
        let reading = |lag: u64, problem: Option<&str>| ReaderStatus { lag: Some(lag), problem: problem.map(str::to_string), ..Default::default() };
        metrics.set_reader_status("events 0", reading(5, None));
        metrics.set_reader_status("events 1", reading(7, Some("cannot reach the brokers")));
        assert_eq!(metrics.source_health(), (Some(12), vec!["events 1: cannot reach the brokers".to_string()]));
        metrics.forget_reader_status("events 1");
        assert_eq!(metrics.source_health(), (Some(5), Vec::new()));
    }

    /// Issue 20: a sink that stores every watermark it sees made the shown one jump
    /// back; a pipeline's watermark only advances.
    #[test]
    fn a_pipeline_watermark_never_goes_back() {
        let metrics = PipelineMetrics::default();
        assert_eq!(metrics.watermark(), EventTime::MIN);
        metrics.advance_watermark(EventTime(5_000));
        metrics.advance_watermark(EventTime(3_000));
        assert_eq!(metrics.watermark(), EventTime(5_000));
    }
}
