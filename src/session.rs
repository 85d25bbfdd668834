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

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::Query;
use eddy_engine::checkpoint::CheckpointStore;
use eddy_engine::graph::Graph;
use eddy_engine::metrics::{MetricsSnapshot, PipelineGroup, PipelineState, SourceTotals};
use eddy_engine::operator::SideOutput;
use eddy_engine::runtime::{self, Ended, PipelineOutputs, RunOptions, SideSink};
use eddy_engine::{PipelineMetrics, Sink};
use eddy_sql::{parse_script, DropWhat, Location, ParsedStatement, Planner, ShowWhat, Statement, StreamPlan, TableDef};
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
    /// What each source table read to its end yielded, by table.
    pub sources: BTreeMap<String, SourceTotals>,
}

impl RunSummary {
    /// Source tables read to their end that had records but not one valid row:
    /// their input does not match their columns or format (a wrong `'format'`,
    /// delimiter or column order), so the run's output means nothing. Empty
    /// inputs, and valid rows that a query then filters out, are not here.
    pub fn sources_with_nothing_valid(&self) -> Vec<(String, u64)> {
        self.sources.iter().filter(|(_, t)| t.rows == 0 && t.malformed > 0).map(|(table, t)| (table.clone(), t.malformed)).collect()
    }
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.metrics;
        // Shown only when there are some, so the usual line stays as it was.
        let null_time = match m.null_time_rows {
            0 => String::new(),
            n => format!(", {n} rows with a NULL event time dropped"),
        };
        write!(
            f,
            "{} pipeline(s) finished: {} rows in, {} rows out, {} late rows dropped{null_time}, {} malformed records, in {:.2}s",
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
    /// Tables whose rows come from inside the process rather than a connector:
    /// a server's materialized views, read by other pipelines.
    view_sources: HashMap<String, Arc<dyn eddy_engine::Source>>,
    /// How many statements `execute_script` answered at once with printed rows
    /// (`SELECT 1`, `SHOW TABLES`), so a script of only those is not "nothing to run".
    answered: usize,
    /// `eddy run --cluster NAME`: the cluster the script's pipelines are shared in,
    /// for EXPLAIN to show how ([`Session::share_in_cluster`]).
    cluster: Option<String>,
}

/// What a script's answers at once (`SELECT 1`, `SHOW TABLES`, `EXPLAIN`) are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answers {
    Print,
    Skip,
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
        "cluster.key-groups",
        "with `eddy run --cluster`: how many parts (partitions of the shuffle topic) a pipeline's keys are spread over, each run whole by one member; more than members, fixed once the cluster has run (default 64)",
    ),
    (
        "cluster.commit-interval",
        "with `eddy run --cluster`: how often each re-partitioner commits what it sent to the shuffle (default 100 ms, from 10 ms to 1 s, the markers' interval): the least time a row waits there, and, with pre-aggregation, how long rows fold into one partial aggregate per key before they are sent",
    ),
    (
        "cluster.pre-aggregate",
        "with `eddy run --cluster`: 'true' (default) folds the rows of a TUMBLE, HOP, CUMULATE or GROUP BY into partial aggregates per slice and key before the shuffle, so it carries far fewer records; 'false' shuffles every record (SESSION always does); fixed once the cluster has run",
    ),
    (
        "state.checkpoints.dir",
        "a directory, or s3://bucket/prefix (credentials and endpoint from the AWS_* variables), for checkpoints (source positions and operator state): a pipeline restarted with the same location resumes from its last checkpoint (default: none)",
    ),
    (
        "execution.checkpointing.interval",
        "how often sinks commit (files become visible, buffers are flushed), e.g. '10 s' (default 10 s; '0' = only at the end)",
    ),
    (
        "state.storage.fs.memory-threshold",
        "window state that no longer changes (closed slices, and what open ones took before the last checkpoint) is stored once, in an object of its own that later checkpoints refer to, when it is at least this big; smaller state is written into every checkpoint (Flink's option; default 1 mb)",
    ),
    (
        "table.exec.state.ttl",
        "how long a regular join (one without time bounds) keeps a row that was not written, in processing time, e.g. '1 h' (Flink's option; default: for good)",
    ),
    (
        "pipeline.state.max-memory",
        "the most memory a pipeline's operator state (groups, windows, sessions) may hold, e.g. '512 mb'; a pipeline over it fails with a message instead of taking the machine down (default: no limit)",
    ),
];

/// Default of `'execution.checkpointing.interval'` (Flink's option name).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

impl Session {
    /// An empty session.
    pub fn new() -> Self {
        Session { planner: Planner::new(), locations: HashMap::new(), settings: BTreeMap::new(), view_sources: HashMap::new(), answered: 0, cluster: None }
    }

