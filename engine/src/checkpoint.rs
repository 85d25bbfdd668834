//! Checkpoints on disk: what every task of a pipeline saved at one barrier
//! (source positions and operator state), so a restarted pipeline resumes where
//! the last complete checkpoint left it instead of starting over.
//!
//! Layout under the pipeline's checkpoint directory:
//!
//! ```text
//! chk-0000000042/tasks.RUN   every task's snapshot, checksummed
//! chk-0000000042/lasting.RUN the ids of the lasting parts the snapshots refer to (absent: none)
//! chk-0000000042/_COMPLETE   written last, only if absent: "42 RUN" names the run whose checkpoint it is
//! lasting/0123456789abcdef    one lasting part (Arrow IPC, checksummed)
//! ```
//!
//! `RUN` names the writing [`CheckpointStore`] (a random name per process and
//! pipeline). Two runs of one pipeline can only meet in a cluster, when a member
//! presumed dead comes back while another runs its pipeline: both restored the
//! same checkpoint and number the next ones alike, but `_COMPLETE` is created
//! only where there is none, so for each id one run's checkpoint wins, and the
//! other is fenced ([`EngineError::CheckpointTaken`]): it commits nothing more.
//! Checkpoints of older versions (`tasks`, `lasting`, a `_COMPLETE` holding the
//! id only) still read back.
//!
//! A lasting part ([`crate::state`]: operator state that never changes once made,
//! such as a window slice the watermark has closed) is stored by the first
//! checkpoint that holds it, before that checkpoint's `tasks`; later checkpoints
//! only list its id. After each checkpoint, the parts no kept checkpoint lists
//! are deleted.
//!
//! A checkpoint without `_COMPLETE` (the process died while writing it) or whose
//! checksum does not match is skipped, and the previous complete one is used.
//! The newest [`RETAINED`] complete checkpoints are kept.
//!
//! A pipeline that runs to its end leaves one object, `_FINISHED`: its completion
//! record (every source partition's final position and the sink's prepared last
//! commit, encoded and checksummed like a checkpoint). It is written before the
//! sink makes its last rows visible and before the checkpoints are deleted, so a
//! process killed anywhere in its last moments leaves either a checkpoint to
//! resume from or the record that the pipeline completed, never neither; a
//! pipeline started again over a store with the record only finishes that last
//! commit (see [`CheckpointStore::completion`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures::stream::{BoxStream, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions,
    PutPayload, PutResult,
};

use crate::connector::SourcePosition;
use crate::error::{EngineError, Result};
use crate::state::{decode_batches, encode_batch, LastingId, LastingPart, LastingParts, LASTING_MIN_BYTES};

/// Complete checkpoints kept on disk; older ones are deleted.
pub const RETAINED: usize = 3;

/// The id of a run's last commit, at the end of a bounded pipeline that keeps
/// checkpoints: after every periodic checkpoint's, so sinks that mark what they
/// wrote with the checkpoint id see the whole run as written once it is.
pub const FINAL_CHECKPOINT: u64 = u64::MAX;

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
    /// The lasting parts `operators` refer to: stored apart, once (empty when read back).
    pub lasting: Vec<LastingPart>,
}

/// How big a checkpoint is, and how much of it it wrote itself (the rest are
/// lasting parts an earlier checkpoint stored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointSize {
    /// Bytes a restore reads: its snapshots and every lasting part it refers to.
    pub total: u64,
    /// Bytes it wrote.
    pub written: u64,
}

/// A complete checkpoint read back.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// Its barrier id; the restarted pipeline numbers its checkpoints after it.
    pub id: u64,
    /// Every task's snapshot, by task key.
    pub tasks: HashMap<String, TaskSnapshot>,
    /// The lasting parts the tasks' operator states refer to.
    pub lasting: LastingParts,
}

/// A pipeline's checkpoint directory: a local directory, or a prefix in an S3
/// bucket (`s3://bucket/prefix`), both through `object_store`.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    /// The location as the user gave it, for messages.
    display: String,
    /// Lasting parts this process has stored under `root` and not yet deleted, with their sizes.
    stored: Arc<std::sync::Mutex<HashMap<LastingId, u64>>>,
    /// Lasting parts smaller than this are written into each checkpoint instead.
    lasting_min_bytes: usize,
    /// This run's name, in the names of the objects it writes (see the module doc).
    run: String,
    /// Whether a prune swept the lasting parts since this store was made. After the
    /// first sweep (a crashed run may have left parts no checkpoint lists), a part
    /// can only lose its last reference when a checkpoint that listed parts goes,
    /// so other prunes skip the sweep and its LISTs.
    swept: Arc<std::sync::atomic::AtomicBool>,
    /// This run wrote (or is writing) the completion record: the checkpoint it may
    /// still be saving then is its own, not fenced by the record.
    completed_here: Arc<std::sync::atomic::AtomicBool>,
}

