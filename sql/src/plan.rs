//! Planning: from a parsed query to a [`StreamPlan`].
//!
//! DataFusion does the heavy lifting: name resolution, type coercion, the
//! optimizer and physical expressions. Source tables are registered as
//! placeholder providers whose scans produce [`StreamScanExec`] leaves, and window
//! functions as [`WindowTvfExec`] nodes. The optimized physical plan is then
//! compiled node by node into the streaming plan; anything that cannot run
//! incrementally is refused with an error that says what to write instead.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::optimizer::Optimizer;
use datafusion::physical_expr::expressions::{cast, Column};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Query, SetExpr, Statement as SqlStatement};

use crate::error::{Location, Result, SqlError};
use crate::window::{self, WINDOW_FUNCTION};
use eddy_engine::plan::WindowKind;
use eddy_engine::plan::{GroupColumn, LatenessRule, SliceColumn, SourceNode, StreamNode, StreamPlan, WindowAggregateNode};
use eddy_engine::table::TableDef;

/// The watermark expression is evaluated for every row: `ts - INTERVAL '5' SECOND`
/// becomes a plain subtraction. An interval of whole milliseconds without months or
/// days is the same as a duration, which Arrow subtracts from timestamps directly
/// instead of doing calendar arithmetic per row.
fn intervals_as_durations(expr: Expr) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    let rewritten = expr.clone().transform(|e| {
        Ok(match e {
            Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), meta) if v.months == 0 && v.days == 0 && v.nanoseconds % 1_000_000 == 0 => {
                Transformed::yes(Expr::Literal(ScalarValue::DurationMillisecond(Some(v.nanoseconds / 1_000_000)), meta))
            }
            Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), meta) if v.days == 0 => {
                Transformed::yes(Expr::Literal(ScalarValue::DurationMillisecond(Some(i64::from(v.milliseconds))), meta))
            }
            other => Transformed::no(other),
        })
    });
    rewritten.map(|t| t.data).unwrap_or(expr)
}

/// A registered source or sink table with its planned computed columns and watermark.
#[derive(Debug, Clone)]
struct TableEntry {
    def: TableDef,
    physical_schema: SchemaRef,
    schema: SchemaRef,
    computed: Vec<Arc<dyn PhysicalExpr>>,
    watermark: Option<Arc<dyn PhysicalExpr>>,
    bounded: bool,
    /// Its rows are a changelog (they retract earlier rows).
    changelog: bool,
}

type Tables = Arc<RwLock<HashMap<String, TableEntry>>>;

/// Keeps the catalog of one session and plans statements against it.
pub struct Planner {
    ctx: SessionContext,
    tables: Tables,
    /// Views (`CREATE VIEW`) by name, with their output schema.
    views: BTreeMap<String, SchemaRef>,
    /// How many plan nodes each view adds where it is read (see [`crate::limits`]).
    view_nodes: BTreeMap<String, usize>,
}

impl fmt::Debug for Planner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Planner").finish_non_exhaustive()
    }
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

fn df_error(location: Location, error: DataFusionError) -> SqlError {
    // DataFusion attaches a source span to some errors (unknown columns, types); prefer it.
    let location = error.diagnostic().and_then(|d| d.span).map(|span| Location { line: span.start.line, column: span.start.column }).unwrap_or(location);
    let message = error.strip_backtrace();
    let message = message.trim_start_matches("Error during planning: ").trim_start_matches("Schema error: ").trim_start_matches("External error: ").to_string();
    SqlError::plan(location, message)
}

impl Planner {
    /// A planner with Flink's case-sensitive names and the Flink functions Eddy adds.
    pub fn new() -> Self {
        let mut config = SessionConfig::new().with_target_partitions(1).with_information_schema(false);
        // Flink's identifiers are case-sensitive; keep them as written.
        config.options_mut().sql_parser.enable_ident_normalization = false;
        // COUNT(DISTINCT x) must stay one aggregate so it runs inside the window operator.
        let rules = Optimizer::new().rules.into_iter().filter(|r| r.name() != "single_distinct_aggregation_to_group_by").collect();
        let state = SessionStateBuilder::new().with_config(config).with_default_features().with_optimizer_rules(rules).build();
        let ctx = SessionContext::new_with_state(state);
        crate::functions::register(&ctx);
        let tables: Tables = Arc::default();
        ctx.register_udtf(WINDOW_FUNCTION, Arc::new(WindowTableFunction { tables: Arc::clone(&tables) }));
        Planner { ctx, tables, views: BTreeMap::new(), view_nodes: BTreeMap::new() }
    }

    /// Registers a table declared by `CREATE TABLE` (its columns already filled in).
    /// `bounded` says whether reading it ends by itself.
    pub fn register_table(&mut self, def: TableDef, bounded: bool, location: Location) -> Result<()> {
        self.register(def, bounded, false, location)
    }

    /// Registers a table whose rows are a changelog keyed by its PRIMARY KEY: a
    /// materialized view read as a stream, which retracts rows as its groups
    /// update. Queries over it may aggregate (with retractions) but not window it.
    pub fn register_changelog(&mut self, def: TableDef, location: Location) -> Result<()> {
        self.register(def, false, true, location)
    }

