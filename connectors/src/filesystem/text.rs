//! Decoding of text formats (JSON lines, CSV) chunk by chunk: the whole chunk at
//! once on the fast path, record by record when that fails, so good records are
//! kept and every bad one becomes a [`MalformedRecord`] with its `file:LINE` (the
//! file's line number, also when a split reads only part of the file).

use std::ops::Range;
use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::csv::ReaderBuilder as CsvReaderBuilder;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::json::reader::Decoder as JsonDecoder;
use datafusion::arrow::json::ReaderBuilder as JsonReaderBuilder;
use datafusion::arrow::record_batch::RecordBatch;
use eddy_engine::{BoxError, MalformedRecord, SourceBatch, SourcePosition, SourceReader};

use super::records::{Chunk, Framing, RecordChunker};
use super::split::{lines_before_range, ranges_from, Extent, Split};
use super::values::{column_reading, typed_column, ColumnReading, TextSyntax};
use crate::error::ConnectorError;

/// The text formats and their decoding settings.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TextFormat {
    /// One JSON object per line.
    Json,
    /// CSV with the given delimiter; `header` skips the first line.
    Csv {
        /// Field delimiter.
        delimiter: u8,
        /// Whether the first line is a header to skip.
        header: bool,
    },
}

/// The quote character of CSV fields.
pub(crate) const CSV_QUOTE: u8 = b'"';

impl TextFormat {
    fn framing(self) -> Framing {
        match self {
            TextFormat::Json => Framing::Lines,
            TextFormat::Csv { delimiter, .. } => Framing::Csv { delimiter, quote: CSV_QUOTE },
        }
    }

    fn syntax(self) -> TextSyntax {
        match self {
            TextFormat::Json => TextSyntax::Json,
            TextFormat::Csv { .. } => TextSyntax::Csv,
        }
    }
}

/// Decodes records of one format and schema, keeping the JSON decoder between
/// chunks: its tape buffers then grow once, not again for every chunk.
pub(crate) struct RecordDecoder {
    format: TextFormat,
    /// The rows' schema: every column of the table.
    full: SchemaRef,
    /// The columns of `full` decoded, when not all are: the others are left NULL.
    decoded: Option<Vec<usize>>,
    /// The schema of the decoded columns.
    strict: SchemaRef,
    /// The schema the Arrow decoder reads: every column nullable, and the
    /// columns in `as_text` as strings.
    relaxed: SchemaRef,
    /// Columns read as text and given their type by [`typed_column`].
    as_text: Vec<usize>,
    /// The JSON decoder after a chunk that decoded cleanly, and the rows it takes at once.
    json: Option<(JsonDecoder, usize)>,
}

impl RecordDecoder {
    /// A decoder of `format` records into rows of `schema` that decodes only the
    /// columns `read` (all when `None`) and leaves the others NULL. JSON only:
    /// a JSON field is found by name, and a field not decoded costs only its
    /// parsing. NOT NULL columns are always decoded, so a record without one is
    /// still malformed; a bad value in a column not decoded is not seen (as in
    /// Flink, whose JSON format decodes only the projected fields).
    pub fn reading(format: TextFormat, schema: SchemaRef, read: Option<&[usize]>) -> Self {
        let decoded: Option<Vec<usize>> = match (format, read) {
            (TextFormat::Json, Some(read)) => {
                let decoded: Vec<usize> = (0..schema.fields().len()).filter(|i| read.contains(i) || !schema.field(*i).is_nullable()).collect();
                // Reading no column (`COUNT(*)`) still needs each record's row:
                // decoding none would give none, so every column is decoded.
                (!decoded.is_empty() && decoded.len() < schema.fields().len()).then_some(decoded)
            }
            _ => None,
        };
        let strict = match &decoded {
            Some(columns) => {
                Arc::new(Schema::new_with_metadata(columns.iter().map(|&i| schema.field(i).clone()).collect::<Vec<_>>(), schema.metadata().clone()))
            }
            None => SchemaRef::clone(&schema),
        };
        let as_text: Vec<usize> =
            (0..strict.fields().len()).filter(|&i| column_reading(format.syntax(), strict.field(i).data_type()) == ColumnReading::AsText).collect();
        RecordDecoder { format, relaxed: relaxed(&strict, &as_text), as_text, strict, full: schema, decoded, json: None }
    }

