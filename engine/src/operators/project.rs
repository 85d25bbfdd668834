//! `SELECT` lists and casts: computes output columns from each row.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::physical_expr::PhysicalExpr;

use super::{arrow_error, evaluate};
use crate::changelog::ChangeBatch;
use crate::error::Result;
use crate::operator::{Emitter, Operator};

/// Evaluates one DataFusion expression per output column.
pub struct ProjectOperator {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl ProjectOperator {
    /// A projection producing `schema` from `exprs`.
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        ProjectOperator { exprs, schema }
    }
}

/// Builds a batch, relaxing the schema's nullability claims only as far as the data needs.
pub(crate) fn make_batch(schema: &SchemaRef, columns: Vec<datafusion::arrow::array::ArrayRef>, rows: usize, operator: &str) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    match RecordBatch::try_new_with_options(Arc::clone(schema), columns.clone(), &options) {
        Ok(batch) => Ok(batch),
        Err(_) => {
            // A column the planner thought NOT NULL can hold NULLs after a cast; say so in the schema.
            let fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
            let relaxed = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
            RecordBatch::try_new_with_options(relaxed, columns, &options).map_err(|e| arrow_error(operator, e))
        }
    }
}

impl Operator for ProjectOperator {
    fn name(&self) -> &str {
        "Project"
    }

    /// A change keeps its kind: a retracted row is retracted as projected, which
    /// is the row projected before.
    fn on_rows(&mut self, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        let projected = self.project(rows.rows())?;
        out.changes(rows.map_rows(projected)?);
        Ok(())
    }
}

impl ProjectOperator {
    fn project(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self.exprs.iter().map(|e| evaluate(e, batch, "Project")).collect::<Result<Vec<_>>>()?;
        make_batch(&self.schema, columns, batch.num_rows(), "Project")
    }
}
