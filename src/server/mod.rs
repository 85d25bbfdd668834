//! `eddy server`: a long-running engine that people submit continuous SQL to over
//! gRPC. It keeps a catalog (tables, views, settings, pipelines) in its data
//! directory, runs each pipeline in its own task with checkpoints under
//! `DATA_DIR/checkpoints/ID`, serves materialized views, and on start replays the
//! catalog and restarts the pipelines that were running (from their checkpoints).

pub mod catalog;
pub mod lock;
pub mod pipelines;
pub mod service;
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
use crate::session::{batch_context, describe_rows, string_rows, Outcome, Session};
use catalog::{Catalog, PipelineRecord};
use pipelines::{PipelineHandle, Pipelines, Target};
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

/// The server's state: catalog, pipelines and views.
pub struct Server {
    data_dir: PathBuf,
    /// Held while the server lives, so no second server opens the same directory.
    _lock: lock::DataDirLock,
    /// Where pipelines keep their checkpoints, one `ID/` under it each.
    checkpoints: CheckpointStore,
    /// Statements run one at a time, so the catalog and its file change in order.
    state: Mutex<State>,
    pipelines: Pipelines,
    views: RwLock<BTreeMap<String, Arc<MaterializedView>>>,
    /// Turns true when the server begins to stop, so endless streams (Subscribe) end.
    closing: tokio::sync::watch::Sender<bool>,
}

