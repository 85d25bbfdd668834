//! Running a [`Graph`]: one tokio task per stage instance, bounded channels
//! between them.
//!
//! Every [`RunOptions::checkpoint_interval`] the sources inject a barrier
//! ([`Message::Barrier`]) with the next checkpoint id. A task with several inputs
//! aligns barriers as Flink does: once an input has delivered barrier `n`, its
//! later messages wait until every other live input has delivered `n` too; then
//! the barrier goes on. So when the sink sees barrier `n`, it has every row before
//! the cut and none after, and commits ([`Sink::commit`]).
//!
//! Channels carry `(input index, Message)`, so a task knows which upstream
//! instance sent each watermark: its own watermark is the minimum over inputs that
//! have not ended. Watermarks and end-of-stream are broadcast over exchanges;
//! batches are hash-partitioned on the group keys. A full channel makes the sender
//! wait, which is the backpressure that keeps memory bounded.
//!
//! # The files, in the order a message meets them
//!
//! - this file: [`run`], the entry point, as a list of steps, and the types its callers use.
//! - `wiring.rs`: opening the sources, sizing stages, the channels, one task per stage instance.
//! - `source_task.rs`: a source partition's task (reads, barriers, refreshes, the final watermark).
//! - `chain.rs`: a stage instance's operators run in order, and the state size they report.
//! - `output.rs`: where an instance sends its output, the exchange or the sink.
//! - `exchange.rs`: the hash exchange between stages (and the hash restores use).
//! - `merge_task.rs`: the task of a stage with inputs (keyed stages and the sink stage).
//! - `alignment.rs`: barrier alignment across a task's inputs.
//! - `watermarks.rs`: combining the inputs' watermarks (idle and ended inputs).
//! - `sink_task.rs`: the sink's writes and its two-phase commit around checkpoints.
//! - `coordinator.rs`: the checkpoint coordinator (checkpoint ids, savepoints).
//! - `refresher.rs`: the refresh ticks that keep materialized views fresh.
//! - `snapshots.rs`: a task's part in a checkpoint.
//! - `checkpoint_writer.rs`: collecting every task's snapshot and saving the checkpoint.
//! - `restore.rs`: restoring state, redistributed when a stage's parallelism changed.
//! - `side_outputs.rs`: late rows and malformed records sent to their side tables.
//! - `memory_sink.rs`: [`CollectSink`], an in-memory sink for `SELECT` results and tests.

mod alignment;
mod chain;
mod checkpoint_writer;
mod coordinator;
mod exchange;
mod memory_sink;
mod merge_task;
mod output;
mod refresher;
mod restore;
mod side_outputs;
mod sink_task;
mod snapshots;
mod source_task;
mod watermarks;
mod wiring;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use memory_sink::CollectSink;

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::connector::{Connector, Sink};
use crate::error::{EngineError, Result};
use crate::graph::Graph;
use crate::message::Message;
use crate::metrics::PipelineMetrics;
use crate::operator::SideOutput;
use coordinator::spawn_coordinator;
use refresher::spawn_refresher;
use side_outputs::spawn_side_sinks;
use sink_task::{finish_completed_run, EarlierRun};
use wiring::{instance_counts, open_sources, Channels, CheckpointPlumbing, StageTasks};

/// Messages in flight per channel before a sender waits.
const CHANNEL_CAPACITY: usize = 16;

/// A message with the index of the input (upstream instance) that sent it.
type Tagged = (usize, Message);

/// How a pipeline runs, beyond its graph.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// How often sources inject a checkpoint barrier (sinks commit on each);
    /// `None`: only at the end.
    pub checkpoint_interval: Option<std::time::Duration>,
    /// Where checkpoints are saved, and restored from when the pipeline starts;
    /// `None`: barriers only commit the sinks.
    pub checkpoints: Option<CheckpointStore>,
    /// Takes a checkpoint at once when notified (a savepoint before a stop),
    /// besides the interval's.
    pub trigger: Option<Arc<tokio::sync::Notify>>,
    /// How often sources inject a refresh ([`Message::Refresh`]), so a sink that can
    /// show rows before their checkpoint (a materialized view) is that fresh;
    /// `None`: no refreshes.
    pub refresh_interval: Option<std::time::Duration>,
    /// Fails the pipeline when its operators' state grows past this many bytes
    /// (`'pipeline.state.max-memory'`); `None`: no limit.
    pub max_state_bytes: Option<u64>,
    /// Every connector of the build, so messages can suggest one (a source that
    /// can resume) without the engine naming any; empty in tests of the engine alone.
    pub connectors: &'static [&'static dyn Connector],
}

/// How a pipeline's run ended, for callers that report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its sources ended and its sinks committed everything (with checkpoints: its
    /// completion record is saved and its checkpoints are deleted).
    RanToEnd,
    /// Stopped from outside; with checkpoints, it resumes from the last one.
    Stopped,
    /// Its checkpoint store holds the record that an earlier run completed: nothing
    /// was read, the sink only finished that run's last commit if a kill had cut it short.
    AlreadyCompleted,
}