    fn register(&mut self, def: TableDef, bounded: bool, changelog: bool, location: Location) -> Result<()> {
        if self.tables.read().map_err(|_| poisoned(location))?.contains_key(&def.name) {
            return Err(SqlError::plan(location, format!("table `{}` already exists", def.name)));
        }
        let physical_schema = def.physical_schema();
        let state = self.ctx.state();
        let physical_df = DFSchema::try_from(physical_schema.as_ref().clone()).map_err(|e| df_error(location, e))?;
        let mut fields: Vec<Field> = physical_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut computed = Vec::new();
        for column in &def.computed {
            let expr = state
                .create_logical_expr(&column.expr_sql, &physical_df)
                .map_err(|e| df_error(location, e).with_hint(format!("in computed column `{} AS {}`", column.name, column.expr_sql)))?;
            let physical = state.create_physical_expr(expr, &physical_df).map_err(|e| df_error(location, e))?;
            let data_type = physical.data_type(&physical_schema).map_err(|e| df_error(location, e))?;
            let data_type = normalize_time_type(data_type);
            let physical = cast(physical, &physical_schema, data_type.clone()).map_err(|e| df_error(location, e))?;
            fields.push(Field::new(&column.name, data_type, true));
            computed.push(physical);
        }
        let schema = Arc::new(Schema::new(fields));
        let watermark = match &def.watermark {
            None => None,
            Some(wm) => {
                let time_field = schema.field_with_name(&wm.column).map_err(|e| SqlError::plan(location, e.to_string()))?;
                if !matches!(time_field.data_type(), DataType::Timestamp(_, _)) {
                    return Err(SqlError::plan(location, format!("WATERMARK FOR `{}`: the column is {}, not a TIMESTAMP", wm.column, time_field.data_type()))
                        .with_hint("declare it as TIMESTAMP(3), or add a computed column such as `ts AS TO_TIMESTAMP_LTZ(event_ms, 3)`"));
                }
                let visible_df = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| df_error(location, e))?;
                let expr = state.create_logical_expr(&wm.expr_sql, &visible_df).map_err(|e| df_error(location, e))?;
                let expr = intervals_as_durations(expr);
                let physical = state.create_physical_expr(expr, &visible_df).map_err(|e| df_error(location, e))?;
                let gives = physical.data_type(&schema).map_err(|e| df_error(location, e))?;
                if !matches!(gives, DataType::Timestamp(_, _)) {
                    return Err(SqlError::plan(
                        location,
                        format!("CREATE TABLE {}: WATERMARK FOR `{}` AS {} gives {}, not a TIMESTAMP", def.name, wm.column, wm.expr_sql, sql_type_name(&gives)),
                    )
                    .with_hint(format!(
                        "the watermark expression must give a TIMESTAMP, usually the event-time column minus a delay: WATERMARK FOR {c} AS {c} - INTERVAL '5' SECOND (for epoch milliseconds, declare `ts AS TO_TIMESTAMP_LTZ(event_ms, 3)` and put the watermark on it)",
                        c = wm.column
                    )));
                }
                let millis = DataType::Timestamp(TimeUnit::Millisecond, None);
                Some(
                    cast(physical, &schema, millis)
                        .map_err(|e| df_error(location, e).with_hint("the watermark expression must give a TIMESTAMP, e.g. `ts - INTERVAL '5' SECOND`"))?,
                )
            }
        };
        let name = def.name.clone();
        let entry = TableEntry { def, physical_schema, schema: Arc::clone(&schema), computed, watermark, bounded, changelog };
        self.ctx.register_table(name.as_str(), Arc::new(StreamTableProvider { name: name.clone(), schema })).map_err(|e| df_error(location, e))?;
        self.tables.write().map_err(|_| poisoned(location))?.insert(name, entry);
        Ok(())
    }

    /// Registers `CREATE VIEW name AS query`; views are inlined where they are used.
    pub async fn register_view(&mut self, name: &str, query: &Query, location: Location) -> Result<()> {
        if self.views.contains_key(name) || self.table(name).is_some() {
            return Err(SqlError::plan(location, format!("`{name}` already exists")).with_hint(format!("DROP VIEW {name} first to replace it")));
        }
        let nodes = self.check_size(query, location)?;
        let plan = self.logical_plan(query, location).await?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let view = datafusion::datasource::ViewTable::new(plan, None);
        self.ctx.register_table(name, Arc::new(view)).map_err(|e| df_error(location, e))?;
        self.views.insert(name.to_string(), schema);
        self.view_nodes.insert(name.to_string(), nodes);
        Ok(())
    }

    /// Removes a table (`DROP TABLE`); false when there was none by that name.
    pub fn drop_table(&mut self, name: &str) -> bool {
        let removed = self.tables.write().map(|mut t| t.remove(name).is_some()).unwrap_or(false);
        if removed {
            let _ = self.ctx.deregister_table(name);
        }
        removed
    }

    /// Removes a view (`DROP VIEW`); false when there was none by that name.
    pub fn drop_view(&mut self, name: &str) -> bool {
        let removed = self.views.remove(name).is_some();
        self.view_nodes.remove(name);
        if removed {
            let _ = self.ctx.deregister_table(name);
        }
        removed
    }

    /// Names of every view, sorted, for `SHOW VIEWS`.
    pub fn view_names(&self) -> Vec<String> {
        self.views.keys().cloned().collect()
    }

    /// The columns a table or view shows to queries, for `DESCRIBE`.
    pub fn columns_of(&self, name: &str) -> Option<SchemaRef> {
        if let Some(schema) = self.views.get(name) {
            return Some(Arc::clone(schema));
        }
        self.tables.read().ok()?.get(name).map(|e| Arc::clone(&e.schema))
    }

    /// True when reading the table ends by itself (a file, a bounded generator).
    pub fn is_bounded(&self, name: &str) -> Option<bool> {
        self.tables.read().ok()?.get(name).map(|e| e.bounded)
    }

    /// The declaration of a table, if there is one by that name.
    pub fn table(&self, name: &str) -> Option<TableDef> {
        self.tables.read().ok()?.get(name).map(|e| e.def.clone())
    }

    /// Names of every table, sorted, for error messages and `SHOW TABLES`.
    pub fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.read().map(|t| t.keys().cloned().collect()).unwrap_or_default();
        names.sort();
        names
    }

    /// Refuses a query too big to plan safely, views it reads included; its plan nodes.
    pub(crate) fn check_size(&self, query: &Query, location: Location) -> Result<usize> {
        crate::limits::check_query(query, &|name| self.view_nodes.get(name).copied(), location)
    }

    async fn logical_plan(&self, query: &Query, location: Location) -> Result<datafusion::logical_expr::LogicalPlan> {
        self.check_size(query, location)?;
        let mut query = query.clone();
        window::rewrite_group_windows(&mut query)?;
        reject_unsupported(&query, location)?;
        let statement = DfStatement::Statement(Box::new(SqlStatement::Query(Box::new(query))));
        self.ctx.state().statement_to_plan(statement).await.map_err(|e| df_error(location, e))
    }

    /// Plans a query into a streaming plan (without a sink).
    pub async fn plan_query(&self, query: &Query, location: Location) -> Result<StreamPlan> {
        let logical = self.logical_plan(query, location).await?;
        let physical = self.ctx.state().create_physical_plan(&logical).await.map_err(|e| df_error(location, e))?;
        let tables = self.tables.read().map_err(|_| poisoned(location))?.clone();
        let mut compiler = Compiler { tables: &tables, location, window_columns_used: HashSet::new(), next_assign: 0 };
        Ok(StreamPlan { root: compiler.compile_root(&physical)? })
    }

    /// Plans `INSERT INTO sink query`: the query, then a cast of each column to the sink's type (by position, as Flink does).
    pub async fn plan_insert(&self, sink: &str, query: &Query, location: Location) -> Result<(TableDef, StreamPlan)> {
        let Some(sink_def) = self.table(sink) else {
            return Err(SqlError::plan(location, format!("INSERT INTO `{sink}`: no such table"))
                .with_hint(format!("declare it with CREATE TABLE {sink} (...) WITH ('connector' = ...); known tables: {}", self.table_names().join(", "))));
        };
        let plan = self.plan_query(query, location).await?;
        let input_schema = plan.schema();
        let sink_schema = sink_def.sink_schema();
        if input_schema.fields().len() != sink_schema.fields().len() {
            return Err(SqlError::plan(
                location,
                format!(
                    "INSERT INTO `{sink}`: the table has {} columns ({}) but the query produces {} ({})",
                    sink_schema.fields().len(),
                    field_names(&sink_schema),
                    input_schema.fields().len(),
                    field_names(&input_schema)
                ),
            ));
        }
        let mut exprs = Vec::new();
        for (i, (from, to)) in input_schema.fields().iter().zip(sink_schema.fields()).enumerate() {
            let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(from.name(), i));
            if !implicitly_castable(from.data_type(), to.data_type()) {
                return Err(SqlError::plan(
                    location,
                    format!(
                        "INSERT INTO `{sink}`: incompatible types for sink column `{}` at position {}: the query gives {}, the column is {}",
                        to.name(),
                        i + 1,
                        sql_type_name(from.data_type()),
                        sql_type_name(to.data_type())
                    ),
                )
                .with_hint(format!(
                    "convert it explicitly in the query, e.g. CAST(... AS {}), so that values which do not convert fail where you can see them (Flink refuses this too)",
                    sql_type_name(to.data_type())
                )));
            }
            let expr = if from.data_type() == to.data_type() {
                column
            } else {
                cast(column, &input_schema, to.data_type().clone()).map_err(|_| {
                    SqlError::plan(
                        location,
                        format!(
                            "INSERT INTO `{sink}`: column {} `{}` is {}, which cannot be written to `{}` {}",
                            i + 1,
                            from.name(),
                            from.data_type(),
                            to.name(),
                            to.data_type()
                        ),
                    )
                })?
            };
            exprs.push(expr);
        }
        let root = StreamNode::Project { input: Box::new(plan.root), exprs, schema: sink_schema };
        Ok((sink_def, StreamPlan { root }))
    }
}

