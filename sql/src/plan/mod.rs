//! Planning: from a parsed query to a [`StreamPlan`].
//!
//! DataFusion does the heavy lifting: name resolution, type coercion, the
//! optimizer and physical expressions. Source tables are registered as
//! placeholder providers whose scans produce [`StreamScanExec`] leaves, and window
//! functions as [`WindowTvfExec`] nodes. The optimized physical plan is then
//! compiled node by node into the streaming plan; anything that cannot run
//! incrementally is refused with an error that says what to write instead.

mod casts;
mod compiler;
mod join_bounds;
mod over;
mod placeholders;
mod providers;
#[cfg(test)]
mod tests;
mod time_attribute;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DFSchema, DataFusionError, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::Optimizer;
use datafusion::physical_expr::expressions::{cast, Column};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Query, SetExpr, Statement as SqlStatement};

use crate::error::{Location, Result, SqlError};
use crate::window::{self, WINDOW_FUNCTION};
use eddy_engine::plan::{StreamNode, StreamPlan};
use eddy_engine::table::TableDef;

use casts::implicitly_castable;
pub use placeholders::{StreamScanExec, WindowTvfExec};
use providers::{StreamTableProvider, WindowTableFunction};

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
pub(super) struct TableEntry {
    pub(super) def: TableDef,
    pub(super) physical_schema: SchemaRef,
    pub(super) schema: SchemaRef,
    pub(super) computed: Vec<Arc<dyn PhysicalExpr>>,
    pub(super) watermark: Option<Arc<dyn PhysicalExpr>>,
    pub(super) bounded: bool,
    /// Its rows are a changelog (they retract earlier rows).
    pub(super) changelog: bool,
}

pub(super) type Tables = Arc<RwLock<HashMap<String, TableEntry>>>;
/// The views' plans by name, which a window function over a view reads.
pub(super) type ViewPlans = Arc<RwLock<HashMap<String, datafusion::logical_expr::LogicalPlan>>>;

/// Keeps the catalog of one session and plans statements against it.
pub struct Planner {
    ctx: SessionContext,
    tables: Tables,
    view_plans: ViewPlans,
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

pub(super) fn df_error(location: Location, error: DataFusionError) -> SqlError {
    // DataFusion attaches a source span to some errors (unknown columns, types); prefer it.
    let location = error.diagnostic().and_then(|d| d.span).map(|span| Location { line: span.start.line, column: span.start.column }).unwrap_or(location);
    let message = error.strip_backtrace();
    let message = message.trim_start_matches("Error during planning: ").trim_start_matches("Schema error: ").trim_start_matches("External error: ").to_string();
    crate::functions::refuse_unsupported(SqlError::plan(location, message))
}

impl Planner {
    /// A planner with Flink's case-sensitive names and the Flink functions Eddy adds.
    pub fn new() -> Self {
        let mut config = SessionConfig::new().with_target_partitions(1).with_information_schema(false);
        // Flink's identifiers are case-sensitive; keep them as written.
        config.options_mut().sql_parser.enable_ident_normalization = false;
        // A literal such as 2.5 is a DECIMAL(2, 1), as in Flink, not a DOUBLE.
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        // COUNT(DISTINCT x) must stay one aggregate so it runs inside the window operator.
        let rules = Optimizer::new().rules.into_iter().filter(|r| r.name() != "single_distinct_aggregation_to_group_by").collect();
        let state = SessionStateBuilder::new().with_config(config).with_default_features().with_optimizer_rules(rules).build();
        let ctx = SessionContext::new_with_state(state);
        crate::functions::register(&ctx);
        ctx.register_udf(crate::system_time::marker_udf());
        let tables: Tables = Arc::default();
        let view_plans: ViewPlans = Arc::default();
        ctx.register_udtf(WINDOW_FUNCTION, Arc::new(WindowTableFunction { tables: Arc::clone(&tables), views: Arc::clone(&view_plans) }));
        Planner { ctx, tables, view_plans, views: BTreeMap::new(), view_nodes: BTreeMap::new() }
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
                .create_logical_expr(&crate::functions::rewrite_expression_sql(&column.expr_sql), &physical_df)
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
                        format!("CREATE TABLE {}: WATERMARK FOR `{}` AS {} gives {}, not a TIMESTAMP", def.name, wm.column, wm.expr_sql, crate::types::sql_type_name(&gives)),
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
        let partitioned_by = def.partitioned_by.clone();
        let entry = TableEntry { def, physical_schema, schema: Arc::clone(&schema), computed, watermark, bounded, changelog };
        self.ctx
            .register_table(name.as_str(), Arc::new(StreamTableProvider::table(name.clone(), schema, partitioned_by)))
            .map_err(|e| df_error(location, e))?;
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
        self.view_plans.write().map_err(|_| poisoned(location))?.insert(name.to_string(), plan.clone());
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
        if let Ok(mut plans) = self.view_plans.write() {
            plans.remove(name);
        }
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
        crate::system_time::rewrite_temporal_joins(&mut query, &|name| self.columns_of(name))?;
        crate::functions::rewrite_query(&mut query);
        reject_unsupported(&query, location)?;
        let statement = DfStatement::Statement(Box::new(SqlStatement::Query(Box::new(query))));
        self.ctx.state().statement_to_plan(statement).await.map_err(|e| df_error(location, e))
    }

    /// Plans a query into a streaming plan (without a sink).
    pub async fn plan_query(&self, query: &Query, location: Location) -> Result<StreamPlan> {
        let logical = self.logical_plan(query, location).await?;
        let physical = self.ctx.state().create_physical_plan(&logical).await.map_err(|e| df_error(location, e))?;
        let tables = self.tables.read().map_err(|_| poisoned(location))?.clone();
        Ok(StreamPlan { root: compiler::compile(&tables, location, &physical)? })
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
                        crate::types::sql_type_name(from.data_type()),
                        crate::types::sql_type_name(to.data_type())
                    ),
                )
                .with_hint(format!(
                    "convert it explicitly in the query, e.g. CAST(... AS {}), so that values which do not convert fail where you can see them (Flink refuses this too)",
                    crate::types::sql_type_name(to.data_type())
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
