//! The first operator of every source partition: adds computed columns, tracks the
//! partition's watermark and diverts late rows.
//!
//! Lateness is decided per row, in source order, against the watermark in effect
//! just before that row: the running maximum of the watermark expression over all
//! earlier rows of the partition. That makes results independent of how the source
//! happens to cut its input into batches.

use std::sync::Arc;

use crate::plan::{LateAfter, SourceNode, WindowKind};
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, TimestampMillisecondArray};
use datafusion::arrow::compute::{cast, filter_record_batch, not};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use super::project::make_batch;
use super::{arrow_error, evaluate};
use crate::changelog::ChangeBatch;
use crate::connector::WatermarkOrigin;
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::PipelineMetrics;
use crate::operator::{Emitter, Operator, SideOutput};

/// Computed columns, watermark and lateness for one source partition.
pub struct SourcePrepOperator {
    node: SourceNode,
    watermark: EventTime,
    origin: WatermarkOrigin,
    metrics: Arc<PipelineMetrics>,
}

/// A batch with its computed columns, and which of its rows are on time.
pub struct Judged {
    /// Physical and computed columns: what queries see.
    pub batch: RecordBatch,
    /// `None` when every row is on time; else `true` for each row that is.
    pub on_time: Option<BooleanArray>,
    /// Rows whose time the watermark had passed.
    pub late: usize,
    /// Rows without an event time, which no window can take.
    pub null_time: usize,
}

impl SourcePrepOperator {
    /// Prepares rows of `node`'s table, whose watermark comes from `origin`; counts late rows in `metrics`.
    pub fn new(node: SourceNode, origin: WatermarkOrigin, metrics: Arc<PipelineMetrics>) -> Self {
        SourcePrepOperator { node, watermark: EventTime::MIN, origin, metrics }
    }

    /// The partition's watermark after the rows judged so far.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    /// Continues from a watermark saved elsewhere (a cluster's re-partitioner keeps
    /// it with the partition's committed offset).
    pub fn resume_at(&mut self, watermark: EventTime) {
        self.watermark = self.watermark.max(watermark);
    }

    fn with_computed_columns(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if self.node.computed.is_empty() {
            return Ok(batch);
        }
        let mut columns = batch.columns().to_vec();
        for expr in &self.node.computed {
            columns.push(evaluate(expr, &batch, "computed column")?);
        }
        make_batch(&self.node.schema, columns, batch.num_rows(), "computed column")
    }

    /// Adds the computed columns to new rows and judges each row against the
    /// watermark in effect just before it, advancing the watermark as it goes
    /// (from the rows' times unless the reader gives the watermark).
    pub fn judge(&mut self, rows: RecordBatch) -> Result<Judged> {
        let batch = self.with_computed_columns(rows)?;
        let all_on_time = |batch| Judged { batch, on_time: None, late: 0, null_time: 0 };
        let Some(watermark_expr) = &self.node.watermark else {
            return Ok(all_on_time(batch));
        };
        let candidates = match self.origin {
            WatermarkOrigin::Rows => Some(as_millis(&evaluate(watermark_expr, &batch, "watermark")?, "watermark")?),
            WatermarkOrigin::Reader => None,
        };
        let mut current = self.watermark.0;
        let judged = match self.node.lateness {
            None => {
                for value in candidates.iter().flat_map(|c| c.iter().flatten()) {
                    current = current.max(value);
                }
                all_on_time(batch)
            }
            Some(rule) => {
                let times = as_millis(batch.column(rule.time_column), "event time")?;
                let mut keep = Vec::with_capacity(batch.num_rows());
                let mut late = 0usize;
                let mut null_time = 0usize;
                for i in 0..batch.num_rows() {
                    // A row without an event time cannot be placed in any window: it is
                    // set aside as a late row is, but counted as what it is.
                    let has_time = times.is_valid(i);
                    let on_time = has_time && slice_end(rule.judged_by, times.value(i)) > current;
                    keep.push(on_time);
                    late += usize::from(has_time && !on_time);
                    null_time += usize::from(!has_time);
                    if let Some(candidates) = candidates.as_ref().filter(|c| c.is_valid(i)) {
                        current = current.max(candidates.value(i));
                    }
                }
                let on_time = (late + null_time > 0).then(|| BooleanArray::from(keep));
                Judged { batch, on_time, late, null_time }
            }
        };
        self.watermark = EventTime(current.max(self.watermark.0));
        Ok(judged)
    }
}

