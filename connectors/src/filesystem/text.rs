//! Decoding of text formats (JSON lines, CSV) chunk by chunk: the whole chunk at
//! once on the fast path, record by record when that fails, so good records are
//! kept and every bad one becomes a [`MalformedRecord`] with its `file:LINE`.

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
use eddy_engine::{BoxError, MalformedRecord, SourceBatch, SourceReader};

use super::records::{Chunk, Framing, RecordChunker};
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

impl TextFormat {
    fn framing(self) -> Framing {
        match self {
            TextFormat::Json => Framing::Lines,
            TextFormat::Csv { delimiter, .. } => Framing::Csv { delimiter, quote: b'"' },
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
    /// A decoder of `format` records into rows of `schema`.
    pub fn new(format: TextFormat, schema: SchemaRef) -> Self {
        let as_text: Vec<usize> =
            (0..schema.fields().len()).filter(|&i| column_reading(format.syntax(), schema.field(i).data_type()) == ColumnReading::AsText).collect();
        RecordDecoder { format, relaxed: relaxed(&schema, &as_text), as_text, strict: schema, json: None }
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
                return Ok(Decoded { rows, good: None, errors: Vec::new() });
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
        Ok(Decoded { rows, good: Some(good), errors })
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

/// Decodes a chunk of a file; every bad record becomes a [`MalformedRecord`] at `label:LINE`.
pub(crate) fn decode_chunk(decoder: &mut RecordDecoder, chunk: &Chunk, label: &str) -> Result<SourceBatch, ConnectorError> {
    let decoded = decoder.decode_records(chunk)?;
    let malformed = decoded
        .errors
        .into_iter()
        .map(|(i, error)| {
            let record = &chunk.records[i];
            MalformedRecord { position: format!("{label}:{}", record.line), error, raw: String::from_utf8_lossy(chunk.bytes(record)).into_owned() }
        })
        .collect();
    Ok(SourceBatch::inserts(decoded.rows, malformed))
}

/// Reads one JSON-lines or CSV file, the partition of a filesystem source.
pub(crate) struct TextFileReader {
    path: PathBuf,
    label: String,
    format: TextFormat,
    decoder: RecordDecoder,
    batch_rows: usize,
    chunker: Option<RecordChunker>,
    done: bool,
    /// The file's size when the reader was made (`None` if it could not be read),
    /// and how many of its bytes the chunks so far held: the reader's progress.
    total_bytes: Option<u64>,
    read_bytes: u64,
}

impl TextFileReader {
    /// A reader for `path`; the file is opened on the first read.
    pub fn new(path: PathBuf, format: TextFormat, schema: SchemaRef, batch_rows: usize) -> Self {
        TextFileReader {
            label: path.display().to_string(),
            path: path.clone(),
            format,
            decoder: RecordDecoder::new(format, schema),
            batch_rows,
            chunker: None,
            done: false,
            total_bytes: std::fs::metadata(&path).ok().map(|m| m.len()),
            read_bytes: 0,
        }
    }

    /// The next decoded batch, synchronously.
    pub fn read_next(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        if self.done {
            return Ok(None);
        }
        let chunker = match &mut self.chunker {
            Some(c) => c,
            None => {
                let skip = matches!(self.format, TextFormat::Csv { header: true, .. });
                self.chunker.insert(RecordChunker::open(&self.path, self.format.framing(), skip)?)
            }
        };
        match chunker.next_chunk(self.batch_rows)? {
            Some(chunk) => {
                self.read_bytes += chunk.data.len() as u64;
                decode_chunk(&mut self.decoder, &chunk, &self.label).map(Some)
            }
            None => {
                self.done = true;
                self.chunker = None;
                self.read_bytes = self.total_bytes.unwrap_or(self.read_bytes);
                Ok(None)
            }
        }
    }
}

#[async_trait]
impl SourceReader for TextFileReader {
    fn describe(&self) -> String {
        self.label.clone()
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, BoxError> {
        Ok(self.read_next()?)
    }

    fn status(&self) -> eddy_engine::ReaderStatus {
        eddy_engine::ReaderStatus { input_bytes: self.total_bytes.map(|total| (self.read_bytes.min(total), total)), ..Default::default() }
    }
}
