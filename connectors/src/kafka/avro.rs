//! Avro values (`'format' = 'avro'`), with the schema derived from the table's
//! columns as Flink's `avro` format does: a record named `record`, one field per
//! column in order, nullable columns as `["null", T]`, `TIMESTAMP(3)` as `long`
//! with `timestamp-millis`, `DATE` as `int` with `date`, `ARRAY<t>` as an
//! `array`, `MAP<STRING, t>` as a `map`, and a `ROW` as a nested record named
//! after its parent and field (`record_pos`).
//!
//! The binary encoding (zig-zag varints, little-endian floats, length-prefixed
//! strings, union branch numbers, arrays and maps in counted blocks) is written
//! here directly: the `apache-avro` crate would do it too, but its dependency
//! features force a full rebuild of DataFusion. Decoding turns each datum into
//! one JSON line for the JSON decoder, so Avro records get the same per-record
//! error handling as JSON ones, and nested values become the same ARRAY, MAP
//! and ROW columns a JSON document's arrays and objects do.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;

use crate::error::ConnectorError;
use crate::filesystem::records::{Chunk, Record};
use crate::filesystem::text::{Decoded, RecordDecoder};

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

/// What Eddy reads and writes, for errors.
const SUPPORTED: &str = "boolean, int, long, float, double, string, timestamp-millis, date, records, arrays, maps, and [\"null\", one of those]";

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

    /// A writer schema from a registry, as Avro JSON: a record of the types in
    /// [`SUPPORTED`], nested at will (a named type is not referred to again by name).
    pub fn from_schema_json(text: &str) -> Result<Self, String> {
        let schema: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if schema.get("type").and_then(|t| t.as_str()) != Some("record") {
            return Err("Eddy reads Avro records (\"type\": \"record\") only".to_string());
        }
        match parse_type(&schema, "the record")? {
            AvroType::Record(fields) => Ok(AvroRecord { fields }),
            _ => Err("Eddy reads Avro records (\"type\": \"record\") only".to_string()),
        }
    }

    /// One datum as a JSON object line, or why it is not a record of this layout.
    pub(crate) fn datum_to_json(&self, mut bytes: &[u8]) -> Result<String, String> {
        let value = read_record(&self.fields, &mut bytes)?;
        if !bytes.is_empty() {
            return Err(format!("{} bytes left after the last field", bytes.len()));
        }
        Ok(value.to_string())
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

/// A writer schema's type (`what` names it for errors), with a `["null", T]` union read by [`parse_field`].
fn parse_type(t: &serde_json::Value, what: &str) -> Result<AvroType, String> {
    let unsupported = || format!("{what} has type {t}; Eddy reads {SUPPORTED}");
    let (name, logical) = match t {
        serde_json::Value::String(name) => (name.as_str(), None),
        serde_json::Value::Object(o) => (o.get("type").and_then(|t| t.as_str()).ok_or_else(unsupported)?, o.get("logicalType").and_then(|l| l.as_str())),
        _ => return Err(unsupported()),
    };
    Ok(match (name, logical) {
        ("boolean", _) => AvroType::Boolean,
        ("int", Some("date")) => AvroType::Date,
        ("int", _) => AvroType::Int,
        ("long", Some("timestamp-millis")) => AvroType::TimestampMillis,
        ("long", _) => AvroType::Long,
        ("float", _) => AvroType::Float,
        ("double", _) => AvroType::Double,
        ("string", _) => AvroType::String,
        ("record", _) => {
            let fields = t.get("fields").and_then(|f| f.as_array()).ok_or_else(|| format!("{what}: a record without \"fields\""))?;
            AvroType::Record(
                fields
                    .iter()
                    .map(|f| {
                        let name = f.get("name").and_then(|n| n.as_str()).ok_or("a field without a name")?;
                        let t = f.get("type").ok_or_else(|| format!("field '{name}' has no type"))?;
                        parse_field(name, t, &format!("field '{name}'"))
                    })
                    .collect::<Result<_, String>>()?,
            )
        }
        ("array", _) => AvroType::Array(Box::new(parse_field("", t.get("items").ok_or_else(unsupported)?, &format!("{what}'s items"))?)),
        ("map", _) => AvroType::Map(Box::new(parse_field("", t.get("values").ok_or_else(unsupported)?, &format!("{what}'s values"))?)),
        _ => return Err(unsupported()),
    })
}

/// A field, element or value whose type may be the union `["null", T]`.
fn parse_field(name: &str, t: &serde_json::Value, what: &str) -> Result<AvroField, String> {
    let (avro, nullable) = match t {
        serde_json::Value::Array(branches) => match branches.as_slice() {
            [null, inner] if null == "null" => (parse_type(inner, what)?, true),
            _ => return Err(format!("{what} has type {t}; Eddy reads {SUPPORTED}")),
        },
        other => (parse_type(other, what)?, false),
    };
    Ok(AvroField { name: name.to_string(), avro, nullable })
}

/// A record's fields from `bytes`, as a JSON object.
fn read_record(fields: &[AvroField], bytes: &mut &[u8]) -> Result<serde_json::Value, String> {
    let mut map = serde_json::Map::with_capacity(fields.len());
    for field in fields {
        let value = read_field(field, bytes)?;
        map.insert(field.name.clone(), value);
    }
    Ok(serde_json::Value::Object(map))
}

/// One field's (or element's, or value's) value from `bytes`, as JSON.
fn read_field(field: &AvroField, bytes: &mut &[u8]) -> Result<serde_json::Value, String> {
    let name = if field.name.is_empty() { "an element" } else { field.name.as_str() };
    if field.nullable {
        match read_long(bytes)? {
            0 => return Ok(serde_json::Value::Null),
            1 => {}
            b => return Err(format!("field '{name}': union branch {b} (expected 0 for null or 1)")),
        }
    }
    Ok(match &field.avro {
        AvroType::Boolean => {
            let (&b, rest) = bytes.split_first().ok_or_else(|| format!("field '{name}': truncated"))?;
            *bytes = rest;
            serde_json::Value::Bool(b != 0)
        }
        AvroType::Int | AvroType::Long | AvroType::TimestampMillis => serde_json::Value::from(read_long(bytes)?),
        AvroType::Date => {
            let days = read_long(bytes)?;
            let day = chrono::DateTime::from_timestamp(days * 86_400, 0).ok_or_else(|| format!("field '{name}': date out of range"))?;
            serde_json::Value::String(day.date_naive().to_string())
        }
        AvroType::Float => {
            let v = f32::from_le_bytes(take(bytes, 4, name)?.try_into().map_err(|_| "float")?);
            serde_json::Number::from_f64(f64::from(v)).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        AvroType::Double => {
            let v = f64::from_le_bytes(take(bytes, 8, name)?.try_into().map_err(|_| "double")?);
            serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        AvroType::String => serde_json::Value::String(read_string(bytes, name)?.to_string()),
        AvroType::Record(fields) => read_record(fields, bytes)?,
        AvroType::Array(item) => {
            let mut items = Vec::new();
            read_blocks(bytes, name, |bytes| {
                items.push(read_field(item, bytes)?);
                Ok(())
            })?;
            serde_json::Value::Array(items)
        }
        AvroType::Map(value) => {
            let mut entries = serde_json::Map::new();
            read_blocks(bytes, name, |bytes| {
                let key = read_string(bytes, name)?.to_string();
                entries.insert(key, read_field(value, bytes)?);
                Ok(())
            })?;
            serde_json::Value::Object(entries)
        }
    })
}

fn read_string<'a>(bytes: &mut &'a [u8], name: &str) -> Result<&'a str, String> {
    let len = usize::try_from(read_long(bytes)?).map_err(|_| format!("field '{name}': negative length"))?;
    std::str::from_utf8(take(bytes, len, name)?).map_err(|_| format!("field '{name}': not UTF-8"))
}

/// Reads an array's or map's blocks: a count, that many items, and so on to a
/// count of zero (a negative count is followed by the block's size in bytes).
fn read_blocks(bytes: &mut &[u8], name: &str, mut item: impl FnMut(&mut &[u8]) -> Result<(), String>) -> Result<(), String> {
    loop {
        let count = match read_long(bytes)? {
            0 => return Ok(()),
            n if n < 0 => {
                read_long(bytes)?;
                n.unsigned_abs()
            }
            n => n.unsigned_abs(),
        };
        // Each item takes at least one byte: a count past what is left is corrupt, not a reason to loop.
        if count > bytes.len() as u64 + 1 {
            return Err(format!("field '{name}': a block of {count} items in {} bytes", bytes.len()));
        }
        for _ in 0..count {
            item(bytes)?;
        }
    }
}

/// Reads a zig-zag varint.
fn read_long(bytes: &mut &[u8]) -> Result<i64, String> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or("truncated: the record ends inside a number")?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err("a number longer than 10 bytes".into())
}

