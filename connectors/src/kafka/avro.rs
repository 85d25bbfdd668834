//! Avro values (`'format' = 'avro'` and `'avro-confluent'`), with the schema
//! derived from the table's columns as Flink's `avro` format does: a record named
//! `record`, one field per column in order, nullable columns as `["null", T]`,
//! `TIMESTAMP(3)` as `long` with `timestamp-millis`, `DATE` as `int` with `date`,
//! `ARRAY<t>` as an `array`, `MAP<STRING, t>` as a `map`, and a `ROW` as a nested
//! record named after its parent and field (`record_pos`).
//!
//! Datums are decoded straight into Arrow columns and encoded straight from them
//! by `arrow-avro`, the arrow-rs crate at our arrow version (added without
//! changing any feature of a crate already in the tree, so DataFusion is not
//! rebuilt; the `apache-avro` crate was rejected for exactly that). It resolves
//! each writer schema against the table's (fields by name, in any order, extra
//! writer fields skipped, promotions such as `int` to `long`).
//!
//! What is still ours, because `arrow-avro` cannot do it:
//! - the schema derivation above: its own Arrow-to-Avro mapping names the record
//!   `topLevelRecord` and nested records differently from Flink;
//! - per-record errors: its streaming decoder stops at the first bad datum and
//!   leaves the rows decoded so far half-built, and it does not know where one
//!   Kafka record ends. [`AvroDecoder`] feeds it one datum at a time and checks
//!   each took exactly its bytes and made one row; when a chunk has a bad datum it
//!   decodes that chunk again record by record with a one-row decoder, so the bad
//!   record is named and the others are kept. One case slips through the fast
//!   path: a datum followed by extra bytes that happen to spell the 5-byte prefix
//!   of a known writer schema exactly (for `avro`, `00 45 44 44 59`) puts the
//!   decoder between prefix and datum; the next record then most likely fails and the chunk is
//!   decoded record by record, but as the last record of a chunk it is read
//!   without its extra bytes;
//! - record names: Avro resolution requires a writer record's name to match the
//!   reader's, while Eddy, like the JSON decoder, matches by field name only, so
//!   the table's records carry each writer record's name as an alias.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore, SCHEMA_METADATA_KEY};
use arrow_avro::writer::format::AvroBinaryFormat;
use arrow_avro::writer::WriterBuilder;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches, interleave_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::error::ConnectorError;
use crate::filesystem::records::Chunk;
use crate::filesystem::text::Decoded;

/// The Avro type of one column, element, map value or record field.
#[derive(Debug, Clone, PartialEq)]
enum AvroType {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    TimestampMillis,
    Date,
    /// A `ROW`: its fields in order.
    Record(Vec<AvroField>),
    /// An `ARRAY`: its element.
    Array(Box<AvroField>),
    /// A `MAP<STRING, t>`: its value (Avro map keys are strings).
    Map(Box<AvroField>),
}

/// A record field, or an array's element or a map's value (whose name is empty).
#[derive(Debug, Clone, PartialEq)]
struct AvroField {
    name: String,
    avro: AvroType,
    /// Written as the union `["null", T]`.
    nullable: bool,
}

/// The Avro record layout of a table's columns, in order.
#[derive(Debug, Clone)]
pub(crate) struct AvroRecord {
    fields: Vec<AvroField>,
}