fn poisoned(location: Location) -> SqlError {
    SqlError::plan(location, "internal error: catalog lock poisoned")
}

fn field_names(schema: &Schema) -> String {
    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
}

/// Whether `INSERT INTO` may convert a query column of type `from` into a sink
/// column of type `to` without the user writing a CAST. As in Flink, a value never
/// changes family silently: strings do not become numbers, times or booleans, and
/// numbers and booleans do not become times (or the other way). Within a family
/// (numbers of any width, timestamps of any unit, strings) and from NULL, Eddy casts
/// by position as before.
fn implicitly_castable(from: &DataType, to: &DataType) -> bool {
    #[derive(PartialEq)]
    enum Family {
        Number,
        Text,
        Binary,
        Boolean,
        Instant,
        TimeOfDay,
        Other,
    }
    fn family(t: &DataType) -> Family {
        match t {
            t if t.is_numeric() => Family::Number,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Family::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Family::Binary,
            DataType::Boolean => Family::Boolean,
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => Family::Instant,
            DataType::Time32(_) | DataType::Time64(_) => Family::TimeOfDay,
            _ => Family::Other,
        }
    }
    if from == to || matches!(from, DataType::Null) {
        return true;
    }
    match (family(from), family(to)) {
        // Anything may be written as text (Eddy's sinks have always formatted values); text as bytes.
        (_, Family::Text) | (Family::Text, Family::Binary) => true,
        (Family::Other, _) | (_, Family::Other) => true,
        (a, b) => a == b,
    }
}

/// The SQL name of an Arrow type, as CREATE TABLE spells it, for messages.
fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => format!("unsigned integer ({data_type})"),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => "BYTES".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(unit, _) => {
            let digits = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            format!("TIMESTAMP({digits})")
        }
        DataType::Null => "NULL".into(),
        other => other.to_string(),
    }
}

/// Event times are milliseconds; other timestamp units are converted.
fn normalize_time_type(data_type: DataType) -> DataType {
    match data_type {
        DataType::Timestamp(_, _) => DataType::Timestamp(TimeUnit::Millisecond, None),
        other => other,
    }
}

/// Refuses query shapes that cannot run continuously, before DataFusion plans them.
fn reject_unsupported(query: &Query, location: Location) -> Result<()> {
    if query.order_by.is_some() {
        return Err(SqlError::plan(location, "ORDER BY is not supported in a continuous query: a stream has no last row to sort by")
            .with_hint("sort when reading the sink, or use a window aggregate"));
    }
    if query.limit_clause.is_some() {
        return Err(SqlError::plan(location, "LIMIT is not supported in a continuous query yet"));
    }
    if let SetExpr::Select(select) = query.body.as_ref() {
        if select.from.is_empty() {
            return Err(SqlError::plan(location, "a continuous query needs a FROM table"));
        }
    }
    Ok(())
}

