//! Checkpoints on disk: what every task of a pipeline saved at one barrier
//! (source positions and operator state), so a restarted pipeline resumes where
//! the last complete checkpoint left it instead of starting over.
//!
//! Layout under the pipeline's checkpoint directory:
//!
//! ```text
//! chk-0000000042/tasks     every task's snapshot, checksummed
//! chk-0000000042/_COMPLETE written last (by rename): the checkpoint is usable
//! ```
//!
//! A checkpoint without `_COMPLETE` (the process died while writing it) or whose
//! checksum does not match is skipped, and the previous complete one is used.
//! The newest [`RETAINED`] complete checkpoints are kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::connector::SourcePosition;
use crate::error::{EngineError, Result};

/// Complete checkpoints kept on disk; older ones are deleted.
pub const RETAINED: usize = 3;

/// What one task saved at a barrier.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSnapshot {
    /// The checkpoint (barrier id).
    pub checkpoint: u64,
    /// Which task: stable across restarts (`source:{stage}:{partition}`, `stage:{stage}:{instance}`).
    pub task: String,
    /// A source task's position: where its partition resumes.
    pub position: Option<SourcePosition>,
    /// Each operator of the task's chain: its state as bytes, or `None` when stateless.
    pub operators: Vec<Option<Vec<u8>>>,
    /// The sink task's prepared commit ([`crate::Sink::prepare`]).
    pub sink: Option<Vec<u8>>,
}

/// A complete checkpoint read back.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// Its barrier id; the restarted pipeline numbers its checkpoints after it.
    pub id: u64,
    /// Every task's snapshot, by task key.
    pub tasks: HashMap<String, TaskSnapshot>,
}

/// A pipeline's checkpoint directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

/// The mark of a pipeline that ran to its end, in its checkpoint directory.
const FINISHED: &str = "_FINISHED";

fn io(action: &str, path: &Path, e: std::io::Error) -> EngineError {
    EngineError::State(format!("cannot {action} checkpoint '{}': {e}", path.display()))
}

impl CheckpointStore {
    /// The store in `dir` (created on the first checkpoint).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CheckpointStore { dir: dir.into() }
    }

    /// Where the checkpoints go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("chk-{id:010}"))
    }

    /// Writes checkpoint `id` and marks it complete; then deletes the oldest beyond
    /// [`RETAINED`]. Returns its size in bytes.
    pub fn write(&self, id: u64, tasks: &[TaskSnapshot]) -> Result<u64> {
        let dir = self.checkpoint_dir(id);
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let data = encode(tasks);
        let size = data.len() as u64;
        let file = dir.join("tasks");
        write_synced(&file, &data)?;
        let marker = dir.join("_COMPLETE");
        let tmp = dir.join("_COMPLETE.tmp");
        write_synced(&tmp, id.to_string().as_bytes())?;
        std::fs::rename(&tmp, &marker).map_err(|e| io("complete", &marker, e))?;
        self.prune()?;
        Ok(size)
    }

    /// Deletes every checkpoint: the pipeline ran to its end, so there is nothing to resume.
    pub fn clear(&self) -> Result<()> {
        for id in self.ids() {
            let dir = self.checkpoint_dir(id);
            std::fs::remove_dir_all(&dir).map_err(|e| io("delete", &dir, e))?;
        }
        Ok(())
    }

    /// The pipeline ran to its end: its checkpoints go, and a `_FINISHED` mark
    /// stays, so that a script whose other pipelines were interrupted does not run
    /// this one again (and write its rows twice) when it resumes.
    pub fn finish(&self) -> Result<()> {
        self.clear()?;
        std::fs::create_dir_all(&self.dir).map_err(|e| io("create", &self.dir, e))?;
        let mark = self.dir.join(FINISHED);
        write_synced(&mark, b"finished")
    }

    /// Whether the pipeline ran to its end (see [`CheckpointStore::finish`]).
    pub fn is_finished(&self) -> bool {
        self.dir.join(FINISHED).exists()
    }

    /// Forgets that the pipeline finished, so it runs afresh next time.
    pub fn reset(&self) -> Result<()> {
        let mark = self.dir.join(FINISHED);
        match std::fs::remove_file(&mark) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("delete", &mark, e)),
            _ => Ok(()),
        }
    }

    /// Ids of the checkpoints in the directory (complete or not), oldest first.
    fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("chk-")).and_then(|n| n.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    fn prune(&self) -> Result<()> {
        let complete: Vec<u64> = self.ids().into_iter().filter(|id| self.checkpoint_dir(*id).join("_COMPLETE").exists()).collect();
        if complete.len() > RETAINED {
            let keep_from = complete[complete.len() - RETAINED];
            for id in self.ids().into_iter().filter(|id| *id < keep_from) {
                let dir = self.checkpoint_dir(id);
                std::fs::remove_dir_all(&dir).map_err(|e| io("delete", &dir, e))?;
            }
        }
        Ok(())
    }

    /// The newest complete checkpoint that reads back intact, if any; broken ones
    /// are reported and skipped.
    pub fn latest(&self) -> Option<Checkpoint> {
        for id in self.ids().into_iter().rev() {
            let dir = self.checkpoint_dir(id);
            if !dir.join("_COMPLETE").exists() {
                tracing::info!("checkpoint {id} in {} was never completed; skipping it", self.dir.display());
                continue;
            }
            match std::fs::read(dir.join("tasks")).map_err(|e| e.to_string()).and_then(|data| decode(&data)) {
                Ok(tasks) => return Some(Checkpoint { id, tasks: tasks.into_iter().map(|t| (t.task.clone(), t)).collect() }),
                Err(e) => tracing::warn!("checkpoint {id} in {} is corrupt ({e}); using an older one", self.dir.display()),
            }
        }
        None
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).map_err(|e| io("write", path, e))?;
    file.write_all(data).map_err(|e| io("write", path, e))?;
    file.sync_all().map_err(|e| io("sync", path, e))
}