impl AvroRecord {
    /// The record for rows of `schema`, or why a column cannot be Avro.
    pub fn for_schema(schema: &Schema) -> Result<Self, ConnectorError> {
        let fields = schema
            .fields()
            .iter()
            .map(|field| {
                avro_field(field).map_err(|why| ConnectorError::UnsupportedType {
                    connector: format!("kafka (avro{why})"),
                    column: field.name().clone(),
                    data_type: field.data_type().to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(AvroRecord { fields })
    }

    /// The schema as Avro JSON, for other systems reading or writing the topic.
    pub fn schema_json(&self) -> String {
        record_json("record", &self.fields).to_string()
    }
}

/// The Avro field for an Arrow field, or why it has none (appended to "avro").
fn avro_field(field: &Field) -> Result<AvroField, String> {
    let name = field.name();
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(": Avro field names are letters, digits and '_', not '{name}'"));
    }
    Ok(AvroField { name: name.clone(), avro: avro_type(field.data_type())?, nullable: field.is_nullable() })
}

/// An element's or value's Avro field (no name of its own).
fn unnamed(field: &Field) -> Result<AvroField, String> {
    Ok(AvroField { name: String::new(), avro: avro_type(field.data_type())?, nullable: field.is_nullable() })
}

fn avro_type(data_type: &DataType) -> Result<AvroType, String> {
    Ok(match data_type {
        DataType::Boolean => AvroType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => AvroType::Int,
        DataType::Int64 | DataType::UInt32 => AvroType::Long,
        DataType::Float32 => AvroType::Float,
        DataType::Float64 => AvroType::Double,
        DataType::Utf8 | DataType::LargeUtf8 => AvroType::String,
        DataType::Timestamp(_, _) => AvroType::TimestampMillis,
        DataType::Date32 => AvroType::Date,
        DataType::List(item) | DataType::LargeList(item) => AvroType::Array(Box::new(unnamed(item)?)),
        DataType::Struct(fields) => AvroType::Record(fields.iter().map(|f| avro_field(f)).collect::<Result<_, _>>()?),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 && matches!(kv[0].data_type(), DataType::Utf8 | DataType::LargeUtf8) => {
                AvroType::Map(Box::new(unnamed(&kv[1])?))
            }
            _ => return Err(": an Avro map's keys are STRING".into()),
        },
        _ => return Err(String::new()),
    })
}

/// A record's schema named `name`; a nested record is named after it and its field, as Flink names them.
fn record_json(name: &str, fields: &[AvroField]) -> serde_json::Value {
    let fields: Vec<serde_json::Value> = fields
        .iter()
        .map(|f| {
            let ty = field_json(&format!("{name}_{}", f.name), f);
            if f.nullable {
                serde_json::json!({"name": f.name, "type": ty, "default": null})
            } else {
                serde_json::json!({"name": f.name, "type": ty})
            }
        })
        .collect();
    serde_json::json!({"type": "record", "name": name, "fields": fields})
}

/// A field's type as Avro JSON (a union with null when nullable); `name` names a nested record.
fn field_json(name: &str, field: &AvroField) -> serde_json::Value {
    let ty = match &field.avro {
        AvroType::Boolean => serde_json::json!("boolean"),
        AvroType::Int => serde_json::json!("int"),
        AvroType::Long => serde_json::json!("long"),
        AvroType::Float => serde_json::json!("float"),
        AvroType::Double => serde_json::json!("double"),
        AvroType::String => serde_json::json!("string"),
        AvroType::TimestampMillis => serde_json::json!({"type": "long", "logicalType": "timestamp-millis"}),
        AvroType::Date => serde_json::json!({"type": "int", "logicalType": "date"}),
        AvroType::Record(fields) => record_json(name, fields),
        AvroType::Array(item) => serde_json::json!({"type": "array", "items": field_json(name, item)}),
        AvroType::Map(value) => serde_json::json!({"type": "map", "values": field_json(name, value)}),
    };
    if field.nullable {
        serde_json::json!(["null", ty])
    } else {
        ty
    }
}

/// The schema id `'format' = 'avro'` datums are decoded under: they carry none,
/// and the decoder is handed each one behind a Confluent prefix with this id
/// ("EDDY": bytes left over after a datum are unlikely to spell its prefix).
const OWN_ID: u32 = 0x4544_4459;

/// The first byte of every record in Confluent's wire format.
pub(crate) const MAGIC: u8 = 0;

/// One record of a chunk: the writer schema id and the bytes of its framed datum
/// (Confluent prefix and datum), or why it cannot be decoded.
type Framed = Result<(u32, std::ops::Range<usize>), String>;

/// Decodes chunks of Avro datums into the table's value columns, keeping per-record
/// errors (see the module doc); a Kafka partition reader keeps one.
#[derive(Debug)]
pub(crate) struct AvroDecoder {
    /// The table's value columns: what every decoded chunk becomes.
    schema: SchemaRef,
    /// The table's record schema as Avro JSON: the reader schema.
    reader: serde_json::Value,
    /// By writer schema id: the writer schema and the reader schema aliased to its
    /// record names, or why records written with it cannot be read.
    writers: HashMap<u32, Result<(AvroSchema, AvroSchema), String>>,
    /// How each record holds its datum.
    framing: Framing,
}

/// How a Kafka record holds an Avro datum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `'format' = 'avro'`: the datum alone, of the table's own schema (errors say so).
    Bare,
    /// `'format' = 'avro-confluent'`: Confluent's wire format, naming its writer schema.
    Confluent,
}

impl AvroDecoder {
    /// A decoder of `'avro-confluent'` rows of `schema` (add writer schemas with
    /// [`AvroDecoder::add_writer`]), or why a column cannot be Avro.
    pub fn confluent(schema: SchemaRef) -> Result<Self, ConnectorError> {
        let reader =
            serde_json::from_str(&AvroRecord::for_schema(&schema)?.schema_json()).map_err(|e| ConnectorError::invalid("format", "avro", e.to_string()))?;
        Ok(AvroDecoder { schema, reader, writers: HashMap::new(), framing: Framing::Confluent })
    }