struct State {
    session: Session,
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
        let checkpoints = match checkpoints {
            Some(location) => CheckpointStore::open(location).map_err(|e| EddyError::Conflict(format!("--checkpoints {location}: {e}")))?,
            None => CheckpointStore::new(data_dir.join("checkpoints")),
        };
        std::fs::create_dir_all(data_dir)
            .map_err(|source| EddyError::Io { context: format!("cannot create the data directory {}", data_dir.display()), source })?;
        let lock = lock::DataDirLock::acquire(data_dir)?;
        let catalog = Catalog::load(data_dir)?;
        let server = Arc::new(Server {
            data_dir: data_dir.to_path_buf(),
            _lock: lock,
            checkpoints,
            state: Mutex::new(State { session: Session::new(), catalog: Catalog::default() }),
            pipelines: Pipelines::default(),
            views: RwLock::default(),
            closing: tokio::sync::watch::channel(false).0,
        });
        server.replay(catalog).await?;
        // A pipeline whose sources ended is done: a restarted server must not run it again.
        let weak = Arc::downgrade(&server);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let Some(server) = weak.upgrade() else { return };
                if let Err(e) = server.forget_finished().await {
                    tracing::warn!("cannot record finished pipelines: {e}");
                }
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
        let mut changed = false;
        for record in state.catalog.pipelines.iter_mut().filter(|r| r.running && finished.contains(&r.id)) {
            record.running = false;
            changed = true;
        }
        if changed {
            state.catalog.save(&self.data_dir)?;
        }
        Ok(())
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
        for statement in &saved.statements {
            // A statement that no longer applies (it names a table dropped since) is
            // reported and skipped: the rest of the catalog still comes back.
            let replayed = async {
                for parsed in parse_script(&statement.sql)? {
                    state.session.execute(&parsed).await?;
                }
                Ok::<_, EddyError>(())
            }
            .await;
            if let Err(e) = replayed {
                tracing::error!("catalog statement skipped: {}", replay_error(&statement.sql, &e));
                eprintln!("eddy server: {}", replay_error(&statement.sql, &e));
            }
        }
        state.catalog = saved.clone();
        for record in &saved.pipelines {
            let result = async {
                let parsed = parse_script(&record.sql)?.into_iter().next().ok_or_else(|| EddyError::Unsupported("empty pipeline SQL".into()))?;
                let handle = self.create_pipeline(&state.session, &record.id, &parsed, record.parallelism).await?;
                if record.running {
                    handle.start()?;
                } else {
                    let _loaded = handle.load_stopped_view().await?;
                }
                expose_view(&mut state.session, &handle, parsed.location)?;
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

    /// Every pipeline, for `ListPipelines`.
    pub fn pipelines(&self) -> Vec<Arc<PipelineHandle>> {
        self.pipelines.all()
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

    fn has_view(&self, name: &str) -> bool {
        self.read_views().contains_key(name)
    }

    /// Stops a pipeline (after a savepoint, when asked); a server started again leaves it stopped.
    pub async fn stop_pipeline(&self, id: &str, savepoint: bool) -> Result<(Arc<PipelineHandle>, Option<u64>), EddyError> {
        let handle = self.pipelines.find(id)?;
        // The savepoint may take a while: it is taken without holding up other statements.
        let saved = if savepoint { Some(handle.stop_with_savepoint().await?) } else { None };
        // Stopping and recording it happen under the catalog lock, so a racing
        // restart or drop sees either before or after, never half of it.
        let mut state = self.state.lock().await;
        handle.stop().await;
        Self::record_running(&mut state, &self.data_dir, &handle.id, false)?;
        Ok((handle, saved))
    }

    /// Starts a pipeline again from its last checkpoint, with `parallelism` tasks
    /// per keyed operator when given (kept for later restarts of the server too).
    pub async fn restart_pipeline(&self, id: &str, parallelism: Option<usize>) -> Result<Arc<PipelineHandle>, EddyError> {
        let mut state = self.state.lock().await;
        // Looked up under the lock: a pipeline just dropped cannot come back as a ghost.
        let handle = self.pipelines.find(id)?;
        if !handle.is_running() {
            handle.forget_completion().await?;
        }
        handle.start_with(parallelism)?;
        if let Some(record) = state.catalog.pipeline_mut(&handle.id) {
            record.parallelism = Some(handle.parallelism());
        }
        Self::record_running(&mut state, &self.data_dir, &handle.id, true)?;
        Ok(handle)
    }

    /// Stops every pipeline (their sinks commit) for a clean shutdown. They stay
    /// marked running, so the next start resumes them.
    pub async fn shutdown(&self) {
        let _state = self.state.lock().await;
        futures::future::join_all(self.pipelines.all().iter().map(|p| p.stop_for_shutdown())).await;
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

    async fn execute_one(&self, index: usize, parsed: &ParsedStatement, replies: &mpsc::Sender<(usize, Reply)>) -> Result<(), EddyError> {
        let send = |reply: Reply| async move { replies.send((index, reply)).await.map_err(|_| EddyError::Unsupported("the client went away".into())) };
        let done = |tag: &str| Reply::Done { tag: tag.to_string(), pipeline_id: None, rows: 0 };
        let mut state = self.state.lock().await;
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
                    vec![s.id, s.name, s.status, s.rows_in.to_string(), s.rows_out.to_string(), view_lag, s.sql, s.error]
                });
                drop(state);
                send_rows(&send, string_rows(&["id", "name", "status", "rows_in", "rows_out", "view_lag", "sql", "error"], rows)).await
            }
            Statement::Show(ShowWhat::Views) => {
                let mut rows: Vec<Vec<String>> = state.session.planner().view_names().into_iter().map(|v| vec![v, "view".into()]).collect();
                rows.extend(self.read_views().keys().map(|v| vec![v.clone(), "materialized view".into()]));
                rows.sort();
                drop(state);
                send_rows(&send, string_rows(&["view", "kind"], rows.into_iter())).await
            }
            Statement::Describe { name } if self.has_view(name) => {
                let view = self.view(name)?;
                drop(state);
                send_rows(&send, describe_rows(&view.schema())).await
            }
            Statement::RestartPipeline { id, parallelism } => {
                drop(state);
                let handle = self.restart_pipeline(id, *parallelism).await?;
                let tag = format!("RESTART PIPELINE (parallelism {})", handle.parallelism());
                send(Reply::Done { tag, pipeline_id: Some(handle.id.clone()), rows: 0 }).await
            }
            Statement::StopPipeline { id, savepoint } => {
                drop(state);
                let (handle, saved) = self.stop_pipeline(id, *savepoint).await?;
                let tag = match saved {
                    Some(checkpoint) => format!("STOP PIPELINE WITH SAVEPOINT {checkpoint}"),
                    None => "STOP PIPELINE".to_string(),
                };
                send(Reply::Done { tag, pipeline_id: Some(handle.id.clone()), rows: 0 }).await
            }
            Statement::CreateMaterializedView { name, .. } => {
                if self.has_view(name) || state.session.planner().columns_of(name).is_some() {
                    return Err(EddyError::AlreadyExists(format!("`{name}` already exists; DROP it first to replace it")));
                }
                let id = state.catalog.new_pipeline_id();
                let handle = self.create_pipeline(&state.session, &id, parsed, None).await?;
                if let Err(e) = handle.start() {
                    self.pipelines.remove(&id);
                    self.write_views().remove(name);
                    return Err(e);
                }
                for warning in handle.warnings() {
                    send(Reply::Notice(warning)).await?;
                }
                expose_view(&mut state.session, &handle, parsed.location)?;
                state.catalog.pipelines.push(PipelineRecord {
                    id: id.clone(),
                    name: name.clone(),
                    sql: parsed.text.clone(),
                    running: true,
                    parallelism: Some(handle.parallelism()),
                });
                state.catalog.save(&self.data_dir)?;
                drop(state);
                send(Reply::Done { tag: "CREATE MATERIALIZED VIEW".into(), pipeline_id: Some(id), rows: 0 }).await
            }
            Statement::Insert { table, .. } if self.has_view(table) => Err(EddyError::Conflict(format!(
                "`{table}` is a materialized view: its rows come from its own query. INSERT INTO a table, or create another view"
            ))),
            Statement::Insert { .. } => {
                let id = state.catalog.new_pipeline_id();
                let handle = self.create_pipeline(&state.session, &id, parsed, None).await?;
                if let Err(e) = handle.start() {
                    self.pipelines.remove(&id);
                    return Err(e);
                }
                for warning in handle.warnings() {
                    send(Reply::Notice(warning)).await?;
                }
                state.catalog.pipelines.push(PipelineRecord {
                    id: id.clone(),
                    name: handle.name.clone(),
                    sql: parsed.text.clone(),
                    running: true,
                    parallelism: Some(handle.parallelism()),
                });
                state.catalog.save(&self.data_dir)?;
                drop(state);
                send(Reply::Done { tag: "INSERT".into(), pipeline_id: Some(id), rows: 0 }).await
            }
            Statement::Drop { what: DropWhat::MaterializedView, name, if_exists } => {
                let view = match self.view(name) {
                    Ok(view) => view,
                    Err(_) if *if_exists => return send(done("DROP MATERIALIZED VIEW")).await,
                    Err(e) => return Err(e),
                };
                if let Some(user) = self.pipelines.all().into_iter().find(|p| p.is_running() && p.uses_table(name)) {
                    return Err(EddyError::Conflict(format!(
                        "materialized view `{name}` is read by running pipeline {} ({}); STOP PIPELINE {} first",
                        user.id, user.sql, user.id
                    )));
                }
                state.session.drop_view_source(name);
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
            Statement::Drop { what: DropWhat::Table, name, .. } => {
                if let Some(user) = self.pipelines.all().into_iter().find(|p| p.is_running() && p.uses_table(name)) {
                    return Err(EddyError::Conflict(format!(
                        "table `{name}` is used by running pipeline {} ({}); STOP PIPELINE {} first",
                        user.id, user.sql, user.id
                    )));
                }
                self.run_in_session(&mut state, parsed, &send).await
            }
            Statement::Select { query } if eddy_sql::referenced_tables(query).iter().any(|t| self.has_view(t)) => {
                for table in eddy_sql::referenced_tables(query) {
                    self.check_view_readable(&table)?;
                }
                let ctx = self.view_context()?;
                drop(state);
                answer_in(&ctx, &parsed.text, parsed.location, &send).await
            }
            Statement::Select { query } if eddy_sql::referenced_tables(query).is_empty() => self.run_in_session(&mut state, parsed, &send).await,
            Statement::Select { query } => {
                // Planned under the lock; run and streamed without it, so a long
                // query or a slow reader does not hold up other statements.
                let mut unsorted = (**query).clone();
                let (order_by, limit_clause, fetch) = (unsorted.order_by.take(), unsorted.limit_clause.take(), unsorted.fetch.take());
                let sorted = order_by.is_some() || limit_clause.is_some() || fetch.is_some();
                let inner =
                    ParsedStatement { statement: Statement::Select { query: Box::new(unsorted) }, location: parsed.location, text: parsed.text.clone() };
                let Outcome::Pipeline(spec) = state.session.execute(&inner).await? else {
                    return Err(EddyError::Unsupported("a SELECT did not plan into a pipeline".into()));
                };
                let (rows_rx, run) = start_bounded_query(&state.session, &spec, parsed.location)?;
                drop(state);
                if sorted {
                    sort_and_send(spec.plan.schema(), rows_rx, run, (order_by, limit_clause, fetch), parsed.location, &send).await
                } else {
                    stream_rows(spec.plan.schema(), rows_rx, run, &send).await
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
                let inner =
                    ParsedStatement { statement: Statement::Explain { statement: Box::new(explained) }, location: parsed.location, text: parsed.text.clone() };
                let Outcome::Rows(plan) = state.session.execute(&inner).await? else {
                    return Err(EddyError::Unsupported("EXPLAIN did not produce a plan".into()));
                };
                drop(state);
                let sizes = own.iter().chain(read.iter()).filter_map(|name| {
                    let (rows, bytes) = self.view(name).ok()?.size();
                    Some(vec![format!("state of materialized view `{name}`: {rows} rows, {bytes} bytes")])
                });
                let sizes = string_rows(&["plan"], sizes);
                send_result(&send, plan.schema(), vec![plan, sizes]).await
            }
            _ => self.run_in_session(&mut state, parsed, &send).await,
        }
    }

    /// Statements the session handles: DDL, `SET`, `SHOW TABLES`, `DESCRIBE`, `EXPLAIN`.
    async fn run_in_session<F, Fut>(&self, state: &mut State, parsed: &ParsedStatement, send: &F) -> Result<(), EddyError>
    where
        F: Fn(Reply) -> Fut,
        Fut: std::future::Future<Output = Result<(), EddyError>>,
    {
        match state.session.execute(parsed).await? {
            Outcome::Done(tag) => {
                let persisted = match &parsed.statement {
                    Statement::CreateTable(def) => Some(("table", def.name.clone(), true)),
                    Statement::CreateView { name, .. } => Some(("view", name.clone(), true)),
                    Statement::Set { key, .. } => Some(("set", key.clone(), true)),
                    Statement::Drop { what: DropWhat::Table, name, .. } => Some(("table", name.clone(), false)),
                    Statement::Drop { what: DropWhat::View, name, .. } => Some(("view", name.clone(), false)),
                    _ => None,
                };
                if let Some((kind, name, add)) = persisted {
                    if add {
                        state.catalog.add_statement(kind, &name, &parsed.text);
                    } else {
                        state.catalog.remove_statement(kind, &name);
                    }
                    state.catalog.save(&self.data_dir)?;
                }
                send(Reply::Done { tag, pipeline_id: None, rows: 0 }).await
            }
            Outcome::Rows(batch) => send_rows(send, batch).await,
            Outcome::Pipeline(_) => Err(EddyError::Unsupported(format!("`{}` starts a pipeline the server does not handle here", parsed.text))),
        }
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
        let handle = PipelineHandle::new(id, &parsed.text, prepared, target, self.checkpoint_store(id));
        self.pipelines.insert(Arc::clone(&handle));
        Ok(handle)
    }

    fn checkpoint_store(&self, id: &str) -> CheckpointStore {
        self.checkpoints.child(id)
    }

    fn record_running(state: &mut State, data_dir: &Path, id: &str, running: bool) -> Result<(), EddyError> {
        if let Some(record) = state.catalog.pipeline_mut(id) {
            record.running = running;
        }
        state.catalog.save(data_dir)
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

type QueryRun = tokio::task::JoinHandle<Result<(), EddyError>>;

/// Streams a bounded query's rows to the client as they come.
async fn stream_rows<F, Fut>(schema: SchemaRef, mut rows_rx: mpsc::Receiver<RecordBatch>, run: QueryRun, send: &F) -> Result<(), EddyError>
where
    F: Fn(Reply) -> Fut,
    Fut: std::future::Future<Output = Result<(), EddyError>>,
{
    send(Reply::Schema(schema)).await?;
    let mut rows = 0;
    while let Some(batch) = rows_rx.recv().await {
        rows += batch.num_rows() as u64;
        send(Reply::Batch(batch)).await?;
    }
    run.await.map_err(|e| EddyError::Unsupported(format!("the query stopped: {e}")))??;
    send(Reply::Done { tag: format!("SELECT {rows}"), pipeline_id: None, rows }).await
}

/// `ORDER BY` / `LIMIT` of a bounded query: its rows are collected, then
/// DataFusion sorts and cuts them.
async fn sort_and_send<F, Fut>(
    schema: SchemaRef,
    mut rows_rx: mpsc::Receiver<RecordBatch>,
    run: QueryRun,
    (order_by, limit_clause, fetch): (
        Option<datafusion::sql::sqlparser::ast::OrderBy>,
        Option<datafusion::sql::sqlparser::ast::LimitClause>,
        Option<datafusion::sql::sqlparser::ast::Fetch>,
    ),
    location: Location,
    send: &F,
) -> Result<(), EddyError>
where
    F: Fn(Reply) -> Fut,
    Fut: std::future::Future<Output = Result<(), EddyError>>,
{
    let mut batches = Vec::new();
    while let Some(batch) = rows_rx.recv().await {
        batches.push(batch);
    }
    run.await.map_err(|e| EddyError::Unsupported(format!("the query stopped: {e}")))??;
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

/// Starts a query over bounded tables; its rows arrive on the receiver until it ends.
fn start_bounded_query(
    session: &Session,
    spec: &crate::session::PipelineSpec,
    location: Location,
) -> Result<(mpsc::Receiver<RecordBatch>, QueryRun), EddyError> {
    if let Some(source) = spec.plan.sources().into_iter().find(|s| !s.bounded) {
        return Err(EddyError::Unsupported(format!(
            "at {location}: this SELECT reads `{}`, which never ends, so it would never answer. Keep its result with CREATE MATERIALIZED VIEW v AS SELECT ... and query v, or write it to a table with INSERT INTO",
            source.table.name
        )));
    }
    let prepared = session.prepare(spec);
    let (sink, rows) = ChannelSink::new();
    let run = tokio::spawn(async move {
        // The query runs until its sources end; the sender stays alive so it is not read as "stop".
        let (_keep_running, stop) = tokio::sync::watch::channel(false);
        prepared.run(Box::new(sink), Arc::default(), stop, None).await
    });
    Ok((rows, run))
}

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
        Err(KeyLost::Unsupported) => refused("this updating query is not supported in a materialized view".to_string()),
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
    async fn write(&mut self, batch: RecordBatch) -> Result<(), eddy_engine::BoxError> {
        self.tx.send(batch).await.map_err(|_| "the client stopped reading the result".into())
    }

    async fn commit(&mut self) -> Result<(), eddy_engine::BoxError> {
        Ok(())
    }
}
