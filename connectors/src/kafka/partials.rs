//! The records of a shuffle topic that carries partial aggregates
//! (`eddy_engine::operators::pre_aggregate`) instead of the source's records.
//!
//! A record's value is one Arrow IPC stream of partial rows, all of one key
//! group, at most [`MAX_VALUE_BYTES`] (a commit's partials of one key group take as
//! many records as that needs). A source record that did not decode crosses the shuffle as it is, with
//! the headers [`MALFORMED`] (why) and [`POSITION`] (where it was read), so the
//! key group reports it where it reports every malformed record. Rows judged
//! late cross as Arrow IPC under the key [`LATE_KEY`], whatever the shuffle
//! carries, so the key group writes them to the table's `'late.sink'`.

use std::io::Cursor;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use eddy_engine::MalformedRecord;

use crate::error::ConnectorError;

/// Header of a source record that did not decode: the decoder's error.
pub const MALFORMED: &str = "eddy.malformed";
/// Header of a source record that did not decode: its topic, partition and offset.
pub const POSITION: &str = "eddy.position";

/// Key of a record carrying rows a re-partitioner judged late, as Arrow IPC of
/// the source's columns, for the key group to send to the table's `'late.sink'`
/// (in a shuffle of records or of partials alike). The NUL byte keeps it apart
/// from a source record's own key.
pub const LATE_KEY: &[u8] = b"\0eddy.late";

/// The most bytes a record's value holds: half of Kafka's default limit on a
/// record (`message.max.bytes`, 1 MB on brokers and producers alike).
pub const MAX_VALUE_BYTES: usize = 512 * 1024;

/// The values of the records carrying `partials`: one, or as many as it takes to
/// keep each under `max_bytes` (a commit that folded very many keys), split by rows.
pub fn encode_split(partials: &RecordBatch, max_bytes: usize) -> Result<Vec<Vec<u8>>, ConnectorError> {
    let value = encode(partials)?;
    if value.len() <= max_bytes || partials.num_rows() <= 1 {
        return Ok(vec![value]);
    }
    let half = partials.num_rows() / 2;
    let mut values = encode_split(&partials.slice(0, half), max_bytes)?;
    values.extend(encode_split(&partials.slice(half, partials.num_rows() - half), max_bytes)?);
    Ok(values)
}

/// The value of the record carrying `partials`.
pub fn encode(partials: &RecordBatch) -> Result<Vec<u8>, ConnectorError> {
    let mut bytes = Vec::new();
    let failed = |e| ConnectorError::arrow("encoding partial aggregates for the shuffle", e);
    let mut writer = StreamWriter::try_new(&mut bytes, &partials.schema()).map_err(failed)?;
    writer.write(partials).map_err(failed)?;
    writer.finish().map_err(failed)?;
    drop(writer);
    Ok(bytes)
}

/// One record read from the shuffle: its value, and the two headers above if it has them.
pub struct ShuffledRecord<'a> {
    /// Partials, or a source record that did not decode.
    pub value: &'a [u8],
    /// The [`MALFORMED`] header: the source's decoding error.
    pub malformed: Option<String>,
    /// The [`POSITION`] header: where the source record was read.
    pub position: Option<String>,
    /// Where it is in the shuffle topic, for a value that is not partials.
    pub shuffle_position: String,
}

