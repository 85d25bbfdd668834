//! Result rows on the wire: Arrow IPC messages, one schema message and then one
//! message per batch, which the client concatenates back into an IPC stream.

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

/// Encodes a schema and then batches as separate IPC messages.
pub struct IpcEncoder {
    writer: StreamWriter<Vec<u8>>,
}

impl IpcEncoder {
    /// Starts a stream; returns the encoder and the schema message.
    pub fn new(schema: &Schema) -> Result<(Self, Vec<u8>), ArrowError> {
        let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
        let header = std::mem::take(writer.get_mut());
        Ok((IpcEncoder { writer }, header))
    }

    /// One batch's message (its dictionaries included).
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        self.writer.write(batch)?;
        Ok(std::mem::take(self.writer.get_mut()))
    }
}

/// Collects a statement's IPC messages and decodes them into batches.
#[derive(Default)]
pub struct IpcCollector {
    bytes: Vec<u8>,
}

impl IpcCollector {
    /// Adds the next message (schema first, then batches).
    pub fn push(&mut self, message: &[u8]) {
        self.bytes.extend_from_slice(message);
    }

    /// True once a schema message has arrived.
    pub fn has_schema(&self) -> bool {
        !self.bytes.is_empty()
    }

    /// Decodes everything pushed so far and starts over.
    pub fn take(&mut self) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
        let bytes = std::mem::take(&mut self.bytes);
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        Ok((schema, batches))
    }
}

/// Decodes one batch message of a stream whose schema message came earlier
/// (a subscription's changes arrive one message at a time).
pub fn decode_after(schema_message: &[u8], batch_message: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
    let mut collector = IpcCollector::default();
    collector.push(schema_message);
    collector.push(batch_message);
    collector.take()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn messages_concatenate_into_a_stream() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true), Field::new("n", DataType::Int64, false)]));
        let batch = |k: &str, n: i64| {
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(vec![Some(k), None])), Arc::new(Int64Array::from(vec![n, n + 1]))])
                .unwrap()
        };
        let (mut encoder, header) = IpcEncoder::new(&schema).unwrap();
        let mut collector = IpcCollector::default();
        collector.push(&header);
        collector.push(&encoder.encode(&batch("a", 1)).unwrap());
        collector.push(&encoder.encode(&batch("b", 10)).unwrap());
        let (decoded_schema, batches) = collector.take().unwrap();
        assert_eq!(decoded_schema, schema);
        assert_eq!(batches, vec![batch("a", 1), batch("b", 10)]);
    }
}
