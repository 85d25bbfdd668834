//! Window table functions at run time: appends `window_start`, `window_end` and
//! `window_time` to each row.
//!
//! Under an aggregate (slicing), each row gets the one slice it falls in and the
//! aggregate combines slices into windows, so a HOP row is aggregated once rather
//! than once per window. Without an aggregate, a row is repeated once per window.

use std::sync::Arc;

use crate::plan::WindowKind;
use datafusion::arrow::array::{ArrayRef, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;

use super::arrow_error;
use super::project::make_batch;
use crate::changelog::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::operator::{Emitter, Operator};

/// Assigns rows to windows (or slices) by their event time.
pub struct WindowAssignOperator {
    window: WindowKind,
    time_column: usize,
    slicing: bool,
    schema: SchemaRef,
}

impl WindowAssignOperator {
    /// Assigns by `time_column` of the input; `schema` is the input plus the three window columns.
    pub fn new(window: WindowKind, time_column: usize, slicing: bool, schema: SchemaRef) -> Self {
        WindowAssignOperator { window, time_column, slicing, schema }
    }
}

impl Operator for WindowAssignOperator {
    fn name(&self) -> &str {
        "WindowAssign"
    }

    fn on_rows(&mut self, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        let batch = rows.into_inserts("WindowAssign")?;
        let times = batch
            .column(self.time_column)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .cloned()
            .ok_or_else(|| EngineError::Internal("WindowAssign: the time column is not TIMESTAMP(3)".into()))?;
        let mut rows: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut starts: Vec<i64> = Vec::with_capacity(batch.num_rows());
        let mut ends: Vec<i64> = Vec::with_capacity(batch.num_rows());
        for (row, ts) in times.iter().enumerate() {
            // Rows without an event time belong to no window (the source already counted them late).
            let Some(ts) = ts else { continue };
            match (self.window, self.window.slice_ms()) {
                (WindowKind::Session { gap_ms }, _) => {
                    rows.push(row as u32);
                    starts.push(ts);
                    ends.push(ts.saturating_add(gap_ms));
                }
                (_, Some(slice_ms)) if self.slicing || matches!(self.window, WindowKind::Tumble { .. }) => {
                    let start = ts.div_euclid(slice_ms) * slice_ms;
                    rows.push(row as u32);
                    starts.push(start);
                    ends.push(start + slice_ms);
                }
                (_, Some(slice_ms)) => {
                    for (start, end) in self.window.windows_of_slice(ts.div_euclid(slice_ms) * slice_ms) {
                        rows.push(row as u32);
                        starts.push(start);
                        ends.push(end);
                    }
                }
                (_, None) => return Err(EngineError::Internal("window without slices".into())),
            }
        }
        let mut columns: Vec<ArrayRef> = if rows.len() == batch.num_rows() && rows.iter().enumerate().all(|(i, r)| *r as usize == i) {
            batch.columns().to_vec()
        } else {
            let indices = UInt32Array::from(rows);
            batch.columns().iter().map(|c| take(c, &indices, None)).collect::<Result<_, _>>().map_err(|e| arrow_error("WindowAssign", e))?
        };
        let times: Vec<i64> = ends.iter().map(|e| e - 1).collect();
        let n = starts.len();
        columns.push(Arc::new(TimestampMillisecondArray::from(starts)));
        columns.push(Arc::new(TimestampMillisecondArray::from(ends)));
        columns.push(Arc::new(TimestampMillisecondArray::from(times)));
        out.inserts(make_batch(&self.schema, columns, n, "WindowAssign")?);
        Ok(())
    }
}
