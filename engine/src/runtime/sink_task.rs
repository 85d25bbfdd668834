//! The sink stage's end of the pipeline: writes, and the sink's two-phase commit
//! tied to checkpoints.
//!
//! Without checkpoints, every barrier (and the end of the stream) commits the sink.
//! With checkpoints, a barrier only prepares a commit ([`Sink::prepare`]); the
//! prepared commit rides in the sink task's snapshot, and once the checkpoint
//! writer has saved the checkpoint the sink makes it visible
//! ([`Sink::commit_checkpoint`]). After a restart, the sink first finishes the
//! commit prepared at the restored checkpoint ([`Sink::recover`]). The last commit
//! of a run is two-phase too, around the completion record ([`SinkOutput::commit_last`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use crate::checkpoint::{CheckpointStore, TaskSnapshot, FINAL_CHECKPOINT};
use crate::connector::{BoxError, Sink};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::metrics::{PipelineMetrics, SinkMetrics};

/// The sink stage's output: the sink itself.
pub(super) struct SinkOutput {
    pub(super) table: String,
    pub(super) sink: Box<dyn Sink>,
    pub(super) metrics: Arc<PipelineMetrics>,
    /// The sink's own counters: writes, commits, errors.
    pub(super) counters: Arc<SinkMetrics>,
    /// How barriers and the end of the stream commit the sink.
    pub(super) commits: CommitMode,
    /// What the last `prepare` returned, for the sink task's snapshot.
    pub(super) prepared: Option<Vec<u8>>,
    /// Turns true when the pipeline is stopped from outside.
    pub(super) stop: watch::Receiver<bool>,
}

/// How a sink's writes become visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommitMode {
    /// No checkpoints are kept: every barrier and the end of the stream commit at once.
    AtEachBarrier,
    /// Checkpoints are kept: a barrier prepares a commit, made visible once its checkpoint is saved.
    TwoPhase,
}

/// What the sink task needs for two-phase commits.
pub(super) struct SinkCommits {
    /// The newest saved checkpoint, from the checkpoint writer.
    pub(super) completed: Option<watch::Receiver<u64>>,
    /// The restored checkpoint's prepared commit, finished before anything else.
    pub(super) recover: Option<Vec<u8>>,
    /// With checkpoints: where the completion record goes at the end.
    pub(super) last: Option<LastCommit>,
}

/// What the sink task needs for the last commit of a run ([`SinkOutput::commit_last`]).
pub(super) struct LastCommit {
    pub(super) store: CheckpointStore,
    /// The sources' final positions.
    pub(super) finals: mpsc::UnboundedReceiver<TaskSnapshot>,
    /// The newest checkpoint this run saved (or resumed from): a newer one is another run's.
    pub(super) saved: Option<watch::Receiver<u64>>,
}

/// Wraps a sink's error with its table, for `map_err`.
pub(super) fn sink_failed(table: &str) -> impl FnOnce(BoxError) -> EngineError + '_ {
    move |source| EngineError::Sink { table: table.to_string(), source }
}

/// [`sink_failed`], counting the failure in the sink's counters.
fn counted_failure<'a>(table: &'a str, counters: &'a SinkMetrics) -> impl FnOnce(BoxError) -> EngineError + 'a {
    move |source| {
        counters.failed();
        sink_failed(table)(source)
    }
}

impl SinkOutput {
    /// Writes rows, commits or prepares at barriers, and records what the sink saw.
    pub(super) async fn send(&mut self, message: Message) -> Result<()> {
        let SinkOutput { table, sink, metrics, counters, commits, prepared, stop } = self;
        let two_phase = *commits == CommitMode::TwoPhase;
        match message {
            Message::Rows(changes) => {
                let rows = changes.num_rows();
                let started = Instant::now();
                sink.write(changes).await.map_err(counted_failure(table, counters))?;
                counters.wrote(rows, started.elapsed());
                PipelineMetrics::add(&metrics.rows_out, rows);
            }
            // Already the minimum over the sources (merges combine them); shown, it never goes back.
            Message::Watermark(w) => metrics.advance_watermark(w),
            Message::Refresh(at) => {
                sink.refresh().await.map_err(counted_failure(table, counters))?;
                metrics.refreshed_at_ms.fetch_max(at, Ordering::Relaxed);
            }
            Message::Idle => {}
            Message::Barrier(id) if two_phase => {
                let bytes = sink.prepare(id.0).await.map_err(counted_failure(table, counters))?;
                counters.prepared(id.0);
                *prepared = Some(bytes);
                crate::failpoint::reach("sink-prepared");
            }
            // Stopped while keeping checkpoints: what came after the last one is
            // left uncommitted; resuming from that checkpoint writes it again.
            Message::EndOfStream if two_phase && *stop.borrow() => {
                tracing::info!("{table}: stopped; rows after the last checkpoint stay uncommitted until the pipeline resumes");
            }
            // Ran to the end while keeping checkpoints: the last commit is two-phase
            // too ([`SinkOutput::commit_last`]), after this message.
            Message::EndOfStream if two_phase => {}
            Message::Barrier(_) | Message::EndOfStream => {
                let started = Instant::now();
                sink.commit().await.map_err(counted_failure(table, counters))?;
                counters.committed(u64::MAX, started.elapsed());
            }
        }
        Ok(())
    }