fn take<'a>(bytes: &mut &'a [u8], n: usize, field: &str) -> Result<&'a [u8], String> {
    if bytes.len() < n {
        return Err(format!("field '{field}': truncated"));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

/// Appends a zig-zag varint.
fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Each datum of `chunk` as a JSON line, in a chunk of the same records. A datum
/// that does not decode becomes an invalid line, and its error is returned by index.
pub(crate) fn to_json_chunk(record: &AvroRecord, chunk: &Chunk) -> (Chunk, HashMap<usize, String>) {
    to_json_chunk_with(chunk, |bytes| record.datum_to_json(bytes).map_err(|e| format!("not an Avro record of the table's schema: {e}")))
}

/// The table's value columns from the Avro datums of `chunk`, as the Kafka
/// source reads `'format' = 'avro'`: a datum that does not decode is a bad record.
pub(crate) fn decode_chunk(record: &AvroRecord, decoder: &mut RecordDecoder, chunk: &Chunk) -> Result<Decoded, ConnectorError> {
    let (json, mut avro_errors) = to_json_chunk(record, chunk);
    let mut d = decoder.decode_records(&json)?;
    for (i, error) in d.errors.iter_mut() {
        if let Some(avro_error) = avro_errors.remove(i) {
            *error = avro_error;
        }
    }
    Ok(d)
}

/// [`to_json_chunk`] with each record turned into a JSON line by `to_json`.
pub(crate) fn to_json_chunk_with(chunk: &Chunk, to_json: impl Fn(&[u8]) -> Result<String, String>) -> (Chunk, HashMap<usize, String>) {
    let mut out = Chunk { data: Vec::with_capacity(chunk.data.len() * 2), records: Vec::with_capacity(chunk.records.len()), unterminated: Vec::new() };
    let mut errors = HashMap::new();
    for (i, r) in chunk.records.iter().enumerate() {
        let start = out.data.len();
        match to_json(chunk.bytes(r)) {
            Ok(line) => out.data.extend_from_slice(line.as_bytes()),
            Err(e) => {
                out.data.push(b'!');
                errors.insert(i, e);
            }
        }
        out.records.push(Record { start, end: out.data.len(), line: r.line });
        out.data.push(b'\n');
    }
    (out, errors)
}

/// One Avro datum per row of `batch`.
pub(crate) fn encode_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ConnectorError> {
    let record = AvroRecord::for_schema(batch.schema_ref())?;
    (0..batch.num_rows())
        .map(|row| {
            let mut out = Vec::new();
            for (field, column) in record.fields.iter().zip(batch.columns()) {
                write_field(&mut out, field, column.as_ref(), row)
                    .map_err(|e| ConnectorError::invalid("format", "avro", format!("column '{}': {e}", field.name)))?;
            }
            Ok(out)
        })
        .collect()
}

/// Appends row `row` of `array` as `field`'s Avro value.
fn write_field(out: &mut Vec<u8>, field: &AvroField, array: &dyn Array, row: usize) -> Result<(), String> {
    let null = array.is_null(row);
    if field.nullable {
        write_long(out, i64::from(!null));
        if null {
            return Ok(());
        }
    } else if null {
        return Err("a NOT NULL column holds a null".into());
    }
    match &field.avro {
        AvroType::Record(fields) => {
            let rows = array.as_struct_opt().ok_or("a ROW column is no struct")?;
            for (f, column) in fields.iter().zip(rows.columns()) {
                write_field(out, f, column.as_ref(), row)?;
            }
        }
        AvroType::Array(item) => {
            let items = match array.data_type() {
                DataType::LargeList(_) => array.as_list::<i64>().value(row),
                _ => array.as_list_opt::<i32>().ok_or("an ARRAY column is no list")?.value(row),
            };
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for i in 0..items.len() {
                    write_field(out, item, items.as_ref(), i)?;
                }
            }
            write_long(out, 0);
        }
        AvroType::Map(value) => {
            let entries = array.as_map_opt().ok_or("a MAP column is no map")?.value(row);
            if entries.len() > 0 {
                write_long(out, entries.len() as i64);
                let keys = entries.column(0);
                for i in 0..entries.len() {
                    let key = ScalarValue::try_from_array(keys, i).map_err(|e| e.to_string())?;
                    let (ScalarValue::Utf8(Some(key)) | ScalarValue::LargeUtf8(Some(key))) = key else { return Err("a map key is NULL or no STRING".into()) };
                    write_long(out, key.len() as i64);
                    out.extend_from_slice(key.as_bytes());
                    write_field(out, value, entries.column(1).as_ref(), i)?;
                }
            }
            write_long(out, 0);
        }
        primitive => write_primitive(out, primitive, ScalarValue::try_from_array(array, row).map_err(|e| e.to_string())?)?,
    }
    Ok(())
}

