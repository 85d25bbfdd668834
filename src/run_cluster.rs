//! `eddy run FILE --cluster NAME`: processes running the same script share its
//! pipelines' work, partition by partition, through Kafka (docs/CLUSTER.md).
//!
//! Each pipeline is cut at its keyed operator. Below the cut, the source
//! topic's partitions are spread over the members, each read by a
//! re-partitioner that sends every record to the key group of its key in the
//! shuffle topic `eddy.NAME.PIPELINE.shuffle`, with watermark markers, in Kafka
//! transactions ([`eddy_connectors::kafka::shuffle`]). Where the aggregate
//! allows it, the re-partitioner runs the operators below the aggregate and
//! sends partial aggregates per slice and key instead of the records
//! ([`PreAggregation`]). Above the cut, each key group runs as a pipeline of its own over its shuffle partition, with its own
//! checkpoints under `--checkpoint-dir`, so it moves between members whole.
//!
//! Who does what is decided by Kafka's group protocol alone: the members join
//! two groups per pipeline, each over an empty topic whose partitions stand for
//! the work: `eddy.NAME.PIPELINE.sources` for the source partitions and
//! `eddy.NAME.PIPELINE.key-groups` for the key groups ([`Work`]). Two groups, so
//! each kind is spread evenly on its own. A member that joins, leaves or dies
//! moves its share.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use eddy_connectors::kafka::shuffle::{fnv1a, repartition, Release, RepartitionSpec, RepartitionTotals};
use eddy_engine::checkpoint::CheckpointStore;
use eddy_engine::metrics::{ExposedPipeline, PipelineState};
use eddy_engine::operators::pre_aggregate::{merging_node, PreAggregation};
use eddy_engine::plan::{GroupColumn, SourceNode, StreamNode, WindowAggregateNode};
use eddy_engine::runtime::Ended;
use eddy_engine::PipelineMetrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::savepoint;
use crate::server::cluster::{create_topic, ClusterOptions};
use crate::server::slots::{join_group, Handover, SlotChange};
use crate::session::PipelineSpec;
use crate::{EddyError, Session};

/// Key groups of a pipeline unless `SET 'cluster.key-groups'` says otherwise.
pub const DEFAULT_KEY_GROUPS: i32 = 64;
/// How often a member looks whether every key group has run to its end.
const FINISHED_CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long a failed re-partitioner or key group waits before it starts again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long a key group handed over in order may take to save a savepoint: past
/// it, it stops without one, and its next owner reads the shuffle again from its
/// last checkpoint.
const HANDOVER_SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failure stays in the progress line after it was last seen.
const TROUBLE_SHOWN_FOR: Duration = Duration::from_secs(30);

/// `SET 'cluster.pre-aggregate'`: whether a pipeline's shuffle may carry partial aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreAggregateSetting {
    /// Where the aggregate allows it ([`PreAggregation::of`]); the default.
    WhereAllowed,
    /// Never: every on-time record crosses the shuffle.
    Off,
}

/// What `eddy run --cluster` was given.
pub struct RunCluster {
    pub name: String,
    /// The brokers of the cluster's topics: `--kafka`, else the source table's.
    pub bootstrap: Option<String>,
    /// Every member's `--checkpoint-dir`.
    pub checkpoints: String,
    pub session_timeout: Duration,
    /// `--instance-id`: static membership ([`ClusterOptions::instance`]).
    pub instance: Option<String>,
    /// How often each pipeline prints what this member does (`None`: never).
    pub progress_every: Option<Duration>,
    /// `--http`: where to serve the metrics of the key groups this member runs.
    pub http: Option<String>,
}

/// The key groups this member runs, of every pipeline, by `PIPELINE/key-group-K`,
/// and each pipeline's re-partitioners here, `PIPELINE/re-partitioners`: what
/// `--http` shows at /metrics, each sample labelled with the member.
#[derive(Default)]
struct Shown(Mutex<BTreeMap<String, Arc<PipelineMetrics>>>);

impl Shown {
    fn set(&self, name: String, metrics: Option<Arc<PipelineMetrics>>) {
        let mut shown = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match metrics {
            Some(metrics) => shown.insert(name, metrics),
            None => shown.remove(&name),
        };
    }

    /// Serves /metrics at `address` until the process ends.
    async fn serve(self: Arc<Self>, address: &str, member: &str) -> Result<(), EddyError> {
        let listener = crate::http::bind(address).await?;
        let bound = listener.local_addr().map_err(|source| EddyError::Io { context: "cannot read the bound HTTP address".into(), source })?;
        eprintln!("eddy: metrics of this member's key groups at http://{bound}/metrics");
        let member = member.to_string();
        let render = move || {
            let shown = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let pipelines: Vec<ExposedPipeline<'_>> =
                shown.iter().map(|(name, metrics)| ExposedPipeline { name, state: PipelineState::Running, restarts: 0, metrics }).collect();
            eddy_engine::metrics::render_labelled(&pipelines, eddy_engine::metrics::now_ms(), &[("member", &member)])
        };
        crate::http::spawn(listener, crate::http::Routes::metrics_only(Arc::new(render)));
        Ok(())
    }
}

