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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::create_hashes;
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::checkpoint::{Checkpoint, CheckpointStore, TaskSnapshot, FINAL_CHECKPOINT};
use crate::connector::{resumable_connectors, Connector, MalformedRecord, Sink, SourceReader};
use crate::error::{EngineError, Result};
use crate::graph::{Graph, StageKind};
use crate::message::{CheckpointId, EventTime, Message};
use crate::metrics::{PipelineMetrics, SourceTotals};
use crate::operator::{Emitter, Operator, SideOutput};
use crate::operators::evaluate;
use crate::operators::project::make_batch;
use crate::state::OperatorState;

/// Messages in flight per channel before a sender waits.
const CHANNEL_CAPACITY: usize = 16;
/// Malformed records logged per source partition before logging goes quiet (they are still counted and routed).
const MALFORMED_LOG_LIMIT: usize = 5;

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

/// Keeps [`PipelineMetrics::state_bytes`] up to date with one task's operators and
/// fails the task when the pipeline's total passes the limit.
#[derive(Clone)]
struct StateBudget {
    metrics: Arc<PipelineMetrics>,
    max_bytes: Option<u64>,
}

/// How long periodic checkpoints wait after a savepoint, whose pipeline is being
/// stopped; only a stop that gives up (a savepoint that never completes) lets them resume.
const SAVEPOINT_HOLD: std::time::Duration = std::time::Duration::from_secs(180);

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

/// What a task needs to take part in checkpoints: its stable key and where its snapshots go.
#[derive(Clone)]
struct Snapshots {
    task: String,
    sender: Option<mpsc::UnboundedSender<TaskSnapshot>>,
    /// Where a source task sends its final position when its partition ends, for the completion record.
    finals: Option<mpsc::UnboundedSender<TaskSnapshot>>,
}

impl Snapshots {
    /// Saves the chain's state (and a source's position) for checkpoint `id`.
    fn take(&self, id: CheckpointId, chain: &mut Chain, position: Option<crate::connector::SourcePosition>) -> Result<Option<TaskSnapshot>> {
        if self.sender.is_none() {
            return Ok(None);
        }
        Ok(Some(TaskSnapshot { checkpoint: id.0, task: self.task.clone(), position, operators: chain.snapshot()?, sink: None }))
    }

    fn send(&self, snapshot: Option<TaskSnapshot>) {
        if let (Some(sender), Some(snapshot)) = (&self.sender, snapshot) {
            let _ = sender.send(snapshot);
        }
    }

    /// A source partition ended at `position`: recorded in the completion record.
    fn send_final(&self, position: Option<crate::connector::SourcePosition>) {
        if let Some(finals) = &self.finals {
            let _ = finals.send(TaskSnapshot { checkpoint: FINAL_CHECKPOINT, task: self.task.clone(), position, operators: Vec::new(), sink: None });
        }
    }

    /// Restores a source task's chain from its part of `restored`, if any.
    fn restore(&self, restored: Option<&Checkpoint>, chain: &mut Chain) -> Result<()> {
        match restored.and_then(|c| c.tasks.get(&self.task)) {
            Some(snapshot) => chain.restore(&snapshot.operators),
            None => Ok(()),
        }
    }

    /// Restores instance `instance` of keyed stage `stage`, which now runs `parallelism`
    /// instances. With as many instances as the checkpoint had, each restores its own
    /// state; with another number, every old instance's state is cut to the keys this
    /// instance owns now (the exchange's hash) and restored in turn.
    fn restore_keyed(&self, restored: Option<&Checkpoint>, chain: &mut Chain, stage: usize, instance: usize, parallelism: usize) -> Result<()> {
        let Some(checkpoint) = restored else { return Ok(()) };
        let prefix = format!("stage:{stage}:");
        let mut old: Vec<(&String, &TaskSnapshot)> = checkpoint.tasks.iter().filter(|(task, _)| task.starts_with(&prefix)).collect();
        if old.len() == parallelism {
            if let Some(snapshot) = checkpoint.tasks.get(&self.task) {
                return chain.restore(&snapshot.operators);
            }
        }
        if old.is_empty() {
            return Err(EngineError::State(format!("checkpoint {} has no state for task {} (was the pipeline's SQL changed?)", checkpoint.id, self.task)));
        }
        old.sort_by(|a, b| a.0.cmp(b.0));
        if instance == 0 {
            tracing::info!("checkpoint {}: redistributing the state of {} instance(s) of stage {stage} over {parallelism}", checkpoint.id, old.len());
        }
        for (_, snapshot) in old {
            chain.restore_owned(&snapshot.operators, instance, parallelism)?;
        }
        Ok(())
    }
}

/// Collects every task's snapshot of a checkpoint and writes the checkpoint once all are in.
fn spawn_checkpoint_writer(
    store: CheckpointStore,
    tasks: usize,
    mut rx: mpsc::UnboundedReceiver<TaskSnapshot>,
    completed: watch::Sender<u64>,
    metrics: Arc<PipelineMetrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Snapshots received per checkpoint, with when the first one came.
        let mut pending: std::collections::BTreeMap<u64, (std::time::Instant, Vec<TaskSnapshot>)> = Default::default();
        while let Some(snapshot) = rx.recv().await {
            let id = snapshot.checkpoint;
            let (_, received) = pending.entry(id).or_insert_with(|| (std::time::Instant::now(), Vec::new()));
            received.push(snapshot);
            if received.len() < tasks {
                continue;
            }
            let Some((started, all)) = pending.remove(&id) else { continue };
            // Older checkpoints still missing a task can no longer complete.
            pending.retain(|other, _| *other > id);
            match store.write(id, &all).await {
                Ok(bytes) => {
                    tracing::debug!("checkpoint {id} complete in {:?}, {bytes} bytes", started.elapsed());
                    crate::failpoint::reach("checkpoint-saved");
                    // Second phase: the sinks make what they prepared for it visible.
                    // Told before the metrics, so whoever sees the new id (a savepoint
                    // that then stops the pipeline) finds the sinks already told.
                    let _ = completed.send(id);
                    metrics.checkpoint_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    metrics.checkpoint_bytes.store(bytes, Ordering::Relaxed);
                    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
                    metrics.checkpoint_at_ms.store(now_ms, Ordering::Relaxed);
                    metrics.checkpoint_id.store(id, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("checkpoint {id} could not be saved: {e}"),
            }
        }
    })
}

/// A table that receives a side output (late rows or malformed records) of one source table.
pub struct SideSink {
    pub table: String,
    pub sink: Box<dyn Sink>,
    pub schema: SchemaRef,
}

