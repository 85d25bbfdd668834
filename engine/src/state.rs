//! Operator state snapshots: named Arrow batches, so state can be written as Arrow IPC.
//!
//! Most of an operator's state changes between checkpoints and is written whole
//! each time. Some never changes once made (a window slice the watermark has
//! closed, or the rows a slice took before the last checkpoint): such a part is
//! *lasting*. A checkpoint stores a lasting part once, as an object of its own
//! ([`crate::checkpoint`]), and every later checkpoint that still holds it refers
//! to it by its [`LastingId`] instead of writing it again. So the cost of a
//! checkpoint follows what changed since the last one, not all the state held.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};

/// Names a lasting part for as long as any checkpoint refers to it. Never reused:
/// a random per-process base plus a counter, so a restarted process cannot take
/// the id of a part its predecessor's checkpoints still refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LastingId(pub u64);

impl LastingId {
    /// An id no part had before.
    pub fn fresh() -> Self {
        static BASE: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = *BASE.get_or_init(|| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
            hasher.write_u32(std::process::id());
            hasher.finish()
        });
        LastingId(base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// Its name as an object in the checkpoint store.
    pub fn object_name(self) -> String {
        format!("{:016x}", self.0)
    }

    /// The id an object is named after, if it is one of these names.
    pub fn from_object_name(name: &str) -> Option<Self> {
        (name.len() == 16).then(|| u64::from_str_radix(name, 16).ok().map(LastingId)).flatten()
    }
}

/// A part of an operator's state that never changes once made, stored once (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct LastingPart {
    pub id: LastingId,
    pub batch: RecordBatch,
}

/// The lasting parts a checkpoint refers to, read back, by id.
pub type LastingParts = HashMap<LastingId, RecordBatch>;

/// The serialized state of one operator instance: a list of named Arrow batches.
#[derive(Debug, Clone, Default)]
pub struct OperatorState {
    /// Parts written whole at every checkpoint.
    pub parts: Vec<(String, RecordBatch)>,
    /// Parts that never change once made, each stored once; restored as `parts` of the same name.
    pub lasting: Vec<(String, LastingPart)>,
}

/// By default, lasting parts smaller than this are written whole at every
/// checkpoint like other parts: rewriting a small part costs less than an object
/// of its own (a file synced and renamed, or a PUT), so pipelines with little
/// state keep the one object per checkpoint they had. Flink's
/// `state.storage.fs.memory-threshold` is the same idea.
pub const LASTING_MIN_BYTES: usize = 1 << 20;

/// Marks, in place of an IPC length, a reference to a lasting part.
const LASTING_REFERENCE: u64 = u64::MAX;

fn state_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::State(e.to_string())
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

/// One batch as an Arrow IPC stream.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut ipc = Vec::new();
    let mut writer = StreamWriter::try_new(&mut ipc, &batch.schema()).map_err(state_error)?;
    writer.write(batch).map_err(state_error)?;
    writer.finish().map_err(state_error)?;
    drop(writer);
    Ok(ipc)
}

/// The batches of an Arrow IPC stream.
pub fn decode_batches(ipc: &[u8]) -> Result<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(ipc, None).map_err(state_error)?;
    reader.map(|batch| batch.map_err(state_error)).collect()
}

impl OperatorState {
    /// State of parts that are all written whole at every checkpoint.
    pub fn new(parts: Vec<(String, RecordBatch)>) -> Self {
        OperatorState { parts, lasting: Vec::new() }
    }

    /// Encodes every part, length-prefixed with its name: whole parts as Arrow IPC
    /// streams, lasting parts as references to their ids (those under
    /// `lasting_min_bytes` whole). The lasting parts referred to are handed back,
    /// for the checkpoint to store those it has not stored yet.
    pub fn encode(self, lasting_min_bytes: usize) -> Result<(Vec<u8>, Vec<LastingPart>)> {
        let (small, large): (Vec<_>, Vec<_>) = self.lasting.into_iter().partition(|(_, part)| part.batch.get_array_memory_size() < lasting_min_bytes);
        let whole: Vec<(String, RecordBatch)> = self.parts.into_iter().chain(small.into_iter().map(|(name, part)| (name, part.batch))).collect();
        let mut out = Self::encode_whole(&whole)?;
        let mut lasting = Vec::with_capacity(large.len());
        for (name, part) in large {
            put_name(&mut out, &name);
            out.extend_from_slice(&LASTING_REFERENCE.to_le_bytes());
            out.extend_from_slice(&part.id.0.to_le_bytes());
            lasting.push(part);
        }
        Ok((out, lasting))
    }

