//! Looking up a ClickHouse table in a lookup join: one
//! `SELECT columns FROM db.table WHERE (keys) IN ((...), ...)` per request,
//! answered as TabSeparated text and read as the columns' types; each row found
//! goes to the key its key columns equal; a full cache reads the table with
//! the same `SELECT` without the `WHERE`. Failures are the client's (see
//! `client.rs`), retried by the lookup join.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use eddy_engine::lookup::{Lookup, LookupRows};
use eddy_engine::table::TableDef;
use eddy_engine::BoxError;

use super::client::{quote_identifier, quote_string, unescape, Client};
use super::ClickHouseOptions;
use crate::error::ConnectorError;
use crate::lookup::row_texts;

/// A ClickHouse table read by key; see the module docs.
pub struct ClickHouseLookup {
    client: Client,
    /// `SELECT ... FROM ... WHERE (keys) IN `, the key tuples follow.
    select: String,
    /// `SELECT ... FROM ...`: the whole table, for a full cache.
    select_all: String,
    schema: SchemaRef,
    keys: Vec<usize>,
}

impl ClickHouseLookup {
    /// A lookup of `def` (physical columns `schema`) by the columns at `keys`; connects on the first lookup.
    pub fn try_new(def: &TableDef, schema: SchemaRef, keys: &[usize]) -> Result<Self, ConnectorError> {
        let options = ClickHouseOptions::parse(def, &schema)?;
        let table = format!("{}.{}", quote_identifier(&options.database), quote_identifier(&options.table));
        let client = Client::new(options.url.clone(), table.clone(), options.username.clone(), options.password.clone(), 0)?;
        let columns = schema.fields().iter().map(|f| quote_identifier(f.name())).collect::<Vec<_>>().join(", ");
        let key_columns = keys.iter().map(|&k| quote_identifier(schema.field(k).name())).collect::<Vec<_>>().join(", ");
        let select = format!("SELECT {columns} FROM {table} WHERE ({key_columns}) IN ");
        let select_all = format!("SELECT {columns} FROM {table} FORMAT TabSeparated");
        Ok(ClickHouseLookup { client, select, select_all, schema, keys: keys.to_vec() })
    }

    /// The rows of a TabSeparated answer, read as the table's columns.
    fn rows(&self, answer: &str) -> Result<RecordBatch, BoxError> {
        let lines: Vec<Vec<Option<String>>> = answer
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| line.split('\t').map(|field| (field != "\\N").then(|| unescape(field))).collect())
            .collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (c, field) in self.schema.fields().iter().enumerate() {
            let text = StringArray::from(lines.iter().map(|line| line.get(c).cloned().flatten()).collect::<Vec<_>>());
            columns.push(cast(&text, field.data_type()).map_err(|e| format!("ClickHouse column `{}` is not a {}: {e}", field.name(), field.data_type()))?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(lines.len()));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?)
    }
}

#[async_trait]
impl Lookup for ClickHouseLookup {
    async fn lookup(&self, keys: RecordBatch) -> Result<LookupRows, BoxError> {
        let asked = row_texts(&keys)?;
        let tuples: Vec<String> = asked
            .iter()
            .enumerate()
            .filter(|(_, values)| values.iter().all(Option::is_some))
            .map(|(_, values)| {
                let literals = values
                    .iter()
                    .zip(keys.schema().fields())
                    .map(|(v, field)| {
                        let v = v.as_deref().unwrap_or_default();
                        if field.data_type().is_numeric() {
                            v.to_string()
                        } else {
                            quote_string(v)
                        }
                    })
                    .collect::<Vec<_>>();
                format!("({})", literals.join(", "))
            })
            .collect();
        if tuples.is_empty() {
            return Ok(LookupRows { rows: RecordBatch::new_empty(Arc::clone(&self.schema)), key_of_row: Vec::new() });
        }
        let sql = format!("{}({}) FORMAT TabSeparated", self.select, tuples.join(", "));
        let answer = self.client.query("a lookup", &sql, &[]).await?;
        let rows = self.rows(&answer)?;
        // Rows go to the key their key columns equal, compared as the same types' text.
        let index: HashMap<&[Option<String>], u32> = asked.iter().enumerate().map(|(i, values)| (values.as_slice(), i as u32)).collect();
        let found = row_texts(&rows.project(&self.keys)?)?;
        let mut kept = Vec::new();
        let mut key_of_row = Vec::new();
        for (row, values) in found.iter().enumerate() {
            if let Some(&key) = index.get(values.as_slice()) {
                kept.push(row as u32);
                key_of_row.push(key);
            }
        }
        let rows = datafusion::arrow::compute::take_record_batch(&rows, &datafusion::arrow::array::UInt32Array::from(kept))?;
        Ok(LookupRows { rows, key_of_row })
    }

    async fn scan(&self) -> Result<RecordBatch, BoxError> {
        let answer = self.client.query("a full read for a lookup cache", &self.select_all, &[]).await?;
        self.rows(&answer)
    }
}