/// Everything a pipeline writes to.
pub struct PipelineOutputs {
    pub sink_table: String,
    pub sink: Box<dyn Sink>,
    /// Side sinks by (source table, output).
    pub side: HashMap<(String, SideOutput), SideSink>,
}

/// Runs operators in order, feeding each one's output to the next.
struct Chain {
    operators: Vec<Box<dyn Operator>>,
    side: Vec<(SideOutput, RecordBatch)>,
    /// Where this chain reports its state size, and the limit.
    budget: Option<StateBudget>,
    /// The state size this chain reported last, so it adds only the change.
    reported_bytes: u64,
}

impl Chain {
    fn new(factories: &[crate::graph::OperatorFactory]) -> Result<Self> {
        Ok(Chain { operators: factories.iter().map(|f| f()).collect::<Result<_>>()?, side: Vec::new(), budget: None, reported_bytes: 0 })
    }

    fn with_budget(mut self, budget: StateBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Reports the chain's state size to the pipeline's gauge and checks the limit.
    fn account(&mut self) -> Result<()> {
        let Some(budget) = &self.budget else { return Ok(()) };
        let now = self.operators.iter().map(|o| o.state_bytes() as u64).sum::<u64>();
        let total = if now >= self.reported_bytes {
            budget.metrics.state_bytes.fetch_add(now - self.reported_bytes, Ordering::Relaxed) + (now - self.reported_bytes)
        } else {
            budget.metrics.state_bytes.fetch_sub(self.reported_bytes - now, Ordering::Relaxed).saturating_sub(self.reported_bytes - now)
        };
        self.reported_bytes = now;
        match budget.max_bytes {
            Some(limit) if total > limit => Err(EngineError::StateLimit { held_bytes: total, limit_bytes: limit }),
            _ => Ok(()),
        }
    }

    fn prepend(&mut self, head: Box<dyn Operator>) {
        self.operators.insert(0, head);
    }

    /// Every operator's state, as bytes (`None` for stateless ones).
    fn snapshot(&mut self) -> Result<Vec<Option<Vec<u8>>>> {
        self.operators.iter_mut().map(|o| o.snapshot()?.map(|s| s.to_bytes()).transpose()).collect()
    }

    /// Puts back what [`Chain::snapshot`] saved.
    fn restore(&mut self, states: &[Option<Vec<u8>>]) -> Result<()> {
        if states.len() != self.operators.len() {
            return Err(EngineError::State("the checkpoint does not match the pipeline's operators (was its SQL changed?)".into()));
        }
        for (operator, state) in self.operators.iter_mut().zip(states) {
            if let Some(bytes) = state {
                operator.restore(OperatorState::from_bytes(bytes)?)?;
            }
        }
        Ok(())
    }

    /// Adds another instance's saved state, keeping the rows of keyed parts whose
    /// key hashes to `instance` of `parallelism` (see [`Snapshots::restore_keyed`]).
    fn restore_owned(&mut self, states: &[Option<Vec<u8>>], instance: usize, parallelism: usize) -> Result<()> {
        if states.len() != self.operators.len() {
            return Err(EngineError::State("the checkpoint does not match the pipeline's operators (was its SQL changed?)".into()));
        }
        for (operator, state) in self.operators.iter_mut().zip(states) {
            let Some(bytes) = state else { continue };
            let mut state = OperatorState::from_bytes(bytes)?;
            for (name, batch) in state.parts.iter_mut() {
                let keys = operator.state_key_columns(name);
                if keys == 0 || batch.num_rows() == 0 {
                    continue;
                }
                let hashes = hash_rows(&batch.columns()[..keys], batch.num_rows())?;
                let mine =
                    datafusion::arrow::array::BooleanArray::from(hashes.iter().map(|h| (*h % parallelism as u64) as usize == instance).collect::<Vec<_>>());
                *batch = datafusion::arrow::compute::filter_record_batch(batch, &mine).map_err(|e| EngineError::State(e.to_string()))?;
            }
            operator.restore(state)?;
        }
        Ok(())
    }

    /// Pushes one message through the chain; what leaves the last operator is appended to `out`.
    fn push(&mut self, message: Message, out: &mut Vec<Message>) -> Result<()> {
        self.push_from(0, message, out)?;
        self.account()
    }

    fn push_from(&mut self, index: usize, message: Message, out: &mut Vec<Message>) -> Result<()> {
        let Some(operator) = self.operators.get_mut(index) else {
            out.push(message);
            return Ok(());
        };
        let mut emitter = Emitter::default();
        let end = matches!(message, Message::EndOfStream);
        match message {
            Message::Batch(batch) => operator.on_batch(batch, &mut emitter)?,
            Message::Retract(batch) => operator.on_retract(batch, &mut emitter)?,
            Message::Watermark(w) => operator.on_watermark(w, &mut emitter)?,
            Message::Barrier(id) => {
                operator.on_barrier(id, &mut emitter)?;
                emitter.messages.push(Message::Barrier(id));
            }
            Message::Refresh(at) => {
                operator.on_refresh(&mut emitter)?;
                emitter.messages.push(Message::Refresh(at));
            }
            Message::Idle => emitter.messages.push(Message::Idle),
            Message::EndOfStream => operator.on_end(&mut emitter)?,
        }
        self.side.append(&mut emitter.side);
        for produced in emitter.drain() {
            self.push_from(index + 1, produced, out)?;
        }
        if end {
            self.push_from(index + 1, Message::EndOfStream, out)?;
        }
        Ok(())
    }
}

/// Where a stage instance sends what its chain produces.
enum Output {
    /// Hash-partition batches on `keys` over `senders`; broadcast everything else.
    Exchange { senders: Vec<mpsc::Sender<Tagged>>, input_index: usize, keys: Vec<Arc<dyn PhysicalExpr>> },
    /// The sink itself (the sink stage).
    Sink {
        table: String,
        sink: Box<dyn Sink>,
        metrics: Arc<PipelineMetrics>,
        /// Checkpoints are kept: barriers prepare a two-phase commit instead of committing.
        two_phase: bool,
        /// What the last `prepare` returned, for the sink task's snapshot.
        prepared: Option<Vec<u8>>,
        /// Turns true when the pipeline is stopped from outside.
        stop: watch::Receiver<bool>,
    },
}

/// Wraps a sink's error with its table, for `map_err`.
fn sink_failed(table: &str) -> impl FnOnce(crate::connector::BoxError) -> EngineError + '_ {
    move |source| EngineError::Sink { table: table.to_string(), source }
}

/// `false` when the receiver is gone (the pipeline is stopping): the sender should stop quietly.
async fn send(sender: &mpsc::Sender<Tagged>, message: Tagged) -> bool {
    sender.send(message).await.is_ok()
}

