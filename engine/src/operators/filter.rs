//! `WHERE` and `HAVING`: keeps the rows whose predicate is true.

use std::sync::Arc;

use datafusion::physical_expr::PhysicalExpr;

use super::evaluate_predicate;
use crate::changelog::ChangeBatch;
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

    /// The predicate is deterministic: a retracted row passed it exactly when the
    /// row it retracts did, so every kind of change is filtered alike.
    fn on_rows(&mut self, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        let mask = evaluate_predicate(&self.predicate, rows.rows(), "Filter")?;
        if mask.true_count() == rows.num_rows() {
            out.changes(rows);
        } else {
            out.changes(rows.filter(&mask)?);
        }
        Ok(())
    }
}