    /// Encodes state without lasting parts (a sink's prepared commit, which is
    /// stored inside its checkpoint): an error if it has any.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if !self.lasting.is_empty() {
            return Err(EngineError::Internal("state with lasting parts must be stored through a checkpoint".into()));
        }
        Self::encode_whole(&self.parts)
    }

    /// Decodes what [`OperatorState::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::decode(bytes, &LastingParts::new())
    }

    fn encode_whole(parts: &[(String, RecordBatch)]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for (name, batch) in parts {
            let ipc = encode_batch(batch)?;
            put_name(&mut out, name);
            out.extend_from_slice(&(ipc.len() as u64).to_le_bytes());
            out.extend_from_slice(&ipc);
        }
        Ok(out)
    }

    /// Decodes what [`OperatorState::encode`] wrote, taking referenced parts from
    /// `lasting`; a truncated buffer or a missing part is an error.
    pub fn decode(mut bytes: &[u8], lasting: &LastingParts) -> Result<Self> {
        let corrupt = || EngineError::State("state snapshot is truncated or corrupt".to_string());
        let take = |bytes: &mut &[u8], n: usize| -> Result<Vec<u8>> {
            if bytes.len() < n {
                return Err(corrupt());
            }
            let (head, tail) = bytes.split_at(n);
            *bytes = tail;
            Ok(head.to_vec())
        };
        let u64_at = |bytes: &mut &[u8]| -> Result<u64> { Ok(u64::from_le_bytes(take(bytes, 8)?.try_into().map_err(|_| corrupt())?)) };
        let mut parts = Vec::new();
        while !bytes.is_empty() {
            let name_len = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().map_err(|_| corrupt())?) as usize;
            let name = String::from_utf8(take(&mut bytes, name_len)?).map_err(|_| corrupt())?;
            let ipc_len = u64_at(&mut bytes)?;
            if ipc_len == LASTING_REFERENCE {
                let id = LastingId(u64_at(&mut bytes)?);
                let batch =
                    lasting.get(&id).ok_or_else(|| EngineError::State(format!("state part `{name}` ({}) is missing from the checkpoint", id.object_name())))?;
                parts.push((name, batch.clone()));
                continue;
            }
            let ipc = take(&mut bytes, usize::try_from(ipc_len).map_err(|_| corrupt())?)?;
            parts.extend(decode_batches(&ipc)?.into_iter().map(|batch| (name.clone(), batch)));
        }
        Ok(OperatorState::new(parts))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array};

    use super::*;

    fn batch(values: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(values.to_vec())) as ArrayRef)]).expect("batch")
    }

    #[test]
    fn lasting_parts_travel_apart_and_come_back_under_their_names() {
        let big: Vec<i64> = (0..200_000).collect();
        let kept = LastingPart { id: LastingId::fresh(), batch: batch(&big) };
        let small = LastingPart { id: LastingId::fresh(), batch: batch(&[5, 6]) };
        let state =
            OperatorState { parts: vec![("meta".into(), batch(&[1]))], lasting: vec![("frozen:10".into(), kept.clone()), ("frozen:20".into(), small.clone())] };
        let (bytes, lasting) = state.encode(LASTING_MIN_BYTES).expect("encode");
        assert_eq!(lasting, vec![kept.clone()], "a small lasting part is written whole");
        assert!(bytes.len() < 2_000, "the 1.6 MB lasting part is referred to, not written: {} bytes", bytes.len());
        let read = LastingParts::from([(kept.id, kept.batch.clone())]);
        let back = OperatorState::decode(&bytes, &read).expect("decode");
        let mut names: Vec<(String, usize)> = back.parts.iter().map(|(name, batch)| (name.clone(), batch.num_rows())).collect();
        names.sort();
        assert_eq!(names, vec![("frozen:10".to_string(), 200_000), ("frozen:20".to_string(), 2), ("meta".to_string(), 1)]);
        assert_eq!(back.parts.iter().find(|(name, _)| name == "frozen:10").map(|(_, b)| b), Some(&kept.batch));
        let missing = OperatorState::decode(&bytes, &LastingParts::new()).expect_err("a missing part is an error");
        assert!(missing.to_string().contains("frozen:10"), "{missing}");
        assert!(OperatorState::decode(&bytes[..bytes.len() - 3], &read).is_err(), "truncated");
    }

    #[test]
    fn ids_are_new_each_time_and_name_their_objects() {
        let (a, b) = (LastingId::fresh(), LastingId::fresh());
        assert_ne!(a, b);
        assert_eq!(LastingId::from_object_name(&a.object_name()), Some(a));
        assert_eq!(LastingId::from_object_name("chk-0000000001"), None);
    }
}
