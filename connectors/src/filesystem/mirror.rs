//! Reading `s3://bucket/prefix`: the visible objects under the prefix are copied
//! into a local mirror directory, keeping their keys' layout (so Hive partition
//! directories still name partition values), and read from there as local files.
//! Everything a local source does then holds for an archive too: files split
//! between tasks by byte ranges or row groups, read positions in checkpoints, every
//! format.
//!
//! The mirror is kept between runs, under `$EDDY_CACHE/s3-mirror/<bucket>/<key>`
//! (`EDDY_CACHE` defaults to `~/.cache/eddy`): an object whose local copy has its
//! size and is not older than it is not fetched again, so replaying the same day
//! twice reads the network once; a copy whose object is gone from the bucket is
//! deleted. Objects are fetched several at a time, each to a
//! hidden temporary name renamed when complete, so a copy cut short by a crash is
//! never read. Objects whose Hive partition values a query's filter rules out are
//! neither fetched nor read (see [`eddy_engine::PartitionFilter`]).

use std::collections::HashSet;
use std::path::{Path as LocalPath, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::store::Location;
use super::FsOptions;
use crate::error::ConnectorError;

/// Objects fetched at once.
const CONCURRENT_FETCHES: usize = 8;

/// Which objects to copy: given an object's path below the prefix, whether its
/// partition directories can hold rows the query wants.
pub(crate) type Wanted<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// The local directory holding the mirror of `options.path` (an `s3://` path),
/// brought up to date: every visible object under it that is `wanted` is there.
pub(crate) fn mirror(options: &FsOptions, wanted: Wanted) -> Result<PathBuf, ConnectorError> {
    let location = Location::open(options)?;
    let local = mirror_root(&options.path);
    let path = options.path.clone();
    // Sources open from sync code, sometimes inside the engine's runtime: the
    // copy runs on a thread of its own with a runtime of its own.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| ConnectorError::io("start", &local, e))?;
                runtime.block_on(copy_objects(&location, &local, &path, wanted))
            })
            .join()
            .unwrap_or_else(|_| Err(ConnectorError::invalid("path", &path, "copying the objects failed unexpectedly")))
    })?;
    Ok(local)
}

/// Where the objects of `path` (`s3://bucket/prefix`) are mirrored.
fn mirror_root(path: &str) -> PathBuf {
    let cache = std::env::var_os("EDDY_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        home.join(".cache").join("eddy")
    });
    let rest = path.split_once("://").map_or(path, |(_, rest)| rest);
    cache.join("s3-mirror").join(rest.trim_matches('/'))
}

/// Copies what `prune` keeps of the visible objects under the location's root into `local`.
async fn copy_objects(location: &Location, local: &LocalPath, display: &str, wanted: Wanted<'_>) -> Result<(), ConnectorError> {
    let listed: Vec<ObjectMeta> = location
        .store
        .list(Some(&location.root))
        .try_collect()
        .await
        .map_err(|e| ConnectorError::invalid("path", display, format!("cannot list the objects: {e}")))?;
    // Some stores list directories too, as empty objects named like a prefix of
    // other objects: those are not files.
    let directories: HashSet<String> =
        listed.iter().flat_map(|o| o.location.as_ref().match_indices('/').map(|(i, _)| o.location.as_ref()[..i].to_string()).collect::<Vec<_>>()).collect();
    let mut copies = Vec::new();
    let mut listed_here = HashSet::new();
    for object in listed {
        if directories.contains(object.location.as_ref()) {
            continue;
        }
        let relative: Vec<String> =
            object.location.prefix_match(&location.root).map(|parts| parts.map(|p| p.as_ref().to_string()).collect()).unwrap_or_default();
        // Hidden like local files: in-progress parts, `_SUCCESS` markers.
        if relative.is_empty() || relative.iter().any(|part| part.starts_with('.') || part.starts_with('_')) {
            continue;
        }
        let relative = relative.join("/");
        let target = local.join(&relative);
        listed_here.insert(target.clone());
        if wanted(&relative) {
            copies.push((object, target));
        }
    }
    if copies.is_empty() {
        return Err(ConnectorError::NoFiles(display.to_string()));
    }
    // Copies of objects deleted from the bucket since would be read as if they
    // were still there: the mirror follows the bucket.
    remove_unlisted(local, &listed_here)?;
    let store = Arc::clone(&location.store);
    futures::stream::iter(copies.into_iter().map(|(object, target)| fetch(Arc::clone(&store), object, target)))
        .buffer_unordered(CONCURRENT_FETCHES)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Deletes the visible files under `dir` that are not in `listed` (hidden ones are
/// copies in progress, maybe another process's).
fn remove_unlisted(dir: &LocalPath, listed: &HashSet<PathBuf>) -> Result<(), ConnectorError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(['.', '_']) {
            continue;
        }
        if path.is_dir() {
            remove_unlisted(&path, listed)?;
        } else if !listed.contains(&path) {
            std::fs::remove_file(&path).map_err(|e| ConnectorError::io("remove", &path, e))?;
        }
    }
    Ok(())
}

/// Copies one object to `target`, unless a complete copy is there already.
async fn fetch(store: Arc<dyn ObjectStore>, object: ObjectMeta, target: PathBuf) -> Result<(), ConnectorError> {
    if is_current(&target, &object) {
        return Ok(());
    }
    let dir = target.parent().map(LocalPath::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&dir).map_err(|e| ConnectorError::io("create directory", &dir, e))?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = dir.join(format!(".{name}.{}.fetching", std::process::id()));
    let failed = |e: object_store::Error| ConnectorError::invalid("path", object.location.as_ref(), format!("cannot fetch the object: {e}"));
    let bytes = store.get(&object.location).await.map_err(failed)?.bytes().await.map_err(failed)?;
    std::fs::write(&partial, &bytes).map_err(|e| ConnectorError::io("write", &partial, e))?;
    std::fs::rename(&partial, &target).map_err(|e| ConnectorError::io("rename", &partial, e))
}

/// A local copy with the object's size, written after the object was.
fn is_current(target: &LocalPath, object: &ObjectMeta) -> bool {
    let Ok(meta) = std::fs::metadata(target) else { return false };
    let written: SystemTime = object.last_modified.into();
    meta.len() == object.size && meta.modified().is_ok_and(|local| local >= written)
}