    /// `rows` of the decoded columns as rows of the table: the columns not decoded NULL.
    fn widen(&self, rows: RecordBatch) -> Result<RecordBatch, ConnectorError> {
        let Some(decoded) = &self.decoded else { return Ok(rows) };
        let mut columns = Vec::with_capacity(self.full.fields().len());
        let mut next = rows.columns().iter();
        for (i, field) in self.full.fields().iter().enumerate() {
            columns.push(match (decoded.contains(&i), next.clone().next()) {
                (true, Some(column)) => {
                    next.next();
                    ArrayRef::clone(column)
                }
                _ => datafusion::arrow::array::new_null_array(field.data_type(), rows.num_rows()),
            });
        }
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
        RecordBatch::try_new_with_options(SchemaRef::clone(&self.full), columns, &options).map_err(|e| ConnectorError::arrow("widening decoded rows", e))
    }

    /// Decodes `data`, which must hold exactly `rows` records, into one batch.
    /// Nullability is checked here rather than by Arrow, to name the column at fault.
    fn decode(&mut self, data: &[u8], rows: usize) -> Result<RecordBatch, String> {
        let schema = &self.relaxed;
        let strict = &self.strict;
        let batch = match self.format {
            TextFormat::Json => {
                let (mut decoder, capacity) = match self.json.take() {
                    Some((decoder, capacity)) if capacity >= rows => (decoder, capacity),
                    _ => {
                        let capacity = rows.max(1);
                        let decoder = JsonReaderBuilder::new(SchemaRef::clone(schema))
                            .with_coerce_primitive(true)
                            .with_batch_size(capacity)
                            .build_decoder()
                            .map_err(|e| e.to_string())?;
                        (decoder, capacity)
                    }
                };
                // On any error the decoder is dropped: it may hold part of a record.
                let consumed = decoder.decode(data).map_err(clean)?;
                if !data[consumed..].iter().all(u8::is_ascii_whitespace) {
                    return Err("expected exactly one JSON object per line".into());
                }
                if decoder.has_partial_record() {
                    return Err("truncated JSON: the record is not complete".into());
                }
                let batch = decoder.flush().map_err(clean)?;
                self.json = Some((decoder, capacity));
                batch
            }
            TextFormat::Csv { delimiter, .. } => {
                let mut decoder =
                    CsvReaderBuilder::new(SchemaRef::clone(schema)).with_header(false).with_delimiter(delimiter).with_batch_size(rows.max(1)).build_decoder();
                let mut offset = 0;
                while offset < data.len() {
                    let n = decoder.decode(&data[offset..]).map_err(|e| clean_csv(e, strict))?;
                    if n == 0 {
                        break;
                    }
                    offset += n;
                }
                if offset < data.len() {
                    return Err("more fields or records than expected".into());
                }
                decoder.decode(&[]).map_err(|e| clean_csv(e, strict))?;
                decoder.flush().map_err(|e| clean_csv(e, strict))?
            }
        };
        let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(SchemaRef::clone(schema)));
        if batch.num_rows() != rows {
            return Err(match self.format {
                TextFormat::Json => "expected exactly one JSON object per line".into(),
                TextFormat::Csv { .. } => "could not split the CSV record".into(),
            });
        }
        let mut columns = batch.columns().to_vec();
        for &i in &self.as_text {
            columns[i] = typed_column(strict.field(i), &columns[i])?;
        }
        check_not_null(strict, &columns)?;
        RecordBatch::try_new(SchemaRef::clone(strict), columns).map_err(clean)
    }

    /// Decodes a chunk: all at once, or record by record when that fails.
    pub fn decode_records(&mut self, chunk: &Chunk) -> Result<Decoded, ConnectorError> {
        if chunk.unterminated.is_empty() {
            if let Ok(rows) = self.decode(&chunk.data, chunk.records.len()) {
                return Ok(Decoded { rows: self.widen(rows)?, good: None, errors: Vec::new() });
            }
        }
        let mut good_rows = Vec::new();
        let mut good = Vec::new();
        let mut errors = Vec::new();
        for (i, record) in chunk.records.iter().enumerate() {
            if chunk.unterminated.contains(&i) {
                errors.push((i, "unbalanced quote: a '\"' opens a quoted field that does not close as CSV requires (at a delimiter or the end of a line); this line is skipped and reading goes on with the next one. Double a quote inside a quoted field (\"\")".to_string()));
                continue;
            }
            // Include the '\n' that follows every record in the chunk.
            let bytes = &chunk.data[record.start..record.end + 1];
            match self.decode(bytes, 1) {
                Ok(batch) => {
                    good_rows.push(batch);
                    good.push(i as u32);
                }
                Err(error) => errors.push((i, error)),
            }
        }
        let rows = concat_batches(&self.strict, &good_rows).map_err(|e| ConnectorError::arrow("combining decoded rows", e))?;
        Ok(Decoded { rows: self.widen(rows)?, good: Some(good), errors })
    }
}