/// A pipeline as the cluster runs it: where it is cut, and its topics.
struct ClusterPipeline {
    index: usize,
    /// The pipeline's checkpoint directory name, as a lone run names it.
    id: String,
    source: SourceNode,
    key_columns: Vec<usize>,
    /// The aggregate above the cut, when its rows are pre-aggregated before the shuffle.
    pre_aggregate: Option<WindowAggregateNode>,
    /// `SET 'cluster.commit-interval'`: how often its re-partitioners commit.
    commit_every: Duration,
    source_partitions: i32,
    key_groups: i32,
    /// `eddy.NAME.PIPELINE`: what the pipeline's topics, groups and transactional
    /// ids are named after ([`ClusterPipeline::name`]).
    names: String,
}

/// What a slot of one of a pipeline's two groups stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Work {
    /// Re-partitioning this source partition.
    SourcePartition(i32),
    /// Running this key group's share of the pipeline.
    KeyGroup(i32),
}

/// Which of a pipeline's two groups slots are of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkGroup {
    /// `eddy.NAME.PIPELINE.sources`: a slot per source partition.
    SourcePartitions,
    /// `eddy.NAME.PIPELINE.key-groups`: a slot per key group.
    KeyGroups,
}

impl WorkGroup {
    fn work(self, slots: &BTreeSet<i32>) -> Vec<Work> {
        slots
            .iter()
            .map(|slot| match self {
                WorkGroup::SourcePartitions => Work::SourcePartition(*slot),
                WorkGroup::KeyGroups => Work::KeyGroup(*slot),
            })
            .collect()
    }

    /// `source partitions [0, 3]`, `key groups [5]`: what `slots` stand for, for the member's log.
    fn describe(self, slots: &BTreeSet<i32>) -> String {
        let slots: Vec<i32> = slots.iter().copied().collect();
        match self {
            WorkGroup::SourcePartitions => format!("source partitions {slots:?}"),
            WorkGroup::KeyGroups => format!("key groups {slots:?}"),
        }
    }
}

/// What a member's work on one pipeline is retrying through, for its progress
/// line: a broker gone mid-run shows there, not only in warnings.
#[derive(Default)]
struct Troubles(Mutex<BTreeMap<Work, (String, Instant)>>);

impl Troubles {
    /// `work` failed with `problem`, or (`None`) runs again.
    fn report(&self, work: Work, problem: Option<String>) {
        let mut troubles = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(problem) => troubles.insert(work, (problem, Instant::now())),
            None => troubles.remove(&work),
        };
    }

    /// Each problem seen lately, with the work it holds up: `PROBLEM (source partitions [0, 3], key groups [1])`.
    fn current(&self, now: impl IntoIterator<Item = (Work, String)>) -> Vec<String> {
        let mut by_problem: BTreeMap<String, Vec<Work>> = BTreeMap::new();
        let troubles = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let lately = troubles.iter().filter(|(_, (_, at))| at.elapsed() < TROUBLE_SHOWN_FOR).map(|(work, (problem, _))| (*work, problem.clone()));
        for (work, problem) in lately.chain(now) {
            by_problem.entry(problem).or_default().push(work);
        }
        by_problem
            .into_iter()
            .map(|(problem, work)| {
                let list = |group: WorkGroup| {
                    let slots: BTreeSet<i32> = work
                        .iter()
                        .filter_map(|w| match (w, group) {
                            (Work::SourcePartition(p), WorkGroup::SourcePartitions) | (Work::KeyGroup(p), WorkGroup::KeyGroups) => Some(*p),
                            _ => None,
                        })
                        .collect();
                    (!slots.is_empty()).then(|| group.describe(&slots))
                };
                let held: Vec<String> = [list(WorkGroup::SourcePartitions), list(WorkGroup::KeyGroups)].into_iter().flatten().collect();
                format!("{problem} ({})", held.join(", "))
            })
            .collect()
    }
}

impl ClusterPipeline {
    /// `eddy.NAME.PIPELINE.WHAT`: the pipeline's `shuffle`, `sources`,
    /// `key-groups` and `terms` topics, its `offsets` group.
    fn name(&self, what: &str) -> String {
        format!("{}.{what}", self.names)
    }

    fn store(&self, root: &CheckpointStore, group: i32) -> CheckpointStore {
        root.child(&format!("{}-key-group-{group}", self.id))
    }
}

