//! Operator state snapshots: named Arrow batches, so state can be written as Arrow IPC.

use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};

/// The serialized state of one operator instance: a list of named Arrow batches.
#[derive(Debug, Clone, Default)]
pub struct OperatorState {
    pub parts: Vec<(String, RecordBatch)>,
}

impl OperatorState {
    /// Encodes every part as an Arrow IPC stream, length-prefixed with its name.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for (name, batch) in &self.parts {
            let mut ipc = Vec::new();
            {
                let mut writer = StreamWriter::try_new(&mut ipc, &batch.schema()).map_err(|e| EngineError::State(e.to_string()))?;
                writer.write(batch).map_err(|e| EngineError::State(e.to_string()))?;
                writer.finish().map_err(|e| EngineError::State(e.to_string()))?;
            }
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(ipc.len() as u64).to_le_bytes());
            out.extend_from_slice(&ipc);
        }
        Ok(out)
    }

    /// Decodes what [`OperatorState::to_bytes`] wrote; a truncated buffer is an error.
    pub fn from_bytes(mut bytes: &[u8]) -> Result<Self> {
        let corrupt = || EngineError::State("state snapshot is truncated or corrupt".to_string());
        let mut parts = Vec::new();
        while !bytes.is_empty() {
            let take = |bytes: &mut &[u8], n: usize| -> Result<Vec<u8>> {
                if bytes.len() < n {
                    return Err(corrupt());
                }
                let (head, tail) = bytes.split_at(n);
                *bytes = tail;
                Ok(head.to_vec())
            };
            let name_len = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().map_err(|_| corrupt())?) as usize;
            let name = String::from_utf8(take(&mut bytes, name_len)?).map_err(|_| corrupt())?;
            let ipc_len = u64::from_le_bytes(take(&mut bytes, 8)?.try_into().map_err(|_| corrupt())?) as usize;
            let ipc = take(&mut bytes, ipc_len)?;
            let reader = StreamReader::try_new(ipc.as_slice(), None).map_err(|e| EngineError::State(e.to_string()))?;
            for batch in reader {
                parts.push((name.clone(), batch.map_err(|e| EngineError::State(e.to_string()))?));
            }
        }
        Ok(OperatorState { parts })
    }
}
