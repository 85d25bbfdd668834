//! The server's pipelines: each runs in its own task, can be stopped and started
//! again, and reports its status and counters for `GetPipeline`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use eddy_engine::changelog::changelog_schema;
use eddy_engine::checkpoint::CheckpointStore;
use eddy_engine::metrics::PipelineState;
use eddy_engine::{BoxError, ChangeBatch, PipelineMetrics, Rescaling, Sink};
use eddy_proto::Pipeline as PipelineStatus;
use eddy_sql::{Location, TableDef};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::error::EddyError;
use crate::savepoint::{self, Savepoint};
use crate::server::history::{spawn_sampler, History, Sample};
use crate::server::views::{MaterializedView, ViewSink};
use crate::session::PreparedPipeline;

/// Where a pipeline's rows go.
#[derive(Clone)]
pub enum Target {
    /// An `INSERT INTO` table.
    Table(TableDef, Location),
    /// A materialized view the server keeps.
    View(Arc<MaterializedView>),
}

/// How many output batches a slow subscriber of a pipeline may fall behind before it is dropped.
const OUTPUT_BUFFER: usize = 1024;

/// Passes everything to the pipeline's sink, and shows subscribers each batch it writes.
struct TeeSink {
    sink: Box<dyn Sink>,
    output: broadcast::Sender<RecordBatch>,
    schema: SchemaRef,
}

impl TeeSink {
    fn show(&self, changes: &ChangeBatch) {
        // Nobody listening is the common case: no copy then.
        if self.output.receiver_count() > 0 {
            match changes.to_changelog(&self.schema) {
                Ok(rows) => {
                    let _ = self.output.send(rows);
                }
                Err(e) => tracing::warn!("cannot show a pipeline's rows to its subscribers: {e}"),
            }
        }
    }
}

#[async_trait::async_trait]
impl Sink for TeeSink {
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        self.show(&changes);
        self.sink.write(changes).await
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        self.sink.commit().await
    }

    async fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        self.sink.prepare(checkpoint).await
    }

    async fn commit_checkpoint(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        self.sink.commit_checkpoint(checkpoint).await
    }

    async fn refresh(&mut self) -> Result<(), BoxError> {
        self.sink.refresh().await
    }

    async fn recover(&mut self, prepared: &[u8]) -> Result<(), BoxError> {
        self.sink.recover(prepared).await
    }
}

/// The phases of a pipeline's life, as `GetPipeline` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Running,
    Stopped,
    Finished,
    Failed(String),
}

impl Phase {
    /// The phase as `/metrics` shows it.
    fn state(&self) -> PipelineState {
        match self {
            Phase::Running => PipelineState::Running,
            Phase::Stopped => PipelineState::Stopped,
            Phase::Finished => PipelineState::Finished,
            Phase::Failed(_) => PipelineState::Failed,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Phase::Running => "RUNNING",
            Phase::Stopped => "STOPPED",
            Phase::Finished => "FINISHED",
            Phase::Failed(_) => "FAILED",
        }
    }
}

/// Which member of a cluster runs a pipeline (see [`super::slots`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunsOn {
    /// This server: a server on its own, or the member its slot is given to.
    Here,
    /// Another member, named by its gRPC address: listed and planned here, run there.
    Member(String),
    /// No member, as far as this one knows: its slot is being moved.
    Nobody,
}

/// One pipeline the server knows.
pub struct PipelineHandle {
    pub id: String,
    pub name: String,
    pub sql: String,
    pub target: Target,
    /// The member that runs it; a handle of another member's pipeline never starts here.
    runs_on: Mutex<RunsOn>,
    /// This member's name, shown for the pipelines it runs: empty outside a cluster.
    member: String,
    prepared: PreparedPipeline,
    /// Tasks per keyed operator; a restart may change it.
    parallelism: AtomicUsize,
    /// Where its checkpoints go; `None` when a source cannot resume from one
    /// (nexmark), so the pipeline starts over instead of restoring state twice.
    checkpoints: Option<CheckpointStore>,
    /// Notified to take a checkpoint at once (a savepoint).
    savepoint: Arc<tokio::sync::Notify>,
    /// An `INSERT INTO` pipeline's rows as it writes them, for `Subscribe`.
    output: broadcast::Sender<RecordBatch>,
    /// How many times it was started since the server started, for its restarts in `/metrics`.
    starts: AtomicU64,
    /// Its figures over the last minutes, for the console's charts.
    history: Arc<History>,
    run: Mutex<Run>,
}

