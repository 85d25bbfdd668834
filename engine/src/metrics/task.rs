//! The counters of one task (a stage instance), of each operator in its chain, of
//! the source partition it reads and of the sink it writes.
//!
//! Each task owns its counters and is their only writer; `/metrics`, `GetPipeline`
//! and the progress line read them. They are plain atomics updated once per batch
//! or message, never per row, so keeping them costs nothing a benchmark can see.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::message::{EventTime, Message};

/// What a watermark gauge holds before the first watermark: nothing to show.
pub const NO_WATERMARK: i64 = i64::MIN;

/// The counters of one task, registered with its pipeline's [`super::PipelineMetrics`].
#[derive(Debug)]
pub struct TaskMetrics {
    /// The task's name in labels: `STAGE.INSTANCE` (stage index, instance index).
    pub task: String,
    /// One per operator of the task's chain, in chain order.
    pub operators: Vec<OperatorMetrics>,
    /// Time spent waiting for room in a full channel downstream: back-pressure.
    pub backpressured_ns: AtomicU64,
    /// Time held in barrier alignment: from the first input's barrier to the last one's.
    pub alignment_ns: AtomicU64,
    /// The source partition the task reads, for a source task.
    pub source: Option<SourcePartitionMetrics>,
}

/// Where an operator sits in a pipeline, for its counters' labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPlace {
    /// `STAGE.POSITION`: the same for an operator's every instance.
    pub id: String,
    /// The operator's name (`WindowAggregate`, `Project`).
    pub name: String,
}

/// The counters of one operator instance.
#[derive(Debug)]
pub struct OperatorMetrics {
    pub place: OperatorPlace,
    /// Rows the operator was given.
    pub rows_in: AtomicU64,
    /// Rows it passed on (retractions count as rows).
    pub rows_out: AtomicU64,
    /// Time spent inside the operator's own methods (not downstream of it).
    pub busy_ns: AtomicU64,
    /// Bytes of state it holds now ([`crate::operator::Operator::state_bytes`]).
    pub state_bytes: AtomicU64,
    /// Keys it holds state for now ([`crate::operator::Operator::state_keys`]).
    pub state_keys: AtomicU64,
    /// The newest watermark it passed on, in ms ([`NO_WATERMARK`] until one);
    /// watermarks only advance, so this never goes backwards.
    pub watermark_ms: AtomicI64,
}

/// The counters of the source partition a source task reads.
#[derive(Debug)]
pub struct SourcePartitionMetrics {
    /// The source table.
    pub table: String,
    /// The partition, as its reader names it (a file, `topic/3`).
    pub partition: String,
    /// Rows decoded.
    pub rows: AtomicU64,
    /// Records that could not be decoded.
    pub malformed: AtomicU64,
    /// The next offset to read ([`crate::connector::SourcePosition::offset`]); -1 when the source has none.
    pub offset: AtomicI64,
    /// Records available but not read yet (Kafka's high-water mark minus the position); -1 when unknown.
    pub lag: AtomicI64,
    /// The partition's watermark, in ms ([`NO_WATERMARK`] until one).
    pub watermark_ms: AtomicI64,
}

impl SourcePartitionMetrics {
    /// Counters for partition `partition` of `table`, before anything is read.
    pub fn new(table: &str, partition: &str) -> Self {
        SourcePartitionMetrics {
            table: table.to_string(),
            partition: partition.to_string(),
            rows: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            offset: AtomicI64::new(-1),
            lag: AtomicI64::new(-1),
            watermark_ms: AtomicI64::new(NO_WATERMARK),
        }
    }
}

impl TaskMetrics {
    /// Counters for task `task` running operators `operators`, and reading `source` if it is a source task.
    pub fn new(task: String, operators: Vec<OperatorPlace>, source: Option<SourcePartitionMetrics>) -> Self {
        TaskMetrics {
            task,
            operators: operators.into_iter().map(OperatorMetrics::new).collect(),
            backpressured_ns: AtomicU64::new(0),
            alignment_ns: AtomicU64::new(0),
            source,
        }
    }

    /// Adds time spent waiting for room downstream.
    pub fn add_backpressure(&self, waited: Duration) {
        self.backpressured_ns.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Adds time spent aligning a barrier.
    pub fn add_alignment(&self, waited: Duration) {
        self.alignment_ns.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }
}

impl OperatorMetrics {
    fn new(place: OperatorPlace) -> Self {
        OperatorMetrics {
            place,
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            state_keys: AtomicU64::new(0),
            watermark_ms: AtomicI64::new(NO_WATERMARK),
        }
    }

