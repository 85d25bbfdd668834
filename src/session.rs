//! A session: the catalog and settings of one script (or one client), and the
//! pipelines its statements start.
//!
//! `CREATE TABLE` validates the connector and its options at once, so a typo is
//! reported at its line before anything runs. `INSERT INTO` and bare `SELECT`s are
//! planned into [`PipelineSpec`]s; [`Session::run`] runs them together until their
//! sources end or the caller stops them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_engine::graph::Graph;
use eddy_engine::metrics::MetricsSnapshot;
use eddy_engine::operator::SideOutput;
use eddy_engine::runtime::{self, PipelineOutputs, RunOptions, SideSink};
use eddy_engine::{PipelineMetrics, Sink};
use eddy_sql::{parse_script, Location, Planner, Statement, StreamPlan, TableDef};
use tokio::sync::watch;

use crate::error::EddyError;

/// A planned pipeline, ready to run.
pub struct PipelineSpec {
    /// The sink table's name, or `select@LINE` for a bare query.
    pub name: String,
    pub plan: StreamPlan,
    /// The sink table; `None` for a bare `SELECT` (the caller picks where rows go).
    pub sink: Option<TableDef>,
    pub location: Location,
}

/// What a run did, for the one-line summary.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub pipelines: usize,
    pub metrics: MetricsSnapshot,
    pub elapsed: Duration,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.metrics;
        write!(
            f,
            "{} pipeline(s) finished: {} rows in, {} rows out, {} late rows dropped, {} malformed records, in {:.2}s",
            self.pipelines,
            m.rows_in,
            m.rows_out,
            m.late_rows,
            m.malformed_rows,
            self.elapsed.as_secs_f64()
        )
    }
}

/// The catalog, settings and planner of one script or client.
pub struct Session {
    planner: Planner,
    locations: HashMap<String, Location>,
    settings: BTreeMap<String, String>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

/// The settings `SET` accepts, with what they do.
pub const SETTINGS: &[(&str, &str)] = &[
    ("parallelism", "tasks per keyed operator (default: the number of CPU cores)"),
    (
        "state.checkpoints.dir",
        "a directory for checkpoints (source positions and operator state): a pipeline restarted with the same directory resumes from its last checkpoint (default: none)",
    ),
    (
        "execution.checkpointing.interval",
        "how often sinks commit (files become visible, buffers are flushed), e.g. '10 s' (default 10 s; '0' = only at the end)",
    ),
];

/// Default of `'execution.checkpointing.interval'` (Flink's option name).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

impl Session {
    /// An empty session.
    pub fn new() -> Self {
        Session { planner: Planner::new(), locations: HashMap::new(), settings: BTreeMap::new() }
    }

    /// Tasks per keyed operator: `SET 'parallelism'`, else the number of cores.
    pub fn parallelism(&self) -> usize {
        self.settings
            .get("parallelism")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    /// How often barriers make sinks commit: `SET 'execution.checkpointing.interval'`.
    pub fn checkpoint_interval(&self) -> Option<Duration> {
        match self.settings.get("execution.checkpointing.interval") {
            None => Some(DEFAULT_CHECKPOINT_INTERVAL),
            Some(v) => eddy_connectors::parse_duration("execution.checkpointing.interval", v).ok().filter(|d| !d.is_zero()),
        }
    }

    /// Sets a session setting, as `SET 'key' = 'value'` does.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), EddyError> {
        let error = |message: &str| EddyError::Setting { key: key.to_string(), value: value.to_string(), message: message.to_string() };
        match key {
            "parallelism" | "parallelism.default" => {
                let n: usize = value.parse().map_err(|_| error("expected a whole number of tasks, at least 1"))?;
                if n == 0 {
                    return Err(error("expected a whole number of tasks, at least 1"));
                }
                self.settings.insert("parallelism".to_string(), value.to_string());
            }
            "state.checkpoints.dir" => {
                if value.trim().is_empty() {
                    return Err(error("expected a directory"));
                }
                self.settings.insert(key.to_string(), value.trim().to_string());
            }
            "execution.checkpointing.interval" => {
                if eddy_connectors::parse_duration(key, value).is_err() {
                    return Err(error("expected a duration such as '10 s', '500 ms' or '1 min' ('0' commits only at the end)"));
                }
                self.settings.insert(key.to_string(), value.trim().to_string());
            }
            _ => {
                let known: Vec<&str> = SETTINGS.iter().map(|(k, _)| *k).collect();
                return Err(error(&format!("unknown setting; known settings: {}", known.join(", "))));
            }
        }
        Ok(())
    }

    /// Executes every statement of a script: DDL and `SET` at once, and returns the pipelines to run.
    pub async fn execute_script(&mut self, sql: &str) -> Result<Vec<PipelineSpec>, EddyError> {
        let mut pipelines = Vec::new();
        for parsed in parse_script(sql)? {
            let location = parsed.location;
            match parsed.statement {
                Statement::CreateTable(def) => self.create_table(def, location)?,
                Statement::CreateView { name, query } => self.planner.register_view(&name, &query, location).await?,
                Statement::Set { key, value } => self.set(&key, &value)?,
                Statement::Insert { table, query } => {
                    let (sink, plan) = self.planner.plan_insert(&table, &query, location).await?;
                    if plan.is_updating() && !eddy_connectors::accepts_updates(&sink) {
                        return Err(EddyError::Connector {
                            table: sink.name.clone(),
                            location,
                            message: format!(
                                "the query is a GROUP BY without a window over an unbounded source, so its rows are updates of earlier rows; connector '{}' only appends. Write it to a sink that overwrites by key ('redis', 'clickhouse' with a ReplacingMergeTree table, 'print'), or group by a window",
                                sink.connector()
                            ),
                        });
                    }
                    pipelines.push(PipelineSpec { name: table, plan, sink: Some(sink), location });
                }
                Statement::Select { query } => {
                    let plan = self.planner.plan_query(&query, location).await?;
                    pipelines.push(PipelineSpec { name: format!("select@{}", location.line), plan, sink: None, location });
                }
            }
        }
        Ok(pipelines)
    }

