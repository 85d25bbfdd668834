//! Hive-style partition directories (`dt=2024-01-01/hour=3/part-...`): the sink
//! names a row's directory from its `PARTITIONED BY` columns and leaves those
//! columns out of the file; the source puts them back from the directory names.
//! Values are escaped as Hive does (`/`, `=`, `:`, `%`... become `%2F`...), and a
//! null is `__HIVE_DEFAULT_PARTITION__`, so Spark, Trino and DuckDB read the same
//! layout.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::util::display::ArrayFormatter;
use datafusion::common::ScalarValue;
use eddy_engine::{BoxError, SourceBatch, SourceReader};

use crate::error::ConnectorError;

/// The directory name of a null partition value (Hive's).
pub(crate) const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '\x7f' | '{' | '[' | ']' | '^')
}

/// `value` as one directory-name component (Hive's escaping).
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if needs_escape(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value an [`escape`]d component stands for (malformed escapes stay as written).
pub(crate) fn unescape(component: &str) -> String {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `k=v` directory components of `relative_path` (a file's path below the
/// table's root), unescaped; `None` values are nulls.
pub(crate) fn values_in_path(relative_path: &str) -> HashMap<String, Option<String>> {
    let mut dirs: Vec<&str> = relative_path.split(['/', '\\']).collect();
    dirs.pop(); // the file name
    dirs.into_iter().filter_map(|d| d.split_once('=')).map(|(k, v)| (unescape(k), if v == NULL_PARTITION { None } else { Some(unescape(v)) })).collect()
}

/// The partition directory (`dt=2024-01-01/hour=3`) of each row, from the
/// partition columns' formatted values.
pub(crate) fn row_directories(names: &[&str], columns: &[ArrayRef]) -> Result<Vec<String>, ConnectorError> {
    let rows = columns.first().map_or(0, |c| c.len());
    let options = datafusion::arrow::util::display::FormatOptions::new();
    let formatters = columns
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConnectorError::arrow("formatting partition values", e))?;
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut dir = String::new();
        for (i, (name, column)) in names.iter().zip(columns).enumerate() {
            if i > 0 {
                dir.push('/');
            }
            dir.push_str(&escape(name));
            dir.push('=');
            if column.is_null(row) {
                dir.push_str(NULL_PARTITION);
            } else {
                dir.push_str(&escape(&formatters[i].value(row).to_string()));
            }
        }
        out.push(dir);
    }
    Ok(out)
}

/// Reads a partition file (whose rows lack the partition columns) and adds
/// those columns back as constants taken from its directory names.
pub(crate) struct WithPartitionValues {
    inner: Box<dyn SourceReader>,
    schema: SchemaRef,
    /// For each column of `schema`: the constant value, or `None` for a file column.
    constants: Vec<Option<ScalarValue>>,
}

impl WithPartitionValues {
    /// `inner` reads `file_schema` (= `schema` without `partition_columns`) from the
    /// file at `relative_path` below the table root.
    pub(crate) fn try_new(inner: Box<dyn SourceReader>, schema: SchemaRef, partition_columns: &[String], relative_path: &str) -> Result<Self, ConnectorError> {
        let found = values_in_path(relative_path);
        let mut constants = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            if !partition_columns.contains(field.name()) {
                constants.push(None);
                continue;
            }
            let value = found.get(field.name()).ok_or_else(|| {
                ConnectorError::invalid(
                    "path",
                    relative_path,
                    format!("the file is not below a '{}=...' directory, but the table is PARTITIONED BY it", field.name()),
                )
            })?;
            let scalar = match value {
                None => ScalarValue::try_from(field.data_type()),
                Some(text) => ScalarValue::try_from_string(text.clone(), field.data_type()),
            }
            .map_err(|e| {
                ConnectorError::invalid("path", relative_path, format!("partition value {}={value:?} is not a {}: {e}", field.name(), field.data_type()))
            })?;
            constants.push(Some(scalar));
        }
        Ok(WithPartitionValues { inner, schema, constants })
    }

    /// The schema a file of a table with `schema` holds: without the partition columns.
    pub(crate) fn file_schema(schema: &SchemaRef, partition_columns: &[String]) -> SchemaRef {
        Arc::new(Schema::new(schema.fields().iter().filter(|f| !partition_columns.contains(f.name())).cloned().collect::<Vec<_>>()))
    }
}

#[async_trait]
impl SourceReader for WithPartitionValues {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn status(&self) -> eddy_engine::ReaderStatus {
        self.inner.status()
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, BoxError> {
        let Some(mut read) = self.inner.next_batch().await? else {
            return Ok(None);
        };
        let rows = read.rows.num_rows();
        let mut file_columns = read.rows.rows().columns().iter();
        let mut columns = Vec::with_capacity(self.constants.len());
        for constant in &self.constants {
            columns.push(match constant {
                Some(value) => value.to_array_of_size(rows)?,
                None => Arc::clone(file_columns.next().ok_or("a partition file has fewer columns than its table")?),
            });
        }
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
        let with_values = RecordBatch::try_new_with_options(SchemaRef::clone(&self.schema), columns, &options)?;
        read.rows = read.rows.map_rows(with_values)?;
        Ok(Some(read))
    }

    fn position(&self) -> Option<eddy_engine::SourcePosition> {
        self.inner.position()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, StringArray};

    #[test]
    fn escaping_round_trips_and_matches_hive() {
        assert_eq!(escape("2024-01-01 10:00"), "2024-01-01 10%3A00");
        assert_eq!(escape("a/b=c%"), "a%2Fb%3Dc%25");
        assert_eq!(escape("naïve"), "naïve");
        for v in ["2024-01-01 10:00", "a/b=c%", "100%", "%", "x%4", "naïve"] {
            assert_eq!(unescape(&escape(v)), v);
        }
        assert_eq!(unescape("bad%zz"), "bad%zz");
    }

    #[test]
    fn directories_from_rows_and_values_from_paths() {
        let columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![Some("2024-01-01"), None])), Arc::new(Int32Array::from(vec![3, 14]))];
        let dirs = row_directories(&["dt", "hour"], &columns).unwrap();
        assert_eq!(dirs, vec!["dt=2024-01-01/hour=3", "dt=__HIVE_DEFAULT_PARTITION__/hour=14"]);
        let found = values_in_path("dt=2024-01-01/hour=3/part-1.parquet");
        assert_eq!(found.get("dt"), Some(&Some("2024-01-01".to_string())));
        assert_eq!(found.get("hour"), Some(&Some("3".to_string())));
        assert_eq!(values_in_path("dt=__HIVE_DEFAULT_PARTITION__/f").get("dt"), Some(&None));
        assert!(values_in_path("x=1").is_empty(), "the file name is not a directory");
    }
}