    /// Records one call of the operator: the rows it was given, the time it took,
    /// and what it passed on (`produced`).
    pub fn record(&self, rows_in: usize, busy: Duration, produced: &[Message]) {
        if rows_in > 0 {
            self.rows_in.fetch_add(rows_in as u64, Ordering::Relaxed);
        }
        self.busy_ns.fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
        let mut rows_out = 0;
        for message in produced {
            match message {
                Message::Rows(rows) => rows_out += rows.num_rows(),
                Message::Watermark(w) => advance(&self.watermark_ms, *w),
                _ => {}
            }
        }
        if rows_out > 0 {
            self.rows_out.fetch_add(rows_out as u64, Ordering::Relaxed);
        }
    }
}

/// Moves a watermark gauge forward to `w`, never back.
pub fn advance(gauge: &AtomicI64, w: EventTime) {
    gauge.fetch_max(w.0, Ordering::Relaxed);
}

/// The counters of the sink a pipeline writes.
#[derive(Debug)]
pub struct SinkMetrics {
    /// The sink table.
    pub table: String,
    /// Rows written to the sink (visible or not yet).
    pub rows_written: AtomicU64,
    /// Rows whose commit completed: visible to readers of the sink.
    pub rows_committed: AtomicU64,
    /// Time spent in the sink's `write`.
    pub write_ns: AtomicU64,
    /// Commits completed, and the time they took in all (a summary's count and sum).
    pub commits: AtomicU64,
    pub commit_ns: AtomicU64,
    /// Calls into the sink that failed.
    pub errors: AtomicU64,
    /// Rows written and not committed yet, by the checkpoint whose barrier closed
    /// them (`u64::MAX`: not closed by a barrier yet), oldest first.
    pending: Mutex<Vec<(u64, u64)>>,
}

impl SinkMetrics {
    /// Counters for the sink of `table`.
    pub fn new(table: &str) -> Self {
        SinkMetrics {
            table: table.to_string(),
            rows_written: AtomicU64::new(0),
            rows_committed: AtomicU64::new(0),
            write_ns: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_ns: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Records a write of `rows` rows that took `took`.
    pub fn wrote(&self, rows: usize, took: Duration) {
        self.rows_written.fetch_add(rows as u64, Ordering::Relaxed);
        self.write_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        let mut pending = self.lock_pending();
        match pending.last_mut() {
            Some((u64::MAX, open)) => *open += rows as u64,
            _ => pending.push((u64::MAX, rows as u64)),
        }
    }

    /// The rows written since the last barrier belong to checkpoint `id`: they
    /// become visible when it commits ([`SinkMetrics::committed`]).
    pub fn prepared(&self, id: u64) {
        if let Some((closed_by, _)) = self.lock_pending().last_mut().filter(|(by, _)| *by == u64::MAX) {
            *closed_by = id;
        }
    }

    /// A commit that took `took` made visible every row prepared for checkpoints
    /// up to `up_to` (`u64::MAX`: every row written).
    pub fn committed(&self, up_to: u64, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        let mut pending = self.lock_pending();
        let visible: u64 = pending.iter().filter(|(by, _)| *by <= up_to).map(|(_, rows)| rows).sum();
        pending.retain(|(by, _)| *by > up_to);
        self.rows_committed.fetch_add(visible, Ordering::Relaxed);
    }

    /// Counts a call into the sink that failed.
    pub fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u64)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_count_as_committed_once_the_checkpoint_that_closed_them_commits() {
        let sink = SinkMetrics::new("out");
        sink.wrote(3, Duration::ZERO);
        sink.prepared(1);
        sink.wrote(4, Duration::ZERO);
        // Checkpoint 1's commit shows the 3 rows before its barrier, not the 4 after.
        sink.committed(1, Duration::from_millis(2));
        assert_eq!(sink.rows_committed.load(Ordering::Relaxed), 3);
        sink.prepared(2);
        sink.wrote(5, Duration::ZERO);
        // The last commit of a run shows everything.
        sink.committed(u64::MAX, Duration::from_millis(1));
        assert_eq!(sink.rows_committed.load(Ordering::Relaxed), 12);
        assert_eq!(sink.rows_written.load(Ordering::Relaxed), 12);
        assert_eq!(sink.commits.load(Ordering::Relaxed), 2);
        assert_eq!(sink.commit_ns.load(Ordering::Relaxed), 3_000_000);
    }

    #[test]
    fn an_operator_watermark_only_advances() {
        let place = OperatorPlace { id: "1.0".into(), name: "WindowAggregate".into() };
        let task = TaskMetrics::new("1.0".into(), vec![place], None);
        let op = &task.operators[0];
        op.record(0, Duration::ZERO, &[Message::Watermark(EventTime(2_000))]);
        op.record(0, Duration::ZERO, &[Message::Watermark(EventTime(1_000))]);
        assert_eq!(op.watermark_ms.load(Ordering::Relaxed), 2_000);
    }
}