impl Output {
    /// The sink's prepared commit of the last barrier, for its snapshot.
    fn take_prepared(&mut self) -> Option<Vec<u8>> {
        match self {
            Output::Sink { prepared, .. } => prepared.take(),
            Output::Exchange { .. } => None,
        }
    }

    /// Checkpoint `id` is saved: the sink makes what it prepared visible.
    async fn commit_checkpoint(&mut self, id: u64) -> Result<()> {
        if let Output::Sink { table, sink, .. } = self {
            sink.commit_checkpoint(id).await.map_err(sink_failed(table))?;
            crate::failpoint::reach("sink-committed");
        }
        Ok(())
    }

    /// The end of a run that keeps checkpoints, in order: the sink prepares its
    /// last commit; the completion record (every source's final position and that
    /// prepared commit) is saved; the sink commits. A kill before the record is
    /// saved resumes from the last checkpoint; a kill after it finds the record,
    /// and the restarted sink finishes the commit ([`run`]). Nothing when stopped.
    async fn commit_last(&mut self, last: LastCommit, task: &str) -> Result<()> {
        let Output::Sink { table, sink, two_phase: true, stop, .. } = self else { return Ok(()) };
        if *stop.borrow() {
            return Ok(());
        }
        let LastCommit { store, mut finals } = last;
        let prepared = sink.prepare(FINAL_CHECKPOINT).await.map_err(sink_failed(table))?;
        crate::failpoint::reach("final-prepared");
        // Every source sent its final position before its end of stream, so all are here.
        let mut tasks = Vec::new();
        while let Ok(source) = finals.try_recv() {
            tasks.push(source);
        }
        tasks.push(TaskSnapshot { checkpoint: FINAL_CHECKPOINT, task: task.to_string(), position: None, operators: Vec::new(), sink: Some(prepared) });
        store.complete(&tasks).await?;
        crate::failpoint::reach("completion-saved");
        sink.commit_checkpoint(FINAL_CHECKPOINT).await.map_err(sink_failed(table))?;
        crate::failpoint::reach("final-committed");
        Ok(())
    }

    /// After a restart: the sink finishes the commit it had prepared at the restored checkpoint.
    async fn recover(&mut self, prepared: &[u8]) -> Result<()> {
        if let Output::Sink { table, sink, .. } = self {
            sink.recover(prepared).await.map_err(sink_failed(table))?;
        }
        Ok(())
    }

    async fn send(&mut self, messages: Vec<Message>) -> Result<bool> {
        for message in messages {
            match self {
                Output::Exchange { senders, input_index, keys } => match message {
                    // Rows and their retractions go where their key's state is.
                    Message::Batch(batch) if senders.len() > 1 => {
                        if !send_partitioned(senders, *input_index, keys, &batch, Message::Batch).await? {
                            return Ok(false);
                        }
                    }
                    Message::Retract(batch) if senders.len() > 1 => {
                        if !send_partitioned(senders, *input_index, keys, &batch, Message::Retract).await? {
                            return Ok(false);
                        }
                    }
                    rows @ (Message::Batch(_) | Message::Retract(_)) => {
                        if !send(&senders[0], (*input_index, rows)).await {
                            return Ok(false);
                        }
                    }
                    other => {
                        for sender in senders.iter() {
                            if !send(sender, (*input_index, other.clone())).await {
                                return Ok(false);
                            }
                        }
                    }
                },
                Output::Sink { table, sink, metrics, two_phase, prepared, stop } => match message {
                    Message::Batch(batch) => {
                        let rows = batch.num_rows();
                        sink.write(batch).await.map_err(sink_failed(table))?;
                        PipelineMetrics::add(&metrics.rows_out, rows);
                    }
                    Message::Retract(batch) => {
                        let rows = batch.num_rows();
                        sink.retract(batch).await.map_err(sink_failed(table))?;
                        PipelineMetrics::add(&metrics.rows_out, rows);
                    }
                    Message::Watermark(w) => metrics.watermark_ms.store(w.0, Ordering::Relaxed),
                    Message::Refresh(at) => {
                        sink.refresh().await.map_err(sink_failed(table))?;
                        metrics.refreshed_at_ms.fetch_max(at, Ordering::Relaxed);
                    }
                    Message::Idle => {}
                    Message::Barrier(id) if *two_phase => {
                        let bytes = sink.prepare(id.0).await.map_err(sink_failed(table))?;
                        *prepared = Some(bytes);
                        crate::failpoint::reach("sink-prepared");
                    }
                    // Stopped while keeping checkpoints: what came after the last one is
                    // left uncommitted; resuming from that checkpoint writes it again.
                    Message::EndOfStream if *two_phase && *stop.borrow() => {
                        tracing::info!("{table}: stopped; rows after the last checkpoint stay uncommitted until the pipeline resumes");
                    }
                    // Ran to the end while keeping checkpoints: the last commit is two-phase
                    // too ([`Output::commit_last`]), after this message.
                    Message::EndOfStream if *two_phase => {}
                    Message::Barrier(_) | Message::EndOfStream => {
                        sink.commit().await.map_err(sink_failed(table))?;
                    }
                },
            }
        }
        Ok(true)
    }
}