    fn create_table(&mut self, mut def: TableDef, location: Location) -> Result<(), EddyError> {
        let connector_error = |table: &TableDef, e: &dyn std::fmt::Display| EddyError::Connector {
            table: table.name.clone(),
            location,
            message: e.to_string(),
        };
        eddy_connectors::validate_options(&def, false).map_err(|e| connector_error(&def, &e))?;
        if def.columns.is_empty() {
            // Generators know their own columns (`CREATE TABLE bid WITH ('connector' = 'nexmark')`).
            let schema = eddy_connectors::source_schema(&def).map_err(|e| connector_error(&def, &e))?;
            def.columns = schema.fields().iter().map(|f| eddy_sql::ColumnDef::from(f.as_ref())).collect();
        }
        for key in ["late.sink", "malformed.sink"] {
            if let Some(target) = def.option(key) {
                if self.planner.table(target).is_none() {
                    return Err(EddyError::Connector {
                        table: def.name.clone(),
                        location,
                        message: format!("option '{key}' names table `{target}`, which is not declared yet; declare it with CREATE TABLE before this table"),
                    });
                }
            }
        }
        let bounded = eddy_connectors::is_bounded(&def);
        self.locations.insert(def.name.clone(), location);
        self.planner.register_table(def, bounded, location)?;
        Ok(())
    }

    fn open_sink(&self, def: &TableDef) -> Result<Box<dyn Sink>, EddyError> {
        eddy_connectors::create_sink(def, def.sink_schema()).map_err(|e| EddyError::Connector {
            table: def.name.clone(),
            location: self.locations.get(&def.name).copied().unwrap_or(Location { line: 0, column: 0 }),
            message: e.to_string(),
        })
    }

    /// Runs one pipeline, writing to `sink`, until its sources end or `stop` turns true.
    pub async fn run_pipeline(
        &self,
        spec: &PipelineSpec,
        sink: Box<dyn Sink>,
        metrics: Arc<PipelineMetrics>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), EddyError> {
        let pipeline_error = |source| EddyError::Pipeline { pipeline: spec.name.clone(), source };
        let mut open_source = |node: &eddy_sql::SourceNode| -> eddy_engine::Result<Arc<dyn eddy_engine::Source>> {
            eddy_connectors::create_source(&node.table, Arc::clone(&node.physical_schema)).map_err(|e| eddy_engine::EngineError::Source {
                table: node.table.name.clone(),
                partition: "open".to_string(),
                source: Box::new(e),
            })
        };
        let graph = Graph::build(&spec.plan, self.parallelism(), &metrics, &mut open_source).map_err(pipeline_error)?;
        tracing::debug!(pipeline = %spec.name, "plan:\n{}\ngraph:\n{}", spec.plan.explain(), graph.describe());
        let mut side = HashMap::new();
        for source in spec.plan.sources() {
            for (key, kind) in [("late.sink", SideOutput::Late), ("malformed.sink", SideOutput::Malformed)] {
                let Some(target) = source.table.option(key) else { continue };
                let Some(def) = self.planner.table(target) else { continue };
                side.insert(
                    (source.table.name.clone(), kind),
                    SideSink { table: def.name.clone(), sink: self.open_sink(&def)?, schema: def.sink_schema() },
                );
            }
        }
        let outputs = PipelineOutputs { sink_table: spec.name.clone(), sink, side };
        let checkpoints = self
            .settings
            .get("state.checkpoints.dir")
            .map(|dir| eddy_engine::checkpoint::CheckpointStore::new(std::path::Path::new(dir).join(format!("{}-line{}", spec.name, spec.location.line))));
        let options = RunOptions { checkpoint_interval: self.checkpoint_interval(), checkpoints };
        runtime::run(graph, outputs, metrics, stop, options).await.map_err(pipeline_error)
    }

    /// Runs pipelines together; a bare `SELECT` writes to `select_sink()`. Returns when all have ended.
    pub async fn run(
        &self,
        pipelines: &[PipelineSpec],
        metrics: Arc<PipelineMetrics>,
        stop: watch::Receiver<bool>,
        select_sink: &mut (dyn FnMut(&PipelineSpec) -> Box<dyn Sink> + Send),
    ) -> Result<RunSummary, EddyError> {
        let started = Instant::now();
        let mut runs = Vec::new();
        for spec in pipelines {
            let sink = match &spec.sink {
                Some(def) => self.open_sink(def)?,
                None => select_sink(spec),
            };
            runs.push(self.run_pipeline(spec, sink, Arc::clone(&metrics), stop.clone()));
        }
        for result in futures::future::join_all(runs).await {
            result?;
        }
        Ok(RunSummary { pipelines: pipelines.len(), metrics: metrics.snapshot(), elapsed: started.elapsed() })
    }
}
