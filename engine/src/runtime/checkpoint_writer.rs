//! The checkpoint writer: it collects every task's snapshot of a checkpoint and
//! saves the checkpoint once all are in, then tells the sink (the second phase of
//! its commit) and the metrics.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::checkpoint::{CheckpointStore, TaskSnapshot};
use crate::metrics::PipelineMetrics;

/// Collects every task's snapshot of a checkpoint and writes the checkpoint once all
/// `tasks` are in; each saved checkpoint's id goes to `completed`. Once another run
/// of the pipeline took a checkpoint id (see [`crate::checkpoint`]), no later one is
/// saved either: this run's sinks commit nothing more.
pub(super) fn spawn_checkpoint_writer(
    store: CheckpointStore,
    tasks: usize,
    mut rx: mpsc::UnboundedReceiver<TaskSnapshot>,
    completed: watch::Sender<u64>,
    metrics: Arc<PipelineMetrics>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Snapshots received per checkpoint, with when the first one came.
        let mut pending: BTreeMap<u64, (Instant, Vec<TaskSnapshot>)> = Default::default();
        while let Some(snapshot) = rx.recv().await {
            if metrics.fenced.load(Ordering::Relaxed) {
                continue;
            }
            let id = snapshot.checkpoint;
            let (_, received) = pending.entry(id).or_insert_with(|| (Instant::now(), Vec::new()));
            received.push(snapshot);
            if received.len() < tasks {
                continue;
            }
            let Some((started, all)) = pending.remove(&id) else { continue };
            // Older checkpoints still missing a task can no longer complete.
            pending.retain(|other, _| *other > id);
            match store.write(id, &all).await {
                Ok(size) => {
                    tracing::debug!("checkpoint {id} complete in {:?}, {} bytes ({} written)", started.elapsed(), size.total, size.written);
                    crate::failpoint::reach("checkpoint-saved");
                    // Second phase: the sinks make what they prepared for it visible.
                    // Told before the metrics, so whoever sees the new id (a savepoint
                    // that then stops the pipeline) finds the sinks already told.
                    let _ = completed.send(id);
                    metrics.checkpoint_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    metrics.checkpoint_bytes.store(size.total, Ordering::Relaxed);
                    metrics.checkpoint_written_bytes.store(size.written, Ordering::Relaxed);
                    metrics.checkpoint_at_ms.store(crate::metrics::now_ms(), Ordering::Relaxed);
                    metrics.checkpoint_id.store(id, Ordering::Relaxed);
                    metrics.checkpoints_completed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e @ crate::error::EngineError::CheckpointTaken { .. }) => {
                    metrics.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
                    metrics.fenced.store(true, Ordering::Relaxed);
                    tracing::error!("{e}");
                }
                Err(e) => {
                    metrics.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("checkpoint {id} could not be saved: {e}");
                }
            }
        }
    })
}