/// Runs the script's pipelines as one member of the cluster until every key
/// group of every pipeline has run to its end, or `stop` turns true.
pub async fn run(script: &str, session: &Session, pipelines: &[PipelineSpec], options: RunCluster, stop: watch::Receiver<bool>) -> Result<(), EddyError> {
    let key_groups = session.key_groups();
    let pre_aggregate = session.pre_aggregate();
    let member = format!("{}:{}", hostname(), std::process::id());
    let root = CheckpointStore::open(&options.checkpoints).map_err(|e| EddyError::Cluster(format!("--checkpoint-dir {}: {e}", options.checkpoints)))?;
    let shown = Arc::new(Shown::default());
    if let Some(address) = &options.http {
        Arc::clone(&shown).serve(address, &member).await?;
    }
    let mut runs = Vec::new();
    for (index, spec) in pipelines.iter().enumerate() {
        let cut = cut(spec, pre_aggregate)?;
        let table_bootstrap = cut.source.table.option("properties.bootstrap.servers").unwrap_or_default().to_string();
        let bootstrap = options.bootstrap.clone().unwrap_or_else(|| table_bootstrap.clone());
        for brokers in BTreeSet::from([&table_bootstrap, &bootstrap]) {
            wait_for_brokers(brokers, &options.name, stop.clone()).await?;
        }
        let cluster = ClusterOptions {
            name: options.name.clone(),
            bootstrap,
            member: member.clone(),
            token: None,
            session_timeout: options.session_timeout,
            checkpoints: options.checkpoints.clone(),
            instance: options.instance.clone(),
        };
        let id = pipeline_id(spec);
        let source_partitions = partition_count(&cut.source)?;
        let shuffled = cut.shuffled.clone();
        let pipeline = ClusterPipeline {
            index,
            names: topic_prefix(&options.name, &id),
            id,
            pre_aggregate: (shuffled == PreAggregation::Partials).then_some(cut.aggregate),
            source: cut.source,
            key_columns: cut.key_columns,
            source_partitions,
            key_groups,
            commit_every: session.commit_interval(),
        };
        let terms = RunTerms {
            script: format!("{:016x}", fnv1a(script.as_bytes())),
            checkpoints: options.checkpoints.clone(),
            key_groups,
            shuffled: shuffled.label().to_string(),
        };
        terms.agree(&cluster, &pipeline.name("terms")).await?;
        create_topic(&cluster, &pipeline.name("shuffle"), key_groups).await?;
        let (source_changes, source_group) = join_group(&cluster, &pipeline.name("sources"), source_partitions).await?;
        let (key_group_changes, key_group_group) = join_group(&cluster, &pipeline.name("key-groups"), key_groups).await?;
        eprintln!(
            "eddy: {} (line {}) joins cluster {} as {member}: {source_partitions} source partition(s), {key_groups} key group(s) through {}",
            spec.name,
            spec.location.line,
            options.name,
            pipeline.name("shuffle")
        );
        let member = Member {
            pipeline: Arc::new(pipeline),
            script: script.to_string(),
            root: root.clone(),
            repartitioners: HashMap::new(),
            groups: HashMap::new(),
            troubles: Arc::new(Troubles::default()),
            shown: Arc::clone(&shown),
            progress_every: options.progress_every,
        };
        let stop = stop.clone();
        runs.push(async move {
            let ended = member.run(source_changes, key_group_changes, stop).await;
            // Leaving hands this member's share to the others at once.
            tokio::task::spawn_blocking(move || {
                source_group.leave();
                key_group_group.leave();
            })
            .await
            .ok();
            ended
        });
    }
    for ended in futures::future::join_all(runs).await {
        ended?;
    }
    Ok(())
}

/// What wakes a member's share of a pipeline up.
enum MemberEvent {
    /// Ctrl-C, SIGTERM, or the group is gone.
    Stopped,
    /// One of the groups moved slots to or from this member.
    Slots(WorkGroup, SlotChange),
    /// Time to look whether every key group has run to its end.
    CheckFinished,
    /// Time for a progress line.
    Progress,
}

/// A key group this member runs.
struct RunningKeyGroup {
    stop: watch::Sender<bool>,
    /// Notified to take a savepoint before an orderly hand-over.
    savepoint: Arc<tokio::sync::Notify>,
    /// Its pipeline runs now (not between a failure and its next start), so a savepoint can be taken.
    running: Arc<AtomicBool>,
    task: JoinHandle<()>,
    /// Its pipeline's metrics: its reader's problems, for the progress line.
    metrics: Arc<PipelineMetrics>,
}

/// One member's share of one pipeline.
struct Member {
    pipeline: Arc<ClusterPipeline>,
    script: String,
    root: CheckpointStore,
    repartitioners: HashMap<i32, (watch::Sender<Release>, JoinHandle<()>)>,
    groups: HashMap<i32, RunningKeyGroup>,
    /// Failures of this member's re-partitioners and key groups, for the progress line.
    troubles: Arc<Troubles>,
    /// The key groups of every pipeline this member runs, for /metrics.
    shown: Arc<Shown>,
    progress_every: Option<Duration>,
}