/// The current (or last) run of a pipeline.
struct Run {
    phase: Phase,
    started_at: SystemTime,
    metrics: Arc<PipelineMetrics>,
    rate: Arc<AtomicU64>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl PipelineHandle {
    /// A pipeline that has not started; its checkpoints go under `checkpoints`.
    /// `member` is this server's name in its cluster (empty outside one).
    pub fn new(id: &str, sql: &str, prepared: PreparedPipeline, target: Target, checkpoints: CheckpointStore, runs_on: RunsOn, member: &str) -> Arc<Self> {
        let name = match &target {
            Target::Table(def, _) => def.name.clone(),
            Target::View(view) => view.name.clone(),
        };
        let resumable = prepared.plan.sources().iter().all(|s| eddy_connectors::can_resume(&s.table));
        Arc::new(PipelineHandle {
            id: id.to_string(),
            name,
            sql: sql.to_string(),
            target,
            runs_on: Mutex::new(runs_on),
            member: member.to_string(),
            parallelism: AtomicUsize::new(prepared.parallelism()),
            prepared,
            checkpoints: resumable.then_some(checkpoints),
            savepoint: Arc::default(),
            output: broadcast::channel(OUTPUT_BUFFER).0,
            starts: AtomicU64::new(0),
            history: Arc::default(),
            run: Mutex::new(Run {
                phase: Phase::Stopped,
                started_at: SystemTime::now(),
                metrics: Arc::default(),
                rate: Arc::default(),
                stop: None,
                task: None,
            }),
        })
    }

    /// Starts the pipeline (from its last checkpoint, when it has one).
    pub fn start(self: &Arc<Self>) -> Result<(), EddyError> {
        self.start_with(None)
    }

    /// Starts the pipeline, with `parallelism` tasks per keyed operator from now on when given.
    pub fn start_with(self: &Arc<Self>, parallelism: Option<usize>) -> Result<(), EddyError> {
        self.check_runs_here()?;
        let mut run = self.lock_run();
        if run.phase == Phase::Running {
            return Err(EddyError::Conflict(format!("pipeline {} is already running", self.id)));
        }
        if let Some(parallelism) = parallelism {
            self.parallelism.store(parallelism.max(1), Ordering::Relaxed);
        }
        let sink: Box<dyn Sink> = match &self.target {
            Target::Table(def, location) => {
                let sink = crate::session::create_sink(def, *location)?;
                Box::new(TeeSink { sink, output: self.output.clone(), schema: changelog_schema(&def.sink_schema()) })
            }
            Target::View(view) => Box::new(ViewSink::new(Arc::clone(view)).map_err(|e| EddyError::Conflict(e.to_string()))?),
        };
        let metrics = Arc::new(PipelineMetrics::default());
        let rate = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let store = self.checkpoints.clone();
        let sampler = spawn_sampler(Arc::clone(&metrics), Arc::clone(&rate), Arc::clone(&self.history));
        let this = Arc::clone(self);
        let mut prepared = self.prepared.clone().with_parallelism(self.parallelism()).with_checkpoint_trigger(Arc::clone(&self.savepoint));
        if let Target::View(_) = &self.target {
            prepared = prepared.with_refresh_interval(crate::server::views::VIEW_REFRESH_INTERVAL);
        }
        let task_metrics = Arc::clone(&metrics);
        let task = tokio::spawn(async move {
            let result = prepared.run(sink, task_metrics, stop_rx, store).await;
            sampler.abort();
            let mut run = this.lock_run();
            let stopped = run.stop.as_ref().is_some_and(|s| *s.borrow());
            run.phase = match result {
                Err(e) => {
                    tracing::warn!(pipeline = %this.id, "pipeline failed: {e}");
                    Phase::Failed(e.to_string())
                }
                Ok(()) if stopped => Phase::Stopped,
                Ok(()) => Phase::Finished,
            };
            run.stop = None;
        });
        *run = Run { phase: Phase::Running, started_at: SystemTime::now(), metrics, rate, stop: Some(stop_tx), task: Some(task) };
        self.starts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stops the pipeline and waits until its sinks have committed. A stopped view
    /// goes back to its last checkpoint, which is what a restart (of the pipeline or
    /// of the server) shows: refreshes may have shown rows after it.
    pub async fn stop(&self) {
        let task = {
            let mut run = self.lock_run();
            if let Some(stop) = &run.stop {
                let _ = stop.send(true);
            }
            run.task.take()
        };
        let Some(task) = task else { return };
        let _ = task.await;
        if let (Target::View(view), false) = (&self.target, self.is_finished()) {
            if self.checkpoints.is_none() {
                return;
            }
            let shown = match self.load_stopped_view().await {
                Ok(true) => Ok(()),
                Ok(false) => view.clear().map_err(|e| EddyError::Conflict(e.to_string())),
                Err(e) => Err(e),
            };
            if let Err(e) = shown {
                tracing::warn!(pipeline = %self.id, "the stopped view keeps the rows it showed: {e}");
            }
        }
    }

    /// For a clean server shutdown: a running view's pipeline stops with a savepoint,
    /// so the restarted server shows the rows the view showed; others just stop.
    pub async fn stop_for_shutdown(&self) {
        if matches!(self.target, Target::View(_)) && self.checkpoints.is_some() && self.is_running() {
            if let Err(e) = self.stop_with_savepoint().await {
                tracing::warn!(pipeline = %self.id, "no savepoint before the shutdown: {e}");
            }
        }
        self.stop().await;
    }

    /// Takes a checkpoint now and waits until it is saved, then stops: the
    /// pipeline restarts exactly there. Returns the checkpoint's id.
    pub async fn stop_with_savepoint(&self) -> Result<u64, EddyError> {
        let metrics = {
            let run = self.lock_run();
            if run.phase != Phase::Running {
                return Err(EddyError::Conflict(format!("pipeline {} is not running, so there is nothing to save", self.id)));
            }
            if self.checkpoints.is_none() {
                return Err(EddyError::Conflict(format!(
                    "pipeline {} keeps no checkpoints (a source cannot resume from one), so it cannot take a savepoint; STOP PIPELINE {} without one",
                    self.id, self.id
                )));
            }
            Arc::clone(&run.metrics)
        };
        match savepoint::take(&self.savepoint, &metrics, SAVEPOINT_TIMEOUT, || self.is_running()).await {
            Savepoint::Saved(id) => {
                self.stop().await;
                Ok(id)
            }
            Savepoint::PipelineEnded => Err(EddyError::Conflict(format!("pipeline {} ended before its savepoint completed", self.id))),
            Savepoint::TimedOut => Err(EddyError::Conflict(format!(
                "pipeline {}: the savepoint did not complete within {} s (a slow sink or a stuck source); the pipeline keeps running",
                self.id,
                SAVEPOINT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Forgets that an earlier run completed, so the next start reads its input
    /// again from the beginning (RESTART PIPELINE of a finished pipeline). A plain
    /// start after a server restart keeps the record and does not run it again.
    pub async fn forget_completion(&self) -> Result<(), EddyError> {
        let Some(store) = &self.checkpoints else { return Ok(()) };
        store.reset().await.map_err(|e| EddyError::Conflict(format!("pipeline {}: cannot clear its completion record: {e}", self.id)))
    }

    /// Tasks per keyed operator it runs with.
    pub fn parallelism(&self) -> usize {
        self.parallelism.load(Ordering::Relaxed)
    }

    /// True once its sources ended and its sinks committed.
    pub fn is_finished(&self) -> bool {
        self.lock_run().phase == Phase::Finished
    }

    /// True while it runs but commits nothing more: another run of it (on another
    /// cluster member) saved a checkpoint it was saving.
    pub fn is_fenced(&self) -> bool {
        let run = self.lock_run();
        run.phase == Phase::Running && run.metrics.fenced.load(Ordering::Relaxed)
    }

    /// True while it runs.
    pub fn is_running(&self) -> bool {
        self.lock_run().phase == Phase::Running
    }

    /// Why its last run failed, when it did.
    pub fn failure(&self) -> Option<String> {
        match &self.lock_run().phase {
            Phase::Failed(error) => Some(error.clone()),
            _ => None,
        }
    }

    /// The tables (and views) it reads.
    pub fn source_tables(&self) -> Vec<String> {
        self.prepared.plan.sources().iter().map(|s| s.table.name.clone()).collect()
    }

    /// True when it reads or writes `table`.
    pub fn uses_table(&self, table: &str) -> bool {
        matches!(&self.target, Target::Table(def, _) if def.name == table) || self.prepared.plan.sources().iter().any(|s| s.table.name == table)
    }

    /// Follows an `INSERT INTO` pipeline's output: the rows it writes to its sink
    /// from now on (an `op` column first: `+I`, or `-D` for retractions), as they
    /// are written, before the sink commits them. `None` for a view's pipeline:
    /// subscribe to the view instead.
    pub fn subscribe_output(&self) -> Option<(SchemaRef, broadcast::Receiver<RecordBatch>)> {
        match &self.target {
            Target::Table(def, _) => Some((changelog_schema(&def.sink_schema()), self.output.subscribe())),
            Target::View(_) => None,
        }
    }

    /// A stopped view's rows as of its pipeline's last checkpoint, so a restarted
    /// server shows what it showed before the restart (the pipeline stays stopped).
    /// True when there was a checkpoint (or a completion record) to load.
    pub async fn load_stopped_view(&self) -> Result<bool, EddyError> {
        let (Target::View(view), Some(store)) = (&self.target, &self.checkpoints) else { return Ok(false) };
        // A view whose pipeline ran to its end keeps its last rows in the completion record.
        let latest = match store.completion().await {
            Ok(None) => store.latest().await,
            completion => completion,
        };
        let checkpoint = latest.map_err(|e| EddyError::Conflict(format!("materialized view `{}`: cannot read its checkpoints: {e}", view.name)))?;
        let Some(checkpoint) = checkpoint else { return Ok(false) };
        if let Some(bytes) = checkpoint.tasks.values().find_map(|t| t.sink.as_ref()) {
            view.restore(bytes).map_err(|e| EddyError::Conflict(format!("materialized view `{}`: cannot load its last checkpoint: {e}", view.name)))?;
        }
        Ok(true)
    }

    /// What planning found worth a warning (see [`eddy_sql::StreamPlan::warnings`]).
    pub fn warnings(&self) -> Vec<String> {
        self.prepared.plan.warnings()
    }

    /// Its current run's figures, its status and how many times it was started
    /// again since the server started, for `/metrics`.
    pub fn figures(&self) -> (Arc<PipelineMetrics>, PipelineState, u64) {
        let run = self.lock_run();
        (Arc::clone(&run.metrics), run.phase.state(), self.starts.load(Ordering::Relaxed).saturating_sub(1))
    }

    /// Its status and counters, for `GetPipeline`.
    pub fn status(&self) -> PipelineStatus {
        let runs_on = self.runs_on();
        let run = self.lock_run();
        let m = run.metrics.snapshot();
        let watermark = run.metrics.watermark().0;
        let (state_rows, state_bytes) = match &self.target {
            Target::View(view) => view.size(),
            // An INSERT INTO pipeline keeps no rows of its own; its operators' state is what it holds.
            Target::Table(..) => (0, run.metrics.state_bytes.load(Ordering::Relaxed)),
        };
        let refreshed = run.metrics.refreshed_at_ms.load(Ordering::Relaxed);
        PipelineStatus {
            id: self.id.clone(),
            name: self.name.clone(),
            sql: self.sql.clone(),
            status: match &runs_on {
                RunsOn::Here => run.phase.name().to_string(),
                RunsOn::Member(_) => "REMOTE".to_string(),
                RunsOn::Nobody => "UNASSIGNED".to_string(),
            },
            member: match runs_on {
                RunsOn::Here => self.member.clone(),
                RunsOn::Member(member) => member,
                RunsOn::Nobody => String::new(),
            },
            error: match &run.phase {
                Phase::Failed(e) => e.clone(),
                _ => String::new(),
            },
            started_at_ms: run.started_at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
            rows_in: m.rows_in,
            rows_out: m.rows_out,
            late_rows: m.late_rows,
            null_time_rows: m.null_time_rows,
            malformed_rows: m.malformed_rows,
            watermark_ms: (watermark != i64::MIN && watermark != i64::MAX).then_some(watermark),
            rows_in_per_second: f64::from_bits(run.rate.load(Ordering::Relaxed)),
            state_rows,
            state_bytes,
            checkpoint_id: run.metrics.checkpoint_id.load(Ordering::Relaxed),
            checkpoint_ms: run.metrics.checkpoint_ms.load(Ordering::Relaxed),
            checkpoint_bytes: run.metrics.checkpoint_bytes.load(Ordering::Relaxed),
            parallelism: self.parallelism() as u32,
            lag_rows: run.metrics.source_health().0,
            checkpoint_at_ms: run.metrics.checkpoint_at_ms.load(Ordering::Relaxed),
            view_as_of_ms: (refreshed > 0).then_some(refreshed as i64),
        }
    }

    /// Brings the pipeline back as the catalog recorded it (a server started again,
    /// or a cluster member given its slot): running from its last checkpoint, or
    /// stopped, its view showing the rows of that checkpoint.
    pub async fn resume_as_recorded(self: &Arc<Self>, record: &crate::server::catalog::PipelineRecord) -> Result<(), EddyError> {
        if record.running {
            self.start_with(record.parallelism)
        } else {
            self.load_stopped_view().await.map(|_| ())
        }
    }

    /// Refuses to act on another member's pipeline: only its owner starts and stops it.
    pub fn check_runs_here(&self) -> Result<(), EddyError> {
        match self.runs_on() {
            RunsOn::Here => Ok(()),
            RunsOn::Member(member) => {
                Err(EddyError::Conflict(format!("pipeline {} runs on cluster member {member}; stop or restart it there (eddy sql --host {member})", self.id)))
            }
            RunsOn::Nobody => Err(EddyError::Conflict(format!(
                "pipeline {} is moving between cluster members (SHOW PIPELINES shows where it runs once it does); try again there",
                self.id
            ))),
        }
    }

    /// Which member runs it.
    pub fn runs_on(&self) -> RunsOn {
        self.runs_on.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Records which member runs it (its slot moved).
    pub fn set_runs_on(&self, runs_on: RunsOn) {
        *self.runs_on.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = runs_on;
    }

    /// Refuses, before anything starts, a restart with `parallelism` tasks that the
    /// restore of its last checkpoint would fail on: a source whose positions
    /// are kept per reader (a generator) resumes only with the parallelism it was
    /// saved with. Without a checkpoint, any parallelism starts afresh.
    pub async fn check_rescaling(&self, parallelism: usize) -> Result<(), EddyError> {
        let saved = self.parallelism();
        if parallelism == saved {
            return Ok(());
        }
        let Some(store) = &self.checkpoints else { return Ok(()) };
        let fixed: Vec<String> = self
            .prepared
            .plan
            .sources()
            .iter()
            .filter(|s| eddy_connectors::rescaling(&s.table) == Rescaling::SavedParallelismOnly)
            .map(|s| format!("`{}` ({})", s.table.name, s.table.connector()))
            .collect();
        if fixed.is_empty() {
            return Ok(());
        }
        let checkpoint = store.latest().await.map_err(|e| EddyError::Conflict(format!("cannot read pipeline {}'s checkpoints: {e}", self.id)))?;
        match checkpoint {
            None => Ok(()),
            Some(c) => Err(EddyError::Conflict(format!(
                "pipeline {} resumes from checkpoint {} with parallelism {saved}: its source {} keeps one position per reader and resumes only with that parallelism. RESTART PIPELINE {} without WITH PARALLELISM, or drop and create it again to start over with {parallelism}",
                self.id,
                c.id,
                fixed.join(", "),
                self.id
            ))),
        }
    }

    /// Its figures over the last minutes, one sample a second while it ran.
    pub fn history(&self) -> Vec<Sample> {
        self.history.samples()
    }

    fn lock_run(&self) -> std::sync::MutexGuard<'_, Run> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.run.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long a savepoint may take before the stop is given up.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(120);

/// Every pipeline of a server, by id.
#[derive(Default)]
pub struct Pipelines {
    by_id: Mutex<BTreeMap<String, Arc<PipelineHandle>>>,
}

impl Pipelines {
    /// Adds a pipeline.
    pub fn insert(&self, handle: Arc<PipelineHandle>) {
        self.lock().insert(handle.id.clone(), handle);
    }

    /// Removes a pipeline (after stopping it).
    pub fn remove(&self, id: &str) -> Option<Arc<PipelineHandle>> {
        self.lock().remove(id)
    }

    /// A pipeline by id, or by the name of the table or view it writes.
    pub fn find(&self, id_or_name: &str) -> Result<Arc<PipelineHandle>, EddyError> {
        let by_id = self.lock();
        if let Some(p) = by_id.get(id_or_name) {
            return Ok(Arc::clone(p));
        }
        let named: Vec<&Arc<PipelineHandle>> = by_id.values().filter(|p| p.name == id_or_name).collect();
        match named.as_slice() {
            [one] => Ok(Arc::clone(one)),
            [] => Err(EddyError::NotFound(format!(
                "no pipeline `{id_or_name}`; SHOW PIPELINES lists them ({})",
                if by_id.is_empty() { "there are none".to_string() } else { by_id.keys().cloned().collect::<Vec<_>>().join(", ") }
            ))),
            many => Err(EddyError::NotFound(format!(
                "several pipelines write `{id_or_name}` ({}); name one by its id",
                many.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Every pipeline, by id.
    pub fn all(&self) -> Vec<Arc<PipelineHandle>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<PipelineHandle>>> {
        self.by_id.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
