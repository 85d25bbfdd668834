//! `WHERE` and `HAVING`: keeps the rows whose predicate is true.

use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::physical_expr::PhysicalExpr;

use super::evaluate_predicate;
use crate::changelog::{ChangeBatch, RowKind};
use crate::error::Result;
use crate::operator::{Emitter, Operator};
use crate::plan::FilteredOut;

/// Keeps rows where a DataFusion predicate is true (NULL counts as false); the
/// others are dropped or sent on as deletions ([`FilteredOut`]).
pub struct FilterOperator {
    predicate: Arc<dyn PhysicalExpr>,
    filtered_out: FilteredOut,
}

impl FilterOperator {
    /// A filter on `predicate`, evaluated against each input batch's schema.
    pub fn new(predicate: Arc<dyn PhysicalExpr>, filtered_out: FilteredOut) -> Self {
        FilterOperator { predicate, filtered_out }
    }
}

impl Operator for FilterOperator {
    fn name(&self) -> &str {
        "Filter"
    }

    /// The predicate is deterministic: a retracted row passed it exactly when the
    /// row it retracts did, so every kind of change is filtered alike.
    fn on_rows(&mut self, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        let mask = evaluate_predicate(&self.predicate, rows.rows(), "Filter")?;
        if mask.true_count() == rows.num_rows() {
            out.changes(rows);
            return Ok(());
        }
        match self.filtered_out {
            FilteredOut::Dropped => out.changes(rows.filter(&mask)?),
            FilteredOut::Deleted => {
                // Kept rows as they are; a failing version becomes a deletion at its time.
                let kinds: Vec<Option<RowKind>> = (0..rows.num_rows())
                    .map(|i| match (mask.is_valid(i) && mask.value(i), rows.kind(i)) {
                        (true, kind) => Some(kind),
                        (false, RowKind::UpdateBefore) => None,
                        (false, _) => Some(RowKind::Delete),
                    })
                    .collect();
                let sent: Vec<u32> = (0..rows.num_rows() as u32).filter(|&i| kinds[i as usize].is_some()).collect();
                let taken = rows.take(&sent.into())?;
                let kinds = kinds.into_iter().flatten().collect();
                out.changes(ChangeBatch::new(taken.into_rows(), kinds)?);
            }
        }
        Ok(())
    }
}