    /// A decoder of `'avro'` rows of `schema`, datums written with the schema
    /// derived from it, or why a column cannot be Avro.
    pub fn bare(schema: SchemaRef) -> Result<Self, ConnectorError> {
        let mut decoder = AvroDecoder::confluent(schema)?;
        decoder.framing = Framing::Bare;
        let own = decoder.reader.to_string();
        decoder.add_writer(OWN_ID, Ok(own));
        if let Some(Err(why)) = decoder.writers.get(&OWN_ID) {
            return Err(ConnectorError::invalid("format", "avro", why.clone()));
        }
        Ok(decoder)
    }

    /// Whether writer schema `id` was added (readable or not).
    pub fn knows(&self, id: u32) -> bool {
        self.writers.contains_key(&id)
    }

    /// Adds writer schema `id` (its Avro JSON, or why it could not be had): checked
    /// here against the table's schema once, so a schema that does not resolve makes
    /// its records malformed rather than failing every chunk.
    pub fn add_writer(&mut self, id: u32, writer: Result<String, String>) {
        let resolved = writer.and_then(|json| {
            let parsed: serde_json::Value = serde_json::from_str(&json).map_err(|e| format!("its writer schema (id {id}) is not JSON: {e}"))?;
            let mut reader = self.reader.clone();
            alias_records(&mut reader, &parsed, None);
            let schemas = (AvroSchema::new(json), AvroSchema::new(reader.to_string()));
            build_decoder(id, &schemas, 1).map_err(|e| format!("its writer schema (id {id}) cannot be read as the table's columns: {e}"))?;
            Ok(schemas)
        });
        self.writers.insert(id, resolved);
    }

    /// Each record of `chunk` as the decoder's format frames it.
    pub fn decode(&self, chunk: &Chunk) -> Result<Decoded, ConnectorError> {
        match self.framing {
            Framing::Bare => self.decode_bare(chunk),
            Framing::Confluent => self.decode_confluent(chunk),
        }
    }

    /// `'format' = 'avro'`: each record of `chunk` a bare datum of the table's schema.
    fn decode_bare(&self, chunk: &Chunk) -> Result<Decoded, ConnectorError> {
        let mut framed = Vec::with_capacity(chunk.data.len() + chunk.records.len() * 5);
        let mut records = Vec::with_capacity(chunk.records.len());
        for r in &chunk.records {
            let start = framed.len();
            framed.push(MAGIC);
            framed.extend_from_slice(&OWN_ID.to_be_bytes());
            framed.extend_from_slice(chunk.bytes(r));
            records.push(Ok((OWN_ID, start..framed.len())));
        }
        self.decode_framed(&framed, records)
    }

    /// `'format' = 'avro-confluent'`: each record of `chunk` in Confluent's wire
    /// format, decoded with the writer schema it names (added beforehand).
    fn decode_confluent(&self, chunk: &Chunk) -> Result<Decoded, ConnectorError> {
        let records = chunk
            .records
            .iter()
            .map(|r| {
                let (id, _) = split(chunk.bytes(r))?;
                match self.writers.get(&id) {
                    Some(Ok(_)) => Ok((id, r.start..r.end)),
                    Some(Err(why)) => Err(why.clone()),
                    None => Err(format!("its writer schema id {id} was not fetched")),
                }
            })
            .collect();
        self.decode_framed(&chunk.data, records)
    }