/// Sends each key's part of `batch` (as `Batch` or `Retract`, by `wrap`) to the
/// instance that owns the key; `false` when a receiver is gone.
async fn send_partitioned(
    senders: &[mpsc::Sender<Tagged>],
    input_index: usize,
    keys: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
    wrap: fn(RecordBatch) -> Message,
) -> Result<bool> {
    for (target, part) in partition(batch, keys, senders.len())? {
        if !send(&senders[target], (input_index, wrap(part))).await {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The exchange's hash of each row's key. Fixed seeds: every upstream instance must
/// send a key to the same downstream instance, and a restore with another
/// parallelism must place saved state where the key's rows will go.
fn hash_rows(keys: &[ArrayRef], rows: usize) -> Result<Vec<u64>> {
    let mut hashes = vec![0u64; rows];
    let state = datafusion::common::hash_utils::RandomState::with_seed(7);
    create_hashes(keys, &state, &mut hashes).map_err(|e| EngineError::execution("Exchange", e))?;
    Ok(hashes)
}

/// Splits a batch by the hash of its key columns into (instance, rows) parts.
fn partition(batch: &RecordBatch, keys: &[Arc<dyn PhysicalExpr>], parts: usize) -> Result<Vec<(usize, RecordBatch)>> {
    let arrays: Vec<ArrayRef> = keys.iter().map(|k| evaluate(k, batch, "Exchange")).collect::<Result<_>>()?;
    let hashes = hash_rows(&arrays, batch.num_rows())?;
    let mut indices: Vec<Vec<u32>> = vec![Vec::new(); parts];
    for (row, hash) in hashes.iter().enumerate() {
        indices[(*hash % parts as u64) as usize].push(row as u32);
    }
    let mut out = Vec::new();
    for (target, rows) in indices.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let rows = UInt32Array::from(rows);
        let columns =
            batch.columns().iter().map(|c| take(c, &rows, None)).collect::<Result<Vec<_>, _>>().map_err(|e| EngineError::execution("Exchange", e.into()))?;
        let part = RecordBatch::try_new(batch.schema(), columns).map_err(|e| EngineError::execution("Exchange", e.into()))?;
        out.push((target, part));
    }
    Ok(out)
}

/// Side outputs of a source stage instance, by kind.
#[derive(Clone, Default)]
struct SideSenders {
    late: Option<mpsc::Sender<RecordBatch>>,
    malformed: Option<mpsc::Sender<RecordBatch>>,
}

impl SideSenders {
    async fn send(&self, outputs: Vec<(SideOutput, RecordBatch)>) {
        for (kind, batch) in outputs {
            let sender = match kind {
                SideOutput::Late => &self.late,
                SideOutput::Malformed => &self.malformed,
            };
            if let Some(sender) = sender {
                let _ = sender.send(batch).await;
            }
        }
    }
}

fn malformed_batch(table: &str, records: &[MalformedRecord]) -> Result<RecordBatch> {
    let column = |f: &dyn Fn(&MalformedRecord) -> String| -> ArrayRef { Arc::new(StringArray::from(records.iter().map(f).collect::<Vec<_>>())) };
    RecordBatch::try_from_iter([
        ("source", column(&|_| table.to_string())),
        ("position", column(&|r| r.position.clone())),
        ("error", column(&|r| r.error.clone())),
        ("raw", column(&|r| r.raw.clone())),
    ])
    .map_err(|e| EngineError::execution("malformed records", e.into()))
}

/// Fits a side-output batch to the side table: by name when the names match, else by position.
fn fit_to(batch: &RecordBatch, schema: &SchemaRef, table: &str) -> Result<RecordBatch> {
    let mut columns = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let column = match batch.schema().index_of(field.name()) {
            Ok(index) => Arc::clone(batch.column(index)),
            Err(_) => match batch.columns().get(i) {
                Some(c) => Arc::clone(c),
                None => datafusion::arrow::array::new_null_array(field.data_type(), batch.num_rows()),
            },
        };
        let column = if column.data_type() == field.data_type() {
            column
        } else {
            cast(&column, field.data_type()).map_err(|e| EngineError::Sink { table: table.to_string(), source: Box::new(e) })?
        };
        columns.push(column);
    }
    make_batch(schema, columns, batch.num_rows(), table)
}

/// Runs a graph until its sources end (or `stop` turns true), then commits the
/// sinks. With checkpoints, a store holding a completion record (an earlier run
/// ran to its end) runs nothing: the sink finishes that run's last commit, which
/// a kill may have cut short, and the run ends as [`Ended::AlreadyCompleted`].
pub async fn run(graph: Graph, outputs: PipelineOutputs, metrics: Arc<PipelineMetrics>, stop: watch::Receiver<bool>, options: RunOptions) -> Result<Ended> {
    if let Some(store) = &options.checkpoints {
        if let Some(completion) = store.completion().await? {
            let PipelineOutputs { sink_table, mut sink, .. } = outputs;
            if let Some(prepared) = completion.tasks.values().find_map(|t| t.sink.as_deref()).filter(|p| !p.is_empty()) {
                sink.recover(prepared).await.map_err(sink_failed(&sink_table))?;
            }
            // Checkpoints a kill left beside the record are older than it.
            store.clear().await?;
            tracing::info!("{sink_table}: already ran to its end with the checkpoints in {}", store.display());
            return Ok(Ended::AlreadyCompleted);
        }
    }
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let restored = match &options.checkpoints {
        Some(store) => store.latest().await?,
        None => None,
    };
    if let (Some(checkpoint), Some(store)) = (&restored, &options.checkpoints) {
        tracing::info!("resuming from checkpoint {} in {}", checkpoint.id, store.display());
    }
    // Barrier ids continue after the restored checkpoint.
    let resumed_id = restored.as_ref().map_or(0, |c| c.id);
    // The checkpoint coordinator: bumps the checkpoint id every interval; every source sees it.
    let (barrier_tx, barriers) = watch::channel(resumed_id);
    let trigger = options.trigger.clone();
    let interval = options.checkpoint_interval;
    let coordinator_metrics = Arc::clone(&metrics);
    let coordinator = (interval.is_some() || trigger.is_some()).then(|| {
        tokio::spawn(async move {
            let mut tick = interval.map(|every| {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick
            });
            if let Some(tick) = tick.as_mut() {
                tick.tick().await;
            }
            let mut held_until: Option<tokio::time::Instant> = None;
            loop {
                let ticked = async {
                    match tick.as_mut() {
                        Some(tick) => {
                            tick.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let triggered = async {
                    match &trigger {
                        Some(notify) => notify.notified().await,
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = ticked => {
                        if held_until.is_some_and(|until| tokio::time::Instant::now() < until) {
                            continue;
                        }
                    }
                    // A savepoint: the pipeline stops right after it, so no periodic
                    // checkpoint may follow it (a restart must resume exactly there).
                    _ = triggered => {
                        held_until = Some(tokio::time::Instant::now() + SAVEPOINT_HOLD);
                        barrier_tx.send_modify(|id| *id += 1);
                        coordinator_metrics.savepoint_id.store(*barrier_tx.borrow(), Ordering::Relaxed);
                        continue;
                    }
                }
                barrier_tx.send_modify(|id| *id += 1);
            }
        })
    });
    // Refreshes: the time of each tick, increasing, for every source to pass on.
    let (refresh_tx, refresh_rx) = watch::channel(0u64);
    let refresher = options.refresh_interval.map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                refresh_tx.send_modify(|at| *at = (*at + 1).max(now));
            }
        })
    });
    let PipelineOutputs { sink_table, sink, mut side } = outputs;

    // Side sinks: one task each, fed by every partition of the source table.
    let mut side_senders: HashMap<String, SideSenders> = HashMap::new();
    for ((source_table, kind), side_sink) in side.drain() {
        let (tx, mut rx) = mpsc::channel::<RecordBatch>(CHANNEL_CAPACITY);
        let entry = side_senders.entry(source_table).or_default();
        match kind {
            SideOutput::Late => entry.late = Some(tx),
            SideOutput::Malformed => entry.malformed = Some(tx),
        }
        let SideSink { table, mut sink, schema } = side_sink;
        tasks.spawn(async move {
            while let Some(batch) = rx.recv().await {
                let batch = fit_to(&batch, &schema, &table)?;
                sink.write(batch).await.map_err(sink_failed(&table))?;
            }
            sink.commit().await.map_err(sink_failed(&table))
        });
    }

    // Open sources first: their partition counts size the exchanges.
    let mut readers: HashMap<usize, Vec<Box<dyn SourceReader>>> = HashMap::new();
    // Splittable sources (generators) get as many partitions as the keyed stage has tasks.
    let parallelism = graph
        .stages
        .iter()
        .find_map(|s| match &s.kind {
            StageKind::Keyed { parallelism, .. } => Some(*parallelism),
            _ => None,
        })
        .unwrap_or(1);
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
                        resumable_connectors(options.connectors)
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
    let instance_counts: Vec<usize> = (0..graph.stages.len())
        .map(|i| match &graph.stages[i].kind {
            StageKind::Source { .. } => readers.get(&i).map_or(0, Vec::len),
            StageKind::Keyed { parallelism, .. } => *parallelism,
            StageKind::Sink => 1,
        })
        .collect();
    let instances = |i: usize| instance_counts[i];
    // Receivers per (stage, instance) and the number of upstream instances feeding each stage.
    let mut senders: HashMap<usize, Vec<mpsc::Sender<Tagged>>> = HashMap::new();
    let mut receivers: HashMap<usize, Vec<mpsc::Receiver<Tagged>>> = HashMap::new();
    let mut input_counts: HashMap<usize, usize> = HashMap::new();
    for (i, stage) in graph.stages.iter().enumerate() {
        if matches!(stage.kind, StageKind::Source { .. }) {
            continue;
        }
        let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..instances(i)).map(|_| mpsc::channel::<Tagged>(CHANNEL_CAPACITY)).unzip();
        senders.insert(i, txs);
        // Instances take their receivers with `pop`, in instance order: instance n
        // must get channel n, the one the exchange sends hash % count == n to, or a
        // restore with another parallelism puts each key's state where its rows do not go.
        rxs.reverse();
        receivers.insert(i, rxs);
    }
    for (i, stage) in graph.stages.iter().enumerate() {
        if let Some(target) = stage.output {
            *input_counts.entry(target).or_default() += instances(i);
        }
    }
    let total_tasks: usize = (0..graph.stages.len()).map(instances).sum();
    let (snapshot_tx, snapshot_rx) = mpsc::unbounded_channel::<TaskSnapshot>();
    let (completed_tx, completed_rx) = watch::channel(resumed_id);
    let writer = options.checkpoints.clone().map(|store| spawn_checkpoint_writer(store, total_tasks, snapshot_rx, completed_tx, Arc::clone(&metrics)));
    let snapshot_sender = writer.as_ref().map(|_| snapshot_tx);
    let (finals_tx, finals_rx) = mpsc::unbounded_channel::<TaskSnapshot>();
    let mut finals_rx = options.checkpoints.is_some().then_some(finals_rx);
    let finals_sender = finals_rx.as_ref().map(|_| finals_tx);
    let mut next_input: HashMap<usize, usize> = HashMap::new();
    let budget = StateBudget { metrics: Arc::clone(&metrics), max_bytes: options.max_state_bytes };
    let mut sink = Some(sink);
    let mut all_readers = readers;
    for (i, stage) in graph.stages.iter().enumerate() {
        let count = instances(i);
        for instance in 0..count {
            let output = match stage.output {
                Some(target) => {
                    let index = next_input.entry(target).or_default();
                    let input_index = *index;
                    *index += 1;
                    let keys = match &graph.stages[target].kind {
                        StageKind::Keyed { keys, .. } => keys.clone(),
                        _ => Vec::new(),
                    };
                    Output::Exchange { senders: senders.get(&target).cloned().unwrap_or_default(), input_index, keys }
                }
                None => Output::Sink {
                    table: sink_table.clone(),
                    sink: sink.take().ok_or_else(|| EngineError::Internal("two sink instances".into()))?,
                    metrics: Arc::clone(&metrics),
                    two_phase: options.checkpoints.is_some(),
                    prepared: None,
                    stop: stop.clone(),
                },
            };
            let mut chain = Chain::new(&stage.chain)?.with_budget(budget.clone());
            match &stage.kind {
                StageKind::Source { node, .. } => {
                    let reader = all_readers.get_mut(&i).and_then(|r| r.pop()).ok_or_else(|| EngineError::Internal("missing reader".into()))?;
                    let side = side_senders.get(&node.table.name).cloned().unwrap_or_default();
                    let table = node.table.name.clone();
                    let metrics = Arc::clone(&metrics);
                    let stop = stop.clone();
                    let barriers = barriers.clone();
                    // Keyed by partition, not by instance: partitions may be listed in another order.
                    let snapshots =
                        Snapshots { task: format!("source:{i}:{}", reader.describe()), sender: snapshot_sender.clone(), finals: finals_sender.clone() };
                    snapshots.restore(restored.as_ref(), &mut chain)?;
                    let refreshes = refresher.as_ref().map(|_| refresh_rx.clone());
                    tasks.spawn(run_source(table, reader, chain, output, side, metrics, stop, barriers, refreshes, snapshots));
                }
                StageKind::Keyed { head, .. } => {
                    chain.prepend(head()?);
                    let rx = receivers.get_mut(&i).and_then(|r| r.pop()).ok_or_else(|| EngineError::Internal("missing receiver".into()))?;
                    let snapshots = Snapshots { task: format!("stage:{i}:{instance}"), sender: snapshot_sender.clone(), finals: None };
                    snapshots.restore_keyed(restored.as_ref(), &mut chain, i, instance, count)?;
                    tasks.spawn(run_merge(rx, input_counts.get(&i).copied().unwrap_or(0), chain, output, snapshots, None));
                }
                StageKind::Sink => {
                    let rx = receivers.get_mut(&i).and_then(|r| r.pop()).ok_or_else(|| EngineError::Internal("missing receiver".into()))?;
                    let snapshots = Snapshots { task: format!("stage:{i}:{instance}"), sender: snapshot_sender.clone(), finals: None };
                    let recover = restored.as_ref().and_then(|c| c.tasks.get(&snapshots.task)).and_then(|t| t.sink.clone());
                    let last = match (&options.checkpoints, finals_rx.take()) {
                        (Some(store), Some(finals)) => Some(LastCommit { store: store.clone(), finals }),
                        _ => None,
                    };
                    let commits = SinkCommits { completed: writer.as_ref().map(|_| completed_rx.clone()), recover, last };
                    tasks.spawn(run_merge(rx, input_counts.get(&i).copied().unwrap_or(0), chain, output, snapshots, Some(commits)));
                }
            }
        }
    }
    drop(senders);
    drop(side_senders);
    drop(barriers);
    drop(snapshot_sender);
    drop(finals_sender);

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
    if let Some(coordinator) = coordinator {
        coordinator.abort();
    }
    if let Some(refresher) = refresher {
        refresher.abort();
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
    // Ran to the end: the completion record is saved, so the checkpoints can go.
    if let Some(store) = &options.checkpoints {
        if !store.is_finished().await? {
            return Err(EngineError::Internal(format!("the pipeline ended without its completion record in {}; its checkpoints are kept", store.display())));
        }
        store.clear().await?;
        crate::failpoint::reach("checkpoints-cleared");
    }
    Ok(Ended::RanToEnd)
}