/// Appends a primitive value.
fn write_primitive(out: &mut Vec<u8>, t: &AvroType, scalar: ScalarValue) -> Result<(), String> {
    match (t, scalar) {
        (AvroType::Boolean, ScalarValue::Boolean(Some(b))) => out.push(u8::from(b)),
        (AvroType::Float, ScalarValue::Float32(Some(v))) => out.extend_from_slice(&v.to_le_bytes()),
        (AvroType::Double, ScalarValue::Float64(Some(v))) => out.extend_from_slice(&v.to_le_bytes()),
        (AvroType::String, ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s))) => {
            write_long(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
        (AvroType::TimestampMillis, ts) => {
            let ms = match ts {
                ScalarValue::TimestampSecond(Some(v), _) => v * 1000,
                ScalarValue::TimestampMillisecond(Some(v), _) => v,
                ScalarValue::TimestampMicrosecond(Some(v), _) => v.div_euclid(1000),
                ScalarValue::TimestampNanosecond(Some(v), _) => v.div_euclid(1_000_000),
                other => return Err(format!("cannot write {other:?} as a timestamp")),
            };
            write_long(out, ms);
        }
        (_, scalar) => {
            let v = match scalar {
                ScalarValue::Int8(Some(v)) => i64::from(v),
                ScalarValue::Int16(Some(v)) => i64::from(v),
                ScalarValue::Int32(Some(v)) | ScalarValue::Date32(Some(v)) => i64::from(v),
                ScalarValue::Int64(Some(v)) => v,
                ScalarValue::UInt8(Some(v)) => i64::from(v),
                ScalarValue::UInt16(Some(v)) => i64::from(v),
                ScalarValue::UInt32(Some(v)) => i64::from(v),
                other => return Err(format!("cannot write {other:?} as Avro")),
            };
            write_long(out, v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Field, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn rows_round_trip_through_avro_and_bad_data_is_named() {
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
        let encoded = encode_rows(&batch).unwrap();
        let mut chunk = Chunk::default();
        for (i, bytes) in encoded.iter().chain([b"\x02".to_vec()].iter()).enumerate() {
            let start = chunk.data.len();
            chunk.data.extend_from_slice(bytes);
            chunk.records.push(Record { start, end: chunk.data.len(), line: i as u64 });
            chunk.data.push(b'\n');
        }
        let (json, errors) = to_json_chunk(&AvroRecord::for_schema(&schema).unwrap(), &chunk);
        let lines: Vec<String> = json.records.iter().map(|r| String::from_utf8_lossy(json.bytes(r)).into_owned()).collect();
        assert_eq!(lines[0], r#"{"id":1,"name":"a","ts":1704067200000}"#);
        assert_eq!(lines[1], r#"{"id":2,"name":null,"ts":null}"#);
        assert!(errors[&2].starts_with("not an Avro record of the table's schema"), "{errors:?}");
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn the_wire_format_is_avro() {
        // Hand-checked against the Avro spec: long 1 -> 0x02, union branch 1 -> 0x02,
        // string "a" -> 0x02 'a', timestamp 1 -> 0x02; -1 -> 0x01; 64 -> 0x80 0x01.
        let mut out = Vec::new();
        for v in [1, -1, 64, -65] {
            write_long(&mut out, v);
        }
        assert_eq!(out, vec![0x02, 0x01, 0x80, 0x01, 0x81, 0x01]);
        let mut bytes = &out[..];
        let back: Vec<i64> = (0..4).map(|_| read_long(&mut bytes).unwrap()).collect();
        assert_eq!(back, vec![1, -1, 64, -65]);
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

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn nested_records_arrays_and_maps_read_as_another_encoder_wrote_them() {
        // The schema Eddy derives is the one fastavro wrote with (Flink's names: `record_pos`).
        let record = AvroRecord::for_schema(&nested_schema()).unwrap();
        let fastavro_schema = r#"{"type": "record", "name": "record", "fields": [{"name": "id", "type": "long"}, {"name": "tags", "type": ["null", {"type": "array", "items": ["null", "string"]}], "default": null}, {"name": "attrs", "type": ["null", {"type": "map", "values": ["null", "long"]}], "default": null}, {"name": "pos", "type": ["null", {"type": "record", "name": "record_pos", "fields": [{"name": "lat", "type": "double"}, {"name": "lon", "type": ["null", "double"], "default": null}]}], "default": null}]}"#;
        let ours: serde_json::Value = serde_json::from_str(&record.schema_json()).unwrap();
        assert_eq!(ours, serde_json::from_str::<serde_json::Value>(fastavro_schema).unwrap());
        // Read with the registry's copy of the writer schema, too.
        let writer = AvroRecord::from_schema_json(fastavro_schema).unwrap();
        let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        for (record, fastavro) in [&record, &writer].into_iter().zip([false, true]) {
            let lines: Vec<serde_json::Value> = FASTAVRO_DATUMS.iter().map(|d| json(&record.datum_to_json(&hex(d)).unwrap())).collect();
            let expected = [
                r#"{"id":1,"tags":["a",null],"attrs":{"k":5,"z":null},"pos":{"lat":1.5,"lon":2.5}}"#,
                r#"{"id":2,"tags":[],"attrs":{},"pos":null}"#,
                r#"{"id":3,"tags":null,"attrs":null,"pos":{"lat":-3.25,"lon":null}}"#,
            ];
            assert_eq!(lines, expected.map(json), "read with the {} schema", if fastavro { "writer's" } else { "table's" });
        }
        // A datum cut short, and a block count past the bytes left, are named errors.
        let first = hex(FASTAVRO_DATUMS[0]);
        assert!(writer.datum_to_json(&first[..6]).is_err());
        assert!(writer.datum_to_json(&[0x02, 0x02, 0xfe, 0x01]).unwrap_err().contains("a block of"), "a count of 127 items in no bytes");
    }

    #[test]
    fn nested_rows_are_written_as_another_encoder_writes_them() {
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
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(tags), Arc::new(attrs), Arc::new(pos)]).unwrap();
        let expected: Vec<Vec<u8>> = FASTAVRO_DATUMS.iter().map(|d| hex(d)).collect();
        assert_eq!(encode_rows(&batch).unwrap(), expected);
    }
}
