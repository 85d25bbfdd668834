//! Wiring a [`Graph`] into tasks: opening the sources, sizing each stage, the
//! channels between stages, the checkpoint plumbing, and one task per stage instance.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::chain::{Chain, StateBudget};
use super::checkpoint_writer::spawn_checkpoint_writer;
use super::exchange::Exchange;
use super::merge_task::run_merge;
use super::output::Output;
use super::restore::{restore_keyed, restore_task};
use super::side_outputs::SideSenders;
use super::sink_task::{CommitMode, LastCommit, SinkCommits, SinkOutput};
use super::snapshots::Snapshots;
use super::source_task::SourceTask;
use super::{RunOptions, Tagged, CHANNEL_CAPACITY};
use crate::checkpoint::{Checkpoint, CheckpointStore, TaskSnapshot};
use crate::connector::{resumable_connectors, Connector, Sink, SourceReader};
use crate::error::{EngineError, Result};
use crate::graph::{Graph, Link, StageKind};
use crate::metrics::{PipelineMetrics, SourcePartitionMetrics, TaskMetrics};
use crate::state::LASTING_MIN_BYTES;

/// Each source stage's partition readers, by stage index.
pub(super) type Readers = HashMap<usize, Vec<Box<dyn SourceReader>>>;

/// Opens every source stage's partitions, at their saved positions when resuming.
/// Sources are opened first: their partition counts size the exchanges. `connectors`
/// name the sources that can resume when one that cannot would have to.
pub(super) fn open_sources(graph: &Graph, restored: Option<&Checkpoint>, connectors: &[&dyn Connector]) -> Result<Readers> {
    let mut readers: Readers = HashMap::new();
    let parallelism = graph.parallelism;
    for (i, stage) in graph.stages.iter().enumerate() {
        if let StageKind::Source { node, source } = &stage.kind {
            // Resuming: every partition continues from its saved position.
            let prefix = format!("source:{i}:");
            let saved: Vec<_> = restored.iter().flat_map(|c| c.tasks.iter()).filter(|(task, _)| task.starts_with(&prefix)).collect();
            if saved.iter().any(|(_, t)| t.position.is_none()) {
                // Restoring operator state over a source that starts over would count its rows twice.
                return Err(EngineError::Source {
                    table: node.table.name.clone(),
                    partition: "open".to_string(),
                    source: format!(
                        "connector '{}' cannot resume from a checkpoint, and its pipeline's state was restored from one; remove the pipeline's checkpoint directory to start over, or use a source that can resume ({})",
                        node.table.connector(),
                        resumable_connectors(connectors)
                    )
                    .into(),
                });
            }
            let positions: Vec<_> = saved.iter().filter_map(|(_, t)| t.position.clone()).collect();
            let opened = if positions.is_empty() { source.open(parallelism) } else { source.open_at(parallelism, &positions) };
            let opened = opened.map_err(|source| EngineError::Source { table: node.table.name.clone(), partition: "open".to_string(), source })?;
            readers.insert(i, opened);
        }
    }
    Ok(readers)
}

/// How many instances each stage runs: a source one per partition, a keyed stage
/// its parallelism, the sink one.
pub(super) fn instance_counts(graph: &Graph, readers: &Readers) -> Vec<usize> {
    (0..graph.stages.len())
        .map(|i| match &graph.stages[i].kind {
            StageKind::Source { .. } => readers.get(&i).map_or(0, Vec::len),
            StageKind::Keyed { parallelism, .. } => *parallelism,
            StageKind::Sink => 1,
        })
        .collect()
}

/// The bounded channels into every stage that has inputs.
pub(super) struct Channels {
    /// Senders into each stage's instances, by stage index.
    senders: HashMap<usize, Vec<mpsc::Sender<Tagged>>>,
    /// Each stage's instances' receivers, taken by the instances in instance order.
    receivers: HashMap<usize, Vec<mpsc::Receiver<Tagged>>>,
    /// How many upstream instances feed each stage.
    input_counts: HashMap<usize, usize>,
    /// The next input index to hand out, per stage.
    next_input: HashMap<usize, usize>,
    /// Per stage, which of its inputs ([`crate::graph::Link::input`]) each input index (upstream instance) is.
    input_sides: HashMap<usize, Vec<usize>>,
}

