//! `eddy server`: a long-running engine that people submit continuous SQL to over
//! gRPC. It keeps a catalog (tables, views, settings, pipelines) in its data
//! directory, runs each pipeline in its own task with checkpoints under
//! `DATA_DIR/checkpoints/ID`, serves materialized views, and on start replays the
//! catalog and restarts the pipelines that were running (from their checkpoints).

pub mod analyze;
pub mod catalog;
pub mod cluster;
pub mod flight;
pub mod history;
pub mod lock;
pub mod pg;
pub mod pipelines;
mod point_lookup;
pub mod queries;
pub mod service;
pub mod slots;
mod view_index;
pub mod views;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use eddy_engine::checkpoint::CheckpointStore;
use eddy_sql::{parse_script, DropWhat, KeyLost, Location, OutputKey, ParsedStatement, ShowWhat, Statement, StreamPlan};
use tokio::sync::{mpsc, Mutex};

use crate::error::EddyError;
use crate::session::{answer_without_tables, batch_context, describe_rows, string_rows, Session};
use catalog::{Catalog, PipelineRecord};
use cluster::{Change, ClusterOptions, Command, CommandLog};
use pipelines::{PipelineHandle, Pipelines, RunsOn, Target};
use queries::{FinalRows, FinalRowsSink, Queries, QueryRun};
use slots::{slot_of, Handover, SlotChange, SlotMap};
use views::{MaterializedView, ViewSource};

/// What a statement sends back to its caller, in order.
pub enum Reply {
    /// A result set starts.
    Schema(SchemaRef),
    /// Rows of the current result set.
    Batch(RecordBatch),
    /// The statement is done.
    Done { tag: String, pipeline_id: Option<String>, rows: u64 },
    /// Something the user should know about a statement that was accepted (a
    /// window that multiplies state), sent before its `Done`, like psql's WARNING.
    Notice(String),
}

/// What a statement will answer, known before it runs (see [`Server::describe`]).
pub struct Described {
    /// The columns of its rows; `None` for a statement that answers none (DDL).
    pub columns: Option<SchemaRef>,
    /// The type of each `$N` parameter, where the plan tells it.
    pub parameters: Vec<Option<datafusion::arrow::datatypes::DataType>>,
}

/// A table, view or materialized view, as the Postgres protocol's catalog lists it.
pub struct Relation {
    /// The name queries read it by.
    pub name: String,
    /// Table, view or materialized view: tools list them apart (`\dt`, `\dv`, `\dm`).
    pub kind: RelationKind,
    /// The columns a query of it sees.
    pub columns: SchemaRef,
}

/// What a [`Relation`] is (Postgres's `relkind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelationKind {
    /// A table of `CREATE TABLE` (a source or a sink).
    Table,
    /// A view of `CREATE VIEW`: a named query, planned into each statement that reads it.
    View,
    /// A materialized view: rows a pipeline keeps up to date.
    MaterializedView,
}

impl RelationKind {
    /// How people name it (`table`, `view`, `materialized view`), as messages, the
    /// console and Postgres tools show it; the catalog file's statements are kept under the first two.
    pub fn name(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::View => "view",
            RelationKind::MaterializedView => "materialized view",
        }
    }
}

impl From<DropWhat> for RelationKind {
    fn from(what: DropWhat) -> Self {
        match what {
            DropWhat::Table => RelationKind::Table,
            DropWhat::View => RelationKind::View,
            DropWhat::MaterializedView => RelationKind::MaterializedView,
        }
    }
}

/// The server's state: catalog, pipelines and views.
pub struct Server {
    data_dir: PathBuf,
    /// Held while the server lives, so no second server opens the same directory.
    _lock: lock::DataDirLock,
    /// Where pipelines keep their checkpoints, one `ID/` under it each.
    checkpoints: CheckpointStore,
    /// Statements that change the catalog run one at a time, so the catalog and
    /// its file change in order. Taken before `session`, never after.
    state: Mutex<State>,
    /// The tables, views and settings statements are planned against. Statements
    /// that only read it (SELECT, EXPLAIN, SHOW, DESCRIBE) share it, so planning
    /// one does not hold up other clients; those that change it write it.
    session: tokio::sync::RwLock<Session>,
    pipelines: Pipelines,
    views: RwLock<BTreeMap<String, Arc<MaterializedView>>>,
    /// The ad-hoc SELECTs running now, for SHOW PIPELINES.
    queries: Arc<Queries>,
    /// Turns true when the server begins to stop, so endless streams (Subscribe) end.
    closing: tokio::sync::watch::Sender<bool>,
    /// This member's part in its cluster; `None` on a server on its own.
    cluster: Option<Cluster>,
}

/// A member's part in its cluster.
struct Cluster {
    /// The command log every catalog change goes through (see [`cluster`]).
    log: Arc<CommandLog>,
    /// Which member runs which pipeline (see [`slots`]).
    slots: std::sync::Mutex<SlotMap>,
    /// This member's place in the slot group, until it leaves at shutdown.
    group: std::sync::Mutex<Option<slots::SlotGroup>>,
    /// What the cluster's members agree on, once the log said it.
    terms: std::sync::Mutex<Option<cluster::Terms>>,
}