pub(crate) fn as_millis(array: &ArrayRef, what: &str) -> Result<TimestampMillisecondArray> {
    let array = cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(|e| arrow_error(what, e))?;
    array.as_any().downcast_ref::<TimestampMillisecondArray>().cloned().ok_or_else(|| EngineError::Internal(format!("{what}: not a timestamp")))
}

/// When a row at `ts` becomes late: once the watermark has reached this time.
/// Judged by a window, that is the end (exclusive) of the slice or session the
/// row starts; by its own time, the row's time itself, or the millisecond after
/// it when a row exactly at the watermark is still on time.
fn slice_end(judged_by: LateAfter, ts: i64) -> i64 {
    let window = match judged_by {
        LateAfter::Slice(window) => window,
        LateAfter::RowTimeReached => return ts,
        LateAfter::RowTimePassed => return ts.saturating_add(1),
    };
    match window.slice_ms() {
        Some(slice) => ts.div_euclid(slice) * slice + slice,
        None => match window {
            WindowKind::Session { gap_ms } => ts.saturating_add(gap_ms),
            _ => ts,
        },
    }
}

impl Operator for SourcePrepOperator {
    fn name(&self) -> &str {
        "SourcePrep"
    }

    /// A changelog source's updates and deletions get their computed columns; they
    /// move no watermark (the planner allows no window over a changelog).
    fn on_rows(&mut self, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        if !rows.is_inserts_only() {
            let computed = self.with_computed_columns(rows.rows().clone())?;
            out.changes(rows.map_rows(computed)?);
            return Ok(());
        }
        let before = self.watermark;
        let Judged { batch, on_time, late, null_time } = self.judge(rows.into_inserts("SourcePrep")?)?;
        match on_time {
            None => out.inserts(batch),
            Some(mask) => {
                PipelineMetrics::add(&self.metrics.late_rows, late);
                PipelineMetrics::add(&self.metrics.null_time_rows, null_time);
                out.inserts(filter_record_batch(&batch, &mask).map_err(|e| arrow_error("SourcePrep", e))?);
                let late_mask = not(&mask).map_err(|e| arrow_error("SourcePrep", e))?;
                out.side(SideOutput::Late, filter_record_batch(&batch, &late_mask).map_err(|e| arrow_error("SourcePrep", e))?);
            }
        }
        if self.watermark > before {
            out.watermark(self.watermark);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        // The final watermark (from the source task at the end of input), and the
        // reader's when it gives the watermark.
        if watermark > self.watermark {
            self.watermark = watermark;
            out.watermark(watermark);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_ends() {
        assert_eq!(slice_end(LateAfter::Slice(WindowKind::Tumble { size_ms: 10 }), 0), 10);
        assert_eq!(slice_end(LateAfter::Slice(WindowKind::Tumble { size_ms: 10 }), 9), 10);
        assert_eq!(slice_end(LateAfter::Slice(WindowKind::Tumble { size_ms: 10 }), -1), 0);
        assert_eq!(slice_end(LateAfter::Slice(WindowKind::Hop { slide_ms: 4, size_ms: 6 }), 5), 6);
        assert_eq!(slice_end(LateAfter::Slice(WindowKind::Session { gap_ms: 5 }), 7), 12);
        // An OVER aggregate's row is late once the watermark reaches its own time.
        assert_eq!(slice_end(LateAfter::RowTimeReached, 7), 7);
        assert_eq!(slice_end(LateAfter::RowTimePassed, 7), 8);
    }
}