impl Channels {
    /// One bounded channel per instance of every stage with inputs.
    pub(super) fn new(graph: &Graph, instances: &[usize]) -> Self {
        let mut senders = HashMap::new();
        let mut receivers = HashMap::new();
        let mut input_counts: HashMap<usize, usize> = HashMap::new();
        for (i, stage) in graph.stages.iter().enumerate() {
            if matches!(stage.kind, StageKind::Source { .. }) {
                continue;
            }
            let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..instances[i]).map(|_| mpsc::channel::<Tagged>(CHANNEL_CAPACITY)).unzip();
            senders.insert(i, txs);
            // Instances take their receivers with `pop`, in instance order: instance n
            // must get channel n, the one the exchange sends hash % count == n to, or a
            // restore with another parallelism puts each key's state where its rows do not go.
            rxs.reverse();
            receivers.insert(i, rxs);
        }
        for (i, stage) in graph.stages.iter().enumerate() {
            if let Some(target) = stage.output {
                *input_counts.entry(target.stage).or_default() += instances[i];
            }
        }
        Channels { senders, receivers, input_counts, next_input: HashMap::new(), input_sides: HashMap::new() }
    }

    /// One upstream instance's exchange into `target`, with the next free input index.
    fn exchange_into(&mut self, graph: &Graph, target: Link) -> Exchange {
        let index = self.next_input.entry(target.stage).or_default();
        let input_index = *index;
        *index += 1;
        self.input_sides.entry(target.stage).or_default().push(target.input);
        let keys = match &graph.stages[target.stage].kind {
            StageKind::Keyed { keys, .. } => keys.get(target.input).cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        Exchange { senders: self.senders.get(&target.stage).cloned().unwrap_or_default(), input_index, keys, metrics: None }
    }

    /// Which input of stage `stage` each of its input indices is (every upstream
    /// exchange into it must have been made).
    fn input_sides(&self, stage: usize) -> Vec<usize> {
        self.input_sides.get(&stage).cloned().unwrap_or_default()
    }

    /// The next instance's receiver of stage `stage`.
    fn take_receiver(&mut self, stage: usize) -> Result<mpsc::Receiver<Tagged>> {
        self.receivers.get_mut(&stage).and_then(|r| r.pop()).ok_or_else(|| EngineError::Internal("missing receiver".into()))
    }

    /// How many upstream instances feed stage `stage`: its merge tasks wait for each one's end.
    fn input_count(&self, stage: usize) -> usize {
        self.input_counts.get(&stage).copied().unwrap_or(0)
    }
}

/// Where snapshots, final positions and saved checkpoint ids travel; all `None` without checkpoints.
pub(super) struct CheckpointPlumbing {
    /// Into the checkpoint writer.
    snapshot_sender: Option<mpsc::UnboundedSender<TaskSnapshot>>,
    /// The checkpoint writer's task, awaited when every task is done.
    pub(super) writer: Option<JoinHandle<()>>,
    /// The newest saved checkpoint, for the sink's second phase.
    completed: Option<watch::Receiver<u64>>,
    /// From source tasks, their final positions, for the completion record.
    finals_sender: Option<mpsc::UnboundedSender<TaskSnapshot>>,
    finals: Option<mpsc::UnboundedReceiver<TaskSnapshot>>,
    store: Option<CheckpointStore>,
}

impl CheckpointPlumbing {
    /// Starts the checkpoint writer for `total_tasks` tasks when `options` keep checkpoints.
    pub(super) fn new(options: &RunOptions, total_tasks: usize, resumed_id: u64, metrics: &Arc<PipelineMetrics>) -> Self {
        let Some(store) = options.checkpoints.clone() else {
            return CheckpointPlumbing { snapshot_sender: None, writer: None, completed: None, finals_sender: None, finals: None, store: None };
        };
        let (snapshot_tx, snapshot_rx) = mpsc::unbounded_channel::<TaskSnapshot>();
        let (completed_tx, completed_rx) = watch::channel(resumed_id);
        let writer = spawn_checkpoint_writer(store.clone(), total_tasks, snapshot_rx, completed_tx, Arc::clone(metrics));
        let (finals_tx, finals_rx) = mpsc::unbounded_channel::<TaskSnapshot>();
        CheckpointPlumbing {
            snapshot_sender: Some(snapshot_tx),
            writer: Some(writer),
            completed: Some(completed_rx),
            finals_sender: Some(finals_tx),
            finals: Some(finals_rx),
            store: Some(store),
        }
    }
}

/// What every stage instance's task is started with, besides its own stage.
pub(super) struct StageTasks<'a> {
    pub(super) graph: &'a Graph,
    pub(super) options: &'a RunOptions,
    pub(super) metrics: &'a Arc<PipelineMetrics>,
    pub(super) stop: &'a watch::Receiver<bool>,
    pub(super) restored: Option<&'a Checkpoint>,
    /// The coordinator's checkpoint ids.
    pub(super) barriers: watch::Receiver<u64>,
    /// The refresher's ticks; `None` without refreshes.
    pub(super) refreshes: Option<watch::Receiver<u64>>,
    /// Side outputs by source table.
    pub(super) side_senders: HashMap<String, SideSenders>,
    pub(super) channels: Channels,
    pub(super) checkpoints: CheckpointPlumbing,
    pub(super) sink_table: String,
    /// The pipeline's sink, until the sink stage's task takes it.
    pub(super) sink: Option<Box<dyn Sink>>,
}