/// The placeholder table DataFusion resolves source names to.
#[derive(Debug)]
struct StreamTableProvider {
    name: String,
    schema: SchemaRef,
}

fn with_projection(plan: Arc<dyn ExecutionPlan>, projection: Option<&Vec<usize>>) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    match projection {
        None => Ok(plan),
        Some(indices) => {
            let schema = plan.schema();
            let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> =
                indices.iter().map(|&i| (Arc::new(Column::new(schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>, schema.field(i).name().clone())).collect();
            Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
        }
    }
}

#[async_trait]
impl TableProvider for StreamTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let scan = StreamScanExec::new(self.name.clone(), Arc::clone(&self.schema), projection.cloned());
        with_projection(Arc::new(scan), projection)
    }
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Unsupported; filters.len()])
    }
}

/// The table a window function call resolves to: the source plus window columns.
#[derive(Debug)]
struct WindowTableProvider {
    source: String,
    source_schema: SchemaRef,
    window: WindowKind,
    time_column: usize,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for WindowTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        // The window reads its time column besides the source columns the query keeps.
        let width = self.source_schema.fields().len();
        let reads = projection.map(|p| p.iter().copied().filter(|&i| i < width).chain([self.time_column]).collect());
        let scan = Arc::new(StreamScanExec::new(self.source.clone(), Arc::clone(&self.source_schema), reads));
        let tvf = Arc::new(WindowTvfExec { input: scan, window: self.window, time_column: self.time_column, properties: properties(Arc::clone(&self.schema)) });
        with_projection(tvf, projection)
    }
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Unsupported; filters.len()])
    }
}

/// `__eddy_window(kind, table, time_column, partition_keys, sizes...)`.
#[derive(Debug)]
struct WindowTableFunction {
    tables: Tables,
}

fn literal_string(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s.clone()),
        _ => None,
    }
}

fn literal_interval_ms(expr: &Expr) -> std::result::Result<i64, String> {
    let ms = match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) => {
            if v.months != 0 {
                return Err("window sizes in months or years are not supported (months differ in length)".to_string());
            }
            v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => v.days as i64 * 86_400_000 + v.milliseconds as i64,
        Expr::Literal(ScalarValue::IntervalYearMonth(Some(_)), _) => {
            return Err("window sizes in months or years are not supported (months differ in length)".to_string())
        }
        other => return Err(format!("expected an interval such as INTERVAL '1' MINUTE, got `{other}`")),
    };
    if ms <= 0 {
        return Err(format!("window sizes must be positive, got {ms} ms"));
    }
    Ok(ms)
}

impl TableFunctionImpl for WindowTableFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let plan_err = |m: String| DataFusionError::Plan(m);
        let strings: Vec<String> = exprs.iter().take(4).filter_map(literal_string).collect();
        let [kind, table, time_column, _partition] = strings.as_slice() else {
            return Err(plan_err("malformed window function call".to_string()));
        };
        let sizes: Vec<i64> = exprs[4..].iter().map(literal_interval_ms).collect::<std::result::Result<_, _>>().map_err(plan_err)?;
        let window = match (kind.as_str(), sizes.as_slice()) {
            ("tumble", [size_ms]) => WindowKind::Tumble { size_ms: *size_ms },
            ("hop", [slide_ms, size_ms]) => WindowKind::Hop { slide_ms: *slide_ms, size_ms: *size_ms },
            ("cumulate", [step_ms, max_size_ms]) => WindowKind::Cumulate { step_ms: *step_ms, max_size_ms: *max_size_ms },
            ("session", [gap_ms]) => WindowKind::Session { gap_ms: *gap_ms },
            _ => return Err(plan_err(format!("malformed {kind} window call"))),
        };
        window::check_grid(&window).map_err(plan_err)?;
        let tables = self.tables.read().map_err(|_| plan_err("catalog lock poisoned".to_string()))?;
        let Some(entry) = tables.get(table) else {
            let mut known: Vec<&String> = tables.keys().collect();
            known.sort();
            return Err(plan_err(format!(
                "{}: no table named `{table}` (windows read source tables declared with CREATE TABLE; known: {})",
                window.name(),
                known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        };
        let Some(watermark) = &entry.def.watermark else {
            return Err(plan_err(format!(
                "{} over `{table}`, which has no watermark: windows close on event time, so the table needs one.\n  hint: add `WATERMARK FOR {time_column} AS {time_column} - INTERVAL '5' SECOND` to CREATE TABLE {table}",
                window.name()
            )));
        };
        if &watermark.column != time_column {
            return Err(plan_err(format!(
                "{}: DESCRIPTOR({time_column}) must name the table's event-time column `{}` (the one in WATERMARK FOR)",
                window.name(),
                watermark.column
            )));
        }
        let time_index = entry.schema.index_of(time_column).map_err(|_| plan_err(format!("no column `{time_column}` in `{table}`")))?;
        let mut fields: Vec<Field> = entry.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let millis = DataType::Timestamp(TimeUnit::Millisecond, None);
        for name in ["window_start", "window_end", "window_time"] {
            if fields.iter().any(|f| f.name() == name) {
                return Err(plan_err(format!("`{table}` already has a column named `{name}`, which the window function adds")));
            }
            fields.push(Field::new(name, millis.clone(), false));
        }
        Ok(Arc::new(WindowTableProvider {
            source: table.clone(),
            source_schema: Arc::clone(&entry.schema),
            window,
            time_column: time_index,
            schema: Arc::new(Schema::new(fields)),
        }))
    }
}

fn properties(schema: SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(EquivalenceProperties::new(schema), Partitioning::UnknownPartitioning(1), EmissionType::Incremental, Boundedness::Bounded))
}

fn not_executable(name: &str) -> DataFusionError {
    DataFusionError::Internal(format!("{name} is a streaming placeholder and is run by the Eddy engine, not DataFusion"))
}

