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
use eddy_engine::{BoxError, MalformedRecord, SourceBatch, SourcePosition, SourceReader};

use super::split::{Extent, Split};
use crate::error::ConnectorError;
use crate::format::row_to_string;

/// Reads one Parquet file, or some of its row groups (a split), as a partition of a filesystem source.
pub(crate) struct ParquetFileReader {
    path: PathBuf,
    /// The file, for positions of malformed rows.
    label: String,
    /// The partition: the file, and the row groups when it is a split.
    describe: String,
    /// The row groups read, one after another; `None`: the whole file at once.
    row_groups: Option<Vec<usize>>,
    /// The next of `row_groups` to open.
    next_group: usize,
    schema: SchemaRef,
    batch_rows: usize,
    state: Option<OpenParquet>,
    done: bool,
    /// Rows of the file before the next one read: positions of malformed rows, and
    /// where to resume (row groups that end at or before it are done).
    rows_read: u64,
    /// The partition's name in checkpoints ([`Split::id`]).
    id: String,
}

struct OpenParquet {
    reader: ParquetRecordBatchReader,
    /// For each declared column, its index in the projected batches.
    positions: Vec<usize>,
    /// Rows of the file before the row group read (0 for the whole file).
    first_row: u64,
}

/// The reader of `path`'s metadata.
fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, ConnectorError> {
    let file = File::open(path).map_err(|e| ConnectorError::io("open", path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ConnectorError::parquet(format!("cannot read Parquet file '{}'", path.display()), e))
}

/// How many row groups `path` has: how far it can be split.
pub(crate) fn row_group_count(path: &Path) -> Result<usize, ConnectorError> {
    Ok(builder(path)?.metadata().num_row_groups())
}

/// Opens `path` (only its row group `row_group`, when given) projected to `schema`'s columns, in `schema`'s order.
/// Opens the file, or one of its row groups, to read from its row `from` on (a
/// row number in the file); `None` when the rows read end before it.
fn open(path: &Path, row_group: Option<usize>, schema: &SchemaRef, batch_rows: usize, from: u64) -> Result<Option<OpenParquet>, ConnectorError> {
    let label = path.display().to_string();
    let builder = builder(path)?;
    let groups = builder.metadata().num_row_groups();
    let rows_of = |g: usize| u64::try_from(builder.metadata().row_group(g).num_rows()).unwrap_or(0);
    let (builder, first_row) = match row_group {
        Some(g) if g < groups => {
            let first_row: u64 = (0..g).map(rows_of).sum();
            if first_row + rows_of(g) <= from {
                return Ok(None);
            }
            (builder.with_row_groups(vec![g]), first_row)
        }
        Some(g) => {
            return Err(ConnectorError::UnsupportedPath {
                path: label,
                reason: format!("it has {groups} row groups, not {}: it changed since the query started", g + 1),
            })
        }
        None if (0..groups).map(rows_of).sum::<u64>() <= from && from > 0 => return Ok(None),
        None => (builder, 0),
    };
    // Rows of the group (or file) before `from` were read before a restart.
    let skip = from.saturating_sub(first_row);
    let builder = builder.with_offset(usize::try_from(skip).unwrap_or(usize::MAX));
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
    Ok(Some(OpenParquet { reader, positions, first_row: first_row + skip }))
}

impl ParquetFileReader {
    /// A reader for `split` (a whole file or some of its row groups) from row `row`
    /// of the file on: 0, or a [`SourceReader::position`] it gave before a restart.
    /// The file is opened on the first read.
    pub fn resuming(split: &Split, schema: SchemaRef, batch_rows: usize, row: u64) -> Self {
        let row_groups = match &split.extent {
            Extent::RowGroups(groups) => Some(groups.clone()),
            Extent::Whole | Extent::Bytes(_) => None,
        };
        ParquetFileReader {
            label: split.path.display().to_string(),
            describe: split.describe(),
            path: split.path.clone(),
            row_groups,
            next_group: 0,
            schema,
            batch_rows,
            state: None,
            done: false,
            rows_read: row,
            id: split.id(),
        }
    }

    /// The next batch, synchronously.
    pub fn read_next(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        let (state, next) = loop {
            if self.done {
                return Ok(None);
            }
            let state = match &mut self.state {
                Some(s) => s,
                None => {
                    let group = match &self.row_groups {
                        None => None,
                        Some(groups) => {
                            let Some(&group) = groups.get(self.next_group) else {
                                self.done = true;
                                return Ok(None);
                            };
                            self.next_group += 1;
                            Some(group)
                        }
                    };
                    let Some(opened) = open(&self.path, group, &self.schema, self.batch_rows, self.rows_read)? else {
                        // Read before a restart.
                        self.done = self.row_groups.as_ref().is_none_or(|groups| self.next_group >= groups.len());
                        continue;
                    };
                    self.rows_read = opened.first_row;
                    self.state.insert(opened)
                }
            };
            match state.reader.next() {
                Some(next) => break (state, next),
                None => {
                    self.state = None;
                    self.done = self.row_groups.as_ref().is_none_or(|groups| self.next_group >= groups.len());
                }
            }
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
        self.describe.clone()
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, BoxError> {
        Ok(self.read_next()?)
    }

    /// The file's row number of the next row to read: row groups of the split that
    /// end at or before it are done.
    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition { partition: self.id.clone(), offset: i64::try_from(self.rows_read).unwrap_or(i64::MAX) })
    }
}
