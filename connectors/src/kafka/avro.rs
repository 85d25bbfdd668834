//! Avro values (`'format' = 'avro'`), with the schema derived from the table's
//! columns as Flink's `avro` format does: a record named `record`, one field per
//! column in order, nullable columns as `["null", T]`, `TIMESTAMP(3)` as `long`
//! with `timestamp-millis`, `DATE` as `int` with `date`.
//!
//! Such a record is a flat sequence of primitives, so the binary encoding
//! (zig-zag varints, little-endian floats, length-prefixed strings, union
//! branch numbers) is written here directly: the `apache-avro` crate would do
//! it too, but its dependency features force a full rebuild of DataFusion.
//! Decoding turns each datum into one JSON line for the JSON decoder, so Avro
//! records get the same per-record error handling as JSON ones.

use std::collections::HashMap;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;

use crate::error::ConnectorError;
use crate::filesystem::records::{Chunk, Record};

/// The Avro type of one column.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AvroType {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    TimestampMillis,
    Date,
}

/// The Avro record layout of a table's columns: `(name, type, nullable)` in order.
#[derive(Debug, Clone)]
pub(crate) struct AvroRecord {
    fields: Vec<(String, AvroType, bool)>,
}

impl AvroRecord {
    /// The record for rows of `schema`, or why a column cannot be Avro.
    pub fn for_schema(schema: &Schema) -> Result<Self, ConnectorError> {
        let mut fields = Vec::new();
        for field in schema.fields() {
            let name = field.name();
            let unsupported = |why: &str| ConnectorError::UnsupportedType {
                connector: format!("kafka (avro{why})"),
                column: name.clone(),
                data_type: field.data_type().to_string(),
            };
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(unsupported(": Avro field names are letters, digits and '_'"));
            }
            let t = match field.data_type() {
                DataType::Boolean => AvroType::Boolean,
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => AvroType::Int,
                DataType::Int64 | DataType::UInt32 => AvroType::Long,
                DataType::Float32 => AvroType::Float,
                DataType::Float64 => AvroType::Double,
                DataType::Utf8 | DataType::LargeUtf8 => AvroType::String,
                DataType::Timestamp(_, _) => AvroType::TimestampMillis,
                DataType::Date32 => AvroType::Date,
                _ => return Err(unsupported("")),
            };
            fields.push((name.clone(), t, field.is_nullable()));
        }
        Ok(AvroRecord { fields })
    }

    /// The schema as Avro JSON, for other systems reading or writing the topic.
    pub fn schema_json(&self) -> String {
        let fields: Vec<serde_json::Value> = self
            .fields
            .iter()
            .map(|(name, t, nullable)| {
                let ty = match t {
                    AvroType::Boolean => serde_json::json!("boolean"),
                    AvroType::Int => serde_json::json!("int"),
                    AvroType::Long => serde_json::json!("long"),
                    AvroType::Float => serde_json::json!("float"),
                    AvroType::Double => serde_json::json!("double"),
                    AvroType::String => serde_json::json!("string"),
                    AvroType::TimestampMillis => serde_json::json!({"type": "long", "logicalType": "timestamp-millis"}),
                    AvroType::Date => serde_json::json!({"type": "int", "logicalType": "date"}),
                };
                if *nullable {
                    serde_json::json!({"name": name, "type": ["null", ty], "default": null})
                } else {
                    serde_json::json!({"name": name, "type": ty})
                }
            })
            .collect();
        serde_json::json!({"type": "record", "name": "record", "fields": fields}).to_string()
    }

    /// A writer schema from a registry, as Avro JSON: a record of primitive fields,
    /// `["null", T]` unions, `timestamp-millis` longs and `date` ints.
    pub fn from_schema_json(text: &str) -> Result<Self, String> {
        let schema: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if schema.get("type").and_then(|t| t.as_str()) != Some("record") {
            return Err("Eddy reads Avro records (\"type\": \"record\") only".to_string());
        }
        let fields = schema.get("fields").and_then(|f| f.as_array()).ok_or("a record without \"fields\"")?;
        let primitive = |t: &serde_json::Value| -> Option<AvroType> {
            let (name, logical) = match t {
                serde_json::Value::String(name) => (name.as_str(), None),
                serde_json::Value::Object(o) => (o.get("type")?.as_str()?, o.get("logicalType").and_then(|l| l.as_str())),
                _ => return None,
            };
            Some(match (name, logical) {
                ("boolean", _) => AvroType::Boolean,
                ("int", Some("date")) => AvroType::Date,
                ("int", _) => AvroType::Int,
                ("long", Some("timestamp-millis")) => AvroType::TimestampMillis,
                ("long", _) => AvroType::Long,
                ("float", _) => AvroType::Float,
                ("double", _) => AvroType::Double,
                ("string", _) => AvroType::String,
                _ => return None,
            })
        };
        let mut out = Vec::with_capacity(fields.len());
        for field in fields {
            let name = field.get("name").and_then(|n| n.as_str()).ok_or("a field without a name")?;
            let t = field.get("type").ok_or_else(|| format!("field '{name}' has no type"))?;
            let unsupported = || {
                format!(
                    "field '{name}' has type {t}; Eddy reads boolean, int, long, float, double, string, timestamp-millis, date, and [\"null\", one of those]"
                )
            };
            let (t, nullable) = match t {
                serde_json::Value::Array(branches) => match branches.as_slice() {
                    [null, inner] if null == "null" => (primitive(inner).ok_or_else(unsupported)?, true),
                    _ => return Err(unsupported()),
                },
                other => (primitive(other).ok_or_else(unsupported)?, false),
            };
            out.push((name.to_string(), t, nullable));
        }
        Ok(AvroRecord { fields: out })
    }

    /// One datum as a JSON object line, or why it is not a record of this layout.
    pub(crate) fn datum_to_json(&self, mut bytes: &[u8]) -> Result<String, String> {
        let mut map = serde_json::Map::with_capacity(self.fields.len());
        for (name, t, nullable) in &self.fields {
            if *nullable {
                match read_long(&mut bytes)? {
                    0 => {
                        map.insert(name.clone(), serde_json::Value::Null);
                        continue;
                    }
                    1 => {}
                    b => return Err(format!("field '{name}': union branch {b} (expected 0 for null or 1)")),
                }
            }
            let value = match t {
                AvroType::Boolean => {
                    let (&b, rest) = bytes.split_first().ok_or_else(|| format!("field '{name}': truncated"))?;
                    bytes = rest;
                    serde_json::Value::Bool(b != 0)
                }
                AvroType::Int | AvroType::Long | AvroType::TimestampMillis => serde_json::Value::from(read_long(&mut bytes)?),
                AvroType::Date => {
                    let days = read_long(&mut bytes)?;
                    let day = chrono::DateTime::from_timestamp(days * 86_400, 0).ok_or_else(|| format!("field '{name}': date out of range"))?;
                    serde_json::Value::String(day.date_naive().to_string())
                }
                AvroType::Float => {
                    let v = f32::from_le_bytes(take(&mut bytes, 4, name)?.try_into().map_err(|_| "float")?);
                    serde_json::Number::from_f64(f64::from(v)).map_or(serde_json::Value::Null, serde_json::Value::Number)
                }
                AvroType::Double => {
                    let v = f64::from_le_bytes(take(&mut bytes, 8, name)?.try_into().map_err(|_| "double")?);
                    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
                }
                AvroType::String => {
                    let len = usize::try_from(read_long(&mut bytes)?).map_err(|_| format!("field '{name}': negative length"))?;
                    let s = std::str::from_utf8(take(&mut bytes, len, name)?).map_err(|_| format!("field '{name}': not UTF-8"))?;
                    serde_json::Value::String(s.to_string())
                }
            };
            map.insert(name.clone(), value);
        }
        if !bytes.is_empty() {
            return Err(format!("{} bytes left after the last field", bytes.len()));
        }
        Ok(serde_json::Value::Object(map).to_string())
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
    let ctx = |e: String| ConnectorError::invalid("format", "avro", e);
    (0..batch.num_rows())
        .map(|row| {
            let mut out = Vec::new();
            for ((_, t, nullable), column) in record.fields.iter().zip(batch.columns()) {
                let scalar = ScalarValue::try_from_array(column, row).map_err(|e| ctx(e.to_string()))?;
                if *nullable {
                    write_long(&mut out, i64::from(!scalar.is_null()));
                    if scalar.is_null() {
                        continue;
                    }
                } else if scalar.is_null() {
                    return Err(ctx("a NOT NULL column holds a null".into()));
                }
                match (t, scalar) {
                    (AvroType::Boolean, ScalarValue::Boolean(Some(b))) => out.push(u8::from(b)),
                    (AvroType::Float, ScalarValue::Float32(Some(v))) => out.extend_from_slice(&v.to_le_bytes()),
                    (AvroType::Double, ScalarValue::Float64(Some(v))) => out.extend_from_slice(&v.to_le_bytes()),
                    (AvroType::String, ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s))) => {
                        write_long(&mut out, s.len() as i64);
                        out.extend_from_slice(s.as_bytes());
                    }
                    (AvroType::TimestampMillis, ts) => {
                        let ms = match ts {
                            ScalarValue::TimestampSecond(Some(v), _) => v * 1000,
                            ScalarValue::TimestampMillisecond(Some(v), _) => v,
                            ScalarValue::TimestampMicrosecond(Some(v), _) => v.div_euclid(1000),
                            ScalarValue::TimestampNanosecond(Some(v), _) => v.div_euclid(1_000_000),
                            other => return Err(ctx(format!("cannot write {other:?} as a timestamp"))),
                        };
                        write_long(&mut out, ms);
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
                            other => return Err(ctx(format!("cannot write {other:?} as Avro"))),
                        };
                        write_long(&mut out, v);
                    }
                }
            }
            Ok(out)
        })
        .collect()
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
}