    /// Decodes the framed datums `data[range]` of each record (or takes its error):
    /// every datum of a writer id through one decoder, and when any does not decode
    /// cleanly, the chunk again record by record.
    fn decode_framed(&self, data: &[u8], records: Vec<Framed>) -> Result<Decoded, ConnectorError> {
        let ids: Vec<u32> = {
            let mut ids: Vec<u32> = records.iter().filter_map(|r| r.as_ref().ok().map(|(id, _)| *id)).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let decoded = match self.decode_all(data, &records, &ids)? {
            Some(rows) => {
                let errors: Vec<(usize, String)> = records.iter().enumerate().filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e.clone()))).collect();
                let good = (!errors.is_empty()).then(|| records.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i as u32).collect());
                Decoded { rows, good, errors }
            }
            None => self.decode_one_by_one(data, &records)?,
        };
        Ok(Decoded { rows: self.to_table(decoded.rows)?, ..decoded })
    }

    /// The fast path: the rows of every good record in chunk order, or `None` when a
    /// datum did not decode cleanly.
    fn decode_all(&self, data: &[u8], records: &[Framed], ids: &[u32]) -> Result<Option<RecordBatch>, ConnectorError> {
        let mut batches = Vec::with_capacity(ids.len());
        for &id in ids {
            let count = records.iter().filter(|r| matches!(r, Ok((i, _)) if *i == id)).count();
            let mut decoder = self.decoder(id, count)?;
            for (_, range) in records.iter().flatten().filter(|(i, _)| *i == id) {
                let datum = &data[range.clone()];
                let capacity = decoder.capacity();
                match decoder.decode(datum) {
                    Ok(used) if used == datum.len() && decoder.capacity() + 1 == capacity => {}
                    _ => return Ok(None),
                }
            }
            batches.push(decoder.flush().map_err(|e| avro_error("flushing decoded Avro rows", e))?.unwrap_or_else(|| RecordBatch::new_empty(decoder.schema())));
        }
        match batches.len() {
            0 => Ok(Some(RecordBatch::new_empty(Arc::clone(&self.schema)))),
            1 => Ok(batches.pop()),
            _ => {
                // Several writer schemas in one chunk: put the rows back in record order.
                let mut next = vec![0; ids.len()];
                let order: Vec<(usize, usize)> = records
                    .iter()
                    .flatten()
                    .map(|(id, _)| {
                        let b = ids.iter().position(|i| i == id).unwrap_or(0);
                        next[b] += 1;
                        (b, next[b] - 1)
                    })
                    .collect();
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                interleave_record_batch(&refs, &order).map(Some).map_err(|e| ConnectorError::arrow("ordering decoded Avro rows", e))
            }
        }
    }

    /// The slow path: each datum alone through a one-row decoder, so a bad one is
    /// named and the others are kept (the rows still in arrow-avro's types).
    fn decode_one_by_one(&self, data: &[u8], records: &[Framed]) -> Result<Decoded, ConnectorError> {
        let mut decoders: HashMap<u32, Decoder> = HashMap::new();
        let mut rows = Vec::new();
        let mut good = Vec::new();
        let mut errors = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let (id, range) = match record {
                Ok(r) => r,
                Err(e) => {
                    errors.push((i, e.clone()));
                    continue;
                }
            };
            let datum = &data[range.clone()];
            let decoder = match decoders.entry(*id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(self.decoder(*id, 1)?),
            };
            // With room for one row the decoder stops after it: bytes left over are
            // not taken for the next record's prefix.
            let outcome = match decoder.decode(datum) {
                Ok(used) if decoder.batch_is_full() && used == datum.len() => Ok(()),
                Ok(used) if decoder.batch_is_full() => Err(format!("{} bytes left after the last field", datum.len() - used)),
                Ok(_) => Err("truncated: the datum ends inside a field".to_string()),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => match decoder.flush() {
                    Ok(Some(row)) => {
                        rows.push(row);
                        good.push(i as u32);
                    }
                    Ok(None) => errors.push((i, self.error(*id, "no row"))),
                    Err(e) => {
                        errors.push((i, self.error(*id, &e.to_string())));
                        decoders.remove(id);
                    }
                },
                Err(e) => {
                    errors.push((i, self.error(*id, &e)));
                    // Half a row may be in its builders: start afresh.
                    decoders.remove(id);
                }
            }
        }
        let good = Some(good);
        let Some(first) = rows.first() else { return Ok(Decoded { rows: RecordBatch::new_empty(Arc::clone(&self.schema)), good, errors }) };
        let batch = concat_batches(&first.schema(), &rows).map_err(|e| ConnectorError::arrow("gathering decoded Avro rows", e))?;
        Ok(Decoded { rows: batch, good, errors })
    }

    /// Why a datum of writer `id` did not decode, as the table's bad-record error.
    fn error(&self, id: u32, e: &str) -> String {
        match self.framing {
            Framing::Bare => format!("not an Avro record of the table's schema: {e}"),
            Framing::Confluent => format!("not an Avro record of its writer schema (id {id}): {e}"),
        }
    }

    /// A fresh decoder of writer `id`'s datums with room for `rows` rows.
    fn decoder(&self, id: u32, rows: usize) -> Result<Decoder, ConnectorError> {
        match self.writers.get(&id) {
            Some(Ok(schemas)) => build_decoder(id, schemas, rows).map_err(|e| ConnectorError::invalid("format", "avro", e)),
            Some(Err(why)) => Err(ConnectorError::invalid("format", "avro", why.clone())),
            None => Err(ConnectorError::invalid("format", "avro", format!("writer schema id {id} was not fetched"))),
        }
    }

    /// Decoded columns as the table's types (e.g. `TIMESTAMP(3)` without the UTC
    /// zone arrow-avro gives `timestamp-millis`, `TINYINT` from Avro's `int`).
    fn to_table(&self, batch: RecordBatch) -> Result<RecordBatch, ConnectorError> {
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(Arc::clone(column))
                } else {
                    cast(column, field.data_type()).map_err(|e| ConnectorError::arrow(format!("converting Avro column '{}'", field.name()), e))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| ConnectorError::arrow("assembling decoded Avro rows", e))
    }
}

