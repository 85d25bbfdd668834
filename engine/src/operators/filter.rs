//! `WHERE` and `HAVING`: keeps the rows whose predicate is true.

use std::sync::Arc;

use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use super::{arrow_error, evaluate_predicate};
use crate::error::Result;
use crate::operator::{Emitter, Operator};

/// Keeps rows where a DataFusion predicate is true (NULL counts as false).
pub struct FilterOperator {
    predicate: Arc<dyn PhysicalExpr>,
}

impl FilterOperator {
    /// A filter on `predicate`, evaluated against each input batch's schema.
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        FilterOperator { predicate }
    }
}

impl Operator for FilterOperator {
    fn name(&self) -> &str {
        "Filter"
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        out.batch(self.keep(batch)?);
        Ok(())
    }

    /// The predicate is deterministic: a retracted row passed it exactly when the
    /// row it retracts did, so retractions are filtered like rows.
    fn on_retract(&mut self, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        out.retract(self.keep(batch)?);
        Ok(())
    }
}

impl FilterOperator {
    fn keep(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let mask = evaluate_predicate(&self.predicate, &batch, "Filter")?;
        if mask.true_count() == batch.num_rows() {
            Ok(batch)
        } else {
            filter_record_batch(&batch, &mask).map_err(|e| arrow_error("Filter", e))
        }
    }
}