impl Member {
    async fn run(
        mut self,
        mut source_changes: mpsc::UnboundedReceiver<SlotChange>,
        mut key_group_changes: mpsc::UnboundedReceiver<SlotChange>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), EddyError> {
        let spec = Arc::new(RepartitionSpec {
            node: self.pipeline.source.clone(),
            key_columns: self.pipeline.key_columns.clone(),
            shuffle_topic: self.pipeline.name("shuffle"),
            key_groups: self.pipeline.key_groups,
            source_partitions: self.pipeline.source_partitions,
            transactional_prefix: self.pipeline.names.clone(),
            offsets_group: self.pipeline.name("offsets"),
            pre_aggregate: self.pipeline.pre_aggregate.clone(),
            commit_every: self.pipeline.commit_every,
            totals: RepartitionTotals::default(),
        });
        self.shown.set(format!("{}/re-partitioners", self.pipeline.id), Some(Arc::clone(&spec.totals.metrics)));
        let mut ended = Ok(());
        let mut check = tokio::time::interval(FINISHED_CHECK_EVERY);
        let mut progress = tokio::time::interval(self.progress_every.unwrap_or(Duration::from_secs(3600)));
        progress.tick().await;
        loop {
            let event = tokio::select! {
                _ = stop.wait_for(|s| *s) => MemberEvent::Stopped,
                change = source_changes.recv() => change.map_or(MemberEvent::Stopped, |c| MemberEvent::Slots(WorkGroup::SourcePartitions, c)),
                change = key_group_changes.recv() => change.map_or(MemberEvent::Stopped, |c| MemberEvent::Slots(WorkGroup::KeyGroups, c)),
                _ = check.tick() => MemberEvent::CheckFinished,
                _ = progress.tick(), if self.progress_every.is_some() => MemberEvent::Progress,
            };
            match event {
                MemberEvent::Stopped => break,
                MemberEvent::Slots(group, SlotChange::Gained(slots)) => {
                    eprintln!("eddy: {}: this member takes {}", self.pipeline.id, group.describe(&slots));
                    for work in group.work(&slots) {
                        match work {
                            Work::SourcePartition(p) => self.start_repartitioner(&spec, p),
                            Work::KeyGroup(k) => self.start_key_group(k),
                        }
                    }
                }
                MemberEvent::Slots(_, SlotChange::Expelled(why)) => {
                    ended = Err(EddyError::Cluster(format!("{}: {why}", self.pipeline.id)));
                    break;
                }
                MemberEvent::Slots(group, SlotChange::Lost(slots, how, stopped)) => {
                    let why = match how {
                        Handover::Orderly => "the group moves them",
                        Handover::Lost => "the group took them while this member was not heard from",
                    };
                    eprintln!("eddy: {}: this member hands over {} ({why})", self.pipeline.id, group.describe(&slots));
                    self.stop(&group.work(&slots), how).await;
                    let _ = stopped.send(());
                }
                MemberEvent::Progress => {
                    let done = spec.totals.snapshot();
                    let shuffled = match self.pipeline.pre_aggregate {
                        None => format!("{} rows shuffled", done.rows),
                        Some(_) => format!("{} rows shuffled as {} partial aggregates", done.rows, done.sent),
                    };
                    let problems = self.problems(&spec);
                    let retrying = if problems.is_empty() { String::new() } else { format!("; retrying: {}", problems.join("; ")) };
                    eprintln!(
                        "eddy: {}: this member reads {} of {} source partitions and runs {} of {} key groups; {shuffled}, {} late, {} malformed{retrying}",
                        self.pipeline.id,
                        self.repartitioners.len(),
                        self.pipeline.source_partitions,
                        self.groups.len(),
                        self.pipeline.key_groups,
                        done.late,
                        done.malformed
                    );
                }
                MemberEvent::CheckFinished => {
                    if self.all_finished().await {
                        eprintln!("eddy: {}: every key group ran to its end", self.pipeline.id);
                        break;
                    }
                }
            }
        }
        let everything: Vec<Work> =
            (0..self.pipeline.source_partitions).map(Work::SourcePartition).chain((0..self.pipeline.key_groups).map(Work::KeyGroup)).collect();
        self.stop(&everything, Handover::Orderly).await;
        ended
    }

    /// What this member's work on the pipeline is retrying through now or did lately.
    fn problems(&self, spec: &RepartitionSpec) -> Vec<String> {
        let readers = self.repartitioners.keys().filter_map(|p| Some((Work::SourcePartition(*p), spec.reader_problem(*p)?)));
        let key_groups = self.groups.iter().flat_map(|(k, RunningKeyGroup { metrics, .. })| {
            // "table partition: problem": the key group's one reader, its shuffle partition.
            metrics.source_health().1.into_iter().map(|p| (Work::KeyGroup(*k), p.split_once(": ").map_or(p.clone(), |(_, problem)| problem.to_string())))
        });
        self.troubles.current(readers.chain(key_groups).collect::<Vec<_>>())
    }