/// A name for the run of a new [`CheckpointStore`], never the same twice: a
/// lasting part's id is unique across processes and within one.
fn run_name() -> String {
    format!("{:016x}", LastingId::fresh().0)
}

/// Whether `name`, an object in a checkpoint, is a run's list of lasting parts
/// (`lasting.RUN`, or `lasting` from versions before runs were named).
fn is_lasting_list(name: &str) -> bool {
    name.strip_prefix(LASTING).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The objects of one complete checkpoint, as its `_COMPLETE` names them.
struct CheckpointObjects {
    tasks: String,
    lasting: String,
}

impl CheckpointObjects {
    /// The objects `run` writes.
    fn of_run(run: &str) -> Self {
        CheckpointObjects { tasks: format!("tasks.{run}"), lasting: format!("{LASTING}.{run}") }
    }

    /// The objects a `_COMPLETE` holding `mark` names: "ID RUN", or "ID" alone
    /// from versions before runs were named.
    fn of_mark(mark: &[u8]) -> Self {
        match std::str::from_utf8(mark).ok().and_then(|m| m.split_once(' ')) {
            Some((_, run)) => Self::of_run(run.trim()),
            None => CheckpointObjects { tasks: "tasks".into(), lasting: LASTING.into() },
        }
    }
}

/// The completion record of a pipeline that ran to its end, in its checkpoint directory.
const FINISHED: &str = "_FINISHED";

/// Where lasting parts are stored, and a checkpoint's list of those it refers to.
const LASTING: &str = "lasting";

fn failed(action: &str, path: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::State(format!("cannot {action} checkpoint '{path}': {e}"))
}

impl CheckpointStore {
    /// The store in local directory `dir` (created on the first checkpoint).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir: PathBuf = dir.into();
        let display = dir.display().to_string();
        Self::at(Arc::new(LocalDirectory { dir }), ObjectPath::default(), display, LASTING_MIN_BYTES)
    }

    /// A store of a new run at `root` in `store`: nothing stored or swept yet.
    fn at(store: Arc<dyn ObjectStore>, root: ObjectPath, display: String, lasting_min_bytes: usize) -> Self {
        CheckpointStore {
            store,
            root,
            display,
            stored: Arc::default(),
            lasting_min_bytes,
            run: run_name(),
            swept: Arc::default(),
            completed_here: Arc::default(),
        }
    }

    /// The store at `location`: `s3://bucket/prefix` (credentials, region and
    /// endpoint from the usual `AWS_*` variables, e.g. `AWS_ENDPOINT` and
    /// `AWS_ALLOW_HTTP=true` for an S3-compatible server) or a local directory.
    pub fn open(location: &str) -> Result<Self> {
        let Some(rest) = location.strip_prefix("s3://") else { return Ok(Self::new(location)) };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(EngineError::State(format!("checkpoint location '{location}' names no bucket; expected s3://bucket/prefix")));
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| EngineError::State(format!("cannot use checkpoint location '{location}': {e}")))?;
        Ok(Self::at(Arc::new(store), ObjectPath::from(prefix), location.to_string(), LASTING_MIN_BYTES))
    }

    /// Where the checkpoints go, as given.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The store of a pipeline named `name` under this one.
    pub fn child(&self, name: &str) -> Self {
        Self::at(Arc::clone(&self.store), self.root.clone().join(name), format!("{}/{name}", self.display.trim_end_matches('/')), self.lasting_min_bytes)
    }

    /// Stores lasting parts of at least `bytes` as objects of their own (see
    /// [`crate::state::LASTING_MIN_BYTES`]); smaller ones go into each checkpoint.
    pub fn with_lasting_min_bytes(mut self, bytes: usize) -> Self {
        self.lasting_min_bytes = bytes;
        self
    }

    /// See [`CheckpointStore::with_lasting_min_bytes`].
    pub fn lasting_min_bytes(&self) -> usize {
        self.lasting_min_bytes
    }

    fn object(&self, parts: &[&str]) -> ObjectPath {
        parts.iter().fold(self.root.clone(), |path, part| path.join(*part))
    }

    fn checkpoint_name(id: u64) -> String {
        format!("chk-{id:010}")
    }

    async fn put(&self, parts: &[&str], data: Vec<u8>) -> Result<()> {
        let path = self.object(parts);
        self.store.put(&path, data.into()).await.map_err(|e| failed("write", path.as_ref(), e))?;
        Ok(())
    }

    /// The object at `parts`, or `None` when there is none.
    async fn read_if_present(&self, parts: &[&str]) -> Result<Option<impl std::ops::Deref<Target = [u8]>>> {
        let path = self.object(parts);
        match self.store.get(&path).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(|e| failed("read", path.as_ref(), e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("read", path.as_ref(), e)),
        }
    }

    async fn exists(&self, parts: &[&str]) -> Result<bool> {
        let path = self.object(parts);
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(failed("read", path.as_ref(), e)),
        }
    }

    /// Writes checkpoint `id` and marks it complete; then deletes the oldest beyond
    /// [`RETAINED`] and the lasting parts no kept checkpoint refers to.
    pub async fn write(&self, id: u64, tasks: &[TaskSnapshot]) -> Result<CheckpointSize> {
        let name = Self::checkpoint_name(id);
        let mut size = CheckpointSize::default();
        // Each object appears whole (a rename locally, one PUT on S3); the parts
        // come before what refers to them, and the mark last.
        let mut referenced = Vec::new();
        for part in tasks.iter().flat_map(|t| &t.lasting) {
            referenced.push(part.id);
            if let Some(bytes) = self.stored_parts().get(&part.id) {
                size.total += bytes;
                continue;
            }
            let data = seal(encode_batch(&part.batch)?, word_checksum);
            let bytes = data.len() as u64;
            self.put(&[LASTING, &part.id.object_name()], data).await?;
            self.stored_parts().insert(part.id, bytes);
            size.total += bytes;
            size.written += bytes;
        }
        let objects = CheckpointObjects::of_run(&self.run);
        if !referenced.is_empty() {
            let list: Vec<u8> = referenced.iter().flat_map(|id| id.0.to_le_bytes()).collect();
            self.put(&[&name, &objects.lasting], seal(list, word_checksum)).await?;
        }
        let data = encode(tasks);
        size.total += data.len() as u64;
        size.written += data.len() as u64;
        self.put(&[&name, &objects.tasks], data).await?;
        self.create(&[&name, "_COMPLETE"], format!("{id} {}", self.run).into_bytes(), id).await?;
        // Another run of the pipeline may have run it to its end and deleted the
        // checkpoints whose marks would have fenced this one: its completion
        // record fences it instead, before this run's sink commits anything.
        if !self.completed_here.load(std::sync::atomic::Ordering::SeqCst) && self.is_finished().await? {
            return Err(EngineError::CheckpointTaken { id, location: self.display.clone() });
        }
        self.prune().await?;
        Ok(size)
    }

    fn stored_parts(&self) -> std::sync::MutexGuard<'_, HashMap<LastingId, u64>> {
        self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Deletes every checkpoint: the pipeline ran to its end, so there is nothing to resume.
    pub async fn clear(&self) -> Result<()> {
        for id in self.ids().await? {
            self.delete_checkpoint(id).await?;
        }
        self.delete_lasting_parts(&HashSet::new()).await
    }

    /// The ids of the lasting parts that the list `list` of checkpoint `id` holds (none without a list).
    async fn lasting_list(&self, id: u64, list: &str) -> Result<Vec<LastingId>> {
        let name = Self::checkpoint_name(id);
        let Some(data) = self.read_if_present(&[&name, list]).await? else { return Ok(Vec::new()) };
        let list = unseal(&data, word_checksum).map_err(|e| failed("read", self.object(&[&name, list]).as_ref(), e))?;
        Ok(list.chunks_exact(8).map(|id| LastingId(u64::from_le_bytes(id.try_into().unwrap_or_default()))).collect())
    }

    /// The ids of the lasting parts any run's list in checkpoint `id` holds,
    /// complete or not: a part a run is writing a checkpoint with stays.
    async fn lasting_lists(&self, id: u64) -> Result<Vec<LastingId>> {
        let prefix = self.object(&[&Self::checkpoint_name(id)]);
        let objects: Vec<ObjectMeta> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(objects) => objects,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(failed("list", prefix.as_ref(), e)),
        };
        let mut ids = Vec::new();
        for list in objects.iter().filter_map(|o| o.location.filename()).filter(|name| is_lasting_list(name)) {
            ids.extend(self.lasting_list(id, list).await?);
        }
        Ok(ids)
    }

    /// Deletes the stored lasting parts not in `keep`.
    async fn delete_lasting_parts(&self, keep: &HashSet<LastingId>) -> Result<()> {
        let prefix = self.object(&[LASTING]);
        let objects: Vec<ObjectMeta> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(objects) => objects,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(failed("list", prefix.as_ref(), e)),
        };
        for object in objects {
            let Some(id) = object.location.filename().and_then(LastingId::from_object_name) else { continue };
            if keep.contains(&id) {
                continue;
            }
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(failed("delete", object.location.as_ref(), e)),
            }
        }
        self.stored_parts().retain(|id, _| keep.contains(id));
        Ok(())
    }

    /// The lasting parts checkpoint `id` refers to in its list `list`, read back.
    async fn read_lasting_parts(&self, id: u64, list: &str) -> std::result::Result<LastingParts, String> {
        let mut parts = LastingParts::new();
        for part in self.lasting_list(id, list).await.map_err(|e| e.to_string())? {
            let data = self
                .read_if_present(&[LASTING, &part.object_name()])
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("its state part {} is missing", part.object_name()))?;
            let ipc = unseal(&data, word_checksum).map_err(|e| format!("its state part {}: {e}", part.object_name()))?;
            let batch = decode_batches(ipc).map_err(|e| e.to_string())?.into_iter().next().ok_or("an empty state part")?;
            parts.insert(part, batch);
        }
        Ok(parts)
    }

    /// Records that the pipeline ran to its end: `tasks` are the sources' final
    /// positions and the sink's prepared last commit ([`FINAL_CHECKPOINT`]). Written
    /// whole or not at all, before the sink commits and before [`CheckpointStore::clear`].
    ///
    /// `since` is the newest checkpoint this run saved or resumed from. Another run
    /// of the pipeline (a cluster member presumed dead, come back) that saved a
    /// newer checkpoint, or completed first, fences this one: it gets
    /// [`EngineError::CheckpointTaken`] and its sink commits nothing.
    pub async fn complete(&self, tasks: &[TaskSnapshot], since: u64) -> Result<()> {
        for id in self.ids().await?.into_iter().filter(|id| *id > since) {
            // This run's own checkpoint, saved while its sources ended, is no reason.
            let mark = self.read_if_present(&[&Self::checkpoint_name(id), "_COMPLETE"]).await?;
            if mark.is_some_and(|m| CheckpointObjects::of_mark(&m).tasks != CheckpointObjects::of_run(&self.run).tasks) {
                return Err(EngineError::CheckpointTaken { id, location: self.display.clone() });
            }
        }
        self.completed_here.store(true, std::sync::atomic::Ordering::SeqCst);
        self.create(&[FINISHED], encode(tasks), FINAL_CHECKPOINT).await
    }

    /// Writes the mark at `parts` only where none exists: one run's mark wins, and
    /// another run's write of checkpoint `id` gets [`EngineError::CheckpointTaken`].
    async fn create(&self, parts: &[&str], data: Vec<u8>, id: u64) -> Result<()> {
        let mark = self.object(parts);
        match self.store.put_opts(&mark, data.into(), PutMode::Create.into()).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(EngineError::CheckpointTaken { id, location: self.display.clone() }),
            Err(e) => Err(failed("write", mark.as_ref(), e)),
        }
    }

    /// The completion record of a pipeline that ran to its end (see
    /// [`CheckpointStore::complete`]), as a checkpoint with id [`FINAL_CHECKPOINT`];
    /// it wins over any checkpoint left beside it (the process died before deleting them).
    /// A record that does not read back (an older version's mark) still means
    /// completed, with nothing left to commit.
    pub async fn completion(&self) -> Result<Option<Checkpoint>> {
        let Some(data) = self.read_if_present(&[FINISHED]).await? else { return Ok(None) };
        let tasks = decode(&data).unwrap_or_else(|e| {
            tracing::warn!("the completion record in {} does not read back ({e}); taking the pipeline as completed", self.display);
            Vec::new()
        });
        Ok(Some(Checkpoint { id: FINAL_CHECKPOINT, tasks: tasks.into_iter().map(|t| (t.task.clone(), t)).collect(), lasting: LastingParts::new() }))
    }

    /// Whether the pipeline ran to its end (see [`CheckpointStore::complete`]).
    pub async fn is_finished(&self) -> Result<bool> {
        self.exists(&[FINISHED]).await
    }

    /// Deletes everything the pipeline left: its checkpoints and its finished mark
    /// (the pipeline itself is dropped).
    pub async fn remove(&self) -> Result<()> {
        self.clear().await?;
        self.reset().await
    }

    /// Forgets that the pipeline finished, so it runs afresh next time (a server's
    /// RESTART PIPELINE of a finished pipeline).
    pub async fn reset(&self) -> Result<()> {
        let path = self.object(&[FINISHED]);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed("delete", path.as_ref(), e)),
        }
    }

    /// Ids of the checkpoints in the store (complete or not), oldest first.
    async fn ids(&self) -> Result<Vec<u64>> {
        let listed = match self.store.list_with_delimiter(Some(&self.root)).await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(failed("list", &self.display, e)),
        };
        let mut ids: Vec<u64> =
            listed.common_prefixes.iter().filter_map(|p| p.filename().and_then(|n| n.strip_prefix("chk-")).and_then(|n| n.parse().ok())).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Deletes checkpoint `id`; true when it listed lasting parts.
    async fn delete_checkpoint(&self, id: u64) -> Result<bool> {
        let prefix = self.object(&[&Self::checkpoint_name(id)]);
        let objects: Vec<ObjectMeta> = self.store.list(Some(&prefix)).try_collect().await.map_err(|e| failed("list", prefix.as_ref(), e))?;
        let listed_parts = objects.iter().filter_map(|o| o.location.filename()).any(is_lasting_list);
        for object in objects {
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(failed("delete", object.location.as_ref(), e)),
            }
        }
        Ok(listed_parts)
    }

    async fn prune(&self) -> Result<()> {
        let ids = self.ids().await?;
        let mut complete = Vec::new();
        for &id in &ids {
            if self.exists(&[&Self::checkpoint_name(id), "_COMPLETE"]).await? {
                complete.push(id);
            }
        }
        let mut kept = ids;
        let mut dropped_lists = false;
        if complete.len() > RETAINED {
            let keep_from = complete[complete.len() - RETAINED];
            // Older ones, complete or abandoned halfway, go.
            for &id in kept.iter().filter(|id| **id < keep_from) {
                dropped_lists |= self.delete_checkpoint(id).await?;
            }
            kept.retain(|id| *id >= keep_from);
        }
        if self.swept.swap(true, std::sync::atomic::Ordering::Relaxed) && !dropped_lists {
            return Ok(());
        }
        let mut referenced = HashSet::new();
        for id in kept {
            referenced.extend(self.lasting_lists(id).await?);
        }
        self.delete_lasting_parts(&referenced).await
    }

    /// The newest complete checkpoint that reads back intact, if any; broken ones
    /// are reported and skipped.
    pub async fn latest(&self) -> Result<Option<Checkpoint>> {
        for id in self.ids().await?.into_iter().rev() {
            let name = Self::checkpoint_name(id);
            let Some(mark) = self.read_if_present(&[&name, "_COMPLETE"]).await? else {
                tracing::info!("checkpoint {id} in {} was never completed; skipping it", self.display);
                continue;
            };
            let objects = CheckpointObjects::of_mark(&mark);
            let path = self.object(&[&name, &objects.tasks]);
            let data = match self.store.get(&path).await {
                Ok(got) => got.bytes().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let read = match data.and_then(|data| decode(&data)) {
                Ok(tasks) => self.read_lasting_parts(id, &objects.lasting).await.map(|lasting| (tasks, lasting)),
                Err(e) => Err(e),
            };
            match read {
                Ok((tasks, lasting)) => return Ok(Some(Checkpoint { id, tasks: tasks.into_iter().map(|t| (t.task.clone(), t)).collect(), lasting })),
                Err(e) => {
                    tracing::warn!("checkpoint {id} in {} is corrupt ({e}); using an older one", self.display);
                    // The run resuming from an older one saves this id again, which a
                    // `_COMPLETE` left here would refuse (see the module doc).
                    if let Err(e) = self.delete_checkpoint(id).await {
                        tracing::warn!("cannot delete the corrupt checkpoint {id}: {e}");
                    }
                }
            }
        }
        Ok(None)
    }
}