    /// Checkpoint `id` is saved: the sink makes what it prepared visible.
    pub(super) async fn commit_checkpoint(&mut self, id: u64) -> Result<()> {
        let started = Instant::now();
        self.sink.commit_checkpoint(id).await.map_err(counted_failure(&self.table, &self.counters))?;
        self.counters.committed(id, started.elapsed());
        crate::failpoint::reach("sink-committed");
        Ok(())
    }

    /// The end of a run that keeps checkpoints, in order: the sink prepares its
    /// last commit; the completion record (every source's final position and that
    /// prepared commit) is saved; the sink commits. A kill before the record is
    /// saved resumes from the last checkpoint; a kill after it finds the record,
    /// and the restarted sink finishes the commit ([`finish_completed_run`]). Nothing when stopped.
    pub(super) async fn commit_last(&mut self, last: LastCommit, task: &str) -> Result<()> {
        let SinkOutput { table, sink, counters, commits: CommitMode::TwoPhase, stop, .. } = self else { return Ok(()) };
        if *stop.borrow() {
            return Ok(());
        }
        let LastCommit { store, mut finals, saved } = last;
        let started = Instant::now();
        let prepared = sink.prepare(FINAL_CHECKPOINT).await.map_err(counted_failure(table, counters))?;
        crate::failpoint::reach("final-prepared");
        // Every source sent its final position before its end of stream, so all are here.
        let mut tasks = Vec::new();
        while let Ok(source) = finals.try_recv() {
            tasks.push(source);
        }
        tasks.push(TaskSnapshot {
            checkpoint: FINAL_CHECKPOINT,
            task: task.to_string(),
            position: None,
            operators: Vec::new(),
            sink: Some(prepared),
            lasting: Vec::new(),
        });
        let since = saved.map_or(0, |s| *s.borrow());
        store.complete(&tasks, since).await?;
        crate::failpoint::reach("completion-saved");
        sink.commit_checkpoint(FINAL_CHECKPOINT).await.map_err(counted_failure(table, counters))?;
        counters.committed(u64::MAX, started.elapsed());
        crate::failpoint::reach("final-committed");
        Ok(())
    }

    /// After a restart: the sink finishes the commit it had prepared at the restored checkpoint.
    pub(super) async fn recover(&mut self, prepared: &[u8]) -> Result<()> {
        self.sink.recover(prepared).await.map_err(sink_failed(&self.table))
    }
}

/// Whether an earlier run with these checkpoints ran to its end.
pub(super) enum EarlierRun {
    /// It ran to its end: its sink's last commit is finished, nothing more runs.
    Completed,
    /// It did not (or there was none): the pipeline runs, from the latest checkpoint if any.
    Unfinished,
}

/// With a completion record in `store` (an earlier run ran to its end), the sink
/// finishes that run's last commit, which a kill may have cut short, and the
/// checkpoints a kill left beside the record are cleared.
pub(super) async fn finish_completed_run(store: &CheckpointStore, sink_table: &str, sink: &mut Box<dyn Sink>) -> Result<EarlierRun> {
    let Some(completion) = store.completion().await? else { return Ok(EarlierRun::Unfinished) };
    if let Some(prepared) = completion.tasks.values().find_map(|t| t.sink.as_deref()).filter(|p| !p.is_empty()) {
        sink.recover(prepared).await.map_err(sink_failed(sink_table))?;
    }
    // Checkpoints a kill left beside the record are older than it.
    store.clear().await?;
    tracing::info!("{sink_table}: already ran to its end with the checkpoints in {}", store.display());
    Ok(EarlierRun::Completed)
}