    fn start_repartitioner(&mut self, spec: &Arc<RepartitionSpec>, partition: i32) {
        let (release, told) = watch::channel(Release::Keep);
        let spec = Arc::clone(spec);
        let troubles = Arc::clone(&self.troubles);
        let task = tokio::spawn(async move {
            loop {
                match repartition(Arc::clone(&spec), partition, told.clone()).await {
                    Ok(done) => {
                        tracing::debug!(partition, ?done, "re-partitioner ended");
                        troubles.report(Work::SourcePartition(partition), None);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("cluster: re-partitioning {}/{partition} stopped: {e}", spec.node.table.name);
                        troubles.report(Work::SourcePartition(partition), Some(format!("re-partitioning stopped ({e}); starting again")));
                    }
                }
                // Fenced by another member, most likely: the group is moving the
                // partition, and says so to this member within a poll. Starting
                // again before that would fence the new owner in turn.
                tokio::time::sleep(RETRY_AFTER).await;
                if *told.borrow() != Release::Keep {
                    break;
                }
                tracing::info!("cluster: re-partitioning {}/{partition} again", spec.node.table.name);
            }
            // Its lag and problems are whoever reads it next's to show.
            spec.forget_reader(partition);
        });
        self.repartitioners.insert(partition, (release, task));
    }

    fn start_key_group(&mut self, group: i32) {
        let (stop, stopped) = watch::channel(false);
        let savepoint = Arc::new(tokio::sync::Notify::new());
        let trigger = Arc::clone(&savepoint);
        let (pipeline, script, root) = (Arc::clone(&self.pipeline), self.script.clone(), self.root.clone());
        let (metrics, troubles) = (Arc::new(PipelineMetrics::default()), Arc::clone(&self.troubles));
        let task_metrics = Arc::clone(&metrics);
        let running = Arc::new(AtomicBool::new(false));
        let task_running = Arc::clone(&running);
        let task = tokio::spawn(async move {
            loop {
                task_running.store(true, Ordering::Relaxed);
                let ended = run_key_group(&pipeline, &script, &root, group, Arc::clone(&task_metrics), Arc::clone(&trigger), stopped.clone()).await;
                task_running.store(false, Ordering::Relaxed);
                let stopping = *stopped.borrow();
                match ended {
                    Ok(_) => {
                        troubles.report(Work::KeyGroup(group), None);
                        return;
                    }
                    Err(e) if !stopping => {
                        tracing::warn!("cluster: key group {group} of {} failed: {e}; starting again from its last checkpoint", pipeline.id);
                        troubles.report(Work::KeyGroup(group), Some(format!("failed ({e}); starting again from its last checkpoint")));
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                    Err(_) => return,
                }
            }
        });
        self.shown.set(self.key_group_name(group), Some(Arc::clone(&metrics)));
        self.groups.insert(group, RunningKeyGroup { stop, savepoint, running, task, metrics });
    }

    /// `PIPELINE/key-group-K`: the key group's `pipeline` label at /metrics.
    fn key_group_name(&self, group: i32) -> String {
        format!("{}/key-group-{group}", self.pipeline.id)
    }

    /// Stops the work of `slots` before the group may give it to another member.
    /// Handed over in order, key groups first take a savepoint, so the next
    /// owner resumes where they stopped instead of reading the shuffle again
    /// from their last checkpoint.
    async fn stop(&mut self, work: &[Work], how: Handover) {
        if how == Handover::Orderly {
            // A key group that has saved no checkpoint yet has just resumed from one
            // (or started afresh): nothing to save, and its source tasks may not yet
            // watch the checkpoint ids, so a savepoint asked now could be missed.
            let saving = work.iter().filter_map(|work| match work {
                Work::KeyGroup(k) => {
                    self.groups.get(k).filter(|running| running.metrics.checkpoints_completed.load(Ordering::Relaxed) > 0).map(|running| (*k, running))
                }
                Work::SourcePartition(_) => None,
            });
            let saved = futures::future::join_all(saving.map(|(k, RunningKeyGroup { savepoint, running, metrics, .. })| async move {
                (k, savepoint::take(savepoint, metrics, HANDOVER_SAVEPOINT_TIMEOUT, || running.load(Ordering::Relaxed)).await)
            }))
            .await;
            for (k, saved) in saved {
                tracing::info!("cluster: key group {k} of {} before it moves: {saved:?}", self.pipeline.id);
            }
        }
        let mut waiting = Vec::new();
        for work in work {
            match *work {
                Work::SourcePartition(p) => {
                    if let Some((release, task)) = self.repartitioners.remove(&p) {
                        let _ = release.send(match how {
                            Handover::Orderly => Release::HandOver,
                            Handover::Lost => Release::Abandon,
                        });
                        waiting.push(task);
                    }
                }
                Work::KeyGroup(k) => {
                    if let Some(RunningKeyGroup { stop, task, .. }) = self.groups.remove(&k) {
                        self.shown.set(self.key_group_name(k), None);
                        let _ = stop.send(true);
                        waiting.push(task);
                    }
                }
            }
        }
        for task in waiting {
            let _ = task.await;
        }
    }

    async fn all_finished(&self) -> bool {
        for group in 0..self.pipeline.key_groups {
            if !self.pipeline.store(&self.root, group).is_finished().await.unwrap_or(false) {
                return false;
            }
        }
        true
    }
}

/// Runs key group `group` of the pipeline from its last checkpoint until it ends
/// or `stop` turns true; `savepoint` asks it for a checkpoint at once.
async fn run_key_group(
    pipeline: &ClusterPipeline,
    script: &str,
    root: &CheckpointStore,
    group: i32,
    metrics: Arc<PipelineMetrics>,
    savepoint: Arc<tokio::sync::Notify>,
    stop: watch::Receiver<bool>,
) -> Result<Ended, EddyError> {
    // The script is planned again, as a lone run would, and its source pointed at the shuffle.
    let mut session = Session::new();
    let mut pipelines = session.replan_script(script).await?;
    session.set("parallelism", "1")?;
    if pipeline.index >= pipelines.len() {
        return Err(EddyError::Internal(format!("the script has no pipeline {}", pipeline.index)));
    }
    let mut spec = pipelines.swap_remove(pipeline.index);
    if pipeline.pre_aggregate.is_some() {
        // The operators below the aggregate ran in the re-partitioners: the aggregate merges their partials.
        let aggregate = aggregate_mut(&mut spec.plan.root).ok_or_else(|| EddyError::Internal(format!("{}: no aggregate to merge partials", spec.name)))?;
        *aggregate = merging_node(aggregate, &pipeline.source).map_err(|e| EddyError::Internal(format!("{}: {e}", spec.name)))?;
    }
    let table = &pipeline.source.table.name;
    for source in sources_mut(&mut spec.plan.root) {
        if &source.table.name == table {
            let options = &mut source.table.options;
            options.insert("topic".to_string(), pipeline.name("shuffle"));
            options.insert("eddy.cluster.key-group".to_string(), group.to_string());
            let shuffled = if pipeline.pre_aggregate.is_some() { PreAggregation::Partials } else { PreAggregation::Rows("") };
            options.insert("eddy.cluster.shuffled".to_string(), shuffled.label().to_string());
            // The user's group sees the source's offsets, not the shuffle's.
            options.remove("properties.group.id");
        }
    }
    let sink = session.open_sink(&spec)?.ok_or_else(|| EddyError::Cluster(format!("{}: --cluster runs INSERT INTO pipelines only", spec.name)))?;
    let prepared = session.prepare(&spec).with_parallelism(1).with_checkpoint_trigger(savepoint);
    prepared.run_to_end(sink, metrics, stop, Some(pipeline.store(root, group))).await
}

/// What the members running one pipeline must agree on. The first member's are
/// the first record of the topic `eddy.NAME.PIPELINE.terms`; a member whose
/// differ refuses to start, naming each difference.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct RunTerms {
    /// The script's text, hashed: members running other SQL would write other rows.
    script: String,
    /// `--checkpoint-dir`: key groups resume from checkpoints the others saved.
    checkpoints: String,
    key_groups: i32,
    /// `rows` or `partials`: what the shuffle topic carries (absent: rows).
    #[serde(default = "rows")]
    shuffled: String,
}