#[allow(clippy::too_many_arguments)]
async fn run_source(
    table: String,
    mut reader: Box<dyn SourceReader>,
    mut chain: Chain,
    mut output: Output,
    side: SideSenders,
    metrics: Arc<PipelineMetrics>,
    mut stop: watch::Receiver<bool>,
    mut barriers: watch::Receiver<u64>,
    mut refreshes: Option<watch::Receiver<u64>>,
    snapshots: Snapshots,
) -> Result<()> {
    let partition = reader.describe();
    let mut checkpointing = true;
    let mut last_barrier = *barriers.borrow();
    let status_key = format!("{table} {partition}");
    let mut malformed_logged = 0usize;
    let mut yielded = SourceTotals::default();
    let mut idle_sent = false;
    let mut out = Vec::new();
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => None,
            changed = barriers.changed(), if checkpointing => Some(Err(changed.is_ok())),
            next = reader.next_batch() => Some(Ok(next)),
        };
        let next = match next {
            None => None,
            Some(Ok(next)) => Some(next),
            // Every row read so far belongs to this checkpoint. Ids are sent in
            // order, none skipped, so merges always align the same ids.
            Some(Err(true)) => {
                let latest = *barriers.borrow_and_update();
                let mut taken = Vec::new();
                while last_barrier < latest {
                    last_barrier += 1;
                    let id = CheckpointId(last_barrier);
                    chain.push(Message::Barrier(id), &mut out)?;
                    taken.push(snapshots.take(id, &mut chain, reader.position())?);
                }
                if !output.send(std::mem::take(&mut out)).await? {
                    return Ok(());
                }
                taken.into_iter().for_each(|s| snapshots.send(s));
                continue;
            }
            // The coordinator is gone (the pipeline is ending): no more barriers.
            Some(Err(false)) => {
                checkpointing = false;
                continue;
            }
        };
        let Some(next) = next else {
            // Stopped from outside: end without a final watermark, so open windows are not emitted half-full.
            chain.push(Message::EndOfStream, &mut out)?;
            output.send(std::mem::take(&mut out)).await?;
            return Ok(());
        };
        let next = next.map_err(|source| EngineError::Source { table: table.clone(), partition: partition.clone(), source })?;
        metrics.set_reader_status(&status_key, reader.status());
        let Some(batch) = next else { break };
        yielded.rows += batch.rows.num_rows() as u64;
        yielded.malformed += batch.malformed.len() as u64;
        if !batch.malformed.is_empty() {
            PipelineMetrics::add(&metrics.malformed_rows, batch.malformed.len());
            for record in batch.malformed.iter().take(MALFORMED_LOG_LIMIT.saturating_sub(malformed_logged)) {
                tracing::warn!(table = %table, position = %record.position, "malformed record skipped: {}", record.error);
                malformed_logged += 1;
            }
            if side.malformed.is_some() {
                side.send(vec![(SideOutput::Malformed, malformed_batch(&table, &batch.malformed)?)]).await;
            }
        }
        if batch.rows.num_rows() > 0 {
            // Rows make the partition active again: the next merge counts its watermark.
            idle_sent = false;
            PipelineMetrics::add(&metrics.rows_in, batch.rows.num_rows());
            chain.push(if batch.retract { Message::Retract(batch.rows) } else { Message::Batch(batch.rows) }, &mut out)?;
            side.send(std::mem::take(&mut chain.side)).await;
        } else if !idle_sent && reader.is_idle() {
            idle_sent = true;
            tracing::debug!(table = %table, partition = %partition, "partition is idle; it no longer holds the watermark back");
            chain.push(Message::Idle, &mut out)?;
        }
        // Checked between reads, not raced against one: a read cut short could lose
        // what it had taken (readers return at least every few hundred ms).
        if let Some(refreshes) = refreshes.as_mut() {
            if refreshes.has_changed().unwrap_or(false) {
                let at = *refreshes.borrow_and_update();
                chain.push(Message::Refresh(at), &mut out)?;
            }
        }
        if !out.is_empty() && !output.send(std::mem::take(&mut out)).await? {
            return Ok(());
        }
    }
    // The partition ended: its final watermark closes every window it fed.
    metrics.add_ended_source(&table, yielded);
    snapshots.send_final(reader.position());
    chain.push(Message::Watermark(EventTime::MAX), &mut out)?;
    chain.push(Message::EndOfStream, &mut out)?;
    side.send(std::mem::take(&mut chain.side)).await;
    output.send(out).await?;
    Ok(())
}

