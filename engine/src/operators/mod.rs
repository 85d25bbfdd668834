//! The operators a streaming plan compiles to, one module per family.
//!
//! Stateless operators ([`filter`], [`project`], [`window_assign`]) reuse DataFusion
//! physical expressions. [`source_prep`] turns a connector's rows into the
//! table's rows and keeps the watermark. Stateful operators ([`window_aggregate`],
//! [`session_aggregate`]) keep keyed state in DataFusion `GroupsAccumulator`s and
//! can snapshot it as Arrow batches; [`retract_aggregate`] aggregates a
//! changelog, keeping what it needs to take rows back. Joins keep each side's
//! rows by key ([`join_rows`]): until the watermark says no partner can come
//! ([`interval_join`]), or for good, as a changelog ([`regular_join`]).
//! [`rank`] keeps the first rows of each partition: deduplication and Top-N.
//! [`over_aggregate`] keeps each partition's rows until the watermark reaches
//! them, and the emitted rows later frames still reach.

mod closing;
pub mod filter;
pub mod idle_expiry;
pub mod interval_join;
mod join_rows;
pub mod lookup_join;
pub mod over_aggregate;
mod partial_aggregate;
pub mod pre_aggregate;
pub mod project;
pub mod rank;
pub mod regular_join;
pub mod retract_aggregate;
mod rows;
pub mod session_aggregate;
pub mod source_prep;
pub mod temporal_join;
pub mod window_aggregate;
pub mod window_assign;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{EngineError, Result};

/// Evaluates an expression over a batch into an array of the batch's length.
pub(crate) fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch, operator: &str) -> Result<ArrayRef> {
    expr.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())).map_err(|e| EngineError::execution(operator, e))
}

/// Evaluates a predicate; a NULL result keeps the row out, as in SQL.
pub(crate) fn evaluate_predicate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch, operator: &str) -> Result<BooleanArray> {
    let array = evaluate(expr, batch, operator)?;
    array.as_any().downcast_ref::<BooleanArray>().cloned().ok_or_else(|| EngineError::Internal(format!("{operator}: predicate did not give booleans")))
}

/// Turns an Arrow error into an engine error naming the operator.
pub(crate) fn arrow_error(operator: &str, error: datafusion::arrow::error::ArrowError) -> EngineError {
    EngineError::execution(operator, error.into())
}