fn rows() -> String {
    PreAggregation::Rows("").label().to_string()
}

impl RunTerms {
    async fn agree(&self, cluster: &ClusterOptions, topic: &str) -> Result<(), EddyError> {
        create_topic(cluster, topic, 1).await?;
        let (ours, bootstrap, topic_name) = (self.clone(), cluster.bootstrap.clone(), topic.to_string());
        let first = tokio::task::spawn_blocking(move || first_terms(&bootstrap, &topic_name, &ours))
            .await
            .map_err(|e| EddyError::Internal(format!("the terms check failed: {e}")))?
            .map_err(|e| cluster.error(e))?;
        let mut differences = Vec::new();
        if first.script != self.script {
            differences.push("its script differs from the one the cluster's first member ran (another file, or the file was changed)".to_string());
        }
        if first.checkpoints != self.checkpoints {
            differences.push(format!("--checkpoint-dir is {} here but {} in the cluster", self.checkpoints, first.checkpoints));
        }
        if first.key_groups != self.key_groups {
            differences.push(format!("'cluster.key-groups' is {} here but {} in the cluster", self.key_groups, first.key_groups));
        }
        if first.shuffled != self.shuffled {
            differences.push(format!("the shuffle carries {} here but {} in the cluster (another version of Eddy)", self.shuffled, first.shuffled));
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(cluster.error(format!("this member cannot join: {}", differences.join("; "))))
        }
    }
}

/// The first record of `topic`, after writing `ours` there if it is empty.
fn first_terms(bootstrap: &str, topic: &str, ours: &RunTerms) -> Result<RunTerms, String> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "eddy-terms").create().map_err(|e| e.to_string())?;
    let (low, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(15)).map_err(|e| format!("cannot read {topic}: {e}"))?;
    if high <= low {
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().map_err(|e| e.to_string())?;
        let json = serde_json::to_string(ours).map_err(|e| e.to_string())?;
        producer.send(BaseRecord::<(), str>::to(topic).partition(0).payload(&json)).map_err(|(e, _)| format!("cannot write to {topic}: {e}"))?;
        producer.flush(Duration::from_secs(15)).map_err(|e| format!("cannot write to {topic}: {e}"))?;
    }
    // Two first members may both have written: the earliest record holds.
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).map_err(|e| e.to_string())?;
    consumer.assign(&list).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.map_err(|e| format!("cannot read {topic}: {e}"))?;
            let payload = rdkafka::Message::payload(&message).unwrap_or_default();
            return serde_json::from_slice(payload).map_err(|e| format!("{topic} holds no terms Eddy wrote ({e})"));
        }
    }
    Err(format!("{topic} has no record 15 s after it was written"))
}