impl Cluster {
    /// The terms the first member stated, once this member read them.
    fn agreed_terms(&self) -> Option<cluster::Terms> {
        self.terms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn slot_map(&self) -> std::sync::MutexGuard<'_, SlotMap> {
        // Plain data: a panic elsewhere while holding it leaves nothing half-done.
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct State {
    catalog: Catalog,
}

impl Server {
    /// Opens (or creates) the data directory, replays its catalog and starts the
    /// pipelines that were running, with checkpoints under `DATA_DIR/checkpoints`.
    /// Refuses a directory another server holds (see [`lock`]).
    pub async fn open(data_dir: &Path) -> Result<Arc<Server>, EddyError> {
        Self::open_with_checkpoints(data_dir, None).await
    }

    /// [`Server::open`], keeping checkpoints at `checkpoints` (a directory or
    /// `s3://bucket/prefix`) instead of under the data directory.
    pub async fn open_with_checkpoints(data_dir: &Path, checkpoints: Option<&str>) -> Result<Arc<Server>, EddyError> {
        Self::open_as(data_dir, checkpoints, None).await
    }

    /// [`Server::open_with_checkpoints`] as a member of a cluster: its catalog is
    /// the cluster's command log (see [`cluster`]), read from its start, not the
    /// data directory's file.
    pub async fn open_in_cluster(data_dir: &Path, checkpoints: Option<&str>, cluster: ClusterOptions) -> Result<Arc<Server>, EddyError> {
        Self::open_as(data_dir, checkpoints, Some(cluster)).await
    }

    async fn open_as(data_dir: &Path, checkpoints: Option<&str>, cluster: Option<ClusterOptions>) -> Result<Arc<Server>, EddyError> {
        let checkpoints = match checkpoints {
            Some(location) => CheckpointStore::open(location).map_err(|e| EddyError::Conflict(format!("--checkpoints {location}: {e}")))?,
            None => CheckpointStore::new(data_dir.join("checkpoints")),
        };
        std::fs::create_dir_all(data_dir)
            .map_err(|source| EddyError::Io { context: format!("cannot create the data directory {}", data_dir.display()), source })?;
        let lock = lock::DataDirLock::acquire(data_dir)?;
        let (catalog, cluster) = match cluster {
            Some(options) => (None, Some(Arc::new(CommandLog::open(options).await?))),
            None => (Some(Catalog::load(data_dir)?), None),
        };
        let server = Arc::new(Server {
            data_dir: data_dir.to_path_buf(),
            _lock: lock,
            checkpoints,
            state: Mutex::new(State { catalog: Catalog::default() }),
            session: tokio::sync::RwLock::new(Session::new()),
            pipelines: Pipelines::default(),
            views: RwLock::default(),
            queries: Arc::default(),
            closing: tokio::sync::watch::channel(false).0,
            cluster: cluster.map(|log| Cluster {
                slots: std::sync::Mutex::new(SlotMap::new(&log.options.member)),
                group: Default::default(),
                terms: Default::default(),
                log,
            }),
        });
        match catalog {
            Some(catalog) => server.replay(catalog).await?,
            None => server.join_cluster().await?,
        }
        // A pipeline whose sources ended is done: a restarted server must not run it again.
        let weak = Arc::downgrade(&server);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let Some(server) = weak.upgrade() else { return };
                if let Err(e) = server.forget_finished().await {
                    tracing::warn!("cannot record finished pipelines: {e}");
                }
                server.restart_fenced().await;
            }
        });
        Ok(server)
    }

    async fn forget_finished(&self) -> Result<(), EddyError> {
        let finished: Vec<String> = self.pipelines.all().iter().filter(|p| p.is_finished()).map(|p| p.id.clone()).collect();
        if finished.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let ended: Vec<String> = state.catalog.pipelines.iter().filter(|r| r.running && finished.contains(&r.id)).map(|r| r.id.clone()).collect();
        for id in ended {
            self.record_running(&mut state, &id, false, None).await?;
        }
        Ok(())
    }

    /// Starts again, from the newest checkpoint, a pipeline that another run of it
    /// fenced (see [`eddy_engine::checkpoint`]): two members ran it at once, one
    /// presumed dead. While its slot is still this member's it goes on here;
    /// otherwise the slot's loss has stopped it, or is about to.
    async fn restart_fenced(&self) {
        for handle in self.pipelines.all().into_iter().filter(|p| p.is_fenced()) {
            let _state = self.state.lock().await;
            tracing::warn!(pipeline = %handle.id, "another run of the pipeline saved its checkpoint; starting again from the newest");
            handle.stop().await;
            if handle.runs_on() == RunsOn::Here {
                if let Err(e) = handle.start_with(None) {
                    tracing::error!(pipeline = %handle.id, "cannot start the pipeline again: {e}");
                }
            }
        }
    }

    /// Tells endless streams (subscriptions) to end, so a graceful stop can finish.
    pub fn begin_shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// Turns true when the server begins to stop.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    async fn replay(&self, saved: Catalog) -> Result<(), EddyError> {
        let mut state = self.state.lock().await;
        let mut session = self.session.write().await;
        for statement in &saved.statements {
            // A statement that no longer applies (it names a table dropped since) is
            // reported and skipped: the rest of the catalog still comes back.
            let replayed = async {
                for parsed in parse_script(&statement.sql)? {
                    session.execute(&parsed).await?;
                }
                Ok::<_, EddyError>(())
            }
            .await;
            if let Err(e) = replayed {
                let shown = eddy_sql::secrets::mask_statement(&statement.sql);
                tracing::error!("catalog statement skipped: {}", replay_error(&shown, &e));
                eprintln!("eddy server: {}", replay_error(&shown, &e));
            }
        }
        state.catalog = saved.clone();
        for record in &saved.pipelines {
            let result = async {
                let parsed = parse_script(&record.sql)?.into_iter().next().ok_or_else(|| EddyError::Unsupported("empty pipeline SQL".into()))?;
                let handle = self.create_pipeline(&session, &record.id, &parsed, record.parallelism).await?;
                handle.resume_as_recorded(record).await?;
                expose_view(&mut session, &handle, parsed.location)?;
                Ok::<_, EddyError>(())
            }
            .await;
            if let Err(e) = result {
                // One pipeline that no longer plans (a connector changed) must not keep the others down.
                tracing::error!(pipeline = %record.id, "cannot restore pipeline `{}`: {e}", record.sql);
                eprintln!("eddy server: cannot restore pipeline {} ({}): {e}", record.id, record.sql);
            }
        }
        Ok(())
    }

    /// Joins its cluster (see [`cluster`] and [`slots`]): applies the command log
    /// up to the end it has now, then joins the slot group, and from then on
    /// applies new commands and starts and stops pipelines as slots come and go,
    /// in the background.
    async fn join_cluster(self: &Arc<Self>) -> Result<(), EddyError> {
        let Some(cluster) = &self.cluster else { return Ok(()) };
        let log = Arc::clone(&cluster.log);
        let end = log.end()?;
        let mut read = 0;
        while read < end {
            let command = log.next(&mut read).await?;
            self.apply(command).await;
        }
        // A new cluster's first member states its terms; every member, that one
        // included, checks its own against the first terms in the log.
        let ours = cluster::Terms::of(&log.options);
        if cluster.agreed_terms().is_none() {
            log.append(Change::Founded(ours.clone())).await?;
        }
        let terms = loop {
            if let Some(terms) = cluster.agreed_terms() {
                break terms;
            }
            let command = log.next(&mut read).await?;
            self.apply(command).await;
        };
        ours.check(&terms, &log.options.name)?;
        let (mut changes, group) = slots::join(&log.options).await?;
        *cluster.group.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(group);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                let Some(server) = weak.upgrade() else { return };
                server.on_slot_change(change).await;
            }
        });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let next = log.next(&mut read).await;
                let Some(server) = weak.upgrade() else { return };
                match next {
                    Ok(command) => server.apply(command).await,
                    Err(e) => {
                        tracing::warn!("{e}; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }

    /// Starts the pipelines of slots the group gave this member (from their last
    /// checkpoints), or stops those of slots it took away, then tells the other
    /// members through the log.
    async fn on_slot_change(&self, change: SlotChange) {
        let Some(cluster) = &self.cluster else { return };
        let state = self.state.lock().await;
        match change {
            SlotChange::Gained(slots) => {
                cluster.slot_map().gain(&slots);
                self.refresh_runs_on(cluster);
                for record in state.catalog.pipelines.iter().filter(|r| slots.contains(&slot_of(&r.id))) {
                    let Ok(handle) = self.pipelines.find(&record.id) else { continue };
                    if let Err(e) = handle.resume_as_recorded(record).await {
                        tracing::error!(pipeline = %record.id, "cannot start pipeline `{}`: {e}", record.sql);
                        eprintln!("eddy server: cannot start pipeline {} ({}): {e}", record.id, record.sql);
                    }
                }
            }
            SlotChange::Lost(slots, how, stopped) => {
                // Tests hold a member here to stand for one that cannot hear the
                // group (cut off from the broker) while its pipelines run on.
                eddy_engine::failpoint::pause("slot-lost").await;
                cluster.slot_map().lose(&slots);
                let moving: Vec<Arc<PipelineHandle>> = self.pipelines.all().into_iter().filter(|p| slots.contains(&slot_of(&p.id))).collect();
                match how {
                    Handover::Orderly => futures::future::join_all(moving.iter().map(|p| p.stop_for_shutdown())).await,
                    Handover::Lost => futures::future::join_all(moving.iter().map(|p| p.stop())).await,
                };
                self.refresh_runs_on(cluster);
                let _ = stopped.send(());
            }
            SlotChange::Expelled(why) => {
                tracing::error!("{why}");
                eprintln!("eddy server: {why}; this member runs no pipeline until it is started again");
            }
        }
        drop(state);
        let mine = cluster.slot_map().mine();
        if let Err(e) = cluster.log.append(Change::Owns { slots: mine }).await {
            tracing::warn!("the other members do not know this one's slots: {e}");
        }
    }

    /// Tells every pipeline which member runs it, after the slot map changed.
    fn refresh_runs_on(&self, cluster: &Cluster) {
        let map = cluster.slot_map();
        for pipeline in self.pipelines.all() {
            pipeline.set_runs_on(map.runs_on(&pipeline.id));
        }
    }

    /// Applies one command of the cluster's log, answering the client waiting for
    /// it when this member sent it. A pipeline it creates starts here when its slot
    /// is this member's (none is while catching up at start).
    async fn apply(&self, command: Command) {
        let Some(cluster) = &self.cluster else { return };
        let waiter = cluster.log.take_waiter(&command);
        let (replies, done) = match waiter {
            Some(waiter) => (Some((waiter.replies, waiter.index)), Some(waiter.done)),
            None => (None, None),
        };
        // Every member applies the command whole, whether or not its client still
        // listens: a reply that cannot be delivered is dropped, never an error.
        let send = |reply: Reply| {
            let replies = replies.clone();
            async move {
                if let Some((replies, index)) = replies {
                    let _ = replies.send((index, reply)).await;
                }
                Ok(())
            }
        };
        let result = match &command.change {
            Change::Statement { sql } => match parse_script(sql).map_err(EddyError::from) {
                Ok(statements) => match statements.as_slice() {
                    [parsed] => self.change_catalog(parsed, &send).await.map_err(|e| e.pointing_into(parsed)),
                    _ => Err(EddyError::Internal(format!("a command holds {} statements", statements.len()))),
                },
                Err(e) => Err(e),
            },
            Change::Running { pipeline, running, parallelism } => {
                let mut state = self.state.lock().await;
                state.catalog.set_running(pipeline, *running, *parallelism);
                state.catalog.save(&self.data_dir)
            }
            Change::Owns { slots } => {
                cluster.slot_map().owned_by(&command.member, slots);
                self.refresh_runs_on(cluster);
                Ok(())
            }
            Change::Founded(terms) => {
                cluster.terms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert_with(|| terms.clone());
                Ok(())
            }
        };
        match (done, result) {
            (Some(done), result) => {
                let _ = done.send(result);
            }
            (None, Err(e)) => tracing::debug!(member = %command.member, "command of the cluster's log failed here as on its sender: {e}"),
            (None, Ok(())) => {}
        }
    }

    /// Every pipeline, for `ListPipelines`.
    pub fn pipelines(&self) -> Vec<Arc<PipelineHandle>> {
        self.pipelines.all()
    }

    /// Every pipeline's figures in Prometheus' text format, labelled by pipeline id
    /// (and in a cluster by `member`), for `/metrics`.
    /// In a cluster, only the pipelines this member runs: the others' figures are
    /// on the member running them, and listing them here as stopped would count
    /// each pipeline as stopped on every other member.
    pub fn metrics_text(&self) -> String {
        let pipelines: Vec<_> = self.pipelines().into_iter().filter(|p| p.runs_on() == RunsOn::Here).collect();
        let figures: Vec<_> = pipelines.iter().map(|p| (p.id.as_str(), p.figures())).collect();
        let shown: Vec<eddy_engine::metrics::ExposedPipeline<'_>> = figures
            .iter()
            .map(|(id, (metrics, state, restarts))| eddy_engine::metrics::ExposedPipeline { name: id, state: *state, restarts: *restarts, metrics })
            .collect();
        // A member's figures say which member they are: summed across members,
        // a pipeline that moved is not counted twice under one series.
        let member = self.cluster.as_ref().map(|c| [("member", c.log.options.member.as_str())]);
        eddy_engine::metrics::render_labelled(&shown, eddy_engine::metrics::now_ms(), member.as_ref().map_or(&[], |m| m.as_slice()))
    }

    /// One pipeline by id or name.
    pub fn pipeline(&self, id: &str) -> Result<Arc<PipelineHandle>, EddyError> {
        self.pipelines.find(id)
    }

    /// A materialized view by name.
    pub fn view(&self, name: &str) -> Result<Arc<MaterializedView>, EddyError> {
        let views = self.read_views();
        views.get(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = views.keys().map(String::as_str).collect();
            EddyError::NotFound(format!(
                "no materialized view `{name}`{}",
                if names.is_empty() { String::new() } else { format!("; there are: {}", names.join(", ")) }
            ))
        })
    }

    /// Every table, view and materialized view with its columns, sorted by name:
    /// what Postgres tools list (psql's `\d`).
    pub async fn relations(&self) -> Vec<Relation> {
        let session = self.session.read().await;
        let planner = session.planner();
        let mut relations: Vec<Relation> = planner
            .table_names()
            .into_iter()
            .filter(|name| !self.has_view(name))
            .filter_map(|name| Some(Relation { columns: planner.columns_of(&name)?, name, kind: RelationKind::Table }))
            .chain(planner.view_names().into_iter().filter_map(|name| Some(Relation { columns: planner.columns_of(&name)?, name, kind: RelationKind::View })))
            .chain(self.read_views().iter().map(|(name, view)| Relation { name: name.clone(), kind: RelationKind::MaterializedView, columns: view.schema() }))
            .collect();
        relations.sort_by(|a, b| a.name.cmp(&b.name));
        relations
    }

    fn has_view(&self, name: &str) -> bool {
        self.read_views().contains_key(name)
    }

    /// The statement that made table, view or materialized view `name`, with its
    /// secrets masked (`SHOW CREATE`, the console): people who may read the
    /// catalog need not learn the credentials in it.
    pub async fn show_create(&self, kind: RelationKind, name: &str) -> Result<String, EddyError> {
        let state = self.state.lock().await;
        let made = match kind {
            RelationKind::Table | RelationKind::View => state.catalog.statements.iter().rev().find(|s| s.kind == kind.name() && s.name == name).map(|s| &s.sql),
            RelationKind::MaterializedView => state.catalog.pipelines.iter().find(|p| p.name == name && self.has_view(name)).map(|p| &p.sql),
        };
        made.map(|sql| eddy_sql::secrets::mask_statement(sql))
            .ok_or_else(|| EddyError::NotFound(format!("no {} named `{name}`; SHOW TABLES and SHOW VIEWS list them", kind.name())))
    }

    /// Stops a pipeline (after a savepoint, when asked); a server started again leaves it stopped.
    pub async fn stop_pipeline(&self, id: &str, savepoint: bool) -> Result<(Arc<PipelineHandle>, Option<u64>), EddyError> {
        let handle = self.pipelines.find(id)?;
        handle.check_runs_here()?;
        // The savepoint may take a while: it is taken without holding up other statements.
        let saved = if savepoint { Some(handle.stop_with_savepoint().await?) } else { None };
        // Stopping and recording it happen under the catalog lock, so a racing
        // restart or drop sees either before or after, never half of it.
        let mut state = self.state.lock().await;
        handle.stop().await;
        self.record_running(&mut state, &handle.id, false, None).await?;
        Ok((handle, saved))
    }

    /// Starts a pipeline again from its last checkpoint, with `parallelism` tasks
    /// per keyed operator when given (kept for later restarts of the server too).
    pub async fn restart_pipeline(&self, id: &str, parallelism: Option<usize>) -> Result<Arc<PipelineHandle>, EddyError> {
        let mut state = self.state.lock().await;
        // Looked up under the lock: a pipeline just dropped cannot come back as a ghost.
        let handle = self.pipelines.find(id)?;
        handle.check_runs_here()?;
        if !handle.is_running() {
            if let Some(parallelism) = parallelism {
                handle.check_rescaling(parallelism).await?;
            }
            handle.forget_completion().await?;
        }
        handle.start_with(parallelism)?;
        self.record_running(&mut state, &handle.id, true, Some(handle.parallelism())).await?;
        Ok(handle)
    }

    /// Stops every pipeline (their sinks commit) for a clean shutdown. They stay
    /// marked running, so the next start resumes them.
    pub async fn shutdown(&self) {
        let state = self.state.lock().await;
        futures::future::join_all(self.pipelines.all().iter().map(|p| p.stop_for_shutdown())).await;
        drop(state);
        // A member leaves its cluster's group, so the others take its pipelines
        // over now rather than after the session timeout.
        let group = self.cluster.as_ref().and_then(|c| c.group.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
        if let Some(group) = group {
            let _ = tokio::task::spawn_blocking(move || group.leave()).await;
        }
    }

    /// [`Server::execute`] for a client of the server (gRPC, Postgres): a bug that
    /// panics on one statement answers that client with an internal error instead
    /// of leaving it without an answer (the server itself survives: tokio contains the panic).
    pub async fn execute_for_client(&self, sql: &str, replies: &mpsc::Sender<(usize, Reply)>) -> Result<(), (usize, EddyError)> {
        use futures::FutureExt;
        std::panic::AssertUnwindSafe(self.execute(sql, replies)).catch_unwind().await.unwrap_or_else(|panic| {
            let what = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("a panic");
            Err((0, EddyError::Internal(format!("the statement stopped on {what}"))))
        })
    }

    /// What one statement answers, without running it (the Postgres protocol's
    /// Describe): its columns, or `None` for a statement that answers no rows,
    /// and the types of its `$1`, `$2`... parameters where the plan tells them.
    /// `SELECT`s are planned, not run; `EXPLAIN`, `SHOW` and `DESCRIBE`, which
    /// only read the catalog, are run for their columns.
    pub async fn describe(&self, sql: &str) -> Result<Described, EddyError> {
        let statements = parse_script(sql)?;
        let [parsed] = statements.as_slice() else {
            return Err(EddyError::Unsupported(format!("a prepared statement holds one statement; this text holds {}", statements.len())));
        };
        let plan_error = |e: datafusion::error::DataFusionError| EddyError::Sql(eddy_sql::SqlError::plan(parsed.location, e.strip_backtrace()));
        match &parsed.statement {
            // The same three paths as `execute_one`: over views, over no table, over bounded tables.
            Statement::Select { query }
                if eddy_sql::referenced_tables(query).iter().any(|t| self.has_view(t)) || eddy_sql::referenced_tables(query).is_empty() =>
            {
                let ctx = if eddy_sql::referenced_tables(query).is_empty() { batch_context() } else { self.view_context()? };
                let plan = ctx.state().create_logical_plan(&parsed.text).await.map_err(plan_error)?;
                let types = plan.get_parameter_types().map_err(plan_error)?;
                let mut parameters = vec![None; types.len()];
                for (name, data_type) in types {
                    if let Some(slot) = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).and_then(|n| parameters.get_mut(n.wrapping_sub(1))) {
                        *slot = data_type;
                    }
                }
                Ok(Described { columns: Some(Arc::new(plan.schema().as_arrow().clone())), parameters })
            }
            Statement::Select { query } => {
                // Planned as `execute_one` runs it: ORDER BY and LIMIT apply to its
                // collected rows afterwards and do not change its columns.
                let mut unsorted = (**query).clone();
                (unsorted.order_by, unsorted.limit_clause, unsorted.fetch) = (None, None, None);
                let spec = self.session.read().await.plan_select(&unsorted, parsed.location).await.map_err(|e| e.pointing_into(parsed))?;
                Ok(Described { columns: Some(spec.plan.schema()), parameters: Vec::new() })
            }
            Statement::Explain { .. } | Statement::Show(_) | Statement::ShowCreate { .. } | Statement::Describe { .. } => {
                let (replies, mut answers) = mpsc::channel(4);
                let run = async move {
                    let result = self.execute_one(0, parsed, &replies).await;
                    drop(replies);
                    result
                };
                let first_schema = async {
                    let mut schema = None;
                    while let Some((_, reply)) = answers.recv().await {
                        if let (None, Reply::Schema(s)) = (&schema, reply) {
                            schema = Some(s);
                        }
                    }
                    schema
                };
                let (result, columns) = tokio::join!(run, first_schema);
                result.map_err(|e| e.pointing_into(parsed))?;
                Ok(Described { columns, parameters: Vec::new() })
            }
            _ => Ok(Described { columns: None, parameters: Vec::new() }),
        }
    }

    /// Runs a script's statements in order, sending each one's replies; stops at the first error.
    pub async fn execute(&self, sql: &str, replies: &mpsc::Sender<(usize, Reply)>) -> Result<(), (usize, EddyError)> {
        // A request of only comments and blanks is answered with nothing, as psql's empty query is.
        let statements = parse_script(sql).map_err(|e| (0, e.into()))?;
        for (index, parsed) in statements.iter().enumerate() {
            self.execute_one(index, parsed, replies).await.map_err(|e| (index, e.pointing_into(parsed)))?;
        }
        Ok(())
    }

    /// The one dispatcher: decides each statement's path. Statements that only
    /// read run without the catalog lock (planning shares the session with other
    /// readers); statements that change the catalog go to [`Server::change_catalog`].
    async fn execute_one(&self, index: usize, parsed: &ParsedStatement, replies: &mpsc::Sender<(usize, Reply)>) -> Result<(), EddyError> {
        let send = |reply: Reply| async move { replies.send((index, reply)).await.map_err(|_| client_gone()) };
        match &parsed.statement {
            Statement::Show(ShowWhat::Pipelines) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
                let rows = self.pipelines.all().into_iter().map(|p| {
                    let s = p.status();
                    // How old the view's rows are; empty for INSERT INTO pipelines.
                    let view_lag = match (s.status.as_str(), s.view_as_of_ms) {
                        ("RUNNING", Some(at)) => format!("{:.1} s", (now - at).max(0) as f64 / 1000.0),
                        _ => String::new(),
                    };
                    let status = if s.member.is_empty() { s.status } else { format!("{} on {}", s.status, s.member) };
                    vec![s.id, s.name, status, s.rows_in.to_string(), s.rows_out.to_string(), view_lag, s.sql, s.error]
                });
                let rows: Vec<Vec<String>> = rows.chain(self.queries.rows()).collect();
                send_rows(&send, string_rows(&["id", "name", "status", "rows_in", "rows_out", "view_lag", "sql", "error"], rows.into_iter())).await
            }
            Statement::Show(ShowWhat::Views) => {
                let mut rows: Vec<Vec<String>> = self.session.read().await.planner().view_names().into_iter().map(|v| vec![v, "view".into()]).collect();
                rows.extend(self.read_views().keys().map(|v| vec![v.clone(), "materialized view".into()]));
                rows.sort();
                send_rows(&send, string_rows(&["view", "kind"], rows.into_iter())).await
            }
            Statement::Describe { name } if self.has_view(name) => {
                let view = self.view(name)?;
                send_rows(&send, describe_rows(&view.schema())).await
            }
            Statement::RestartPipeline { id, parallelism } => {
                let handle = self.restart_pipeline(id, *parallelism).await?;
                let tag = format!("RESTART PIPELINE (parallelism {})", handle.parallelism());
                send(Reply::Done { tag, pipeline_id: Some(handle.id.clone()), rows: 0 }).await
            }
            Statement::StopPipeline { id, savepoint } => {
                let (handle, saved) = self.stop_pipeline(id, *savepoint).await?;
                let tag = match saved {
                    Some(checkpoint) => format!("STOP PIPELINE WITH SAVEPOINT {checkpoint}"),
                    None => "STOP PIPELINE".to_string(),
                };
                send(Reply::Done { tag, pipeline_id: Some(handle.id.clone()), rows: 0 }).await
            }
            Statement::Select { query } if eddy_sql::referenced_tables(query).iter().any(|t| self.has_view(t)) => {
                if let Some(member) = self.member_keeping(&eddy_sql::referenced_tables(query))? {
                    return self.ask_member(&member, parsed, &send).await;
                }
                for table in eddy_sql::referenced_tables(query) {
                    self.check_view_readable(&table)?;
                }
                if let Some(rows) = self.point_lookup(query)? {
                    let batches = if rows.num_rows() == 0 { Vec::new() } else { vec![rows.clone()] };
                    return send_result(&send, rows.schema(), batches).await;
                }
                let ctx = self.view_context()?;
                answer_in(&ctx, &parsed.text, parsed.location, &send).await
            }
            Statement::Select { query } if eddy_sql::referenced_tables(query).is_empty() => {
                send_rows(&send, answer_without_tables(query, parsed.location).await?).await
            }
            Statement::Select { query } => {
                // Planned while holding the session for reading only; run and streamed
                // without it, so a long query or a slow reader does not hold up others.
                let mut unsorted = (**query).clone();
                let (order_by, limit_clause, fetch) = (unsorted.order_by.take(), unsorted.limit_clause.take(), unsorted.fetch.take());
                let sorted = order_by.is_some() || limit_clause.is_some() || fetch.is_some();
                let session = self.session.read().await;
                let spec = session.plan_select(&unsorted, parsed.location).await?;
                let (rows_rx, run) = self.start_bounded_query(&session, &spec, parsed)?;
                drop(session);
                // The client going away (Ctrl-C drops the stream) ends the statement, and dropping `run` stops the query.
                let gone = replies.closed();
                if sorted {
                    sort_and_send(spec.plan.schema(), rows_rx, run, (order_by, limit_clause, fetch), parsed.location, &send, gone).await
                } else {
                    stream_rows(spec.plan.schema(), rows_rx, run, &send, gone).await
                }
            }
            Statement::Explain { statement } => {
                // A view is explained as its query; the live state of the views
                // involved (the one explained, the ones read) follows the plan.
                let (explained, own) = match &**statement {
                    Statement::CreateMaterializedView { name, query } => (Statement::Select { query: query.clone() }, Some(name.clone())),
                    other => (other.clone(), None),
                };
                let read = match &explained {
                    Statement::Select { query } | Statement::Insert { query, .. } => eddy_sql::referenced_tables(query),
                    _ => Vec::new(),
                };
                let plan = self.session.read().await.explain_statement(&explained, parsed.location).await?;
                let sizes = own.iter().chain(read.iter()).filter_map(|name| {
                    let (rows, bytes) = self.view(name).ok()?.size();
                    Some(vec![format!("state of materialized view `{name}`: {rows} rows, {bytes} bytes")])
                });
                let sizes = string_rows(&["plan"], sizes);
                send_result(&send, plan.schema(), vec![plan, sizes]).await
            }
            Statement::Show(ShowWhat::Tables) => {
                let rows = self.session.read().await.show_tables();
                send_rows(&send, rows).await
            }
            Statement::Describe { name } => {
                let rows = self.session.read().await.describe(name)?;
                send_rows(&send, rows).await
            }
            Statement::ExplainAnalyze { pipeline } => {
                let handle = self.pipeline(pipeline)?;
                send_rows(&send, analyze::explain_analyze(&handle)).await
            }
            Statement::ShowCreate { what, name } => {
                let shown = self.show_create(RelationKind::from(*what), name).await?;
                send_rows(&send, string_rows(&["statement"], std::iter::once(vec![shown]))).await
            }
            _ => match &self.cluster {
                Some(cluster) => cluster.log.submit(Change::Statement { sql: parsed.text.clone() }, replies, index).await,
                None => self.change_catalog(parsed, &send).await,
            },
        }
    }

    /// Statements that change the catalog, one at a time: DDL, `SET`, new and
    /// dropped pipelines and materialized views.
    /// A pipeline it creates starts at once on a server on its own, and in a
    /// cluster on the member its slot is given to.
    async fn change_catalog<F, Fut>(&self, parsed: &ParsedStatement, send: &F) -> Result<(), EddyError>
    where
        F: Fn(Reply) -> Fut,
        Fut: std::future::Future<Output = Result<(), EddyError>>,
    {
        let done = |tag: &str| Reply::Done { tag: tag.to_string(), pipeline_id: None, rows: 0 };
        let mut state = self.state.lock().await;
        if let (Some(_), Statement::Insert { query, .. } | Statement::CreateMaterializedView { query, .. }) = (&self.cluster, &parsed.statement) {
            if let Some(view) = eddy_sql::referenced_tables(query).into_iter().find(|t| self.has_view(t)) {
                return Err(EddyError::Unsupported(format!(
                    "in a cluster a pipeline cannot read materialized view `{view}` yet: its rows are kept by the member running its pipeline, which need not run this one. Read the tables `{view}` reads instead"
                )));
            }
        }
        match &parsed.statement {
            Statement::CreateMaterializedView { name, .. } => {
                let session = self.session.read().await;
                if self.has_view(name) || session.planner().columns_of(name).is_some() {
                    return Err(EddyError::AlreadyExists(format!("`{name}` already exists; DROP it first to replace it")));
                }
                let id = state.catalog.new_pipeline_id();
                let handle = self.create_pipeline(&session, &id, parsed, None).await?;
                drop(session);
                let started = match (start_created(&handle), &self.cluster) {
                    (Err(e), None) => {
                        self.pipelines.remove(&id);
                        self.write_views().remove(name);
                        return Err(e);
                    }
                    (started, _) => started,
                };
                for warning in handle.warnings() {
                    send(Reply::Notice(warning)).await?;
                }
                expose_view(&mut *self.session.write().await, &handle, parsed.location)?;
                self.record_pipeline(&mut state, &handle, started).await?;
                drop(state);
                send(Reply::Done { tag: "CREATE MATERIALIZED VIEW".into(), pipeline_id: Some(id), rows: 0 }).await
            }
            Statement::Insert { table, .. } if self.has_view(table) => Err(EddyError::Conflict(format!(
                "`{table}` is a materialized view: its rows come from its own query. INSERT INTO a table, or create another view"
            ))),
            Statement::Insert { .. } => {
                let id = state.catalog.new_pipeline_id();
                let handle = self.create_pipeline(&*self.session.read().await, &id, parsed, None).await?;
                let started = match (start_created(&handle), &self.cluster) {
                    (Err(e), None) => {
                        self.pipelines.remove(&id);
                        return Err(e);
                    }
                    (started, _) => started,
                };
                for warning in handle.warnings() {
                    send(Reply::Notice(warning)).await?;
                }
                self.record_pipeline(&mut state, &handle, started).await?;
                drop(state);
                send(Reply::Done { tag: "INSERT".into(), pipeline_id: Some(id), rows: 0 }).await
            }
            Statement::Drop { what: DropWhat::MaterializedView, name, if_exists } => {
                let view = match self.view(name) {
                    Ok(view) => view,
                    Err(_) if *if_exists => return send(done("DROP MATERIALIZED VIEW")).await,
                    Err(e) => return Err(e),
                };
                if let Some(user) = self.pipelines.all().into_iter().find(|p| self.in_use(&state, p) && p.uses_table(name)) {
                    return Err(EddyError::Conflict(format!(
                        "materialized view `{name}` is read by running pipeline {} ({}); STOP PIPELINE {} first",
                        user.id, user.sql, user.id
                    )));
                }
                self.session.write().await.drop_view_source(name);
                let ids: Vec<String> =
                    self.pipelines.all().into_iter().filter(|p| matches!(&p.target, Target::View(v) if Arc::ptr_eq(v, &view))).map(|p| p.id.clone()).collect();
                for id in &ids {
                    if let Some(handle) = self.pipelines.remove(id) {
                        handle.stop().await;
                    }
                    let _ = self.checkpoint_store(id).remove().await;
                }
                state.catalog.pipelines.retain(|p| !ids.contains(&p.id));
                self.write_views().remove(name);
                state.catalog.save(&self.data_dir)?;
                drop(state);
                send(done("DROP MATERIALIZED VIEW")).await
            }
            Statement::CreateTable(def) if self.has_view(&def.name) => {
                Err(EddyError::AlreadyExists(format!("`{}` is a materialized view; DROP MATERIALIZED VIEW {} first, or pick another name", def.name, def.name)))
            }
            Statement::CreateView { name, .. } if self.has_view(name) => {
                Err(EddyError::AlreadyExists(format!("`{name}` is a materialized view; DROP MATERIALIZED VIEW {name} first, or pick another name")))
            }
            Statement::Drop { what: DropWhat::Table | DropWhat::View, name, .. } if self.has_view(name) => {
                Err(EddyError::Conflict(format!("`{name}` is a materialized view; drop it with DROP MATERIALIZED VIEW {name}")))
            }
            Statement::Drop { what: DropWhat::Table, name, if_exists } => {
                if let Some(user) = self.pipelines.all().into_iter().find(|p| self.in_use(&state, p) && p.uses_table(name)) {
                    return Err(EddyError::Conflict(format!(
                        "table `{name}` is used by running pipeline {} ({}); STOP PIPELINE {} first",
                        user.id, user.sql, user.id
                    )));
                }
                let tag = self.session.write().await.drop_table_or_view(DropWhat::Table, name, *if_exists)?;
                self.record_statement(&mut state, Recorded::Forget { kind: "table", name }, parsed)?;
                send(done(&tag)).await
            }
            Statement::Drop { what: DropWhat::View, name, if_exists } => {
                let tag = self.session.write().await.drop_table_or_view(DropWhat::View, name, *if_exists)?;
                self.record_statement(&mut state, Recorded::Forget { kind: "view", name }, parsed)?;
                send(done(&tag)).await
            }
            Statement::CreateTable(def) => {
                self.session.write().await.create_table(def.clone(), parsed.location)?;
                self.record_statement(&mut state, Recorded::Keep { kind: "table", name: &def.name }, parsed)?;
                send(done("CREATE TABLE")).await
            }
            Statement::CreateView { name, query } => {
                self.session.write().await.create_view(name, query, parsed.location).await?;
                self.record_statement(&mut state, Recorded::Keep { kind: "view", name }, parsed)?;
                send(done("CREATE VIEW")).await
            }
            Statement::Set { key, value } => {
                self.session.write().await.set(key, value)?;
                self.record_statement(&mut state, Recorded::Keep { kind: "set", name: key }, parsed)?;
                send(done("SET")).await
            }
            // Statements that only read are answered by execute_one, before the catalog lock.
            _ => Err(EddyError::Internal(format!("`{}` reached the catalog's dispatcher, which only changes the catalog", parsed.text))),
        }
    }

    /// Records a pipeline just created. In a cluster one whose start failed is
    /// kept, stopped, as the other members recorded it too, and the failure is
    /// the statement's error.
    async fn record_pipeline(&self, state: &mut State, handle: &PipelineHandle, started: Result<(), EddyError>) -> Result<(), EddyError> {
        state.catalog.pipelines.push(PipelineRecord {
            id: handle.id.clone(),
            name: handle.name.clone(),
            sql: handle.sql.clone(),
            running: true,
            parallelism: Some(handle.parallelism()),
        });
        state.catalog.save(&self.data_dir)?;
        if let Err(e) = started {
            self.record_running(state, &handle.id, false, None).await?;
            return Err(EddyError::Conflict(format!(
                "{e}; pipeline {} is kept, stopped, on every member: RESTART PIPELINE {} once the cause is fixed",
                handle.id, handle.id
            )));
        }
        Ok(())
    }

    /// Keeps a DDL or `SET` statement in the catalog file (or forgets the one a
    /// DROP undoes), so a restarted server replays it.
    fn record_statement(&self, state: &mut State, recorded: Recorded<'_>, parsed: &ParsedStatement) -> Result<(), EddyError> {
        match recorded {
            Recorded::Keep { kind, name } => state.catalog.add_statement(kind, name, &parsed.text),
            Recorded::Forget { kind, name } => state.catalog.remove_statement(kind, name),
        }
        state.catalog.save(&self.data_dir)
    }

    /// Plans a pipeline statement (`INSERT INTO`, `CREATE MATERIALIZED VIEW`) and registers it, not started.
    async fn create_pipeline(
        &self,
        session: &Session,
        id: &str,
        parsed: &ParsedStatement,
        parallelism: Option<usize>,
    ) -> Result<Arc<PipelineHandle>, EddyError> {
        let (spec, target) = match &parsed.statement {
            Statement::Insert { table, query } => {
                let spec = session.plan_insert(table, query, parsed.location).await?;
                let Some(def) = spec.sink.clone() else {
                    return Err(EddyError::Unsupported("INSERT INTO without a sink table".into()));
                };
                let location = spec.location;
                (spec, Target::Table(def, location))
            }
            Statement::CreateMaterializedView { name, query } => {
                let spec = session.plan_query(query, parsed.location, name).await?;
                let key = view_key(&spec.plan, parsed.location)?;
                let view =
                    MaterializedView::new(name, spec.plan.schema(), key).map_err(|e| EddyError::Unsupported(format!("materialized view `{name}`: {e}")))?;
                self.write_views().insert(name.clone(), Arc::clone(&view));
                (spec, Target::View(view))
            }
            _ => return Err(EddyError::Unsupported(format!("`{}` does not start a pipeline", parsed.text))),
        };
        let mut prepared = session.prepare(&spec);
        if let Some(parallelism) = parallelism {
            prepared = prepared.with_parallelism(parallelism);
        }
        let (runs_on, member) = match &self.cluster {
            Some(cluster) => (cluster.slot_map().runs_on(id), cluster.log.options.member.as_str()),
            None => (RunsOn::Here, ""),
        };
        let handle = PipelineHandle::new(id, &parsed.text, prepared, target, self.checkpoint_store(id), runs_on, member);
        self.pipelines.insert(Arc::clone(&handle));
        Ok(handle)
    }

    /// Starts a query over bounded tables, listed by SHOW PIPELINES while it runs;
    /// its rows arrive on the receiver until it ends.
    fn start_bounded_query(
        &self,
        session: &Session,
        spec: &crate::session::PipelineSpec,
        parsed: &ParsedStatement,
    ) -> Result<(mpsc::Receiver<RecordBatch>, QueryRun), EddyError> {
        if let Some(source) = spec.plan.sources().into_iter().find(|s| !s.bounded) {
            return Err(EddyError::Unsupported(format!(
                "at {}: this SELECT reads `{}`, which never ends, so it would never answer. Keep its result with CREATE MATERIALIZED VIEW v AS SELECT ... and query v, or write it to a table with INSERT INTO",
                parsed.location, source.table.name
            )));
        }
        let prepared = session.prepare(spec);
        let (sink, rows) = ChannelSink::new();
        let metrics = Arc::new(eddy_engine::PipelineMetrics::default());
        let listed = self.queries.register(&spec.name, &parsed.text, Arc::clone(&metrics));
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let held = if spec.plan.emits_retractions() {
            let rows = FinalRows::new(spec.plan.schema()).map_err(|e| EddyError::Unsupported(format!("at {}: {e}", parsed.location)))?;
            Some(Arc::new(std::sync::Mutex::new(rows)))
        } else {
            None
        };
        let task = tokio::spawn(async move {
            // Listed until the run has ended, not only until it was told to stop.
            let _listed = listed;
            let Some(held) = held else { return prepared.run(Box::new(sink), metrics, stop, None).await };
            prepared.run(Box::new(FinalRowsSink(Arc::clone(&held))), metrics, stop, None).await?;
            let batch = held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take_batch();
            let batch = batch.map_err(|e| EddyError::Unsupported(format!("the query's rows: {e}")))?;
            // A client that went away takes nothing.
            let _ = sink.tx.send(batch).await;
            Ok(())
        });
        Ok((rows, QueryRun::new(task, stop_tx)))
    }

    fn checkpoint_store(&self, id: &str) -> CheckpointStore {
        self.checkpoints.child(id)
    }

    /// Records whether pipeline `id` runs (and with how many tasks), so a server
    /// started again starts it or leaves it; in a cluster the other members learn
    /// it from the command log.
    async fn record_running(&self, state: &mut State, id: &str, running: bool, parallelism: Option<usize>) -> Result<(), EddyError> {
        state.catalog.set_running(id, running, parallelism);
        state.catalog.save(&self.data_dir)?;
        if let Some(cluster) = &self.cluster {
            cluster.log.append(Change::Running { pipeline: id.to_string(), running, parallelism }).await?;
        }
        Ok(())
    }

    /// The cluster member that keeps the materialized views `tables` names, when
    /// that is another member: the query is sent there whole (see [`cluster`]).
    fn member_keeping(&self, tables: &[String]) -> Result<Option<String>, EddyError> {
        let mut members = std::collections::BTreeSet::new();
        let mut here = false;
        for table in tables {
            let Ok(view) = self.view(table) else { continue };
            for pipeline in self.pipelines.all().into_iter().filter(|p| matches!(&p.target, Target::View(v) if Arc::ptr_eq(v, &view))) {
                match pipeline.runs_on() {
                    RunsOn::Here => here = true,
                    RunsOn::Member(member) => _ = members.insert(member),
                    RunsOn::Nobody => {
                        return Err(EddyError::Cluster(format!(
                            "materialized view `{table}` is moving between cluster members; read it again once SHOW PIPELINES shows where {} runs",
                            pipeline.id
                        )))
                    }
                }
            }
        }
        match (members.len(), here) {
            (0, _) => Ok(None),
            (1, false) => Ok(members.pop_first()),
            _ => Err(EddyError::Unsupported(format!(
                "this query reads materialized views kept by different cluster members ({}{}); for now a query reads the views of one member",
                members.into_iter().collect::<Vec<_>>().join(", "),
                if here { ", and this one" } else { "" }
            ))),
        }
    }

    /// Answers a query with what `member`, which keeps the views it reads, answers.
    async fn ask_member<F, Fut>(&self, member: &str, parsed: &ParsedStatement, send: &F) -> Result<(), EddyError>
    where
        F: Fn(Reply) -> Fut,
        Fut: std::future::Future<Output = Result<(), EddyError>>,
    {
        let token = self.cluster.as_ref().and_then(|cluster| cluster.log.options.token.clone());
        let unreachable = |e: &str| EddyError::Cluster(format!("the views this query reads are kept by cluster member {member}: {e}"));
        let mut client = crate::client::connect(member, token.as_deref()).await.map_err(|e| unreachable(&e))?;
        let results = crate::client::execute(&mut client, &parsed.text).await.map_err(|(_, status)| match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unauthenticated => unreachable(status.message()),
            _ => EddyError::Unsupported(format!("cluster member {member}, which keeps the views this query reads: {}", status.message())),
        })?;
        for result in results {
            if let Some((schema, batches)) = result.rows {
                send_result(send, schema, batches).await?;
            }
        }
        Ok(())
    }

    /// Whether `pipeline` counts as running for the checks of a DROP. In a cluster
    /// that is what the command log recorded, which every member holds alike: a
    /// member's own view (it runs none of the others' pipelines) would let a drop
    /// through on some members only.
    fn in_use(&self, state: &State, pipeline: &PipelineHandle) -> bool {
        match &self.cluster {
            Some(_) => state.catalog.pipelines.iter().any(|r| r.id == pipeline.id && r.running),
            None => pipeline.is_running(),
        }
    }

    /// Fails when `name` is a materialized view whose pipeline failed, or one that
    /// reads (directly or through other views) a view whose pipeline failed: its
    /// rows stopped at the failure, and must not answer as if they were complete.
    pub(crate) fn check_view_readable(&self, name: &str) -> Result<(), EddyError> {
        let mut pending = vec![name.to_string()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(table) = pending.pop() {
            if !seen.insert(table.clone()) {
                continue;
            }
            let Ok(view) = self.view(&table) else {
                continue;
            };
            for pipeline in self.pipelines.all() {
                if !matches!(&pipeline.target, Target::View(v) if Arc::ptr_eq(v, &view)) {
                    continue;
                }
                if let Some(error) = pipeline.failure() {
                    let reason = if table == name {
                        format!("its pipeline {} failed: {error}", pipeline.id)
                    } else {
                        format!("it reads materialized view `{table}`, whose pipeline {} failed: {error}", pipeline.id)
                    };
                    return Err(EddyError::ViewFailed { view: name.to_string(), reason });
                }
                pending.extend(pipeline.source_tables());
            }
        }
        Ok(())
    }

    /// The rows of `query` if it is a point lookup on a materialized view that its
    /// key or an index answers (see [`point_lookup`]); `None` to plan it.
    fn point_lookup(&self, query: &datafusion::sql::sqlparser::ast::Query) -> Result<Option<RecordBatch>, EddyError> {
        let Some(lookup) = point_lookup::PointLookup::of(query) else { return Ok(None) };
        let Ok(view) = self.view(&lookup.view) else { return Ok(None) };
        lookup.answer(&view)
    }

    /// A DataFusion context with every materialized view's current rows as a table.
    fn view_context(&self) -> Result<SessionContext, EddyError> {
        let ctx = batch_context();
        for (name, view) in self.read_views().iter() {
            let snapshot = view.snapshot().map_err(|e| EddyError::Unsupported(format!("view `{name}`: {e}")))?;
            let table = MemTable::try_new(view.schema(), vec![snapshot]).map_err(|e| EddyError::Unsupported(format!("view `{name}`: {e}")))?;
            ctx.register_table(name.as_str(), Arc::new(table)).map_err(|e| EddyError::Unsupported(format!("view `{name}`: {e}")))?;
        }
        Ok(ctx)
    }

    fn read_views(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<MaterializedView>>> {
        self.views.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_views(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<MaterializedView>>> {
        self.views.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts a pipeline just created, when it runs on this server.
fn start_created(handle: &Arc<PipelineHandle>) -> Result<(), EddyError> {
    if handle.runs_on() == RunsOn::Here {
        handle.start()
    } else {
        Ok(())
    }
}

/// What a statement does to the catalog file: keep it (under its kind and name,
/// replacing an earlier one) or forget the one it undoes.
enum Recorded<'a> {
    Keep { kind: &'static str, name: &'a str },
    Forget { kind: &'static str, name: &'a str },
}

/// The next batch of a running query's rows; an error once its client went away.
async fn next_rows(
    rows_rx: &mut mpsc::Receiver<RecordBatch>,
    gone: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Option<RecordBatch>, EddyError> {
    tokio::select! {
        batch = rows_rx.recv() => Ok(batch),
        () = gone.as_mut() => Err(client_gone()),
    }
}

fn client_gone() -> EddyError {
    EddyError::Unsupported("the client went away".into())
}

/// Streams a bounded query's rows to the client as they come, until they end
/// or `gone` says the client went away (then dropping `run` stops the query).
async fn stream_rows<F, Fut>(
    schema: SchemaRef,
    mut rows_rx: mpsc::Receiver<RecordBatch>,
    mut run: QueryRun,
    send: &F,
    gone: impl std::future::Future<Output = ()>,
) -> Result<(), EddyError>
where
    F: Fn(Reply) -> Fut,
    Fut: std::future::Future<Output = Result<(), EddyError>>,
{
    let gone = std::pin::pin!(gone);
    let mut gone = gone;
    send(Reply::Schema(schema)).await?;
    let mut rows = 0;
    while let Some(batch) = next_rows(&mut rows_rx, &mut gone).await? {
        count_rows(&mut rows, &batch)?;
        send(Reply::Batch(batch)).await?;
    }
    run.finished().await?;
    send(Reply::Done { tag: format!("SELECT {rows}"), pipeline_id: None, rows }).await
}

/// The most rows an ad-hoc query answers with, streamed or collected to sort:
/// past it the query is stopped (dropping its run stops it), so one statement
/// cannot keep a server busy or take its memory.
pub const MAX_RESULT_ROWS: u64 = 1_000_000;

/// Adds `batch` to the `rows` an ad-hoc query answered with so far; an error past [`MAX_RESULT_ROWS`].
fn count_rows(rows: &mut u64, batch: &RecordBatch) -> Result<(), EddyError> {
    *rows += batch.num_rows() as u64;
    if *rows > MAX_RESULT_ROWS {
        return Err(EddyError::ResultTooLarge { limit: MAX_RESULT_ROWS });
    }
    Ok(())
}

/// `ORDER BY` / `LIMIT` of a bounded query: its rows are collected, then
/// DataFusion sorts and cuts them.
async fn sort_and_send<F, Fut>(
    schema: SchemaRef,
    mut rows_rx: mpsc::Receiver<RecordBatch>,
    mut run: QueryRun,
    (order_by, limit_clause, fetch): (
        Option<datafusion::sql::sqlparser::ast::OrderBy>,
        Option<datafusion::sql::sqlparser::ast::LimitClause>,
        Option<datafusion::sql::sqlparser::ast::Fetch>,
    ),
    location: Location,
    send: &F,
    gone: impl std::future::Future<Output = ()>,
) -> Result<(), EddyError>
where
    F: Fn(Reply) -> Fut,
    Fut: std::future::Future<Output = Result<(), EddyError>>,
{
    let gone = std::pin::pin!(gone);
    let mut gone = gone;
    let (mut batches, mut rows) = (Vec::new(), 0);
    while let Some(batch) = next_rows(&mut rows_rx, &mut gone).await? {
        count_rows(&mut rows, &batch)?;
        batches.push(batch);
    }
    run.finished().await?;
    let plan_error = |e: datafusion::error::DataFusionError| EddyError::Sql(eddy_sql::SqlError::plan(location, e.strip_backtrace()));
    let ctx = batch_context();
    let table = MemTable::try_new(schema, vec![batches]).map_err(plan_error)?;
    ctx.register_table(RESULT_TABLE, Arc::new(table)).map_err(plan_error)?;
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    let mut statements = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &format!("SELECT * FROM {RESULT_TABLE}"))
        .map_err(|e| EddyError::Unsupported(e.to_string()))?;
    let Some(datafusion::sql::sqlparser::ast::Statement::Query(mut outer)) = statements.pop() else {
        return Err(EddyError::Unsupported("cannot build the sorting query".into()));
    };
    outer.order_by = order_by;
    outer.limit_clause = limit_clause;
    outer.fetch = fetch;
    answer_in(&ctx, &outer.to_string(), location, send).await
}

/// Runs an ad-hoc query in a DataFusion context and sends its answer.
async fn answer_in<F, Fut>(ctx: &SessionContext, sql: &str, location: Location, send: &F) -> Result<(), EddyError>
where
    F: Fn(Reply) -> Fut,
    Fut: std::future::Future<Output = Result<(), EddyError>>,
{
    let plan_error = |e: datafusion::error::DataFusionError| EddyError::Sql(eddy_sql::SqlError::plan(location, e.strip_backtrace()));
    let frame = ctx.sql(sql).await.map_err(plan_error)?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(plan_error)?;
    send_result(send, schema, batches).await
}

/// The table a sorted query's unsorted rows are registered as.
const RESULT_TABLE: &str = "__eddy_result";

async fn send_rows<F, Fut>(send: &F, batch: RecordBatch) -> Result<(), EddyError>
where
    F: Fn(Reply) -> Fut,
    Fut: std::future::Future<Output = Result<(), EddyError>>,
{
    send_result(send, batch.schema(), vec![batch]).await
}

/// Sends a whole answer: its schema, its batches and `SELECT n`.
async fn send_result<F, Fut>(send: &F, schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<(), EddyError>
where
    F: Fn(Reply) -> Fut,
    Fut: std::future::Future<Output = Result<(), EddyError>>,
{
    send(Reply::Schema(schema)).await?;
    let mut rows = 0;
    for batch in batches {
        rows += batch.num_rows() as u64;
        send(Reply::Batch(batch)).await?;
    }
    send(Reply::Done { tag: format!("SELECT {rows}"), pipeline_id: None, rows }).await
}

/// Lets later statements read a materialized view's pipeline output as a table:
/// a changelog source over the view (nothing for an `INSERT INTO` pipeline).
fn expose_view(session: &mut Session, handle: &PipelineHandle, location: Location) -> Result<(), EddyError> {
    if let Target::View(view) = &handle.target {
        let (source, def) = ViewSource::new(Arc::clone(view));
        session.register_view_source(def, Arc::new(source), view.is_keyed(), location)?;
    }
    Ok(())
}

fn replay_error(sql: &str, error: &EddyError) -> String {
    format!("the catalog statement `{sql}` no longer applies and is skipped: {error}")
}

/// The columns an updating view replaces rows by (see `StreamPlan::output_key`);
/// `None` for an append-only view.
fn view_key(plan: &StreamPlan, location: Location) -> Result<Option<Vec<usize>>, EddyError> {
    let refused = |message: String| Err(EddyError::Sql(eddy_sql::SqlError::plan(location, message)));
    match plan.output_key() {
        Ok(OutputKey::AppendOnly) => Ok(None),
        Ok(OutputKey::Columns(key)) => Ok(Some(key)),
        Err(KeyLost::GroupColumnNotSelected) => refused(
            "a materialized view over a GROUP BY without a window must select every GROUP BY column as it is, so its rows can be updated by key".to_string(),
        ),
        Err(KeyLost::ChangelogKeyNotSelected { table, key }) => refused(format!(
            "a materialized view over `{table}` must select its key columns ({}) as they are, so its rows can be updated and deleted by key",
            key.join(", ")
        )),
        Err(KeyLost::RankKeyNotSelected) => refused(
            "a materialized view over a ROW_NUMBER() deduplication or Top-N must select its PARTITION BY columns as they are (and, for a Top-N, the row number), so its rows can be replaced by key".to_string(),
        ),
        Err(KeyLost::Unsupported) => refused(match plan.retractions_origin() {
            Some(origin) => format!("a materialized view cannot keep this query's rows: {origin}, and the rows have no key to find them by"),
            None => "this updating query is not supported in a materialized view".to_string(),
        }),
    }
}

/// The sink of an ad-hoc query over bounded tables: hands its rows to the caller.
pub struct ChannelSink {
    tx: mpsc::Sender<RecordBatch>,
}

impl ChannelSink {
    fn new() -> (Self, mpsc::Receiver<RecordBatch>) {
        let (tx, rx) = mpsc::channel(16);
        (ChannelSink { tx }, rx)
    }
}

#[async_trait::async_trait]
impl eddy_engine::Sink for ChannelSink {
    async fn write(&mut self, changes: eddy_engine::ChangeBatch) -> Result<(), eddy_engine::BoxError> {
        let batch = changes.into_inserts("an ad-hoc query's result")?;
        self.tx.send(batch).await.map_err(|_| "the client stopped reading the result".into())
    }

    async fn commit(&mut self) -> Result<(), eddy_engine::BoxError> {
        Ok(())
    }
}
