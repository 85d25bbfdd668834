//! The DataFusion side of Eddy's tables: each source table and each window
//! function call is a placeholder provider whose scan is a placeholder plan
//! ([`super::placeholders`]), which the compiler turns into stream nodes.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

use super::placeholders::{properties, StreamScanExec, WindowTvfExec};
use super::Tables;
use crate::window::{self};
use eddy_engine::plan::WindowKind;
/// The placeholder table DataFusion resolves a source name or a window function call to.
#[derive(Debug)]
pub(super) struct StreamTableProvider {
    reads: Reads,
    /// The columns queries see: the source's, plus the window's bounds for a window.
    schema: SchemaRef,
}

/// What a placeholder table stands for.
#[derive(Debug)]
enum Reads {
    /// A source table, by name, with its `PARTITIONED BY` columns.
    Table { name: String, partitioned_by: Vec<String> },
    /// A window function over a source table: its rows plus `window_start`, `window_end`, `window_time`.
    Window { source: String, source_schema: SchemaRef, window: WindowKind, time_column: usize, partitioned_by: Vec<String> },
    /// A window function over a view (an enriched or filtered stream): the
    /// compiler checks that the time column is still an event-time attribute.
    WindowOverView { plan: Box<datafusion::logical_expr::LogicalPlan>, window: WindowKind, time_column: usize },
}

impl StreamTableProvider {
    /// The table `name` registers as, with the columns `schema`, partitioned by `partitioned_by`.
    pub(super) fn table(name: String, schema: SchemaRef, partitioned_by: Vec<String>) -> StreamTableProvider {
        StreamTableProvider { reads: Reads::Table { name, partitioned_by }, schema }
    }

    /// Whether `filter` reads only partition columns (of the table, or of the table a
    /// window reads): a file source can then judge whole partition directories by it.
    fn on_partitions_only(&self, filter: &Expr) -> bool {
        let (Reads::Table { partitioned_by, .. } | Reads::Window { partitioned_by, .. }) = &self.reads else { return false };
        let columns = filter.column_refs();
        !partitioned_by.is_empty() && !columns.is_empty() && columns.iter().all(|c| partitioned_by.contains(&c.name))
    }
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
        match self.reads {
            Reads::Table { .. } => TableType::Base,
            Reads::Window { .. } | Reads::WindowOverView { .. } => TableType::View,
        }
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        // DataFusion hands the scan the filters `supports_filters_pushdown` took.
        let on_partitions: Vec<Expr> = filters.iter().filter(|f| self.on_partitions_only(f)).cloned().collect();
        let plan: Arc<dyn ExecutionPlan> = match &self.reads {
            Reads::Table { name, .. } => {
                Arc::new(StreamScanExec::new(name.clone(), Arc::clone(&self.schema), projection.cloned()).with_partition_filters(on_partitions))
            }
            Reads::Window { source, source_schema, window, time_column, .. } => {
                // The window reads its time column besides the source columns the query keeps.
                let width = source_schema.fields().len();
                let reads = projection.map(|p| p.iter().copied().filter(|&i| i < width).chain([*time_column]).collect());
                let scan = Arc::new(StreamScanExec::new(source.clone(), Arc::clone(source_schema), reads).with_partition_filters(on_partitions));
                Arc::new(WindowTvfExec { input: scan, window: *window, time_column: *time_column, properties: properties(Arc::clone(&self.schema)) })
            }
            Reads::WindowOverView { plan, window, time_column } => {
                let input = state.create_physical_plan(plan).await?;
                Arc::new(WindowTvfExec { input, window: *window, time_column: *time_column, properties: properties(Arc::clone(&self.schema)) })
            }
        };
        with_projection(plan, projection)
    }
    /// Filters on partition columns alone reach the scan, to skip whole partition
    /// directories; they stay in the plan too (`Inexact`), so rows are still filtered.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| if self.on_partitions_only(f) { TableProviderFilterPushDown::Inexact } else { TableProviderFilterPushDown::Unsupported })
            .collect())
    }
}

/// `__eddy_window(kind, table, time_column, partition_keys, sizes...)`.
#[derive(Debug)]
pub(super) struct WindowTableFunction {
    pub(super) tables: Tables,
    pub(super) views: super::ViewPlans,
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
        if let (None, Some(plan)) = (tables.get(table), self.views.read().map_err(|_| plan_err("catalog lock poisoned".to_string()))?.get(table)) {
            let schema = plan.schema().as_arrow().clone();
            let time_index =
                schema.index_of(time_column).map_err(|_| plan_err(format!("{}: no column `{time_column}` in the view `{table}`", window.name())))?;
            let fields = window_fields(table, schema.fields().iter().map(|f| f.as_ref().clone()).collect()).map_err(plan_err)?;
            let reads = Reads::WindowOverView { plan: Box::new(plan.clone()), window, time_column: time_index };
            return Ok(Arc::new(StreamTableProvider { reads, schema: Arc::new(Schema::new(fields)) }));
        }
        let Some(entry) = tables.get(table) else {
            let mut known: Vec<&String> = tables.keys().collect();
            known.sort();
            return Err(plan_err(format!(
                "{}: no table or view named `{table}` (windows read tables declared with CREATE TABLE and views over them; tables: {})",
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
        let fields = window_fields(table, entry.schema.fields().iter().map(|f| f.as_ref().clone()).collect()).map_err(plan_err)?;
        let reads = Reads::Window {
            source: table.clone(),
            source_schema: Arc::clone(&entry.schema),
            window,
            time_column: time_index,
            partitioned_by: entry.def.partitioned_by.clone(),
        };
        Ok(Arc::new(StreamTableProvider { reads, schema: Arc::new(Schema::new(fields)) }))
    }
}

/// A window function's columns: its input's `fields`, then the window's bounds.
fn window_fields(table: &str, mut fields: Vec<Field>) -> std::result::Result<Vec<Field>, String> {
    let millis = DataType::Timestamp(TimeUnit::Millisecond, None);
    for name in ["window_start", "window_end", "window_time"] {
        if fields.iter().any(|f| f.name() == name) {
            return Err(format!("`{table}` already has a column named `{name}`, which the window function adds"));
        }
        fields.push(Field::new(name, millis.clone(), false));
    }
    Ok(fields)
}