/// Where a pipeline is cut.
struct Cut {
    /// Its one source.
    source: SourceNode,
    /// The columns (of the source's visible schema) its keyed operator's keys are,
    /// which a shuffle of records hashes (partials are hashed by their own keys).
    key_columns: Vec<usize>,
    /// The keyed operator.
    aggregate: WindowAggregateNode,
    /// What the shuffle carries.
    shuffled: PreAggregation,
}

impl Cut {
    /// The names of the aggregate's keys, as its output names them.
    fn key_names(&self) -> Vec<String> {
        let fields = self.aggregate.schema.fields();
        self.aggregate.group.iter().zip(fields).filter(|(g, _)| matches!(g, GroupColumn::Key(_))).map(|(_, f)| f.name().clone()).collect()
    }
}

/// Where `spec` is cut, or why the cluster cannot run it. With partials crossing
/// the shuffle, its keys may be computed and its columns may read the record's
/// partition and offset: the re-partitioner, which reads the source topic itself,
/// computes the keys.
fn cut(spec: &PipelineSpec, setting: PreAggregateSetting) -> Result<Cut, EddyError> {
    let refuse = |why: &str| {
        EddyError::Cluster(format!(
            "{} (line {}): --cluster runs pipelines that read one Kafka topic and aggregate it by columns of that topic's table (GROUP BY with or without a window); {why}",
            spec.name, spec.location.line
        ))
    };
    let mut node = &spec.plan.root;
    // Stateless operators above the aggregate run with it.
    let aggregate = loop {
        match node {
            StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } => node = input,
            StreamNode::WindowAggregate(aggregate) => break aggregate,
            StreamNode::Source(_) => return Err(refuse("this one has no keyed operator, so every member can run it alone")),
            _ => return Err(refuse("this one joins, ranks or runs an OVER aggregate, which the cluster does not run yet")),
        }
    };
    let shuffled = match setting {
        PreAggregateSetting::WhereAllowed => PreAggregation::of(aggregate),
        PreAggregateSetting::Off => PreAggregation::Rows("SET 'cluster.pre-aggregate' = 'false'"),
    };
    // The source columns the keys are, or why they are not (what a shuffle of records needs).
    let mut keys: Result<Vec<usize>, String> = aggregate
        .key_exprs()
        .iter()
        .map(|key| as_column(key).ok_or_else(|| format!("the key {key} is an expression; group by a column of the table")))
        .collect();
    let mut node = aggregate.input.as_ref();
    loop {
        match node {
            StreamNode::Filter { input, .. } => node = input,
            StreamNode::WindowAssign { input, .. } => {
                let width = input.schema().fields().len();
                if keys.as_ref().is_ok_and(|keys| keys.iter().any(|k| *k >= width)) {
                    return Err(refuse("a window bound is a key beyond the window itself"));
                }
                node = input;
            }
            StreamNode::Project { input, exprs, .. } => {
                if let Ok(columns) = &keys {
                    keys = columns
                        .iter()
                        .map(|key| {
                            exprs.get(*key).and_then(as_column).ok_or_else(|| "a key is computed in the query; group by a column of the table".to_string())
                        })
                        .collect();
                }
                node = input;
            }
            StreamNode::Source(source) => {
                if source.table.connector() != "kafka" || source.table.option("topic").is_none() {
                    return Err(refuse(&format!("it reads {}, not one Kafka topic", source.table.name)));
                }
                if source.changelog {
                    return Err(refuse("it reads a changelog"));
                }
                let key_columns = match (&shuffled, keys) {
                    (PreAggregation::Partials, keys) => keys.unwrap_or_default(),
                    (PreAggregation::Rows(_), Err(why)) => return Err(refuse(&why)),
                    (PreAggregation::Rows(_), Ok(keys)) => {
                        for column in &source.table.columns {
                            if let Some(meta) = &column.metadata {
                                if matches!(meta.key.as_str(), "topic" | "partition" | "offset") {
                                    return Err(refuse(&format!(
                                        "its column {} reads the record's {}, which the shuffle topic changes",
                                        column.name, meta.key
                                    )));
                                }
                            }
                        }
                        keys
                    }
                };
                return Ok(Cut { source: source.clone(), key_columns, aggregate: aggregate.clone(), shuffled });
            }
            _ => return Err(refuse("more than one keyed operator, a join or a union below the aggregate")),
        }
    }
}

fn as_column(expr: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    expr.downcast_ref::<Column>().map(Column::index)
}

/// The aggregate of a plan of the shape [`cut`] accepts.
fn aggregate_mut(node: &mut StreamNode) -> Option<&mut WindowAggregateNode> {
    match node {
        StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } => aggregate_mut(input),
        StreamNode::WindowAggregate(aggregate) => Some(aggregate),
        _ => None,
    }
}