/// Leaf of a physical plan: rows of a source table. Compiled to a [`SourceNode`].
#[derive(Debug)]
pub struct StreamScanExec {
    table: String,
    /// The table's columns (computed ones included) the plan above reads; `None`: all.
    reads: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl StreamScanExec {
    fn new(table: String, schema: SchemaRef, reads: Option<Vec<usize>>) -> Self {
        StreamScanExec { table, reads, properties: properties(schema) }
    }
}

impl DisplayAs for StreamScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StreamScanExec: {}", self.table)
    }
}

impl ExecutionPlan for StreamScanExec {
    fn name(&self) -> &str {
        "StreamScanExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }
    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }
    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> datafusion::error::Result<SendableRecordBatchStream> {
        Err(not_executable("StreamScanExec"))
    }
}

/// A window function over a source scan. Compiled to a [`StreamNode::WindowAssign`].
#[derive(Debug)]
pub struct WindowTvfExec {
    input: Arc<dyn ExecutionPlan>,
    window: WindowKind,
    time_column: usize,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for WindowTvfExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowTvfExec: {:?}", self.window)
    }
}

impl ExecutionPlan for WindowTvfExec {
    fn name(&self) -> &str {
        "WindowTvfExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let input = children.into_iter().next().ok_or_else(|| DataFusionError::Internal("WindowTvfExec needs one child".into()))?;
        Ok(Arc::new(WindowTvfExec { input, window: self.window, time_column: self.time_column, properties: Arc::clone(&self.properties) }))
    }
    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> datafusion::error::Result<SendableRecordBatchStream> {
        Err(not_executable("WindowTvfExec"))
    }
}

/// Where each output column of a compiled node came from, for window bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lineage {
    Other,
    /// A bound added by the window assignment with this id (not yet aggregated).
    Window {
        assign: usize,
        column: WindowColumn,
    },
    /// A bound of windows an aggregate below already closed.
    Closed {
        window: WindowKind,
        column: WindowColumn,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WindowColumn {
    Start,
    End,
    Time,
}

/// Walks DataFusion's physical plan and builds the streaming plan.
struct Compiler<'a> {
    tables: &'a HashMap<String, TableEntry>,
    location: Location,
    /// Window assigns whose bounds are used inside expressions (not just passed through).
    window_columns_used: HashSet<usize>,
    next_assign: usize,
}

/// The physical columns of `entry` a scan reading `reads` (visible columns) needs:
/// those, plus what every computed column and the watermark read. `None` when that
/// is all of them, or when late rows go to a table (which gets whole rows).
fn read_columns(entry: &TableEntry, reads: Option<&[usize]>) -> Option<Vec<usize>> {
    if entry.def.option("late.sink").is_some() {
        return None;
    }
    let width = entry.physical_schema.fields().len();
    let mut needed: Vec<usize> =
        reads?.iter().copied().chain(entry.computed.iter().chain(&entry.watermark).flat_map(referenced_columns)).filter(|&i| i < width).collect();
    needed.sort_unstable();
    needed.dedup();
    (needed.len() < width).then_some(needed)
}

fn referenced_columns(expr: &Arc<dyn PhysicalExpr>) -> Vec<usize> {
    datafusion::physical_expr::utils::collect_columns(expr).iter().map(|c| c.index()).collect()
}

/// Finds the window assignment `id` under `node`, switches it to slicing and makes
/// its source judge lateness by the window's slices. Returns the window kind.
fn use_assign_for_aggregate(node: &mut StreamNode, id: usize) -> Option<WindowKind> {
    match node {
        StreamNode::WindowAssign { input, window, time_column, slicing, id: this, .. } if *this == id => {
            *slicing = true;
            if let StreamNode::Source(source) = input.as_mut() {
                source.lateness = Some(LatenessRule { time_column: *time_column, window: *window });
            }
            Some(*window)
        }
        StreamNode::Source(_) => None,
        StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } | StreamNode::WindowAssign { input, .. } => use_assign_for_aggregate(input, id),
        StreamNode::WindowAggregate(a) => use_assign_for_aggregate(&mut a.input, id),
        StreamNode::Union { inputs, .. } => inputs.iter_mut().find_map(|i| use_assign_for_aggregate(i, id)),
    }
}

fn check_expanding_assigns(node: &StreamNode) -> std::result::Result<(), String> {
    if let StreamNode::WindowAssign { window: WindowKind::Session { .. }, slicing: false, .. } = node {
        return Err("a SESSION window needs an aggregate: GROUP BY window_start, window_end, ...".to_string());
    }
    node.inputs().into_iter().try_for_each(check_expanding_assigns)
}

