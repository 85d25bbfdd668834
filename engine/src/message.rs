//! The one message type that flows between operators.

use crate::changelog::ChangeBatch;

/// Event time in milliseconds since the Unix epoch, the unit of Flink's `TIMESTAMP(3)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime(pub i64);

impl EventTime {
    /// Before every event: the watermark of an input that has said nothing yet.
    pub const MIN: EventTime = EventTime(i64::MIN);
    /// After every event: the final watermark of a bounded input, which closes every window.
    pub const MAX: EventTime = EventTime(i64::MAX);

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for EventTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            EventTime::MIN => write!(f, "-inf"),
            EventTime::MAX => write!(f, "+inf"),
            EventTime(ms) => {
                let secs = ms.div_euclid(1000);
                let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
                match datafusion::common::arrow::temporal_conversions::timestamp_ms_to_datetime(ms) {
                    Some(dt) => write!(f, "{}", dt.format("%Y-%m-%d %H:%M:%S%.3f")),
                    None => write!(f, "{secs}.{nanos:09}"),
                }
            }
        }
    }
}

/// Identifies one checkpoint; barriers carry it so every operator snapshots the same cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId(pub u64);

/// What flows on every edge of the dataflow graph.
#[derive(Debug, Clone)]
pub enum Message {
    /// Rows as Arrow columns (never converted to rows on the hot path), each with
    /// the kind of change it is. Append-only edges carry only inserts; an edge of
    /// an updating plan (a view's groups) also takes back rows it sent before
    /// (`-U`/`-D`), as they were sent, and an update is its `-U` followed by its `+U`.
    Rows(ChangeBatch),
    /// No later row on this edge has an event time at or below this one (late rows were already diverted).
    Watermark(EventTime),
    /// Snapshot your state now: every row before this belongs to checkpoint `id`.
    Barrier(CheckpointId),
    /// Publish now: operators that emit only at barriers (updating aggregates) emit
    /// what changed, and a sink whose readers may see rows before their checkpoint
    /// is saved (a materialized view) shows them. The value is the refresh's time
    /// (ms since the Unix epoch): the sink shows what the pipeline had read by then.
    /// Not a checkpoint (nothing is saved) and not aligned across inputs: a task
    /// passes on the first refresh of each tick it gets and drops the other copies.
    Refresh(u64),
    /// The input has had no rows for a while (an idle Kafka partition): leave it out
    /// of the watermark until it sends a batch or a watermark again, so it does not
    /// hold every window back.
    Idle,
    /// The input is finished; no message follows.
    EndOfStream,
}