/// A table that receives a side output (late rows or malformed records) of one source table.
pub struct SideSink {
    /// The side table's name, for errors.
    pub table: String,
    pub sink: Box<dyn Sink>,
    /// The side table's columns, which side-output batches are fitted to.
    pub schema: SchemaRef,
}

/// Everything a pipeline writes to.
pub struct PipelineOutputs {
    /// The sink table's name, for errors and logs.
    pub sink_table: String,
    pub sink: Box<dyn Sink>,
    /// Side sinks by (source table, output).
    pub side: HashMap<(String, SideOutput), SideSink>,
}

/// Runs a graph until its sources end (or `stop` turns true), then commits the
/// sinks. With checkpoints, a store holding a completion record (an earlier run
/// ran to its end) runs nothing: the sink finishes that run's last commit, which
/// a kill may have cut short, and the run ends as [`Ended::AlreadyCompleted`].
pub async fn run(graph: Graph, outputs: PipelineOutputs, metrics: Arc<PipelineMetrics>, stop: watch::Receiver<bool>, options: RunOptions) -> Result<Ended> {
    let PipelineOutputs { sink_table, mut sink, side } = outputs;
    if let Some(store) = &options.checkpoints {
        if let EarlierRun::Completed = finish_completed_run(store, &sink_table, &mut sink).await? {
            return Ok(Ended::AlreadyCompleted);
        }
    }
    let restored = latest_checkpoint(&options).await?;
    // Barrier ids continue after the restored checkpoint.
    let resumed_id = restored.as_ref().map_or(0, |c| c.id);
    let coordinator = spawn_coordinator(resumed_id, options.checkpoint_interval, options.trigger.clone(), Arc::clone(&metrics));
    let refresher = spawn_refresher(options.refresh_interval);
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let side_senders = spawn_side_sinks(side, &mut tasks);
    let readers = open_sources(&graph, restored.as_ref(), options.connectors)?;
    let instances = instance_counts(&graph, &readers);
    let total_tasks: usize = instances.iter().sum();
    metrics.set_stages(graph.shapes(&instances));
    let stage_tasks = StageTasks {
        graph: &graph,
        options: &options,
        metrics: &metrics,
        stop: &stop,
        restored: restored.as_ref(),
        barriers: coordinator.barriers.clone(),
        refreshes: refresher.as_ref().map(|r| r.times.clone()),
        side_senders,
        channels: Channels::new(&graph, &instances),
        checkpoints: CheckpointPlumbing::new(&options, total_tasks, resumed_id, &metrics),
        sink_table,
        sink: Some(sink),
    };
    let writer = stage_tasks.spawn(&instances, readers, &mut tasks)?;
    drop(coordinator.barriers);

    let first_error = join_all(tasks).await;
    if let Some(coordinator) = coordinator.task {
        coordinator.abort();
    }
    if let Some(refresher) = refresher {
        refresher.task.abort();
    }
    // Every task is done: the writer finishes the checkpoints that are complete.
    if let Some(writer) = writer {
        let _ = writer.await;
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if *stop.borrow() {
        return Ok(Ended::Stopped);
    }
    clear_checkpoints_of_completed_run(&options).await?;
    Ok(Ended::RanToEnd)
}

/// The checkpoint to resume from, if the pipeline keeps checkpoints and has one.
async fn latest_checkpoint(options: &RunOptions) -> Result<Option<Checkpoint>> {
    let Some(store) = &options.checkpoints else { return Ok(None) };
    let restored = store.latest().await?;
    if let Some(checkpoint) = &restored {
        tracing::info!("resuming from checkpoint {} in {}", checkpoint.id, store.display());
    }
    Ok(restored)
}

/// Waits for every task; the first error stops the others and is returned.
async fn join_all(mut tasks: JoinSet<Result<()>>) -> Option<EngineError> {
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.unwrap_or_else(|e| Err(EngineError::Internal(format!("a pipeline task panicked: {e}"))));
        if let Err(e) = result {
            if first_error.is_none() {
                first_error = Some(e);
                // Stop the rest: dropping the join set aborts every other task.
                tasks.abort_all();
            }
        }
    }
    first_error
}

/// Ran to the end: the completion record is saved, so the checkpoints can go.
async fn clear_checkpoints_of_completed_run(options: &RunOptions) -> Result<()> {
    let Some(store) = &options.checkpoints else { return Ok(()) };
    if !store.is_finished().await? {
        return Err(EngineError::Internal(format!("the pipeline ended without its completion record in {}; its checkpoints are kept", store.display())));
    }
    store.clear().await?;
    crate::failpoint::reach("checkpoints-cleared");
    Ok(())
}