impl Compiler<'_> {
    fn unsupported(&self, message: impl Into<String>) -> SqlError {
        SqlError::plan(self.location, message)
    }

    fn compile_root(&mut self, plan: &Arc<dyn ExecutionPlan>) -> Result<StreamNode> {
        let (root, _) = self.compile(plan)?;
        check_expanding_assigns(&root).map_err(|e| self.unsupported(e))?;
        Ok(root)
    }

    fn compile(&mut self, plan: &Arc<dyn ExecutionPlan>) -> Result<(StreamNode, Vec<Lineage>)> {
        let any = plan.as_ref();
        if let Some(scan) = any.downcast_ref::<StreamScanExec>() {
            let entry = self.tables.get(&scan.table).ok_or_else(|| self.unsupported(format!("unknown table `{}`", scan.table)))?;
            let node = SourceNode {
                table: entry.def.clone(),
                physical_schema: Arc::clone(&entry.physical_schema),
                computed: entry.computed.clone(),
                schema: Arc::clone(&entry.schema),
                watermark: entry.watermark.clone(),
                bounded: entry.bounded,
                lateness: None,
                changelog: entry.changelog,
                read_columns: read_columns(entry, scan.reads.as_deref()),
            };
            let lineage = vec![Lineage::Other; entry.schema.fields().len()];
            return Ok((StreamNode::Source(node), lineage));
        }
        if let Some(tvf) = any.downcast_ref::<WindowTvfExec>() {
            let (input, mut lineage) = self.compile(&tvf.input)?;
            if input.emits_retractions() {
                return Err(self
                    .unsupported("a window over a changelog (a materialized view's updates) is not supported: its rows can be retracted, and windows need append-only rows with event time")
                    .with_hint("window the view's source table instead, or GROUP BY without a window over the view"));
            }
            let assign = self.next_assign;
            self.next_assign += 1;
            lineage.extend([
                Lineage::Window { assign, column: WindowColumn::Start },
                Lineage::Window { assign, column: WindowColumn::End },
                Lineage::Window { assign, column: WindowColumn::Time },
            ]);
            let node = StreamNode::WindowAssign {
                input: Box::new(input),
                id: assign,
                window: tvf.window,
                time_column: tvf.time_column,
                slicing: false,
                schema: plan.schema(),
            };
            return Ok((node, lineage));
        }
        if is_pass_through(plan) {
            return self.compile(plan.children()[0]);
        }
        if let Some(filter) = any.downcast_ref::<FilterExec>() {
            let (mut input, lineage) = self.compile(filter.input())?;
            if input.is_updating() && !input.emits_retractions() && !retract_updates(&mut input) {
                return Err(self
                    .unsupported("HAVING (or a filter) over a GROUP BY without a window over an unbounded source is not supported yet: a group that stops matching would need its row deleted")
                    .with_hint("filter where the dashboard reads the rows, or group by a window"));
            }
            self.note_window_use(filter.predicate(), &lineage);
            let mut node = StreamNode::Filter { input: Box::new(input), predicate: Arc::clone(filter.predicate()) };
            let mut lineage = lineage;
            if let Some(projection) = filter.projection() {
                let input_schema = node.schema();
                let exprs: Vec<Arc<dyn PhysicalExpr>> =
                    projection.iter().map(|&i| Arc::new(Column::new(input_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>).collect();
                lineage = projection.iter().map(|&i| lineage[i]).collect();
                node = StreamNode::Project { input: Box::new(node), exprs, schema: plan.schema() };
            }
            return Ok((node, lineage));
        }
        if let Some(projection) = any.downcast_ref::<ProjectionExec>() {
            let (input, lineage) = self.compile(projection.input())?;
            let mut out_lineage = Vec::new();
            let mut exprs = Vec::new();
            for p in projection.expr() {
                match p.expr.downcast_ref::<Column>() {
                    Some(c) => out_lineage.push(lineage[c.index()]),
                    None => {
                        self.note_window_use(&p.expr, &lineage);
                        out_lineage.push(Lineage::Other);
                    }
                }
                exprs.push(Arc::clone(&p.expr));
            }
            let node = StreamNode::Project { input: Box::new(input), exprs, schema: plan.schema() };
            return Ok((node, out_lineage));
        }
        if let Some(union) = any.downcast_ref::<UnionExec>() {
            let mut inputs = Vec::new();
            for child in union.children() {
                inputs.push(self.compile(child)?.0);
            }
            let width = plan.schema().fields().len();
            return Ok((StreamNode::Union { inputs, schema: plan.schema() }, vec![Lineage::Other; width]));
        }
        if let Some(aggregate) = any.downcast_ref::<AggregateExec>() {
            return self.compile_aggregate(aggregate, plan.schema());
        }
        let name = plan.name().to_string();
        let message = match name.as_str() {
            n if n.contains("Join") => "joins are not supported yet".to_string(),
            n if n.contains("Sort") => "sorting is not supported in a continuous query".to_string(),
            n if n.contains("Limit") => "LIMIT is not supported in a continuous query yet".to_string(),
            "WindowAggExec" | "BoundedWindowAggExec" => "OVER (...) window functions are not supported yet; use TUMBLE, HOP, CUMULATE or SESSION".to_string(),
            "PlaceholderRowExec" | "EmptyExec" | "DataSourceExec" => "a continuous query must read a table declared with CREATE TABLE".to_string(),
            other => format!("the query needs `{other}`, which Eddy cannot run incrementally yet"),
        };
        Err(self.unsupported(message))
    }

    fn note_window_use(&mut self, expr: &Arc<dyn PhysicalExpr>, lineage: &[Lineage]) {
        for index in referenced_columns(expr) {
            if let Some(Lineage::Window { assign, .. }) = lineage.get(index) {
                self.window_columns_used.insert(*assign);
            }
        }
    }

    fn compile_aggregate(&mut self, aggregate: &AggregateExec, schema: SchemaRef) -> Result<(StreamNode, Vec<Lineage>)> {
        // A Final aggregate reads its Partial twin; both carry the same expressions, so plan from the Partial.
        let logical = match aggregate.mode() {
            AggregateMode::Final | AggregateMode::FinalPartitioned => {
                let mut child = aggregate.input();
                while is_pass_through(child) {
                    child = child.children()[0];
                }
                child
                    .downcast_ref::<AggregateExec>()
                    .filter(|p| matches!(p.mode(), AggregateMode::Partial))
                    .ok_or_else(|| self.unsupported("internal error: a final aggregate without its partial"))?
            }
            _ => aggregate,
        };
        if logical.group_expr().has_grouping_set() {
            return Err(self.unsupported("GROUPING SETS, CUBE and ROLLUP are not supported yet"));
        }
        let (mut input, lineage) = self.compile(logical.input())?;
        let mut group = Vec::new();
        let mut open: Option<usize> = None;
        let mut closed: Option<WindowKind> = None;
        let mut slice_column: Option<(usize, WindowColumn)> = None;
        for (expr, _name) in logical.group_expr().expr() {
            let column = expr.downcast_ref::<Column>().map(|c| c.index());
            let bound = match column.and_then(|i| lineage.get(i).map(|l| (i, *l))) {
                Some((i, Lineage::Window { assign, column })) => {
                    if open.is_some_and(|a| a != assign) {
                        return Err(self.unsupported("GROUP BY mixes the bounds of two different windows"));
                    }
                    open = Some(assign);
                    Some((i, column))
                }
                Some((i, Lineage::Closed { window, column })) => {
                    closed = Some(window);
                    Some((i, column))
                }
                _ => None,
            };
            match bound {
                Some((i, column)) => {
                    if column != WindowColumn::Time && slice_column.is_none_or(|(_, c)| c != WindowColumn::Start) {
                        slice_column = Some((i, column));
                    }
                    group.push(match column {
                        WindowColumn::Start => GroupColumn::WindowStart,
                        WindowColumn::End => GroupColumn::WindowEnd,
                        WindowColumn::Time => GroupColumn::WindowTime,
                    });
                }
                None => {
                    self.note_window_use(expr, &lineage);
                    group.push(GroupColumn::Key(Arc::clone(expr)));
                }
            }
        }
        let aggregates = logical.aggr_expr().to_vec();
        for (a, f) in aggregates.iter().zip(logical.filter_expr()) {
            for e in a.expressions() {
                self.note_window_use(&e, &lineage);
            }
            if let Some(f) = f {
                self.note_window_use(f, &lineage);
            }
        }
        let window = match (open, closed) {
            (Some(_), Some(_)) => return Err(self.unsupported("GROUP BY mixes the bounds of a window with those of an aggregated window")),
            (Some(id), None) => {
                let window = use_assign_for_aggregate(&mut input, id).ok_or_else(|| self.unsupported("internal error: window assignment not found"))?;
                let is_tumble = matches!(window, WindowKind::Tumble { .. });
                if !is_tumble && self.window_columns_used.contains(&id) {
                    return Err(self.unsupported(format!(
                        "window_start/window_end of a {} window can only be grouped by and selected, not used in other expressions before the aggregate",
                        window.name()
                    )));
                }
                Some(window)
            }
            // Rows of an aggregated window all arrive before the watermark passes its end, so each
            // distinct (window_start, window_end) is one group that closes at window_end.
            (None, Some(WindowKind::Tumble { size_ms })) | (None, Some(WindowKind::Hop { size_ms, .. })) => Some(WindowKind::Tumble { size_ms }),
            (None, Some(other)) => return Err(self.unsupported(format!("aggregating the output of a {} window again is not supported yet", other.name()))),
            (None, None) => None,
        };
        if window.is_some() && slice_column.is_none() {
            return Err(self.unsupported("GROUP BY a window needs window_start or window_end").with_hint("write GROUP BY window_start, window_end, ..."));
        }
        let retracting = input.emits_retractions() || (input.is_updating() && retract_updates(&mut input));
        if retracting && window.is_some() {
            return Err(self
                .unsupported("a window over a changelog (a materialized view's updates) is not supported")
                .with_hint("GROUP BY without a window over the view"));
        }
        if input.is_updating() && !retracting {
            return Err(self
                .unsupported("aggregating the output of a GROUP BY without a window over an unbounded source is not supported yet (its rows are updates)")
                .with_hint(
                    "group by a window instead, e.g. FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, key",
                ));
        }
        let updating = retracting || (window.is_none() && !all_sources_bounded(&input));
        let mut out_lineage: Vec<Lineage> = group
            .iter()
            .map(|g| match (g, window) {
                (GroupColumn::WindowStart, Some(w)) => Lineage::Closed { window: w, column: WindowColumn::Start },
                (GroupColumn::WindowEnd, Some(w)) => Lineage::Closed { window: w, column: WindowColumn::End },
                (GroupColumn::WindowTime, Some(w)) => Lineage::Closed { window: w, column: WindowColumn::Time },
                _ => Lineage::Other,
            })
            .collect();
        out_lineage.extend(std::iter::repeat_n(Lineage::Other, aggregates.len()));
        let node = WindowAggregateNode {
            input: Box::new(input),
            window,
            slice_column: slice_column.map(|(i, c)| SliceColumn { index: i, is_end: c == WindowColumn::End }),
            group,
            aggregates,
            filters: logical.filter_expr().to_vec(),
            schema,
            updating,
            retracting,
            retract_output: false,
        };
        Ok((StreamNode::WindowAggregate(node), out_lineage))
    }
}

/// Nodes DataFusion adds for parallel batch execution that change nothing about the rows.
fn is_pass_through(plan: &Arc<dyn ExecutionPlan>) -> bool {
    matches!(plan.name(), "CooperativeExec" | "CoalescePartitionsExec" | "RepartitionExec" | "CoalesceBatchesExec") && plan.children().len() == 1
}

/// Makes the updating aggregate under `node` (through projections and filters)
/// emit retractions of its old rows, for a consumer that needs them; false when
/// there is none to change.
fn retract_updates(node: &mut StreamNode) -> bool {
    match node {
        StreamNode::WindowAggregate(a) if a.updating => {
            a.retract_output = true;
            true
        }
        StreamNode::Project { input, .. } | StreamNode::Filter { input, .. } => retract_updates(input),
        _ => false,
    }
}

fn all_sources_bounded(node: &StreamNode) -> bool {
    match node {
        StreamNode::Source(s) => s.bounded,
        other => other.inputs().into_iter().all(all_sources_bounded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_script, Statement};

    /// The physical columns each source of `query`'s plan reads, by name
    /// (`None`: all), after `tables` are created.
    async fn reads(tables: &str, query: &str) -> Vec<Option<Vec<String>>> {
        plan_of(tables, query)
            .await
            .sources()
            .iter()
            .map(|s| s.read_columns.as_ref().map(|read| read.iter().map(|&i| s.physical_schema.field(i).name().clone()).collect()))
            .collect()
    }

    /// `query`'s streaming plan, after `tables` are created (as unbounded tables).
    async fn plan_of(tables: &str, query: &str) -> StreamPlan {
        let mut planner = Planner::new();
        for parsed in parse_script(tables).expect("tables parse") {
            let Statement::CreateTable(def) = parsed.statement else { panic!("not a table") };
            planner.register_table(def, false, parsed.location).expect("registers");
        }
        let parsed = parse_script(query).expect("query parses").remove(0);
        let Statement::Select { query } = parsed.statement else { panic!("not a query") };
        planner.plan_query(&query, parsed.location).await.expect("plans")
    }

    /// The `| tasks: … | watermark: … | state: …` line under the first operator line starting with `operator`.
    fn traits_of<'a>(explain: &'a str, operator: &str) -> &'a str {
        let mut lines = explain.lines().skip_while(|l| !l.trim_start().starts_with(operator));
        assert!(lines.next().is_some(), "no {operator} in:\n{explain}");
        lines.next().filter(|l| l.trim_start().starts_with("| tasks: ")).unwrap_or_else(|| panic!("{operator} has no traits line:\n{explain}"))
    }

    #[tokio::test]
    async fn explain_gives_every_operator_its_tasks_watermark_and_state() {
        let idle = BIDS.replace("'format' = 'json'", "'format' = 'json', 'scan.watermark.idle-timeout' = '30s'");
        let plan = plan_of(
            &idle,
            "SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) WHERE price > 5 GROUP BY auction, window_start, window_end",
        )
        .await;
        let explain = plan.explain(4);
        let source = traits_of(&explain, "Source: bids");
        assert!(source.contains("tasks: one per source partition"), "{source}");
        assert!(source.contains("watermark: ts - INTERVAL '1' SECOND per partition, the lowest over partitions; a partition idle for 30s"), "{source}");
        assert!(source.contains("state: read position (offset) per partition"), "{source}");
        let filter = traits_of(&explain, "Filter: ");
        assert!(filter.contains("chained into its input's task(s) | watermark: passed through | state: none"), "{filter}");
        let aggregate = traits_of(&explain, "WindowAggregate: ");
        assert!(aggregate.contains("tasks: 4, behind a hash exchange on [auction@"), "{aggregate}");
        assert!(aggregate.contains("a window is emitted once the watermark passes its end"), "{aggregate}");
        assert!(aggregate.contains("state: partial aggregates per key and slice"), "{aggregate}");

        // No group keys: one task whatever the parallelism. Sessions keep sessions.
        let global = plan_of(
            BIDS,
            "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end",
        )
        .await;
        assert!(traits_of(&global.explain(4), "WindowAggregate: ").contains("tasks: 1 (no group keys"), "{}", global.explain(4));
        let sessions =
            plan_of(BIDS, "SELECT bidder, COUNT(*) FROM TABLE(SESSION(TABLE bids PARTITION BY bidder, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY bidder, window_start, window_end").await;
        assert!(traits_of(&sessions.explain(3), "WindowAggregate: ").contains("state: open sessions per key"), "{}", sessions.explain(3));
        // Without a window over an unbounded input, groups live as long as the pipeline.
        let running = plan_of(BIDS, "SELECT bidder, MAX(price) FROM bids GROUP BY bidder").await;
        let running = running.explain(2);
        let aggregate = traits_of(&running, "WindowAggregate: ");
        assert!(aggregate.contains("tasks: 2, behind a hash exchange on [bidder@"), "{aggregate}");
        assert!(aggregate.contains("emitted at checkpoints") && aggregate.contains("kept for the life of the pipeline"), "{aggregate}");
    }

    const BIDS: &str = "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, url STRING, event_ms BIGINT, extra STRING,
        ts AS TO_TIMESTAMP_LTZ(event_ms, 3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
        WITH ('connector' = 'filesystem', 'path' = 'x.json', 'format' = 'json')";

    fn names(list: &[&str]) -> Vec<Option<Vec<String>>> {
        vec![Some(list.iter().map(|s| s.to_string()).collect())]
    }

    #[tokio::test]
    async fn sources_read_only_the_columns_the_query_and_the_watermark_need() {
        // Selected and filtered columns, plus the computed event time's input.
        let read = reads(BIDS, "SELECT auction, price * 2 FROM bids WHERE bidder > 3").await;
        assert_eq!(read, names(&["auction", "bidder", "price", "event_ms"]));
        // A window reads its time column; keys and aggregate inputs come along.
        let read = reads(
            BIDS,
            "SELECT auction, MAX(price) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY auction, window_start, window_end",
        )
        .await;
        assert_eq!(read, names(&["auction", "price", "event_ms"]));
        let read = reads(BIDS, "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start").await;
        assert_eq!(read, names(&["event_ms"]));
        // Every column read: nothing to skip.
        assert_eq!(reads(BIDS, "SELECT * FROM bids").await, vec![None]);
        assert_eq!(reads(BIDS, "SELECT auction, bidder, price, url, extra, ts FROM bids").await, vec![None]);
    }

    #[tokio::test]
    async fn a_window_with_many_windows_per_row_is_warned_about() {
        let hop = |slide: &str, size: &str| {
            format!("SELECT COUNT(*) FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL {slide}, INTERVAL {size})) GROUP BY window_start, window_end")
        };
        let wide = plan_of(BIDS, &hop("'1' SECOND", "'101' SECOND")).await.warnings();
        assert_eq!(wide.len(), 1, "{wide:?}");
        assert!(wide[0].starts_with("HOP with a size of 101 s sliding every 1 s puts every row into 101 windows (more than 100)"), "{wide:?}");
        assert!(plan_of(BIDS, &hop("'1' SECOND", "'100' SECOND")).await.warnings().is_empty());
        // A window aggregated again is warned about once.
        let twice = plan_of(
            BIDS,
            "SELECT window_start, SUM(n) FROM (SELECT window_start, window_end, COUNT(*) AS n FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '1' HOUR)) GROUP BY window_start, window_end, auction) GROUP BY window_start, window_end",
        )
        .await
        .warnings();
        assert_eq!(twice.len(), 1, "{twice:?}");
    }

    #[tokio::test]
    async fn late_rows_routed_to_a_table_keep_every_column() {
        let with_late_sink = BIDS.replace("'format' = 'json'", "'format' = 'json', 'late.sink' = 'late'");
        let read = reads(&with_late_sink, "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start").await;
        assert_eq!(read, vec![None]);
    }
}
