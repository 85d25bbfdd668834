//! Reading Parquet files: project to the declared columns by name, cast where the
//! file's type differs compatibly, and divert rows with nulls in NOT NULL columns.

use std::fs::File;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::compute::{can_cast_types, cast, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use datafusion::parquet::arrow::ProjectionMask;
use eddy_engine::{BoxError, MalformedRecord, SourceBatch, SourceReader};

use crate::error::ConnectorError;
use crate::format::row_to_string;

/// Reads one Parquet file, the partition of a filesystem source.
pub(crate) struct ParquetFileReader {
    path: PathBuf,
    label: String,
    schema: SchemaRef,
    batch_rows: usize,
    state: Option<OpenParquet>,
    done: bool,
    /// Rows read so far, for positions of malformed rows.
    rows_read: u64,
}

struct OpenParquet {
    reader: ParquetRecordBatchReader,
    /// For each declared column, its index in the projected batches.
    positions: Vec<usize>,
}

/// Opens `path` projected to `schema`'s columns, in `schema`'s order.
fn open(path: &Path, schema: &SchemaRef, batch_rows: usize) -> Result<OpenParquet, ConnectorError> {
    let label = path.display().to_string();
    let file = File::open(path).map_err(|e| ConnectorError::io("open", path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ConnectorError::parquet(format!("cannot read Parquet file '{label}'"), e))?;
    let file_schema = SchemaRef::clone(builder.schema());
    let mut indices = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let Some((idx, file_field)) = file_schema.column_with_name(field.name()) else {
            return Err(ConnectorError::MissingColumn {
                column: field.name().clone(),
                path: label,
                available: file_schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "),
            });
        };
        if file_field.data_type() != field.data_type() && !can_cast_types(file_field.data_type(), field.data_type()) {
            return Err(ConnectorError::IncompatibleType {
                column: field.name().clone(),
                declared: field.data_type().to_string(),
                actual: file_field.data_type().to_string(),
                context: format!("Parquet file '{label}'"),
            });
        }
        indices.push(idx);
    }
    let mut sorted = indices.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let positions = indices.iter().map(|i| sorted.binary_search(i).unwrap_or(0)).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), sorted);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| ConnectorError::parquet(format!("cannot read Parquet file '{label}'"), e))?;
    Ok(OpenParquet { reader, positions })
}

impl ParquetFileReader {
    /// A reader for `path`; the file is opened on the first read.
    pub fn new(path: PathBuf, schema: SchemaRef, batch_rows: usize) -> Self {
        ParquetFileReader { label: path.display().to_string(), path, schema, batch_rows, state: None, done: false, rows_read: 0 }
    }

    /// The next batch, synchronously.
    pub fn read_next(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        if self.done {
            return Ok(None);
        }
        let state = match &mut self.state {
            Some(s) => s,
            None => self.state.insert(open(&self.path, &self.schema, self.batch_rows)?),
        };
        let Some(next) = state.reader.next() else {
            self.done = true;
            self.state = None;
            return Ok(None);
        };
        let ctx = || format!("reading Parquet file '{}'", self.label);
        let batch = next.map_err(|e| ConnectorError::arrow(ctx(), e))?;
        let first_row = self.rows_read;
        self.rows_read += batch.num_rows() as u64;
        let originals: Vec<ArrayRef> = state.positions.iter().map(|&pos| ArrayRef::clone(batch.column(pos))).collect();
        convert(&self.schema, originals, batch.num_rows(), &self.label, first_row).map(Some)
    }
}

/// Casts the file's columns to the declared types and builds the output batch. Rows
/// with a value that cannot be converted, or a null in a NOT NULL column, become
/// malformed records instead of being turned into nulls or failing the batch.
fn convert(schema: &SchemaRef, originals: Vec<ArrayRef>, num_rows: usize, label: &str, first_row: u64) -> Result<SourceBatch, ConnectorError> {
    let ctx = || format!("reading Parquet file '{label}'");
    let mut errors: Vec<Option<String>> = Vec::new();
    let mut note = |i: usize, msg: String| {
        if errors.is_empty() {
            errors = vec![None; num_rows];
        }
        match &mut errors[i] {
            Some(e) => {
                e.push_str("; ");
                e.push_str(&msg);
            }
            e @ None => *e = Some(msg),
        }
    };
    let mut columns = Vec::with_capacity(originals.len());
    for (field, orig) in schema.fields().iter().zip(&originals) {
        let col = if orig.data_type() == field.data_type() {
            ArrayRef::clone(orig)
        } else {
            // A safe cast turns unconvertible values into nulls; report those rows.
            let c = cast(orig, field.data_type()).map_err(|e| ConnectorError::arrow(ctx(), e))?;
            if c.null_count() > orig.null_count() {
                for i in 0..num_rows {
                    if c.is_null(i) && orig.is_valid(i) {
                        note(i, format!("column '{}': the file's {} value cannot be converted to {}", field.name(), orig.data_type(), field.data_type()));
                    }
                }
            }
            c
        };
        if !field.is_nullable() && col.null_count() > 0 {
            for i in 0..num_rows {
                if orig.is_null(i) {
                    note(i, format!("NOT NULL column '{}' is null", field.name()));
                }
            }
        }
        columns.push(col);
    }
    let relaxed = |cols: &[ArrayRef]| {
        std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(
            schema.fields().iter().zip(cols).map(|(f, c)| datafusion::arrow::datatypes::Field::new(f.name(), c.data_type().clone(), true)).collect::<Vec<_>>(),
        ))
    };
    if errors.is_empty() {
        let rows = RecordBatch::try_new(SchemaRef::clone(schema), columns).map_err(|e| ConnectorError::arrow(ctx(), e))?;
        return Ok(SourceBatch::inserts(rows, Vec::new()));
    }
    let raw = RecordBatch::try_new(relaxed(&originals), originals).map_err(|e| ConnectorError::arrow(ctx(), e))?;
    let mut malformed = Vec::new();
    for (i, err) in errors.iter().enumerate() {
        if let Some(error) = err {
            malformed.push(MalformedRecord {
                position: format!("{label}:row {}", first_row + i as u64 + 1),
                error: error.clone(),
                raw: row_to_string(&raw, i),
            });
        }
    }
    let keep: BooleanArray = errors.iter().map(|e| Some(e.is_none())).collect();
    let all = RecordBatch::try_new(relaxed(&columns), columns).map_err(|e| ConnectorError::arrow(ctx(), e))?;
    let kept = filter_record_batch(&all, &keep).map_err(|e| ConnectorError::arrow(ctx(), e))?;
    let rows = RecordBatch::try_new(SchemaRef::clone(schema), kept.columns().to_vec()).map_err(|e| ConnectorError::arrow(ctx(), e))?;
    Ok(SourceBatch::inserts(rows, malformed))
}

#[async_trait]
impl SourceReader for ParquetFileReader {
    fn describe(&self) -> String {
        self.label.clone()
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, BoxError> {
        Ok(self.read_next()?)
    }
}