/// What the sink task needs for two-phase commits.
struct SinkCommits {
    /// The newest saved checkpoint, from the checkpoint writer.
    completed: Option<watch::Receiver<u64>>,
    /// The restored checkpoint's prepared commit, finished before anything else.
    recover: Option<Vec<u8>>,
    /// With checkpoints: where the completion record goes at the end.
    last: Option<LastCommit>,
}

/// What the sink task needs for the last commit of a run ([`Output::commit_last`]).
struct LastCommit {
    store: CheckpointStore,
    /// The sources' final positions.
    finals: mpsc::UnboundedReceiver<TaskSnapshot>,
}

async fn run_merge(
    mut rx: mpsc::Receiver<Tagged>,
    inputs: usize,
    mut chain: Chain,
    mut output: Output,
    snapshots: Snapshots,
    commits: Option<SinkCommits>,
) -> Result<()> {
    let mut completed = None;
    let mut last = None;
    if let Some(commits) = commits {
        if let Some(prepared) = &commits.recover {
            output.recover(prepared).await?;
        }
        completed = commits.completed;
        last = commits.last;
    }
    let mut inputs_state = InputWatermarks::new(inputs);
    let mut alignment = BarrierAlignment::default();
    // The newest refresh passed on; other inputs' copies of it are dropped.
    let mut last_refresh = 0u64;
    let mut taken: Option<TaskSnapshot> = None;
    let mut out = Vec::new();
    if inputs == 0 {
        chain.push(Message::EndOfStream, &mut out)?;
        output.send(out).await?;
        if let Some(last) = last.take() {
            output.commit_last(last, &snapshots.task).await?;
        }
        return Ok(());
    }
    loop {
        // Messages held back during an alignment that has completed come first.
        let (input, message) = match alignment.released.pop_front() {
            Some(m) => m,
            None => {
                let next = match completed.as_mut() {
                    Some(saved) => tokio::select! {
                        m = rx.recv() => Ok(m),
                        changed = saved.changed() => Err(changed.is_ok()),
                    },
                    None => Ok(rx.recv().await),
                };
                match next {
                    Ok(Some(m)) => m,
                    // Every sender is gone without an end-of-stream: the pipeline is being torn down.
                    Ok(None) => return Ok(()),
                    Err(true) => {
                        let id = completed.as_mut().map_or(0, |c| *c.borrow_and_update());
                        output.commit_checkpoint(id).await?;
                        continue;
                    }
                    Err(false) => {
                        completed = None;
                        continue;
                    }
                }
            }
        };
        if alignment.holds(input) {
            alignment.held.push_back((input, message));
            continue;
        }
        // Only watermarks, idleness and ended inputs can move this task's watermark.
        let may_move = !matches!(message, Message::Batch(_) | Message::Retract(_) | Message::Barrier(_) | Message::Refresh(_));
        // The checkpoint whose barrier every live input has now delivered, if any.
        let mut aligned = None;
        match message {
            Message::Batch(_) | Message::Retract(_) => {
                // Rows make an idle input active again. That only adds an input at or
                // below this task's watermark to the minimum, so the watermark cannot move.
                inputs_state.activate(input);
                chain.push(message, &mut out)?;
            }
            Message::Barrier(id) => aligned = alignment.arrived(input, id, &inputs_state.ended),
            Message::Refresh(at) => {
                if at > last_refresh {
                    last_refresh = at;
                    chain.push(Message::Refresh(at), &mut out)?;
                }
            }
            Message::Watermark(w) => {
                inputs_state.activate(input);
                inputs_state.watermarks[input] = inputs_state.watermarks[input].max(w);
            }
            Message::Idle => inputs_state.idle[input] = true,
            Message::EndOfStream => {
                inputs_state.ended[input] = true;
                if inputs_state.ended.iter().all(|e| *e) {
                    // A checkpoint saved just before the end is committed before the sink closes.
                    if let Some(saved) = completed.as_mut() {
                        if saved.has_changed().unwrap_or(false) {
                            let id = *saved.borrow_and_update();
                            output.commit_checkpoint(id).await?;
                        }
                    }
                    chain.push(Message::EndOfStream, &mut out)?;
                    output.send(std::mem::take(&mut out)).await?;
                    if let Some(last) = last.take() {
                        output.commit_last(last, &snapshots.task).await?;
                    }
                    return Ok(());
                }
                // An ended input sends no barrier: the others may now be aligned.
                aligned = alignment.complete(&inputs_state.ended);
            }
        }
        if let Some(id) = aligned {
            chain.push(Message::Barrier(id), &mut out)?;
            taken = snapshots.take(id, &mut chain, None)?;
        }
        if may_move {
            match inputs_state.combined() {
                Combined::Advanced(w) => chain.push(Message::Watermark(w), &mut out)?,
                Combined::AllIdle { advanced } => {
                    if let Some(w) = advanced {
                        chain.push(Message::Watermark(w), &mut out)?;
                    }
                    chain.push(Message::Idle, &mut out)?;
                }
                Combined::Unchanged => {}
            }
        }
        if !out.is_empty() && !output.send(std::mem::take(&mut out)).await? {
            return Ok(());
        }
        // Sent on only now: the barrier has gone downstream (and a sink has prepared its commit).
        if let Some(snapshot) = taken.as_mut() {
            snapshot.sink = output.take_prepared();
        }
        snapshots.send(taken.take());
    }
}