/// `schema` with every top-level column nullable, and the columns `as_text` strings.
fn relaxed(schema: &SchemaRef, as_text: &[usize]) -> SchemaRef {
    if as_text.is_empty() && schema.fields().iter().all(|f| f.is_nullable()) {
        return SchemaRef::clone(schema);
    }
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let field = f.as_ref().clone().with_nullable(true);
                if as_text.contains(&i) {
                    field.with_data_type(DataType::Utf8)
                } else {
                    field
                }
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// arrow-csv's message, with the column named and without its (chunk-relative) line number.
fn clean_csv(e: datafusion::arrow::error::ArrowError, schema: &SchemaRef) -> String {
    let s = clean(e);
    if let Some(rest) = s.strip_prefix("incorrect number of fields for line ") {
        if let Some((_, counts)) = rest.split_once(", ") {
            return format!("wrong number of fields: {counts}");
        }
    }
    let name = |idx: &str| idx.parse::<usize>().ok().and_then(|i| schema.fields().get(i)).map(|f| f.name().clone());
    // "Error parsing column 2 at line 1: <why>": the why is what the user needs.
    if let Some(rest) = s.strip_prefix("Error parsing column ") {
        if let Some((idx, tail)) = rest.split_once(" at line ") {
            let why = tail.split_once(": ").map_or(tail, |(_, why)| why);
            if let Some(name) = name(idx) {
                return format!("column '{name}': {why}");
            }
        }
    }
    let Some((head, _)) = s.split_once(" at line ") else {
        return s;
    };
    match head.rsplit_once(" for column ") {
        Some((msg, idx)) => match name(idx) {
            // "Error while parsing value 'abc' as type 'Int64' for column 1 at line 1. Row data: ..."
            Some(name) => match msg.strip_prefix("Error while parsing value ") {
                Some(what) => format!("column '{name}': cannot read {what}"),
                None => format!("{msg} for column '{name}'"),
            },
            None => head.to_string(),
        },
        None => head.to_string(),
    }
}

/// Arrow's message without the redundant "Json error: " style prefixes.
fn clean(e: datafusion::arrow::error::ArrowError) -> String {
    let s = e.to_string();
    for prefix in ["Json error: ", "Csv error: ", "Parser error: ", "Invalid argument error: "] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    s
}

/// Fails when a NOT NULL column has nulls (missing fields), naming the column.
pub(crate) fn check_not_null(schema: &SchemaRef, columns: &[ArrayRef]) -> Result<(), String> {
    for (field, col) in schema.fields().iter().zip(columns) {
        if !field.is_nullable() && col.null_count() > 0 {
            return Err(format!("column '{}' is NOT NULL but the record has no value for it", field.name()));
        }
    }
    Ok(())
}

/// The records of a chunk that decoded: their rows, which records they are, and
/// why each other record did not decode.
pub(crate) struct Decoded {
    /// Rows of the good records, in chunk order.
    pub rows: RecordBatch,
    /// Indices (into `Chunk::records`) of the good records; `None` when all are good.
    pub good: Option<Vec<u32>>,
    /// `(record index, error)` of every record that did not decode.
    pub errors: Vec<(usize, String)>,
}

/// The rows of a decoded chunk, and every bad record as a [`MalformedRecord`] at
/// `label:LINE`, its line in the chunk plus `lines_before` (the lines before the chunker's range).
fn into_source_batch(decoded: Decoded, chunk: &Chunk, label: &str, lines_before: u64) -> SourceBatch {
    let malformed = decoded
        .errors
        .into_iter()
        .map(|(i, error)| {
            let record = &chunk.records[i];
            MalformedRecord {
                position: format!("{label}:{}", lines_before + record.line),
                error,
                raw: String::from_utf8_lossy(chunk.bytes(record)).into_owned(),
            }
        })
        .collect();
    SourceBatch::inserts(decoded.rows, malformed)
}

/// Reads one JSON-lines or CSV file, or the records starting in some byte ranges
/// of one (a split), as a partition of a filesystem source.
pub(crate) struct TextFileReader {
    path: PathBuf,
    /// The file, for positions of malformed records.
    label: String,
    /// The partition: the file, and the byte ranges when it is a split.
    describe: String,
    /// The byte ranges read, in order: the records starting in them.
    ranges: Vec<Range<u64>>,
    /// The range `chunker` reads (or opens next).
    range: usize,
    /// Lines of the file before a range, counted when a malformed record in it
    /// first needs its line: (range, lines).
    lines_before: Option<(usize, u64)>,
    format: TextFormat,
    decoder: RecordDecoder,
    batch_rows: usize,
    chunker: Option<RecordChunker>,
    /// The ranges' size in the file when the reader was made (`None` if it could
    /// not be read), and how many bytes the chunks so far held: the reader's progress.
    total_bytes: Option<u64>,
    read_bytes: u64,
    /// The partition's name in checkpoints ([`Split::id`]).
    id: String,
    /// The end of the last range read to its end: no record starts before it unread.
    done_until: u64,
}

impl TextFileReader {
    /// A reader for `split` (a whole file or byte ranges of one) that decodes the
    /// columns `read` (see [`RecordDecoder::reading`]), from file offset `offset` on:
    /// 0, or a [`SourceReader::position`] it gave before a restart. The file is
    /// opened on the first read.
    pub fn resuming(split: &Split, format: TextFormat, schema: SchemaRef, read: Option<&[usize]>, batch_rows: usize, offset: u64) -> Self {
        let ranges = match &split.extent {
            Extent::Bytes(ranges) => ranges.clone(),
            // One range: the whole file, whatever its size.
            Extent::Whole | Extent::RowGroups(_) => std::iter::once(0..u64::MAX).collect(),
        };
        let ranges = ranges_from(&ranges, offset);
        let total_bytes = std::fs::metadata(&split.path).ok().map(|m| ranges.iter().map(|r| m.len().min(r.end).saturating_sub(r.start.min(m.len()))).sum());
        TextFileReader {
            label: split.path.display().to_string(),
            describe: split.describe(),
            path: split.path.clone(),
            ranges,
            range: 0,
            lines_before: None,
            format,
            decoder: RecordDecoder::reading(format, schema, read),
            batch_rows,
            chunker: None,
            total_bytes,
            read_bytes: 0,
            id: split.id(),
            done_until: offset,
        }
    }

    /// The next decoded batch, synchronously.
    pub fn read_next(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        loop {
            let Some(range) = self.ranges.get(self.range).cloned() else {
                self.read_bytes = self.total_bytes.unwrap_or(self.read_bytes);
                return Ok(None);
            };
            let chunker = match &mut self.chunker {
                Some(c) => c,
                None => {
                    // Only the range at the start of the file holds the header.
                    let skip = matches!(self.format, TextFormat::Csv { header: true, .. }) && range.start == 0;
                    self.chunker.insert(RecordChunker::open_range(&self.path, self.format.framing(), skip, range.clone())?)
                }
            };
            let Some(chunk) = chunker.next_chunk(self.batch_rows)? else {
                self.done_until = self.done_until.max(chunker.next_record_offset()).max(range.end);
                self.chunker = None;
                self.range += 1;
                continue;
            };
            self.read_bytes += chunk.data.len() as u64;
            let decoded = self.decoder.decode_records(&chunk)?;
            let lines_before = match self.lines_before {
                _ if decoded.errors.is_empty() => 0,
                Some((r, n)) if r == self.range => n,
                _ => {
                    let n = lines_before_range(&self.path, range.start)?;
                    self.lines_before = Some((self.range, n));
                    n
                }
            };
            return Ok(Some(into_source_batch(decoded, &chunk, &self.label, lines_before)));
        }
    }
}

#[async_trait]
impl SourceReader for TextFileReader {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, BoxError> {
        Ok(self.read_next()?)
    }

    /// The file offset of the next record to read: past the records returned,
    /// or the start of the next range (the end of the file once it is read).
    fn position(&self) -> Option<SourcePosition> {
        let offset = match (&self.chunker, self.ranges.get(self.range)) {
            (Some(chunker), _) => chunker.next_record_offset(),
            (None, Some(next)) => next.start.max(self.done_until),
            (None, None) => self.done_until,
        };
        Some(SourcePosition { partition: self.id.clone(), offset: i64::try_from(offset).unwrap_or(i64::MAX) })
    }

    fn status(&self) -> eddy_engine::ReaderStatus {
        eddy_engine::ReaderStatus { input_bytes: self.total_bytes.map(|total| (self.read_bytes.min(total), total)), ..Default::default() }
    }
}