/// The partial rows of `records`, as `schema` says, and the source records that
/// did not decode. A value that is not partials of that schema is malformed too
/// (a shuffle topic written by a member running other SQL).
pub fn decode(records: &[ShuffledRecord<'_>], schema: &SchemaRef) -> Result<(RecordBatch, Vec<MalformedRecord>), ConnectorError> {
    let mut batches = Vec::with_capacity(records.len());
    let mut malformed = Vec::new();
    for record in records {
        if let Some(error) = &record.malformed {
            malformed.push(MalformedRecord {
                position: record.position.clone().unwrap_or_else(|| record.shuffle_position.clone()),
                error: error.clone(),
                raw: String::from_utf8_lossy(record.value).into_owned(),
            });
            continue;
        }
        match read(record.value, schema) {
            Ok(read) => batches.extend(read),
            Err(error) => malformed.push(MalformedRecord {
                position: record.shuffle_position.clone(),
                error: format!("not partial aggregates of this pipeline: {error}"),
                raw: String::from_utf8_lossy(record.value).into_owned(),
            }),
        }
    }
    let rows = concat_batches(schema, &batches).map_err(|e| ConnectorError::arrow("assembling partial aggregates", e))?;
    Ok((rows, malformed))
}

/// The rows of a record keyed [`LATE_KEY`], in the columns it was written with.
pub fn decode_late(value: &[u8]) -> Result<Vec<RecordBatch>, String> {
    let reader = StreamReader::try_new(Cursor::new(value), None).map_err(|e| e.to_string())?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}

fn read(value: &[u8], schema: &SchemaRef) -> Result<Vec<RecordBatch>, String> {
    let reader = StreamReader::try_new(Cursor::new(value), None).map_err(|e| e.to_string())?;
    if reader.schema().fields() != schema.fields() {
        return Err(format!("its columns are {:?}", reader.schema().fields().iter().map(|f| f.name()).collect::<Vec<_>>()));
    }
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        // The same fields; the schema's metadata may differ.
        batches.push(RecordBatch::try_new(std::sync::Arc::clone(schema), batch.columns().to_vec()).map_err(|e| e.to_string())?);
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn partials() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("slice", DataType::Int64, false),
            Field::new("k0", DataType::Utf8, true),
            Field::new("a0_0", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![0, 10_000])), Arc::new(StringArray::from(vec![Some("a"), None])), Arc::new(Int64Array::from(vec![3, 4]))],
        )
        .unwrap()
    }

    fn record<'a>(value: &'a [u8], malformed: Option<&str>) -> ShuffledRecord<'a> {
        ShuffledRecord {
            value,
            malformed: malformed.map(str::to_string),
            position: malformed.map(|_| "events partition 2 offset 7".to_string()),
            shuffle_position: "shuffle partition 0 offset 1".to_string(),
        }
    }

    #[test]
    fn partials_round_trip_and_malformed_records_keep_their_source_position() {
        let batch = partials();
        let bytes = encode(&batch).unwrap();
        let records = [record(&bytes, None), record(b"{\"user\": ", Some("unexpected end of input")), record(&bytes, None)];
        let (rows, malformed) = decode(&records, &batch.schema()).unwrap();
        assert_eq!(rows, concat_batches(&batch.schema(), &[batch.clone(), batch.clone()]).unwrap());
        assert_eq!(malformed.len(), 1);
        assert_eq!((malformed[0].position.as_str(), malformed[0].error.as_str()), ("events partition 2 offset 7", "unexpected end of input"));
        assert_eq!(malformed[0].raw, "{\"user\": ");
    }

    #[test]
    fn many_partials_are_split_into_records_under_the_limit_and_read_back_whole() {
        let rows = 10_000;
        let schema = partials().schema();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![0; rows])),
                Arc::new(StringArray::from((0..rows).map(|i| format!("user-{i}")).collect::<Vec<_>>())),
                Arc::new(Int64Array::from((0..rows as i64).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        assert_eq!(encode_split(&batch, MAX_VALUE_BYTES).unwrap().len(), 1, "small enough for one record");
        let values = encode_split(&batch, 64 * 1024).unwrap();
        assert!(values.len() > 1 && values.iter().all(|v| v.len() <= 64 * 1024), "{:?}", values.iter().map(Vec::len).collect::<Vec<_>>());
        let records: Vec<ShuffledRecord<'_>> = values.iter().map(|v| record(v, None)).collect();
        let (read, malformed) = decode(&records, &schema).unwrap();
        assert!(malformed.is_empty());
        assert_eq!(read, batch);
    }

    #[test]
    fn a_value_of_another_schema_is_malformed_not_a_failure() {
        let batch = partials();
        let other = batch.project(&[0, 2]).unwrap();
        let bytes = encode(&other).unwrap();
        let (rows, malformed) = decode(&[record(&bytes, None), record(b"junk", None)], &batch.schema()).unwrap();
        assert_eq!(rows.num_rows(), 0);
        assert_eq!(malformed.len(), 2);
        assert!(malformed[0].error.contains("not partial aggregates of this pipeline"), "{}", malformed[0].error);
        assert_eq!(malformed[1].position, "shuffle partition 0 offset 1");
    }
}