/// Flink's barrier alignment for a task with several inputs; see the module docs.
#[derive(Default)]
struct BarrierAlignment {
    /// The checkpoint being aligned and which inputs have delivered its barrier.
    current: Option<(CheckpointId, Vec<bool>)>,
    /// Messages from inputs past the barrier, waiting for the alignment to complete.
    held: VecDeque<Tagged>,
    /// Held messages to process again now that the alignment is complete.
    released: VecDeque<Tagged>,
}

impl BarrierAlignment {
    /// Whether messages of `input` must wait: it already delivered the current barrier.
    fn holds(&self, input: usize) -> bool {
        self.current.as_ref().is_some_and(|(_, arrived)| arrived[input])
    }

    /// Records barrier `id` from `input`; see [`BarrierAlignment::complete`].
    fn arrived(&mut self, input: usize, id: CheckpointId, ended: &[bool]) -> Option<CheckpointId> {
        let (_, arrived) = self.current.get_or_insert_with(|| (id, vec![false; ended.len()]));
        arrived[input] = true;
        self.complete(ended)
    }

    /// The current checkpoint's id once every live input (not `ended`) has
    /// delivered its barrier: it goes downstream now, and held messages are released.
    fn complete(&mut self, ended: &[bool]) -> Option<CheckpointId> {
        let (id, arrived) = self.current.as_ref()?;
        if !arrived.iter().zip(ended).all(|(a, e)| *a || *e) {
            return None;
        }
        let id = *id;
        self.current = None;
        // Held messages go before anything still in the channel, in their order.
        let mut released = std::mem::take(&mut self.held);
        released.append(&mut self.released);
        self.released = released;
        Some(id)
    }
}

/// The watermark state of a task's inputs: its own watermark is the minimum over
/// inputs that are neither ended nor idle.
struct InputWatermarks {
    watermarks: Vec<EventTime>,
    ended: Vec<bool>,
    idle: Vec<bool>,
    current: EventTime,
    /// Whether `Idle` was already sent downstream for the current all-idle spell.
    idle_sent: bool,
}

/// What [`InputWatermarks::combined`] found.
#[derive(Debug, PartialEq)]
enum Combined {
    Advanced(EventTime),
    /// Every live input is idle; like Flink, the watermark moves to the highest one
    /// among them (idle inputs have nothing older to send), then `Idle` goes downstream.
    AllIdle {
        advanced: Option<EventTime>,
    },
    Unchanged,
}