/// A local directory as an object store, so local checkpoints need no setup: the
/// directory is created on the first write, and each object is written to a
/// temporary file, synced and renamed into place (whole or absent after a crash or
/// a power cut). Reads, lists and deletes are `object_store`'s `LocalFileSystem`.
#[derive(Debug)]
struct LocalDirectory {
    dir: PathBuf,
}

fn local_error(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic { store: "local", source: Box::new(e) }
}

impl LocalDirectory {
    fn store(&self) -> object_store::Result<LocalFileSystem> {
        std::fs::create_dir_all(&self.dir).map_err(local_error)?;
        // Deleting a checkpoint's last file removes its directory too.
        Ok(LocalFileSystem::new_with_prefix(&self.dir)?.with_automatic_cleanup(true))
    }
}

impl std::fmt::Display for LocalDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dir.display())
    }
}

#[async_trait::async_trait]
impl ObjectStore for LocalDirectory {
    async fn put_opts(&self, location: &ObjectPath, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        let file = self.dir.join(location.as_ref());
        let create_only = matches!(opts.mode, PutMode::Create);
        let path = location.to_string();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = file.with_extension("tmp");
            {
                use std::io::Write as _;
                let mut out = std::fs::File::create(&tmp)?;
                for chunk in payload.iter() {
                    out.write_all(chunk)?;
                }
                out.sync_all()?;
            }
            if create_only {
                // A hard link fails where the name exists: created whole, or not at all.
                let linked = std::fs::hard_link(&tmp, &file);
                std::fs::remove_file(&tmp)?;
                return linked;
            }
            std::fs::rename(&tmp, &file)
        })
        .await
        .map_err(local_error)?;
        match written {
            Ok(()) => Ok(PutResult { e_tag: None, version: None }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(object_store::Error::AlreadyExists { path, source: Box::new(e) }),
            Err(e) => Err(local_error(e)),
        }
    }

    async fn put_multipart_opts(&self, location: &ObjectPath, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.store()?.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &ObjectPath, options: GetOptions) -> object_store::Result<GetResult> {
        self.store()?.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, object_store::Result<ObjectPath>>) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        match self.store() {
            Ok(store) => store.delete_stream(locations),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.store() {
            Ok(store) => store.list(prefix),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    fn list_with_offset(&self, prefix: Option<&ObjectPath>, offset: &ObjectPath) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.store() {
            Ok(store) => store.list_with_offset(prefix, offset),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&ObjectPath>) -> object_store::Result<ListResult> {
        self.store()?.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &ObjectPath, to: &ObjectPath, options: CopyOptions) -> object_store::Result<()> {
        self.store()?.copy_opts(from, to, options).await
    }
}

/// FNV-1a: enough to tell a torn or damaged file from a whole one.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// FNV-1a over 8-byte words (the tail byte by byte): as [`checksum`], about eight
/// times faster, for lasting parts, which can be large.
fn word_checksum(data: &[u8]) -> u64 {
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    let step = |h: u64, v: u64| (h ^ v).wrapping_mul(0x0100_0000_01b3);
    let h = words.fold(0xcbf2_9ce4_8422_2325u64, |h, w| step(h, u64::from_le_bytes(w.try_into().unwrap_or_default())));
    tail.iter().fold(h, |h, b| step(h, u64::from(*b)))
}

/// `data` followed by its checksum by `sum`.
fn seal(mut data: Vec<u8>, sum: fn(&[u8]) -> u64) -> Vec<u8> {
    let sum = sum(&data);
    data.extend_from_slice(&sum.to_le_bytes());
    data
}

/// What [`seal`] sealed with `sum`, if it is whole.
fn unseal(data: &[u8], sum: fn(&[u8]) -> u64) -> std::result::Result<&[u8], String> {
    if data.len() < 8 {
        return Err("truncated".to_string());
    }
    let (body, expected) = data.split_at(data.len() - 8);
    if sum(body).to_le_bytes() != expected {
        return Err("checksum mismatch".to_string());
    }
    Ok(body)
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
    seal(out, checksum)
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
    let mut r = Reader(unseal(data, checksum)?);
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
        tasks.push(TaskSnapshot { checkpoint, task, position, operators, sink, lasting: Vec::new() });
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
            lasting: Vec::new(),
        }
    }

    fn part(id: u64, rows: i64) -> LastingPart {
        let values = datafusion::arrow::array::Int64Array::from((0..rows).collect::<Vec<_>>());
        let batch = datafusion::arrow::record_batch::RecordBatch::try_from_iter([("v", Arc::new(values) as datafusion::arrow::array::ArrayRef)]).unwrap();
        LastingPart { id: LastingId(id), batch }
    }

    /// The lasting parts stored, by id.
    async fn stored_parts(store: &CheckpointStore) -> Vec<u64> {
        let objects: Vec<ObjectMeta> = store.store.list(Some(&store.object(&[LASTING]))).try_collect().await.unwrap_or_default();
        let mut ids: Vec<u64> = objects.iter().filter_map(|o| o.location.filename().and_then(LastingId::from_object_name)).map(|id| id.0).collect();
        ids.sort_unstable();
        ids
    }

    /// Lasting parts: stored by the first checkpoint that holds them, only listed
    /// by later ones, read back with the checkpoint, deleted once no kept
    /// checkpoint lists them, and a checkpoint whose part is damaged is skipped.
    pub(crate) async fn exercise_lasting(store: &CheckpointStore, corrupt: impl Fn(&str)) {
        let with = |id: u64, parts: &[&LastingPart]| TaskSnapshot { lasting: parts.iter().map(|p| (*p).clone()).collect(), ..task(id, "a") };
        let (p1, p2, p3) = (part(1, 5_000), part(2, 3), part(3, 4));
        let first = store.write(10, &[with(10, &[&p1])]).await.unwrap();
        let again = store.write(11, &[with(11, &[&p1, &p2])]).await.unwrap();
        assert!(first.written > 40_000 && again.written < 2_000, "p1 is written once: {first:?} then {again:?}");
        assert!(again.total > first.total, "but counts in each checkpoint's size: {first:?} then {again:?}");
        assert_eq!(stored_parts(store).await, vec![1, 2]);
        let latest = store.latest().await.unwrap().unwrap();
        assert_eq!(latest.id, 11);
        assert_eq!(latest.lasting.len(), 2);
        assert_eq!((&latest.lasting[&p1.id], &latest.lasting[&p2.id]), (&p1.batch, &p2.batch));
        // p1 goes once the last checkpoint that lists it is no longer kept.
        for id in 12..=13 {
            store.write(id, &[with(id, &[&p2])]).await.unwrap();
        }
        assert_eq!(stored_parts(store).await, vec![1, 2], "checkpoint 11 still lists p1");
        store.write(14, &[with(14, &[&p2])]).await.unwrap();
        assert_eq!(stored_parts(store).await, vec![2]);
        // A damaged part makes its checkpoint unusable; the one before is used.
        store.write(15, &[with(15, &[&p3])]).await.unwrap();
        corrupt(&format!("{LASTING}/{}", p3.id.object_name()));
        let latest = store.latest().await.unwrap().unwrap();
        assert_eq!((latest.id, latest.lasting.keys().copied().collect::<Vec<_>>()), (14, vec![p2.id]));
        store.clear().await.unwrap();
        assert!(stored_parts(store).await.is_empty(), "clearing deletes the parts too");
    }

    /// Round trip, a half-written and a corrupt checkpoint skipped, retention and
    /// the finished mark, on any store (a local directory here; S3 in the tests
    /// that start an S3-compatible server).
    pub(crate) async fn exercise(store: &CheckpointStore, corrupt: impl Fn(&str)) {
        assert!(store.latest().await.unwrap().is_none());
        store.write(1, &[task(1, "a"), task(1, "b")]).await.unwrap();
        store.write(2, &[task(2, "a")]).await.unwrap();
        let latest = store.latest().await.unwrap().unwrap();
        assert_eq!((latest.id, latest.tasks["a"].clone()), (2, task(2, "a")));
        // A half-written checkpoint 3 (no marker) and a corrupt checkpoint 2: checkpoint 1 is used.
        store.put(&["chk-0000000003", "tasks"], encode(&[task(3, "a")])).await.unwrap();
        corrupt(&format!("chk-0000000002/tasks.{}", store.run));
        let latest = store.latest().await.unwrap().unwrap();
        assert_eq!(latest.id, 1);
        assert_eq!(latest.tasks.len(), 2);
        // The run that resumes from checkpoint 1 saves checkpoint 2 again.
        store.write(2, &[task(2, "b")]).await.unwrap();
        assert_eq!(store.latest().await.unwrap().unwrap().tasks["b"], task(2, "b"));
        // Only the newest RETAINED complete checkpoints stay.
        for id in 4..=8 {
            store.write(id, &[task(id, "a")]).await.unwrap();
        }
        assert_eq!(store.ids().await.unwrap(), vec![6, 7, 8]);
        assert!(!store.is_finished().await.unwrap());
        assert!(store.completion().await.unwrap().is_none());
        let last =
            TaskSnapshot { checkpoint: FINAL_CHECKPOINT, task: "stage:1:0".into(), position: None, operators: vec![], sink: Some(vec![7, 7]), lasting: vec![] };
        let newer = CheckpointStore { run: run_name(), stored: Arc::default(), completed_here: Arc::default(), ..store.clone() };
        let ahead = newer.complete(&[task(FINAL_CHECKPOINT, "z")], 7).await.unwrap_err();
        assert!(matches!(ahead, EngineError::CheckpointTaken { id: 8, .. }), "a run behind checkpoint 8 does not complete: {ahead}");
        store.complete(&[task(FINAL_CHECKPOINT, "source:0:t/0"), last.clone()], 8).await.unwrap();
        let second = newer.complete(&[task(FINAL_CHECKPOINT, "z")], 8).await.unwrap_err();
        assert!(matches!(second, EngineError::CheckpointTaken { .. }), "only one run completes: {second}");
        assert!(store.is_finished().await.unwrap());
        let completion = store.completion().await.unwrap().expect("the completion record");
        assert_eq!(completion.id, FINAL_CHECKPOINT);
        assert_eq!(completion.tasks["stage:1:0"], last, "the sink's last commit is kept");
        assert_eq!(completion.tasks["source:0:t/0"].position, Some(SourcePosition { partition: "t/0".to_string(), offset: 42 }), "with the final positions");
        store.clear().await.unwrap();
        assert!(store.latest().await.unwrap().is_none(), "a finished pipeline keeps no checkpoint");
        assert!(store.is_finished().await.unwrap(), "but keeps its completion record");
        // A mark without a record (an older version's) still means completed.
        store.put(&[FINISHED], b"finished".to_vec()).await.unwrap();
        assert!(store.completion().await.unwrap().is_some_and(|c| c.tasks.is_empty()));
        store.reset().await.unwrap();
        assert!(!store.is_finished().await.unwrap() && store.completion().await.unwrap().is_none());
        // A second run of the pipeline that restored the same checkpoint (a cluster
        // member presumed dead, come back) is fenced where both save one id.
        store.write(9, &[task(9, "a")]).await.unwrap();
        let zombie = CheckpointStore { run: run_name(), stored: Arc::default(), completed_here: Arc::default(), ..store.clone() };
        let fenced = zombie.write(9, &[task(9, "z")]).await.unwrap_err();
        assert!(matches!(fenced, EngineError::CheckpointTaken { id: 9, .. }), "{fenced}");
        let latest = store.latest().await.unwrap().unwrap();
        assert_eq!((latest.id, latest.tasks.keys().collect::<Vec<_>>()), (9, vec![&"a".to_string()]), "the first run's checkpoint stands");
        // The first run ran to its end and deleted its checkpoints: the second, come
        // back later, saving the id after the one it restored, is fenced by the record.
        store.complete(&[task(FINAL_CHECKPOINT, "a")], 9).await.unwrap();
        store.clear().await.unwrap();
        let fenced = zombie.write(10, &[task(10, "z")]).await.unwrap_err();
        assert!(matches!(fenced, EngineError::CheckpointTaken { id: 10, .. }), "{fenced}");
        store.reset().await.unwrap();
        // Dropping the pipeline removes its checkpoints and its mark alike.
        store.put(&[FINISHED], b"finished".to_vec()).await.unwrap();
        store.remove().await.unwrap();
        assert!(store.latest().await.unwrap().is_none() && !store.is_finished().await.unwrap());
    }

    #[tokio::test]
    async fn lasting_parts_are_swept_only_when_a_reference_can_have_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        store.write(1, &[task(1, "a")]).await.unwrap();
        // A part no checkpoint lists, as a run that died while saving one leaves.
        let stray = LastingId(77).object_name();
        store.put(&[LASTING, &stray], b"left behind".to_vec()).await.unwrap();
        for id in 2..=6 {
            store.write(id, &[task(id, "a")]).await.unwrap();
        }
        assert_eq!(stored_parts(&store).await, vec![77], "checkpoints without parts went: nothing to sweep, no LISTs");
        // A checkpoint listing a part goes: the sweep runs, and takes the stray too.
        let with = |id: u64| TaskSnapshot { lasting: vec![part(5, 3)], ..task(id, "a") };
        store.write(7, &[with(7)]).await.unwrap();
        for id in 8..=10 {
            store.write(id, &[task(id, "a")]).await.unwrap();
        }
        assert!(stored_parts(&store).await.is_empty(), "swept once checkpoint 7 went");
        // A store made afresh (a restarted run) sweeps at its first checkpoint.
        store.put(&[LASTING, &stray], b"left behind".to_vec()).await.unwrap();
        CheckpointStore::new(dir.path()).write(11, &[task(11, "a")]).await.unwrap();
        assert!(stored_parts(&store).await.is_empty());
    }

    #[tokio::test]
    async fn checkpoints_round_trip_and_broken_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path().join("pipeline"));
        let root = dir.path().join("pipeline");
        let corrupt = |object: &str| {
            let file = root.join(object);
            let mut data = std::fs::read(&file).unwrap();
            data[20] ^= 0xff;
            std::fs::write(&file, data).unwrap();
        };
        exercise(&store, corrupt).await;
        assert!(!root.join("chk-0000000009").exists(), "checkpoints are deleted from disk");
        exercise_lasting(&store, corrupt).await;
    }
}