/// The source nodes of a plan of the shape [`cut`] accepts.
fn sources_mut(node: &mut StreamNode) -> Vec<&mut SourceNode> {
    match node {
        StreamNode::Source(source) => vec![source],
        StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } | StreamNode::WindowAssign { input, .. } => sources_mut(input),
        StreamNode::WindowAggregate(aggregate) => sources_mut(&mut aggregate.input),
        _ => Vec::new(),
    }
}

/// Waits until the brokers at `bootstrap` answer, saying so while they do not
/// (a member started before its brokers, as pods may be, waits for them).
async fn wait_for_brokers(bootstrap: &str, cluster: &str, mut stop: watch::Receiver<bool>) -> Result<(), EddyError> {
    /// How long one attempt waits for an answer.
    const ATTEMPT: Duration = Duration::from_secs(5);
    /// How often a failure is said again.
    const SAY_EVERY: Duration = Duration::from_secs(30);
    let started = std::time::Instant::now();
    let mut said: Option<std::time::Instant> = None;
    loop {
        let brokers = bootstrap.to_string();
        let answered = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).create().map_err(|e| e.to_string())?;
            client.fetch_metadata(None, ATTEMPT).map(|_| ()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| EddyError::Internal(format!("the broker check failed: {e}")))?;
        match answered {
            Ok(()) => {
                if said.is_some() {
                    eprintln!("eddy: cluster {cluster}: the brokers at {bootstrap} answer after {} s; joining", started.elapsed().as_secs());
                }
                return Ok(());
            }
            Err(e) if said.is_none_or(|at| at.elapsed() >= SAY_EVERY) => {
                eprintln!("eddy: cluster {cluster}: cannot reach the brokers at {bootstrap} ({e}); waiting for them");
                said = Some(std::time::Instant::now());
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Err(EddyError::Cluster(format!("stopped while waiting for the brokers at {bootstrap}"))),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// How many partitions the source topic has.
fn partition_count(source: &SourceNode) -> Result<i32, EddyError> {
    let bootstrap = source.table.option("properties.bootstrap.servers").unwrap_or_default();
    let topic = source.table.option("topic").unwrap_or_default();
    let client: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().map_err(|e| EddyError::Cluster(format!("cannot reach {bootstrap}: {e}")))?;
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(15))
        .map_err(|e| EddyError::Cluster(format!("cannot read the partitions of {topic} from {bootstrap}: {e}")))?;
    let count = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
    if count == 0 {
        return Err(EddyError::Cluster(format!("the topic {topic} does not exist on {bootstrap}; create it first")));
    }
    Ok(i32::try_from(count).unwrap_or(i32::MAX))
}

/// The pipeline's name in the cluster: its checkpoint directory's, as a lone run names it.
fn pipeline_id(spec: &PipelineSpec) -> String {
    format!("{}-line{}", spec.name, spec.location.line)
}

/// `eddy.CLUSTER.PIPELINE`: what a pipeline's topics, group and transactional ids are named after.
fn topic_prefix(cluster: &str, id: &str) -> String {
    format!("eddy.{cluster}.{}", topic_safe(id))
}

/// EXPLAIN's account of how `eddy run --cluster CLUSTER` runs `spec`: where it is
/// cut, and the topics, groups and checkpoints of each side; or why it cannot.
pub fn explain(spec: &PipelineSpec, cluster: &str, key_groups: i32, pre_aggregate: PreAggregateSetting) -> String {
    let cut = match cut(spec, pre_aggregate) {
        Ok(cut) => cut,
        Err(e) => return format!("Cluster {cluster}: every member would refuse this pipeline: {e}\n"),
    };
    let id = pipeline_id(spec);
    let names = topic_prefix(cluster, &id);
    let keys = cut.key_names();
    let topic = cut.source.table.option("topic").unwrap_or_default();
    let (sends, runs) = match cut.shuffled {
        PreAggregation::Partials => (
            "runs the operators below the aggregate and sends the partial aggregates of its rows, one per slice and key between two commits,",
            "merges the partial aggregates of its partition",
        ),
        PreAggregation::Rows(_) => ("sends on-time records", "runs the operators above over its partition"),
    };
    let unfolded = match cut.shuffled {
        PreAggregation::Rows(why) => format!("\n  Not pre-aggregated: {why}"),
        PreAggregation::Partials => String::new(),
    };
    format!(
        "Cluster {cluster}: cut below the aggregate, keyed by ({}), into {key_groups} key groups (named after this statement's line: {id})
  Re-partitioners: one per partition of topic {topic}, on the member the group {names}.sources gives it to; each {sends} to key group hash(key) % {key_groups}, partition of {names}.shuffle, with watermark markers, in Kafka transactions (transactional.id {names}.PARTITION, offsets in group {names}.offsets){unfolded}
  Key groups: each {runs} of {names}.shuffle, on the member the group {names}.key-groups gives it to, with checkpoints in CHECKPOINT-DIR/{id}-key-group-K
",
        keys.join(", ")
    )
}

/// `name` with only the characters Kafka allows in topic names.
fn topic_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".to_string())
}