impl InputWatermarks {
    fn new(inputs: usize) -> Self {
        InputWatermarks {
            watermarks: vec![EventTime::MIN; inputs],
            ended: vec![false; inputs],
            idle: vec![false; inputs],
            current: EventTime::MIN,
            idle_sent: false,
        }
    }

    fn activate(&mut self, input: usize) {
        self.idle[input] = false;
        self.idle_sent = false;
    }

    fn combined(&mut self) -> Combined {
        let live = || (0..self.watermarks.len()).filter(|&i| !self.ended[i]);
        if live().next().is_some() && live().all(|i| self.idle[i]) {
            if self.idle_sent {
                return Combined::Unchanged;
            }
            self.idle_sent = true;
            let max = live().map(|i| self.watermarks[i]).max().unwrap_or(EventTime::MIN);
            let advanced = (max > self.current).then(|| {
                self.current = max;
                max
            });
            return Combined::AllIdle { advanced };
        }
        let min = live().filter(|&i| !self.idle[i]).map(|i| self.watermarks[i]).min().unwrap_or(EventTime::MAX);
        if min > self.current {
            self.current = min;
            Combined::Advanced(min)
        } else {
            Combined::Unchanged
        }
    }
}

/// A sink that keeps every batch in memory: for `SELECT` results and tests.
#[derive(Clone, Default)]
pub struct CollectSink {
    batches: Arc<std::sync::Mutex<Vec<RecordBatch>>>,
}

impl CollectSink {
    /// Everything written so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Sink for CollectSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), crate::connector::BoxError> {
        self.batches.lock().map_err(|_| "collect sink lock poisoned")?.push(batch);
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), crate::connector::BoxError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array};

    fn rows(v: i64) -> Message {
        Message::Batch(RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![v])) as ArrayRef)]).unwrap())
    }

    /// What a merge task with `inputs` inputs sends on, given `messages`: batches as
    /// their value, barriers as `-id`, end of stream as `i64::MIN`.
    async fn merge(inputs: usize, messages: Vec<Tagged>) -> Vec<i64> {
        let (tx, rx) = mpsc::channel(64);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        for m in messages {
            tx.send(m).await.unwrap();
        }
        drop(tx);
        let output = Output::Exchange { senders: vec![out_tx], input_index: 0, keys: Vec::new() };
        let snapshots = Snapshots { task: "test".into(), sender: None, finals: None };
        run_merge(rx, inputs, Chain::new(&[]).unwrap(), output, snapshots, None).await.unwrap();
        let mut seen = Vec::new();
        while let Some((_, m)) = out_rx.recv().await {
            seen.push(match m {
                Message::Batch(b) => b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0),
                Message::Barrier(id) => -(id.0 as i64),
                Message::Refresh(at) => 1_000_000 + at as i64,
                Message::EndOfStream => i64::MIN,
                other => panic!("unexpected {other:?}"),
            });
        }
        seen
    }

    #[tokio::test]
    async fn barriers_are_aligned_across_inputs() {
        let b = |id| Message::Barrier(CheckpointId(id));
        let got = merge(
            2,
            vec![
                (0, rows(1)),
                (0, b(1)),
                (0, rows(2)),
                (1, rows(3)),
                (1, b(1)),
                (0, b(2)),
                (1, rows(4)),
                (1, b(2)),
                (0, Message::EndOfStream),
                (1, Message::EndOfStream),
            ],
        )
        .await;
        // Row 2 came after input 0's barrier 1: it waits until input 1 delivered barrier 1.
        // Row 4 came before input 1's barrier 2: it belongs to checkpoint 2.
        assert_eq!(got, vec![1, 3, -1, 2, 4, -2, i64::MIN]);
    }

    /// Every input passes each refresh on; the merge sends it on once, when the
    /// first copy arrives, without waiting for the others (refreshes are not aligned).
    #[tokio::test]
    async fn a_refresh_goes_on_once_however_many_inputs_send_it() {
        let r = Message::Refresh;
        let got = merge(
            2,
            vec![(0, rows(1)), (0, r(5)), (1, rows(2)), (1, r(5)), (1, r(6)), (0, rows(3)), (0, r(6)), (0, Message::EndOfStream), (1, Message::EndOfStream)],
        )
        .await;
        assert_eq!(got, vec![1, 1_000_005, 2, 1_000_006, 3, i64::MIN]);
    }

    #[tokio::test]
    async fn an_ended_input_does_not_block_an_alignment() {
        let b = |id| Message::Barrier(CheckpointId(id));
        let got = merge(2, vec![(0, b(1)), (0, rows(2)), (1, rows(3)), (1, Message::EndOfStream), (0, Message::EndOfStream)]).await;
        assert_eq!(got, vec![3, -1, 2, i64::MIN]);
    }

    #[test]
    fn idle_inputs_do_not_hold_the_watermark_back() {
        let mut w = InputWatermarks::new(2);
        w.watermarks[0] = EventTime(100);
        assert_eq!(w.combined(), Combined::Unchanged, "input 1 has said nothing yet");
        w.idle[1] = true;
        assert_eq!(w.combined(), Combined::Advanced(EventTime(100)));
        // Input 1 comes back with an older watermark: it counts again, but the watermark never goes back.
        w.activate(1);
        w.watermarks[1] = EventTime(50);
        assert_eq!(w.combined(), Combined::Unchanged);
        w.watermarks[1] = EventTime(150);
        w.watermarks[0] = EventTime(120);
        assert_eq!(w.combined(), Combined::Advanced(EventTime(120)));
    }

    #[test]
    fn all_idle_is_forwarded_once_with_the_highest_watermark() {
        let mut w = InputWatermarks::new(2);
        w.idle = vec![true, true];
        assert_eq!(w.combined(), Combined::AllIdle { advanced: None });
        assert_eq!(w.combined(), Combined::Unchanged);
        // Input 0 brings rows up to 30, then goes idle again before input 1 wakes up.
        w.activate(0);
        w.watermarks[0] = EventTime(30);
        assert_eq!(w.combined(), Combined::Advanced(EventTime(30)));
        w.idle[0] = true;
        assert_eq!(w.combined(), Combined::AllIdle { advanced: None });
        w.activate(0);
        w.watermarks[0] = EventTime(40);
        w.idle[0] = true;
        assert_eq!(w.combined(), Combined::AllIdle { advanced: Some(EventTime(40)) });
        // An ended input is not idle and not live: the other one decides.
        w.ended[1] = true;
        w.activate(0);
        w.watermarks[0] = EventTime(50);
        assert_eq!(w.combined(), Combined::Advanced(EventTime(50)));
    }
}