impl StageTasks<'_> {
    /// Spawns one task per stage instance into `tasks`; returns the checkpoint
    /// writer's task. Every sender this wiring held is dropped on return, so a
    /// task's inputs end when its upstream tasks do.
    pub(super) fn spawn(mut self, instances: &[usize], mut readers: Readers, tasks: &mut JoinSet<Result<()>>) -> Result<Option<JoinHandle<()>>> {
        let budget = StateBudget { metrics: Arc::clone(self.metrics), max_bytes: self.options.max_state_bytes };
        let lasting_min_bytes = self.options.checkpoints.as_ref().map_or(LASTING_MIN_BYTES, CheckpointStore::lasting_min_bytes);
        for (i, stage) in self.graph.stages.iter().enumerate() {
            let count = instances[i];
            for instance in 0..count {
                let output = self.output_of(stage.output)?;
                let mut chain = Chain::new(&stage.chain)?.with_budget(budget.clone()).with_lasting_min_bytes(lasting_min_bytes);
                match &stage.kind {
                    StageKind::Source { node, .. } => {
                        let reader = readers.get_mut(&i).and_then(|r| r.pop()).ok_or_else(|| EngineError::Internal("missing reader".into()))?;
                        let partition = SourcePartitionMetrics::new(&node.table.name, &reader.describe());
                        let counters = self.metrics.register_task(TaskMetrics::new(format!("{i}.{instance}"), chain.places(i), Some(partition)));
                        let mut output = output;
                        output.count_in(&counters);
                        let mut chain = chain.with_metrics(Arc::clone(&counters));
                        // Keyed by partition, not by instance: partitions may be listed in another order.
                        let snapshots = Snapshots {
                            task: format!("source:{i}:{}", reader.describe()),
                            sender: self.checkpoints.snapshot_sender.clone(),
                            finals: self.checkpoints.finals_sender.clone(),
                        };
                        restore_task(&snapshots, self.restored, &mut chain)?;
                        let task = SourceTask {
                            table: node.table.name.clone(),
                            reader,
                            chain,
                            output,
                            side: self.side_senders.get(&node.table.name).cloned().unwrap_or_default(),
                            metrics: Arc::clone(self.metrics),
                            counters,
                            stop: self.stop.clone(),
                            barriers: self.barriers.clone(),
                            refreshes: self.refreshes.clone(),
                            snapshots,
                        };
                        tasks.spawn(task.run());
                    }
                    StageKind::Keyed { head, .. } => {
                        chain.prepend(head()?);
                        let (mut chain, output) = self.counted(i, instance, chain, output);
                        let rx = self.channels.take_receiver(i)?;
                        let snapshots = self.merge_snapshots(i, instance);
                        restore_keyed(&snapshots, self.restored, &mut chain, i, instance, count)?;
                        tasks.spawn(run_merge(rx, self.channels.input_count(i), self.channels.input_sides(i), chain, output, snapshots, None));
                    }
                    StageKind::Sink => {
                        let (chain, output) = self.counted(i, instance, chain, output);
                        let rx = self.channels.take_receiver(i)?;
                        let snapshots = self.merge_snapshots(i, instance);
                        let recover = self.restored.and_then(|c| c.tasks.get(&snapshots.task)).and_then(|t| t.sink.clone());
                        let last = match (self.checkpoints.store.clone(), self.checkpoints.finals.take()) {
                            (Some(store), Some(finals)) => Some(LastCommit { store, finals, saved: self.checkpoints.completed.clone() }),
                            _ => None,
                        };
                        let commits = SinkCommits { completed: self.checkpoints.completed.clone(), recover, last };
                        tasks.spawn(run_merge(rx, self.channels.input_count(i), self.channels.input_sides(i), chain, output, snapshots, Some(commits)));
                    }
                }
            }
        }
        Ok(self.checkpoints.writer.take())
    }

    /// Registers the counters of instance `instance` of merge stage `stage` and
    /// makes its chain and output count into them.
    fn counted(&self, stage: usize, instance: usize, chain: Chain, mut output: Output) -> (Chain, Output) {
        let counters = self.metrics.register_task(TaskMetrics::new(format!("{stage}.{instance}"), chain.places(stage), None));
        output.count_in(&counters);
        (chain.with_metrics(counters), output)
    }

    /// Where an instance of a stage sends its output: the exchange into stage `target`, or the sink.
    fn output_of(&mut self, target: Option<Link>) -> Result<Output> {
        Ok(match target {
            Some(target) => Output::Exchange(self.channels.exchange_into(self.graph, target)),
            None => Output::Sink(SinkOutput {
                table: self.sink_table.clone(),
                sink: self.sink.take().ok_or_else(|| EngineError::Internal("two sink instances".into()))?,
                metrics: Arc::clone(self.metrics),
                counters: self.metrics.register_sink(&self.sink_table),
                commits: if self.options.checkpoints.is_some() { CommitMode::TwoPhase } else { CommitMode::AtEachBarrier },
                prepared: None,
                stop: self.stop.clone(),
            }),
        })
    }

    /// The snapshots of instance `instance` of a merge stage.
    fn merge_snapshots(&self, stage: usize, instance: usize) -> Snapshots {
        Snapshots { task: format!("stage:{stage}:{instance}"), sender: self.checkpoints.snapshot_sender.clone(), finals: None }
    }
}
