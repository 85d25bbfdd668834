//! Prepared statements over Flight SQL: the text with its `$1`, `$2`...
//! placeholders, described once, and the values a client binds with `DoPut`.
//!
//! Values are bound as the Postgres face binds them ([`params`]): each becomes
//! one SQL literal in the statement's text, which then runs through the
//! dispatcher like any other text. Arrow values are first written as text
//! and checked as the Postgres type of their column.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;

use crate::error::EddyError;
use crate::server::pg::{params, types};
use crate::server::Server;

/// How many prepared statements the server keeps at once; past it the oldest
/// is closed (a client that never closes its statements cannot fill memory).
pub const PREPARED_KEPT_MAX: usize = 1024;

/// One prepared statement.
#[derive(Clone)]
pub struct Prepared {
    /// The text, with its placeholders.
    pub sql: String,
    /// The columns it answers; `None` for a statement without rows.
    pub columns: Option<SchemaRef>,
    /// One field per parameter (`$1`...), of its type where the plan tells it, else `Null`.
    pub parameters: SchemaRef,
    /// The literals of the values bound last, one per parameter.
    bound: Vec<String>,
}

impl Prepared {
    /// Describes `sql` without running it: its columns and its parameters.
    pub async fn describe(server: &Server, sql: &str) -> Result<Prepared, EddyError> {
        let count = params::parameter_count(sql)?;
        let described = match server.describe(sql).await {
            Ok(described) => described,
            // The streaming planner (a SELECT over bounded tables) takes no
            // placeholders: its columns are those of the statement with sample values bound.
            Err(_) if count > 0 => {
                let sample = params::literal(Some(params::sample_value(&Type::TEXT)), &Type::TEXT)?;
                server.describe(&params::substitute(sql, &vec![sample; count])?).await?
            }
            Err(e) => return Err(e),
        };
        let fields: Vec<Field> =
            (0..count).map(|i| Field::new(format!("${}", i + 1), described.parameters.get(i).cloned().flatten().unwrap_or(DataType::Null), true)).collect();
        Ok(Prepared { sql: sql.to_string(), columns: described.columns, parameters: Arc::new(Schema::new(fields)), bound: Vec::new() })
    }

    /// The text to run: the statement with the bound values in place of its
    /// placeholders (an error naming the first one without a value).
    pub fn bound_sql(&self) -> Result<String, EddyError> {
        if self.parameters.fields().is_empty() {
            return Ok(self.sql.clone());
        }
        params::substitute(&self.sql, &self.bound)
    }

    /// Binds the values of `batches` (one row, one column per parameter, in order).
    pub fn bind(&mut self, batches: &[RecordBatch]) -> Result<(), EddyError> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
            self.bound.clear();
            return Ok(());
        };
        if rows > 1 {
            return Err(EddyError::Unsupported(format!(
                "{rows} rows of parameter values were bound; Eddy runs a prepared statement with one row of values at a time"
            )));
        }
        let wanted = self.parameters.fields().len();
        if batch.num_columns() != wanted {
            return Err(EddyError::Unsupported(format!("the statement takes {wanted} parameter(s), but {} value(s) were bound", batch.num_columns())));
        }
        self.bound = batch.columns().iter().enumerate().map(|(i, column)| literal(column, i + 1)).collect::<Result<_, _>>()?;
        Ok(())
    }
}

/// The value of parameter `$number` (row 0 of `column`) as one SQL literal.
fn literal(column: &ArrayRef, number: usize) -> Result<String, EddyError> {
    if column.is_null(0) {
        return Ok("NULL".into());
    }
    let ty = types::pg_type(column.data_type());
    if ty == Type::BYTEA {
        return Err(EddyError::Unsupported(format!("parameter ${number} is binary ({}): bind it as a string", column.data_type())));
    }
    let text = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
        .map_err(|e| EddyError::Unsupported(format!("parameter ${number} of type {} cannot be bound: {e}", column.data_type())))?
        .value(0)
        .to_string();
    params::literal(Some(&text), &ty)
}

/// The prepared statements of every client, by handle.
#[derive(Default)]
pub struct PreparedStatements {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    next: u64,
    /// By handle; the number orders them by age.
    statements: HashMap<String, (u64, Prepared)>,
}

impl PreparedStatements {
    /// Keeps `prepared` and answers its handle.
    pub fn keep(&self, prepared: Prepared) -> String {
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.statements.len() >= PREPARED_KEPT_MAX {
            if let Some(oldest) = kept.statements.iter().min_by_key(|(_, (age, _))| *age).map(|(handle, _)| handle.clone()) {
                kept.statements.remove(&oldest);
            }
        }
        kept.next += 1;
        let handle = format!("p{}", kept.next);
        let age = kept.next;
        kept.statements.insert(handle.clone(), (age, prepared));
        handle
    }

    /// The statement of `handle`, as bound so far.
    pub fn get(&self, handle: &str) -> Result<Prepared, EddyError> {
        let kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.statements.get(handle).map(|(_, p)| p.clone()).ok_or_else(|| unknown(handle))
    }

    /// Binds `batches` to the statement of `handle`.
    pub fn bind(&self, handle: &str, batches: &[RecordBatch]) -> Result<(), EddyError> {
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (_, prepared) = kept.statements.get_mut(handle).ok_or_else(|| unknown(handle))?;
        prepared.bind(batches)
    }

    /// Closes the statement of `handle` (closing an unknown one is not an error).
    pub fn close(&self, handle: &str) {
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).statements.remove(handle);
    }
}

fn unknown(handle: &str) -> EddyError {
    EddyError::NotFound(format!("no prepared statement `{handle}`: it was closed, or the server restarted; prepare it again"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    fn prepared(parameters: usize) -> Prepared {
        let fields: Vec<Field> = (1..=parameters).map(|i| Field::new(format!("${i}"), DataType::Null, true)).collect();
        Prepared { sql: "SELECT * FROM v WHERE id = $1 AND name = $2".into(), columns: None, parameters: Arc::new(Schema::new(fields)), bound: Vec::new() }
    }

    #[test]
    fn arrow_values_become_literals() {
        let mut p = prepared(2);
        assert!(p.bound_sql().unwrap_err().to_string().contains("0 parameter value(s) were given"));
        let batch =
            RecordBatch::try_from_iter([("a", Arc::new(Int64Array::from(vec![7])) as ArrayRef), ("b", Arc::new(StringArray::from(vec!["it's"])) as ArrayRef)])
                .unwrap();
        p.bind(&[batch]).unwrap();
        assert_eq!(p.bound_sql().unwrap(), "SELECT * FROM v WHERE id = 7 AND name = 'it''s'");
    }

    #[test]
    fn several_rows_or_wrong_widths_are_refused() {
        let mut p = prepared(1);
        let two = RecordBatch::try_from_iter([("a", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)]).unwrap();
        assert!(p.bind(&[two]).unwrap_err().to_string().contains("2 rows"));
        let mut p = prepared(2);
        let one = RecordBatch::try_from_iter([("a", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]).unwrap();
        assert!(p.bind(&[one]).unwrap_err().to_string().contains("takes 2"));
    }
}