/// FNV-1a: enough to tell a torn or damaged file from a whole one.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn encode(tasks: &[TaskSnapshot]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(tasks.len() as u64).to_le_bytes());
    for t in tasks {
        out.extend_from_slice(&t.checkpoint.to_le_bytes());
        put_bytes(&mut out, t.task.as_bytes());
        match &t.position {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                put_bytes(&mut out, p.partition.as_bytes());
                out.extend_from_slice(&p.offset.to_le_bytes());
            }
        }
        match &t.sink {
            None => out.push(0),
            Some(bytes) => {
                out.push(1);
                put_bytes(&mut out, bytes);
            }
        }
        out.extend_from_slice(&(t.operators.len() as u64).to_le_bytes());
        for state in &t.operators {
            match state {
                None => out.push(0),
                Some(bytes) => {
                    out.push(1);
                    put_bytes(&mut out, bytes);
                }
            }
        }
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        if self.0.len() < n {
            return Err("truncated".to_string());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| "truncated".to_string())?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn flag(&mut self) -> std::result::Result<bool, String> {
        Ok(self.take(1)?[0] == 1)
    }

    fn bytes(&mut self) -> std::result::Result<Vec<u8>, String> {
        let n = usize::try_from(self.u64()?).map_err(|_| "bad length".to_string())?;
        Ok(self.take(n)?.to_vec())
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        String::from_utf8(self.bytes()?).map_err(|_| "bad text".to_string())
    }
}

fn decode(data: &[u8]) -> std::result::Result<Vec<TaskSnapshot>, String> {
    if data.len() < 8 {
        return Err("truncated".to_string());
    }
    let (body, sum) = data.split_at(data.len() - 8);
    if checksum(body).to_le_bytes() != sum {
        return Err("checksum mismatch".to_string());
    }
    let mut r = Reader(body);
    let count = r.u64()?;
    let mut tasks = Vec::new();
    for _ in 0..count {
        let checkpoint = r.u64()?;
        let task = r.string()?;
        let position = if r.flag()? {
            let partition = r.string()?;
            let offset = r.u64()? as i64;
            Some(SourcePosition { partition, offset })
        } else {
            None
        };
        let sink = if r.flag()? { Some(r.bytes()?) } else { None };
        let n = r.u64()?;
        let mut operators = Vec::new();
        for _ in 0..n {
            operators.push(if r.flag()? { Some(r.bytes()?) } else { None });
        }
        tasks.push(TaskSnapshot { checkpoint, task, position, operators, sink });
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64, name: &str) -> TaskSnapshot {
        TaskSnapshot {
            checkpoint: id,
            task: name.to_string(),
            position: Some(SourcePosition { partition: "t/0".to_string(), offset: 42 }),
            operators: vec![None, Some(vec![1, 2, 3])],
            sink: Some(vec![9]),
        }
    }

    #[test]
    fn checkpoints_round_trip_and_broken_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        assert!(store.latest().is_none());
        store.write(1, &[task(1, "a"), task(1, "b")]).unwrap();
        store.write(2, &[task(2, "a")]).unwrap();
        let latest = store.latest().unwrap();
        assert_eq!((latest.id, latest.tasks["a"].clone()), (2, task(2, "a")));
        // A half-written checkpoint 3 (no marker) and a corrupt checkpoint 2: checkpoint 1 is used.
        std::fs::create_dir_all(dir.path().join("chk-0000000003")).unwrap();
        let tasks = dir.path().join("chk-0000000002/tasks");
        let mut data = std::fs::read(&tasks).unwrap();
        data[20] ^= 0xff;
        std::fs::write(&tasks, data).unwrap();
        let latest = store.latest().unwrap();
        assert_eq!(latest.id, 1);
        assert_eq!(latest.tasks.len(), 2);
        // Only the newest RETAINED complete checkpoints stay.
        for id in 4..=8 {
            store.write(id, &[task(id, "a")]).unwrap();
        }
        assert_eq!(store.ids(), vec![6, 7, 8]);
    }
}