    /// Makes EXPLAIN show how `eddy run --cluster NAME` shares each pipeline.
    pub fn share_in_cluster(&mut self, name: &str) {
        self.cluster = Some(name.to_string());
    }

    /// How many statements of the scripts executed so far were answered at once with rows.
    pub fn answered(&self) -> usize {
        self.answered
    }

    /// Tasks per keyed operator: `SET 'parallelism'`, else the number of cores.
    pub fn parallelism(&self) -> usize {
        self.settings.get("parallelism").and_then(|v| v.parse().ok()).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    /// How often barriers make sinks commit: `SET 'execution.checkpointing.interval'`.
    pub fn checkpoint_interval(&self) -> Option<Duration> {
        match self.settings.get("execution.checkpointing.interval") {
            None => Some(DEFAULT_CHECKPOINT_INTERVAL),
            Some(v) => eddy_connectors::parse_duration("execution.checkpointing.interval", v).ok().filter(|d| !d.is_zero()),
        }
    }

    /// `SET 'cluster.key-groups'`: how many parts `eddy run --cluster` spreads a pipeline's keys over.
    pub fn key_groups(&self) -> i32 {
        self.settings.get("cluster.key-groups").and_then(|v| v.parse().ok()).unwrap_or(crate::run_cluster::DEFAULT_KEY_GROUPS)
    }

    /// `SET 'cluster.commit-interval'`: how often `eddy run --cluster`'s re-partitioners commit.
    pub fn commit_interval(&self) -> Duration {
        let set = self.settings.get("cluster.commit-interval").and_then(|v| eddy_connectors::parse_duration("cluster.commit-interval", v).ok());
        set.unwrap_or(eddy_connectors::kafka::shuffle::COMMIT_EVERY)
    }

    /// `SET 'cluster.pre-aggregate'`: whether `eddy run --cluster` may pre-aggregate before its shuffles.
    pub fn pre_aggregate(&self) -> crate::run_cluster::PreAggregateSetting {
        match self.settings.get("cluster.pre-aggregate").map(String::as_str) {
            Some("false") => crate::run_cluster::PreAggregateSetting::Off,
            _ => crate::run_cluster::PreAggregateSetting::WhereAllowed,
        }
    }

    /// How long a regular join keeps a row: `SET 'table.exec.state.ttl'` (`None`: for good, as with '0').
    pub fn state_ttl(&self) -> Option<Duration> {
        let ttl = self.settings.get("table.exec.state.ttl")?;
        eddy_connectors::parse_duration("table.exec.state.ttl", ttl).ok().filter(|d| !d.is_zero())
    }

    /// The most bytes of operator state a pipeline may hold: `SET 'pipeline.state.max-memory'`.
    pub fn max_state_bytes(&self) -> Option<u64> {
        self.settings.get("pipeline.state.max-memory").and_then(|v| eddy_connectors::parse_size("pipeline.state.max-memory", v).ok())
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
                    return Err(error("expected a directory or s3://bucket/prefix"));
                }
                self.settings.insert(key.to_string(), value.trim().to_string());
            }
            "execution.checkpointing.interval" => {
                if eddy_connectors::parse_duration(key, value).is_err() {
                    return Err(error("expected a duration such as '10 s', '500 ms' or '1 min' ('0' commits only at the end)"));
                }
                self.settings.insert(key.to_string(), value.trim().to_string());
            }
            "table.exec.state.ttl" => {
                if eddy_connectors::parse_duration(key, value).is_err() {
                    return Err(error("expected a duration such as '1 h', '30 min' or '0' (keep rows for good)"));
                }
                self.settings.insert(key.to_string(), value.trim().to_string());
            }
            "cluster.key-groups" => {
                if !value.trim().parse::<i32>().is_ok_and(|n| (1..=10_000).contains(&n)) {
                    return Err(error("expected a whole number of key groups, from 1 to 10000"));
                }
                self.settings.insert(key.to_string(), value.trim().to_string());
            }
            "cluster.commit-interval" => {
                let fits = eddy_connectors::parse_duration(key, value).is_ok_and(|d| (Duration::from_millis(10)..=Duration::from_secs(1)).contains(&d));
                if !fits {
                    return Err(error("expected a duration from 10 ms to 1 s, such as '100 ms'"));
                }
                self.settings.insert(key.to_string(), value.trim().to_string());
            }
            "cluster.pre-aggregate" => {
                let value = value.trim().to_ascii_lowercase();
                if value != "true" && value != "false" {
                    return Err(error("expected 'true' or 'false'"));
                }
                self.settings.insert(key.to_string(), value);
            }
            "pipeline.state.max-memory" | "state.storage.fs.memory-threshold" => {
                if eddy_connectors::parse_size(key, value).is_err() {
                    return Err(error("expected a memory size such as '512 mb' or '2 gb' (units: B, KB, MB, GB, TB)"));
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

    /// Executes every statement of a script: DDL and `SET` at once, rows of `SHOW`,
    /// `DESCRIBE` and `EXPLAIN` printed to stdout, and returns the pipelines to run.
    pub async fn execute_script(&mut self, sql: &str) -> Result<Vec<PipelineSpec>, EddyError> {
        self.run_script(sql, Answers::Print).await
    }

    /// [`Session::execute_script`] for a script that was executed before: plans
    /// the same pipelines without printing its answers again (a cluster member
    /// plans the script once more for every key group it runs).
    pub async fn replan_script(&mut self, sql: &str) -> Result<Vec<PipelineSpec>, EddyError> {
        self.run_script(sql, Answers::Skip).await
    }

    async fn run_script(&mut self, sql: &str, answers: Answers) -> Result<Vec<PipelineSpec>, EddyError> {
        let mut pipelines = Vec::new();
        for parsed in parse_script(sql)? {
            match self.execute(&parsed).await.map_err(|e| e.pointing_into(&parsed))? {
                Outcome::Done(_) => {}
                Outcome::Rows(batch) => {
                    self.answered += 1;
                    if answers == Answers::Print {
                        crate::console::print_rows(&batch)?
                    }
                }
                Outcome::Pipeline(spec) => pipelines.push(spec),
            }
        }
        Ok(pipelines)
    }

    /// Executes one statement of `eddy run`: the dispatcher of a session without a
    /// server. Statements about running pipelines and materialized views need one
    /// (the server dispatches its statements itself, to the same typed operations).
    pub async fn execute(&mut self, parsed: &ParsedStatement) -> Result<Outcome, EddyError> {
        let location = parsed.location;
        Ok(match &parsed.statement {
            Statement::CreateTable(def) => {
                self.create_table(def.clone(), location)?;
                Outcome::Done("CREATE TABLE".into())
            }
            Statement::CreateView { name, query } => {
                self.create_view(name, query, location).await?;
                Outcome::Done("CREATE VIEW".into())
            }
            Statement::Set { key, value } => {
                self.set(key, value)?;
                Outcome::Done("SET".into())
            }
            Statement::Insert { table, query } => Outcome::Pipeline(self.plan_insert(table, query, location).await?),
            Statement::Select { query } if eddy_sql::referenced_tables(query).is_empty() => Outcome::Rows(answer_without_tables(query, location).await?),
            Statement::Select { query } => Outcome::Pipeline(self.plan_select(query, location).await?),
            Statement::Show(ShowWhat::Tables) => Outcome::Rows(self.show_tables()),
            Statement::Show(ShowWhat::Views) => Outcome::Rows(self.show_views()),
            Statement::Describe { name } => Outcome::Rows(self.describe(name)?),
            Statement::Explain { statement } => Outcome::Rows(self.explain_statement(statement, location).await?),
            Statement::Drop { what: what @ (DropWhat::Table | DropWhat::View), name, if_exists } => {
                Outcome::Done(self.drop_table_or_view(*what, name, *if_exists)?)
            }
            Statement::Show(ShowWhat::Pipelines)
            | Statement::ShowCreate { .. }
            | Statement::ExplainAnalyze { .. }
            | Statement::StopPipeline { .. }
            | Statement::RestartPipeline { .. }
            | Statement::CreateMaterializedView { .. }
            | Statement::Drop { what: DropWhat::MaterializedView, .. } => {
                return Err(EddyError::Unsupported(format!("`{}` needs a server: run `eddy server` and submit it with `eddy sql`", parsed.text)))
            }
        })
    }

    /// `CREATE VIEW name AS query`: a named query, planned now so a mistake in it
    /// is reported at once, and inlined wherever it is read.
    pub async fn create_view(&mut self, name: &str, query: &Query, location: Location) -> Result<(), EddyError> {
        self.planner.register_view(name, query, location).await?;
        Ok(())
    }

    /// `DROP TABLE | VIEW [IF EXISTS] name`; the tag psql would print (`DROP TABLE`).
    pub fn drop_table_or_view(&mut self, what: DropWhat, name: &str, if_exists: bool) -> Result<String, EddyError> {
        let dropped = match what {
            DropWhat::Table => self.planner.drop_table(name),
            _ => self.planner.drop_view(name),
        };
        let kind = if what == DropWhat::Table { "TABLE" } else { "VIEW" };
        if !dropped && !if_exists {
            return Err(EddyError::NotFound(format!("no {} named `{name}`", kind.to_lowercase())));
        }
        self.locations.remove(name);
        Ok(format!("DROP {kind}"))
    }

    /// `SHOW VIEWS` without a server: the views of the session's catalog.
    pub fn show_views(&self) -> RecordBatch {
        string_rows(&["view"], self.planner.view_names().into_iter().map(|v| vec![v]))
    }

    /// `DESCRIBE name`: a table's or view's columns.
    pub fn describe(&self, name: &str) -> Result<RecordBatch, EddyError> {
        let schema = self.planner.columns_of(name).ok_or_else(|| EddyError::NotFound(format!("no table or view named `{name}`")))?;
        Ok(describe_rows(&schema))
    }

    /// `EXPLAIN statement`: the operators `statement` would run. Only plans; never
    /// runs what is explained (EXPLAIN DROP TABLE must not drop it).
    pub async fn explain_statement(&self, statement: &Statement, location: Location) -> Result<RecordBatch, EddyError> {
        let spec = match statement {
            Statement::Select { query } if eddy_sql::referenced_tables(query).is_empty() => {
                return Err(EddyError::Unsupported(
                    "this SELECT reads no table: it runs no operators and is answered at once, so there is nothing to EXPLAIN".into(),
                ))
            }
            Statement::Select { query } => self.plan_select(query, location).await?,
            Statement::Insert { table, query } => self.plan_insert(table, query, location).await?,
            _ => return Err(EddyError::Unsupported("EXPLAIN shows the operators of an INSERT INTO, a SELECT or a CREATE MATERIALIZED VIEW".into())),
        };
        Ok(self.explain(&spec))
    }

    /// Plans a bare `SELECT` over tables into a pipeline whose rows go to the caller.
    pub async fn plan_select(&self, query: &Query, location: Location) -> Result<PipelineSpec, EddyError> {
        self.plan_query(query, location, &format!("select@{}", location.line)).await
    }

    /// Plans `INSERT INTO table query`, refusing updates into a sink that only
    /// appends and retractions into a sink that cannot delete.
    pub async fn plan_insert(&self, table: &str, query: &Query, location: Location) -> Result<PipelineSpec, EddyError> {
        eddy_engine::failpoint::pause("planning").await;
        let (sink, mut plan) = self.planner.plan_insert(table, query, location).await?;
        self.apply_settings(&mut plan);
        Self::check_lookups(&plan, location)?;
        let refuse = |message: String| EddyError::Connector { table: sink.name.clone(), location, message };
        if plan.is_updating() && !eddy_connectors::accepts_updates(&sink) {
            return Err(refuse(format!(
                "the query is a GROUP BY without a window over an unbounded source, so its rows are updates of earlier rows; connector '{}' only appends. Write it to a sink that overwrites by key ('upsert-kafka', 'redis', 'clickhouse' with a ReplacingMergeTree table, 'print'), or group by a window",
                sink.connector()
            )));
        }
        if let (Some(origin), false) = (plan.retractions_origin(), eddy_connectors::accepts_retractions(&sink)) {
            return Err(refuse(format!(
                "the query retracts rows it wrote before ({origin}); connector '{}' cannot delete them. Write it to 'upsert-kafka' (tombstones), 'print', another materialized view, or 'blackhole'",
                sink.connector()
            )));
        }
        Ok(PipelineSpec { name: table.to_string(), plan, sink: Some(sink), location })
    }

    /// Plans a query into a pipeline without a sink (a server's materialized view or ad-hoc query).
    pub async fn plan_query(&self, query: &Query, location: Location, name: &str) -> Result<PipelineSpec, EddyError> {
        eddy_engine::failpoint::pause("planning").await;
        let mut plan = self.planner.plan_query(query, location).await?;
        self.apply_settings(&mut plan);
        Self::check_lookups(&plan, location)?;
        Ok(PipelineSpec { name: name.to_string(), plan, sink: None, location })
    }

    /// Refuses a lookup join whose table cannot be looked up (its connector, its
    /// keys), before anything runs.
    fn check_lookups(plan: &StreamPlan, location: Location) -> Result<(), EddyError> {
        for join in plan.lookup_joins() {
            let (Some(table), Ok(keys)) = (join.lookup_table(), join.lookup_key_columns()) else { continue };
            eddy_connectors::open_lookup(&table.table, Arc::clone(&table.physical_schema), &keys).map_err(|e| EddyError::Connector {
                table: table.table.name.clone(),
                location,
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Applies the session's settings that shape operators to a planned query.
    fn apply_settings(&self, plan: &mut StreamPlan) {
        if let Some(ttl) = self.state_ttl() {
            plan.set_state_ttl(ttl.as_millis().min(i64::MAX as u128) as i64);
        }
    }

    /// The planner's catalog, for a server's `SHOW` and `DROP` checks.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// `SHOW TABLES`: the tables of the catalog, with their connector and whether they end.
    pub fn show_tables(&self) -> RecordBatch {
        // Materialized views read as tables are listed as views, not here.
        let rows = self.planner.table_names().into_iter().filter(|name| !self.view_sources.contains_key(name)).filter_map(|name| {
            let def = self.planner.table(&name)?;
            let bounded = match self.planner.is_bounded(&name) {
                Some(true) => "bounded",
                _ => "unbounded",
            };
            Some(vec![name, def.connector().to_string(), bounded.to_string()])
        });
        string_rows(&["table", "connector", "kind"], rows)
    }

    fn explain(&self, spec: &PipelineSpec) -> RecordBatch {
        let mut text = format!("pipeline `{}` ", spec.name);
        text.push_str(match (spec.plan.is_updating(), spec.plan.emits_retractions()) {
            (true, _) => "(updating: emits changed groups at each checkpoint)\n",
            (false, true) => "(a changelog: takes back rows it emitted)\n",
            (false, false) => "(append-only)\n",
        });
        match &spec.sink {
            Some(sink) => text.push_str(&format!(
                "Sink: {} (connector={})\n  | tasks: 1 | watermark: received, not written | state: rows since the last checkpoint, flushed at it (committed after it, for exactly-once sinks)\n",
                sink.name,
                sink.connector()
            )),
            None => text.push_str("Output: rows to the caller\n  | tasks: 1 | watermark: received | state: none\n"),
        }
        for line in spec.plan.explain(self.parallelism()).lines() {
            text.push_str(&format!("  {line}\n"));
        }
        explain_partitions(&spec.plan, self.parallelism(), &mut text);
        if let (Some(cluster), Some(_)) = (&self.cluster, &spec.sink) {
            text.push_str(&crate::run_cluster::explain(spec, cluster, self.key_groups(), self.pre_aggregate()));
        }
        string_rows(&["plan"], text.lines().map(|l| vec![l.to_string()]))
    }

    /// `CREATE TABLE`: checks the connector and its options at once (a typo is
    /// reported at its line, before anything runs) and declares the table.
    pub fn create_table(&mut self, mut def: TableDef, location: Location) -> Result<(), EddyError> {
        let connector_error =
            |table: &TableDef, e: &dyn std::fmt::Display| EddyError::Connector { table: table.name.clone(), location, message: e.to_string() };
        eddy_connectors::validate_options(&def, eddy_engine::TableUse::Declared).map_err(|e| connector_error(&def, &e))?;
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

    /// Resolves what a pipeline needs from the session (side tables, settings), so
    /// it can run on its own while the session goes on changing.
    pub fn prepare(&self, spec: &PipelineSpec) -> PreparedPipeline {
        let mut side = Vec::new();
        for source in spec.plan.sources() {
            for (key, kind) in [("late.sink", SideOutput::Late), ("malformed.sink", SideOutput::Malformed)] {
                let Some(target) = source.table.option(key) else {
                    continue;
                };
                let Some(def) = self.planner.table(target) else {
                    continue;
                };
                let location = self.locations.get(&def.name).copied().unwrap_or(spec.location);
                side.push((source.table.name.clone(), kind, def, location));
            }
        }
        PreparedPipeline {
            name: spec.name.clone(),
            plan: spec.plan.clone(),
            side,
            parallelism: self.parallelism(),
            checkpoint_interval: self.checkpoint_interval(),
            max_state_bytes: self.max_state_bytes(),
            checkpoint_trigger: None,
            refresh_interval: None,
            view_sources: spec
                .plan
                .sources()
                .iter()
                .filter_map(|s| self.view_sources.get(&s.table.name).map(|source| (s.table.name.clone(), Arc::clone(source))))
                .collect(),
        }
    }

    /// Makes `def` (columns and PRIMARY KEY) an unbounded table other statements
    /// can read, whose rows (and, for a `changelog`, retractions) come from
    /// `source`: how a server lets pipelines read a materialized view.
    pub fn register_view_source(&mut self, def: TableDef, source: Arc<dyn eddy_engine::Source>, changelog: bool, location: Location) -> Result<(), EddyError> {
        let name = def.name.clone();
        if changelog {
            self.planner.register_changelog(def, location)?;
        } else {
            self.planner.register_table(def, false, location)?;
        }
        self.view_sources.insert(name, source);
        Ok(())
    }

    /// Forgets a table registered by [`Session::register_view_source`].
    pub fn drop_view_source(&mut self, name: &str) {
        if self.view_sources.remove(name).is_some() {
            self.planner.drop_table(name);
        }
    }

    /// Where `SET 'state.checkpoints.dir'` (a directory or `s3://bucket/prefix`)
    /// keeps a script's pipeline's checkpoints.
    fn checkpoint_store(&self, spec: &PipelineSpec) -> Result<Option<CheckpointStore>, EddyError> {
        let Some(location) = self.settings.get("state.checkpoints.dir") else {
            return Ok(None);
        };
        let mut store = CheckpointStore::open(location).map_err(|source| EddyError::Pipeline { pipeline: spec.name.clone(), source })?;
        // Checked when it was SET.
        if let Some(bytes) =
            self.settings.get("state.storage.fs.memory-threshold").and_then(|v| eddy_connectors::parse_size("state.storage.fs.memory-threshold", v).ok())
        {
            store = store.with_lasting_min_bytes(usize::try_from(bytes).unwrap_or(usize::MAX));
        }
        Ok(Some(store.child(&format!("{}-line{}", spec.name, spec.location.line))))
    }

    /// Opens the sink of an `INSERT INTO` pipeline.
    pub fn open_sink(&self, spec: &PipelineSpec) -> Result<Option<Box<dyn Sink>>, EddyError> {
        let Some(def) = &spec.sink else {
            return Ok(None);
        };
        let location = self.locations.get(&def.name).copied().unwrap_or(spec.location);
        create_sink(def, location).map(Some)
    }

    /// Runs pipelines together, each counting into its own figures in `metrics`
    /// (made for `pipelines`, in their order: [`PipelineGroup::new`]); a bare
    /// `SELECT` writes to `select_sink()`. Returns when all have ended.
    pub async fn run(
        &self,
        pipelines: &[PipelineSpec],
        metrics: &PipelineGroup,
        stop: watch::Receiver<bool>,
        select_sink: &mut (dyn FnMut(&PipelineSpec) -> Box<dyn Sink> + Send),
    ) -> Result<RunSummary, EddyError> {
        let started = Instant::now();
        let stores: Vec<Option<CheckpointStore>> = pipelines.iter().map(|spec| self.checkpoint_store(spec)).collect::<Result<_, _>>()?;
        // A pipeline whose checkpoints hold the record that it ran to its end (in
        // this script's interrupted run or an earlier one) is not run again: its
        // rows are written, and reading its input again would write them twice.
        let mut runs = Vec::new();
        for (i, (spec, store)) in pipelines.iter().zip(&stores).enumerate() {
            let sink = match self.open_sink(spec)? {
                Some(sink) => sink,
                None => select_sink(spec),
            };
            let prepared = self.prepare(spec);
            let figures = metrics.get(i).cloned().ok_or_else(|| EddyError::Internal(format!("no figures for pipeline {}", spec.name)))?;
            let run = prepared.run_to_end(sink, figures, stop.clone(), store.clone());
            runs.push(async move {
                let ended = run.await;
                // `/metrics` of the run shows it ended while the others go on.
                metrics.set_state(i, if ended.is_ok() { PipelineState::Finished } else { PipelineState::Failed });
                ended
            });
        }
        let results = futures::future::join_all(runs).await;
        eddy_engine::failpoint::reach("script-completed");
        let mut completed_before = 0;
        for (spec, result) in pipelines.iter().zip(results) {
            if result? == Ended::AlreadyCompleted {
                completed_before += 1;
                eprintln!("eddy: {} (line {}) already ran to its end with these checkpoints; not running it again", spec.name, spec.location.line);
            }
        }
        if completed_before == pipelines.len() {
            if let Some(location) = self.settings.get("state.checkpoints.dir") {
                eprintln!(
                    "eddy: every pipeline of this script already ran to its end with the checkpoints in {location}, so nothing was read (not even input added since); to run the script again from the start, delete that directory or use another checkpoint directory"
                );
            }
        }
        Ok(RunSummary { pipelines: pipelines.len(), metrics: metrics.snapshot(), elapsed: started.elapsed(), sources: metrics.ended_sources() })
    }
}

/// What one statement did.
#[allow(clippy::large_enum_variant)] // one per statement
pub enum Outcome {
    /// DDL or `SET`, with the tag psql would print (`CREATE TABLE`).
    Done(String),
    /// Rows to show now (`SHOW`, `DESCRIBE`, `EXPLAIN`).
    Rows(RecordBatch),
    /// A pipeline to start (`INSERT INTO`, `SELECT`).
    Pipeline(PipelineSpec),
}

/// A pipeline with everything it needs from its session resolved.
#[derive(Clone)]
pub struct PreparedPipeline {
    pub name: String,
    pub plan: StreamPlan,
    /// Late and malformed rows' tables: (source table, kind, table, where it was declared).
    side: Vec<(String, SideOutput, TableDef, Location)>,
    parallelism: usize,
    checkpoint_interval: Option<Duration>,
    /// `'pipeline.state.max-memory'` when the pipeline was planned.
    max_state_bytes: Option<u64>,
    checkpoint_trigger: Option<Arc<tokio::sync::Notify>>,
    /// How often its sink is refreshed between checkpoints (a materialized view's).
    refresh_interval: Option<Duration>,
    /// Sources of the plan's tables that are not opened through a connector.
    view_sources: HashMap<String, Arc<dyn eddy_engine::Source>>,
}

impl PreparedPipeline {
    /// Tasks per keyed operator this pipeline runs with.
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// Runs with `parallelism` tasks per keyed operator instead of the session's.
    pub fn with_parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism.max(1);
        self
    }

    /// Lets the caller take a checkpoint at once (a savepoint) by notifying `trigger`.
    pub fn with_checkpoint_trigger(mut self, trigger: Arc<tokio::sync::Notify>) -> Self {
        self.checkpoint_trigger = Some(trigger);
        self
    }

    /// Refreshes the sink every `interval` between checkpoints (see
    /// [`eddy_engine::Message::Refresh`]): for a materialized view, so reads are that fresh.
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = Some(interval);
        self
    }

    /// Runs the pipeline into `sink` until its sources end or `stop` turns true,
    /// saving checkpoints to (and resuming from) `checkpoints` when given.
    pub async fn run(
        self,
        sink: Box<dyn Sink>,
        metrics: Arc<PipelineMetrics>,
        stop: watch::Receiver<bool>,
        checkpoints: Option<CheckpointStore>,
    ) -> Result<(), EddyError> {
        self.run_to_end(sink, metrics, stop, checkpoints).await.map(|_| ())
    }

    /// [`PreparedPipeline::run`], telling how the run ended: in particular that
    /// `checkpoints` held the record of an earlier run that completed, so nothing ran.
    pub async fn run_to_end(
        self,
        sink: Box<dyn Sink>,
        metrics: Arc<PipelineMetrics>,
        stop: watch::Receiver<bool>,
        checkpoints: Option<CheckpointStore>,
    ) -> Result<Ended, EddyError> {
        let name = self.name.clone();
        let pipeline_error = |source| EddyError::Pipeline { pipeline: name.clone(), source };
        let view_sources = self.view_sources;
        let mut open_source = |node: &eddy_sql::SourceNode| -> eddy_engine::Result<Arc<dyn eddy_engine::Source>> {
            if let Some(source) = view_sources.get(&node.table.name) {
                return Ok(Arc::clone(source));
            }
            eddy_connectors::create_source_for(&node.table, Arc::clone(&node.physical_schema), node.read_columns.as_deref(), node.partition_filter.as_ref())
                .map_err(|e| eddy_engine::EngineError::Source { table: node.table.name.clone(), partition: "open".to_string(), source: Box::new(e) })
        };
        let mut open_lookup = |node: &eddy_sql::SourceNode, keys: &[usize]| -> eddy_engine::Result<eddy_engine::lookup::LookupTable> {
            eddy_connectors::open_lookup(&node.table, Arc::clone(&node.physical_schema), keys)
                .map_err(|e| eddy_engine::EngineError::Lookup { table: node.table.name.clone(), message: e.to_string() })
        };
        let graph = Graph::build(&self.plan, self.parallelism, &metrics, &mut open_source, &mut open_lookup).map_err(pipeline_error)?;
        tracing::debug!(pipeline = %self.name, "plan:\n{}\ngraph:\n{}", self.plan.explain(self.parallelism), graph.describe());
        let mut side = HashMap::new();
        for (source, kind, def, location) in self.side {
            side.insert((source, kind), SideSink { table: def.name.clone(), sink: create_sink(&def, location)?, schema: def.sink_schema() });
        }
        let outputs = PipelineOutputs { sink_table: self.name.clone(), sink, side };
        let options = RunOptions {
            checkpoint_interval: self.checkpoint_interval,
            checkpoints,
            trigger: self.checkpoint_trigger,
            refresh_interval: self.refresh_interval,
            max_state_bytes: self.max_state_bytes,
            connectors: eddy_connectors::CONNECTORS,
        };
        runtime::run(graph, outputs, metrics, stop, options).await.map_err(pipeline_error)
    }
}

/// The partitions of each source whose connector knows them before it runs (files
/// and their splits), as the engine opens them: for the pipeline's parallelism
/// ([`eddy_engine::graph::Graph::parallelism`]).
fn explain_partitions(plan: &StreamPlan, parallelism: usize, text: &mut String) {
    let tasks = parallelism.max(1);
    /// More partitions than this are counted, not listed.
    const LISTED: usize = 8;
    for source in plan.sources() {
        match eddy_connectors::describe_partitions(&source.table, tasks, source.partition_filter.as_ref()) {
            None => {}
            Some(Err(e)) => text.push_str(&format!("Partitions of {}: not known yet ({e})\n", source.table.name)),
            Some(Ok(parts)) => {
                text.push_str(&format!("Partitions of {} (opened for {tasks} task(s)): {}\n", source.table.name, parts.len()));
                for part in parts.iter().take(LISTED) {
                    text.push_str(&format!("  {part}\n"));
                }
                if parts.len() > LISTED {
                    text.push_str(&format!("  ... and {} more\n", parts.len() - LISTED));
                }
            }
        }
    }
}

/// Opens a table's sink, with errors that name the table and where it was declared.
pub fn create_sink(def: &TableDef, location: Location) -> Result<Box<dyn Sink>, EddyError> {
    eddy_connectors::create_sink(def, def.sink_schema()).map_err(|e| EddyError::Connector { table: def.name.clone(), location, message: e.to_string() })
}

/// A batch of text columns, for `SHOW` and `EXPLAIN` answers.
pub fn string_rows(columns: &[&str], rows: impl Iterator<Item = Vec<String>>) -> RecordBatch {
    let rows: Vec<Vec<String>> = rows.collect();
    let schema = Arc::new(Schema::new(columns.iter().map(|c| Field::new(*c, DataType::Utf8, false)).collect::<Vec<_>>()));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.get(i).map(String::as_str).unwrap_or("")))) as ArrayRef)
        .collect();
    RecordBatch::try_new(schema, arrays).unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
}

/// A DataFusion context for one-off batch queries over rows already at hand
/// (materialized views, a sorted result, constants), with Eddy's functions and
/// Flink's case-sensitive names.
pub fn batch_context() -> datafusion::prelude::SessionContext {
    let mut config = datafusion::prelude::SessionConfig::new();
    config.options_mut().sql_parser.enable_ident_normalization = false;
    config.options_mut().sql_parser.parse_float_as_decimal = true;
    let ctx = datafusion::prelude::SessionContext::new_with_config(config);
    eddy_sql::functions::register(&ctx);
    ctx
}

/// A `SELECT` that reads no table (`SELECT 1`, `SELECT UPPER('a')`, `VALUES (1), (2)`)
/// has nothing to stream: it is answered at once, as a batch query.
pub async fn answer_without_tables(query: &Query, location: Location) -> Result<RecordBatch, EddyError> {
    let plan_error = |e: datafusion::error::DataFusionError| {
        EddyError::Sql(eddy_sql::functions::refuse_unsupported(eddy_sql::SqlError::plan(location, e.strip_backtrace())))
    };
    // Planned from the tree, not from its text printed back: printing loses a
    // quote of a literal holding '' and the rewrites of Flink's function syntax.
    let mut rewritten = query.clone();
    eddy_sql::functions::rewrite_query(&mut rewritten);
    let ctx = batch_context();
    let statement = datafusion::sql::parser::Statement::Statement(Box::new(datafusion::sql::sqlparser::ast::Statement::Query(Box::new(rewritten))));
    let plan = ctx.state().statement_to_plan(statement).await.map_err(plan_error)?;
    let frame = ctx.execute_logical_plan(plan).await.map_err(plan_error)?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(plan_error)?;
    let rows = datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(|e| plan_error(e.into()))?;
    Ok(with_flink_column_names(query, rows))
}

/// `rows` with each column a select item computes without an alias named as
/// Flink names it, `EXPR$<position>` (`SELECT 1 + 1` answers `EXPR$0`), rather
/// than DataFusion's printed expression. A SELECT with a wildcard keeps its names.
fn with_flink_column_names(query: &Query, rows: RecordBatch) -> RecordBatch {
    use datafusion::sql::sqlparser::ast::{Expr, SelectItem, SetExpr};
    let SetExpr::Select(select) = query.body.as_ref() else { return rows };
    if select.projection.len() != rows.num_columns() {
        return rows;
    }
    let schema = rows.schema();
    let fields: Vec<datafusion::arrow::datatypes::FieldRef> = select
        .projection
        .iter()
        .zip(schema.fields())
        .enumerate()
        .map(|(i, (item, field))| match item {
            SelectItem::UnnamedExpr(Expr::Identifier(_) | Expr::CompoundIdentifier(_)) | SelectItem::ExprWithAlias { .. } => Arc::clone(field),
            SelectItem::UnnamedExpr(_) => Arc::new(field.as_ref().clone().with_name(format!("EXPR${i}"))),
            _ => Arc::clone(field),
        })
        .collect();
    let renamed = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(renamed, rows.columns().to_vec()).unwrap_or(rows)
}

/// `DESCRIBE`'s answer: one row per column, as Flink shows them, with the
/// SQL type a user declares (`BIGINT`, `TIMESTAMP(3)`), not Arrow's.
pub fn describe_rows(schema: &Schema) -> RecordBatch {
    string_rows(
        &["name", "type", "null"],
        schema.fields().iter().map(|f| vec![f.name().clone(), eddy_sql::sql_type_name(f.data_type()), if f.is_nullable() { "YES" } else { "NO" }.to_string()]),
    )
}