/// An arrow-avro decoder of datums written with `schemas.0` (under Confluent id
/// `id`) read as `schemas.1`, with room for `rows` rows.
fn build_decoder(id: u32, schemas: &(AvroSchema, AvroSchema), rows: usize) -> Result<Decoder, String> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store.set(Fingerprint::Id(id), schemas.0.clone()).map_err(|e| e.to_string())?;
    ReaderBuilder::new()
        .with_batch_size(rows.max(1))
        .with_reader_schema(schemas.1.clone())
        .with_writer_schema_store(store)
        .build_decoder()
        .map_err(|e| e.to_string())
}

fn avro_error(context: &str, e: arrow_avro::errors::AvroError) -> ConnectorError {
    ConnectorError::invalid("format", "avro", format!("{context}: {e}"))
}

/// Adds to each record of `reader` the name of the writer's record at the same
/// place (fields matched by name, through `["null", T]` unions, array items and map
/// values), bare and in its namespace (`namespace` is the enclosing one), so
/// resolution matches records by place, not by name.
fn alias_records(reader: &mut serde_json::Value, writer: &serde_json::Value, namespace: Option<&str>) {
    let writer = non_null(writer);
    match reader {
        serde_json::Value::Array(branches) => {
            if let Some(branch) = branches.iter_mut().find(|b| b.as_str() != Some("null")) {
                alias_records(branch, writer, namespace);
            }
        }
        serde_json::Value::Object(r) => {
            let kind = r.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_string();
            match kind.as_str() {
                "record" => {
                    let (Some(name), Some(w_fields)) = (writer.get("name").and_then(|n| n.as_str()), writer.get("fields").and_then(|f| f.as_array())) else {
                        return;
                    };
                    let namespace = writer.get("namespace").and_then(|n| n.as_str()).or(namespace);
                    let mut aliases = vec![name.to_string()];
                    if let Some(ns) = namespace.filter(|ns| !ns.is_empty() && !name.contains('.')) {
                        aliases.push(format!("{ns}.{name}"));
                    }
                    r.insert("aliases".to_string(), serde_json::json!(aliases));
                    if let Some(fields) = r.get_mut("fields").and_then(|f| f.as_array_mut()) {
                        for field in fields {
                            let name = field.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
                            let w = w_fields.iter().find(|w| w.get("name").and_then(|n| n.as_str()) == Some(name.as_str())).and_then(|w| w.get("type"));
                            if let (Some(w), Some(t)) = (w, field.get_mut("type")) {
                                alias_records(t, w, namespace);
                            }
                        }
                    }
                }
                "array" => {
                    if let (Some(items), Some(w)) = (r.get_mut("items"), writer.get("items")) {
                        alias_records(items, w, namespace);
                    }
                }
                "map" => {
                    if let (Some(values), Some(w)) = (r.get_mut("values"), writer.get("values")) {
                        alias_records(values, w, namespace);
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// The non-null branch of a `["null", T]` union (the value itself otherwise).
fn non_null(t: &serde_json::Value) -> &serde_json::Value {
    match t {
        serde_json::Value::Array(branches) => branches.iter().find(|b| b.as_str() != Some("null")).unwrap_or(t),
        other => other,
    }
}

/// The schema id and the Avro datum of a record in Confluent's wire format.
pub(crate) fn split(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [MAGIC, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [MAGIC, ..] => Err("too short for Confluent's wire format (a zero byte and a 4-byte schema id)".to_string()),
        [first, ..] => Err(format!("not in Confluent's wire format: the first byte is {first}, not 0")),
        [] => Err("an empty value (a tombstone?) is not an Avro record".to_string()),
    }
}

/// One Avro datum per row of `batch`, written by arrow-avro with the schema
/// derived from its columns.
pub(crate) fn encode_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ConnectorError> {
    let record = AvroRecord::for_schema(batch.schema_ref())?;
    let invalid = |e: String| ConnectorError::invalid("format", "avro", e);
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let to = writable(field.data_type());
        columns.push(if &to == column.data_type() {
            Arc::clone(column)
        } else {
            cast(column, &to).map_err(|e| ConnectorError::arrow(format!("column '{}'", field.name()), e))?
        });
        fields.push(field.as_ref().clone().with_data_type(to));
    }
    let metadata = HashMap::from([(SCHEMA_METADATA_KEY.to_string(), record.schema_json())]);
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| ConnectorError::arrow("encoding Avro rows", e))?;
    let mut encoder = WriterBuilder::new(schema.as_ref().clone()).build_encoder::<AvroBinaryFormat>().map_err(|e| invalid(e.to_string()))?;
    encoder.encode(&batch).map_err(|e| invalid(e.to_string()))?;
    Ok(encoder.flush().iter().map(|row| row.to_vec()).collect())
}

/// The Arrow type arrow-avro writes as the Avro type [`avro_type`] gives `data_type`.
fn writable(data_type: &DataType) -> DataType {
    let field = |f: &Field| Arc::new(f.clone().with_data_type(writable(f.data_type())));
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::LargeUtf8 => DataType::Utf8,
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
        DataType::List(item) | DataType::LargeList(item) => DataType::List(field(item.as_ref())),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(|f| field(f.as_ref())).collect::<Fields>()),
        DataType::Map(entries, sorted) => DataType::Map(field(entries.as_ref()), *sorted),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filesystem::records::Record;
    use datafusion::arrow::array::{Array, Int64Array, StringArray, TimestampMillisecondArray};

    /// A chunk of `values`, one record each.
    fn chunk(values: &[Vec<u8>]) -> Chunk {
        let mut chunk = Chunk::default();
        for (i, bytes) in values.iter().enumerate() {
            let start = chunk.data.len();
            chunk.data.extend_from_slice(bytes);
            chunk.records.push(Record { start, end: chunk.data.len(), line: i as u64 });
        }
        chunk
    }

    fn simple() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(TimestampMillisecondArray::from(vec![Some(1_704_067_200_000), None])),
            ],
        )
        .unwrap();
        (schema, batch)
    }

    #[test]
    fn rows_round_trip_through_avro_and_bad_data_is_named() {
        let (schema, batch) = simple();
        let encoded = encode_rows(&batch).unwrap();
        let decoder = AvroDecoder::bare(Arc::clone(&schema)).unwrap();
        let all = decoder.decode(&chunk(&encoded)).unwrap();
        assert_eq!(all.rows, batch);
        assert!(all.good.is_none() && all.errors.is_empty());
        // A bad record mid-chunk (truncated), one with bytes left over, and one at
        // the end are named; the good ones around them are kept, in order.
        let mut long = encoded[1].clone();
        long.extend_from_slice(&[0, 0, 0, 0, 0]);
        let values = vec![encoded[0].clone(), b"\x02".to_vec(), encoded[1].clone(), long, encoded[0].clone(), b"\x02\x02".to_vec()];
        let decoded = decoder.decode(&chunk(&values)).unwrap();
        assert_eq!(decoded.good, Some(vec![0, 2, 4]));
        let errors: HashMap<usize, String> = decoded.errors.into_iter().collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[&1].starts_with("not an Avro record of the table's schema"), "{errors:?}");
        assert!(errors[&3].contains("5 bytes left after the last field"), "{errors:?}");
        assert!(errors[&5].starts_with("not an Avro record of the table's schema"), "{errors:?}");
        let expected = datafusion::arrow::compute::concat_batches(&schema, &[batch.clone(), batch.slice(0, 1)]).unwrap();
        assert_eq!(decoded.rows, expected);
    }

    #[test]
    fn the_wire_format_is_avro() {
        // Hand-checked against the Avro spec: long 1 -> 0x02, -1 -> 0x01, 64 -> 0x80 0x01,
        // -65 -> 0x81 0x01; union branch 1 -> 0x02, string "a" -> 0x02 'a'.
        let longs = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(longs, vec![Arc::new(Int64Array::from(vec![1, -1, 64, -65]))]).unwrap();
        assert_eq!(encode_rows(&batch).unwrap(), vec![vec![0x02], vec![0x01], vec![0x80, 0x01], vec![0x81, 0x01]]);
        let schema = Schema::new(vec![Field::new("name", DataType::Utf8, true)]);
        assert_eq!(
            AvroRecord::for_schema(&schema).unwrap().schema_json(),
            r#"{"fields":[{"default":null,"name":"name","type":["null","string"]}],"name":"record","type":"record"}"#
        );
        let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(StringArray::from(vec!["a"]))]).unwrap();
        assert_eq!(encode_rows(&batch).unwrap(), vec![vec![0x02, 0x02, b'a']]);
    }

    /// Three datums written by fastavro 1.13 (`schemaless_writer`, see the
    /// test) for [`nested_schema`]'s writer schema: an independent encoder.
    const FASTAVRO_DATUMS: [&str; 3] =
        ["02020402026100000204026b020a027a000002000000000000f83f020000000000000440", "040200020000", "060000020000000000000ac000"];

    /// The schema fastavro wrote [`FASTAVRO_DATUMS`] with.
    const FASTAVRO_SCHEMA: &str = r#"{"type": "record", "name": "record", "fields": [{"name": "id", "type": "long"}, {"name": "tags", "type": ["null", {"type": "array", "items": ["null", "string"]}], "default": null}, {"name": "attrs", "type": ["null", {"type": "map", "values": ["null", "long"]}], "default": null}, {"name": "pos", "type": ["null", {"type": "record", "name": "record_pos", "fields": [{"name": "lat", "type": "double"}, {"name": "lon", "type": ["null", "double"], "default": null}]}], "default": null}]}"#;

    /// `id BIGINT NOT NULL, tags ARRAY<STRING>, attrs MAP<STRING, BIGINT>, pos ROW<lat DOUBLE NOT NULL, lon DOUBLE>`.
    fn nested_schema() -> Schema {
        use datafusion::arrow::datatypes::Fields;
        let entries = Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Int64, true)])),
            false,
        );
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("tags", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
            Field::new("attrs", DataType::Map(Arc::new(entries), false), true),
            Field::new(
                "pos",
                DataType::Struct(Fields::from(vec![Field::new("lat", DataType::Float64, false), Field::new("lon", DataType::Float64, true)])),
                true,
            ),
        ])
    }

    /// The rows of [`FASTAVRO_DATUMS`]: `{"id":1,"tags":["a",null],"attrs":{"k":5,"z":null},"pos":{"lat":1.5,"lon":2.5}}`,
    /// `{"id":2,"tags":[],"attrs":{},"pos":null}`, `{"id":3,"tags":null,"attrs":null,"pos":{"lat":-3.25,"lon":null}}`.
    fn nested_batch() -> RecordBatch {
        use datafusion::arrow::array::{BooleanBufferBuilder, Float64Array, ListArray, MapArray, StructArray};
        use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
        let schema = Arc::new(nested_schema());
        let nulls = |v: &[bool]| {
            let mut b = BooleanBufferBuilder::new(v.len());
            b.append_slice(v);
            Some(NullBuffer::new(b.finish()))
        };
        let DataType::List(item) = schema.field(1).data_type().clone() else { unreachable!() };
        let tags =
            ListArray::new(item, OffsetBuffer::new(vec![0, 2, 2, 2].into()), Arc::new(StringArray::from(vec![Some("a"), None])), nulls(&[true, true, false]));
        let DataType::Map(entries, _) = schema.field(2).data_type().clone() else { unreachable!() };
        let DataType::Struct(kv) = entries.data_type().clone() else { unreachable!() };
        let kv = StructArray::new(kv, vec![Arc::new(StringArray::from(vec!["k", "z"])), Arc::new(Int64Array::from(vec![Some(5), None]))], None);
        let attrs = MapArray::new(entries, OffsetBuffer::new(vec![0, 2, 2, 2].into()), kv, nulls(&[true, true, false]), false);
        let DataType::Struct(pos_fields) = schema.field(3).data_type().clone() else { unreachable!() };
        let pos = StructArray::new(
            pos_fields,
            vec![Arc::new(Float64Array::from(vec![1.5, 0.0, -3.25])), Arc::new(Float64Array::from(vec![Some(2.5), None, None]))],
            nulls(&[true, false, true]),
        );
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(tags), Arc::new(attrs), Arc::new(pos)]).unwrap()
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    /// `datum` in Confluent's wire format with schema `id`.
    fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
        let mut out = vec![MAGIC];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(datum);
        out
    }

    #[test]
    fn nested_records_arrays_and_maps_read_as_another_encoder_wrote_them() {
        // The schema Eddy derives is the one fastavro wrote with (Flink's names: `record_pos`).
        let schema = Arc::new(nested_schema());
        let ours: serde_json::Value = serde_json::from_str(&AvroRecord::for_schema(&schema).unwrap().schema_json()).unwrap();
        assert_eq!(ours, serde_json::from_str::<serde_json::Value>(FASTAVRO_SCHEMA).unwrap());
        let datums: Vec<Vec<u8>> = FASTAVRO_DATUMS.iter().map(|d| hex(d)).collect();
        let bare = AvroDecoder::bare(Arc::clone(&schema)).unwrap().decode(&chunk(&datums)).unwrap();
        assert_eq!(bare.rows, nested_batch());
        // Read with the registry's copy of the writer schema, too.
        let mut confluent = AvroDecoder::confluent(Arc::clone(&schema)).unwrap();
        confluent.add_writer(7, Ok(FASTAVRO_SCHEMA.to_string()));
        let values: Vec<Vec<u8>> = datums.iter().map(|d| framed(7, d)).collect();
        assert_eq!(confluent.decode(&chunk(&values)).unwrap().rows, nested_batch());
        // A datum cut short, and a block count past the bytes left, are named errors.
        let bad = vec![framed(7, &datums[0][..6]), framed(7, &[0x02, 0x02, 0xfe, 0x01]), values[1].clone(), framed(8, &datums[0]), vec![1, 2]];
        let decoded = confluent.decode(&chunk(&bad)).unwrap();
        assert_eq!(decoded.good, Some(vec![2]));
        assert_eq!(decoded.rows, nested_batch().slice(1, 1));
        let errors: HashMap<usize, String> = decoded.errors.into_iter().collect();
        assert!(errors[&0].starts_with("not an Avro record of its writer schema (id 7)"), "{errors:?}");
        assert!(errors[&1].starts_with("not an Avro record of its writer schema (id 7)"), "{errors:?}");
        assert!(errors[&3].contains("its writer schema id 8 was not fetched"), "{errors:?}");
        assert!(errors[&4].contains("the first byte is 1"), "{errors:?}");
    }

    #[test]
    fn nested_rows_are_written_as_another_encoder_writes_them() {
        let expected: Vec<Vec<u8>> = FASTAVRO_DATUMS.iter().map(|d| hex(d)).collect();
        assert_eq!(encode_rows(&nested_batch()).unwrap(), expected);
    }

    #[test]
    fn writer_schemas_resolve_to_the_tables_columns_by_name() {
        let schema = Arc::new(nested_schema());
        // Another order, another record name and namespace (also nested), a field the
        // table does not have, `int` for `long`, and no `tags` (NULL).
        let writer = r#"{"type": "record", "name": "Event", "namespace": "com.example", "fields": [
            {"name": "extra", "type": "string"},
            {"name": "pos", "type": ["null", {"type": "record", "name": "Position", "fields": [{"name": "lon", "type": ["null", "double"]}, {"name": "lat", "type": "double"}]}]},
            {"name": "attrs", "type": ["null", {"type": "map", "values": ["null", "long"]}]},
            {"name": "id", "type": "int"}]}"#;
        let mut decoder = AvroDecoder::confluent(Arc::clone(&schema)).unwrap();
        decoder.add_writer(3, Ok(writer.to_string()));
        // {"extra": "x", "pos": {"lon": 2.5, "lat": 1.5}, "attrs": {"k": 5}, "id": 9}
        let datum =
            [&[0x02, b'x'][..], &[0x02, 0x02], &2.5f64.to_le_bytes(), &1.5f64.to_le_bytes(), &[0x02, 0x02, 0x02, b'k', 0x02, 0x0a, 0x00], &[0x12]].concat();
        // And one written with the table's own schema (id 4), in the same chunk.
        decoder.add_writer(4, Ok(FASTAVRO_SCHEMA.to_string()));
        let values = vec![framed(3, &datum), framed(4, &hex(FASTAVRO_DATUMS[1])), framed(3, &datum)];
        let decoded = decoder.decode(&chunk(&values)).unwrap();
        assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
        let rows = &decoded.rows;
        assert_eq!(rows.schema(), schema);
        let ids: Vec<i64> = rows.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec();
        assert_eq!(ids, vec![9, 2, 9], "rows in record order");
        assert!(rows.column(1).is_null(0) && rows.column(1).is_valid(1), "the writer had no tags");
        let pos = datafusion::arrow::array::AsArray::as_struct(rows.column(3));
        let lat = datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Float64Type>(pos.column(0));
        assert_eq!(lat.value(0), 1.5);
        // A writer schema that cannot fill the table's columns makes its records bad.
        decoder.add_writer(5, Ok(r#"{"type": "record", "name": "X", "fields": [{"name": "id", "type": "string"}]}"#.to_string()));
        let decoded = decoder.decode(&chunk(&[framed(5, &[0x02, b'1'])])).unwrap();
        assert!(decoded.errors[0].1.starts_with("its writer schema (id 5) cannot be read as the table's columns"), "{:?}", decoded.errors);
    }
}
