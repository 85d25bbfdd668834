//! Walks DataFusion's optimized physical plan and builds the [`StreamPlan`]
//! node by node; anything that cannot run incrementally is refused here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
#[allow(deprecated)] // older plans still carry it; it changes nothing about the rows
use datafusion::physical_plan::coalesce_batches::CoalesceBatchesExec;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec};
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::ExecutionPlan;

mod rank;
mod temporal_join;

use super::join_bounds::time_bounds;
use super::over::{self, OverRefusal};
use super::placeholders::{StreamScanExec, WindowTvfExec};
use super::time_attribute::{is_proctime_attribute, is_time_attribute, judge_lateness};
use super::TableEntry;
use crate::error::{Location, Result, SqlError};
use datafusion::common::JoinType as DfJoinType;
use datafusion::physical_plan::joins::utils::{JoinFilter, JoinOnRef};
use eddy_engine::plan::{
    AggregateInput, AggregateKind, FilteredOut, GroupColumn, JoinBound, JoinNode, JoinSide, JoinType, LateAfter, LatenessRule, SliceColumn, SourceNode,
    StreamNode, TimeBounds, UpdateOutput, WindowAggregateNode, WindowKind,
};
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

/// What DataFusion's hash joins (one side built, or both symmetric) say about a join.
struct JoinParts<'a> {
    left: &'a Arc<dyn ExecutionPlan>,
    right: &'a Arc<dyn ExecutionPlan>,
    on: JoinOnRef<'a>,
    filter: Option<&'a JoinFilter>,
    join_type: DfJoinType,
    /// The output columns, as indices into the left and then the right columns; `None` for all.
    projection: Option<Vec<usize>>,
}

/// The streaming plan of DataFusion's physical `plan`, over the session's `tables`.
pub(super) fn compile(tables: &HashMap<String, TableEntry>, location: Location, plan: &Arc<dyn ExecutionPlan>) -> Result<StreamNode> {
    Compiler {
        tables,
        location,
        window_columns_used: HashSet::new(),
        next_assign: 0,
        sliced: HashSet::new(),
        rank_limits: HashMap::new(),
        unordered: HashSet::new(),
    }
    .compile_root(plan)
}

/// Walks DataFusion's physical plan and builds the streaming plan.
struct Compiler<'a> {
    tables: &'a HashMap<String, TableEntry>,
    location: Location,
    /// Window assigns whose bounds are used inside expressions (not just passed through).
    window_columns_used: HashSet<usize>,
    next_assign: usize,
    /// The window TVFs an aggregate groups by (by address in DataFusion's plan),
    /// found before they are compiled: each gives its rows their one slice, and
    /// its source judges lateness by the window's slices.
    sliced: HashSet<usize>,
    /// The `ROW_NUMBER()` window operators (by address) a filter above bounds,
    /// with the rows per partition it lets through: each becomes a rank.
    rank_limits: HashMap<usize, usize>,
    /// Sorts (by address) DataFusion put under a rank for its batch window
    /// operator: a stream ranks rows as they come, so they pass rows through.
    unordered: HashSet<usize>,
}

/// A plan node's identity, for [`Compiler::sliced`].
fn address(plan: &Arc<dyn ExecutionPlan>) -> usize {
    Arc::as_ptr(plan).cast::<()>() as usize
}

/// The window TVF whose bound (`window_start`, `window_end` or `window_time`)
/// column `index` of `plan`'s output is, seen through projections, filters and
/// pass-through nodes; `None` for any other column.
fn window_tvf_of(plan: &Arc<dyn ExecutionPlan>, index: usize) -> Option<&Arc<dyn ExecutionPlan>> {
    let any = plan.as_ref();
    if let Some(tvf) = any.downcast_ref::<WindowTvfExec>() {
        return (index >= tvf.input.schema().fields().len()).then_some(plan);
    }
    if let Some(child) = pass_through_child(plan) {
        return window_tvf_of(child, index);
    }
    if let Some(filter) = any.downcast_ref::<FilterExec>() {
        let index = match filter.projection() {
            Some(projection) => *projection.get(index)?,
            None => index,
        };
        return window_tvf_of(filter.input(), index);
    }
    if let Some(projection) = any.downcast_ref::<ProjectionExec>() {
        let column = projection.expr().get(index)?.expr.downcast_ref::<Column>()?;
        return window_tvf_of(projection.input(), column.index());
    }
    None
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

/// The query's filters on the table's partition columns alone (DataFusion hands
/// them to the scan), as one condition over a schema of those columns; `None` when
/// there are none, or when one cannot be compiled (skipping is only an optimisation).
fn partition_filter(entry: &TableEntry, filters: &[datafusion::logical_expr::Expr]) -> Option<eddy_engine::PartitionFilter> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    let condition = datafusion::logical_expr::utils::conjunction(filters.iter().cloned())?;
    // The filter names columns as the query does (qualified by a table or a
    // window's alias); the partition schema has the bare names.
    let condition = condition
        .transform(|e| {
            Ok(match e {
                datafusion::logical_expr::Expr::Column(c) if c.relation.is_some() => {
                    Transformed::yes(datafusion::logical_expr::Expr::Column(datafusion::common::Column::new_unqualified(c.name)))
                }
                other => Transformed::no(other),
            })
        })
        .ok()?
        .data;
    let fields: Vec<_> = entry.def.partitioned_by.iter().filter_map(|c| entry.physical_schema.field_with_name(c).ok().cloned()).collect();
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone()).ok()?;
    let predicate = datafusion::physical_expr::create_physical_expr(
        &condition,
        &df_schema,
        &datafusion::execution::context::ExecutionProps::new(),
        &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(),
    )
    .ok()?;
    Some(eddy_engine::PartitionFilter { schema, predicate })
}

fn referenced_columns(expr: &Arc<dyn PhysicalExpr>) -> Vec<usize> {
    datafusion::physical_expr::utils::collect_columns(expr).iter().map(|c| c.index()).collect()
}

/// The window assignment `id` under `node`.
fn window_assign(node: &StreamNode, id: usize) -> Option<&StreamNode> {
    match node {
        StreamNode::WindowAssign { id: this, .. } if *this == id => Some(node),
        other => other.inputs().into_iter().find_map(|input| window_assign(input, id)),
    }
}

/// The window of window assignment `id` under `node`, which must give each row its slice.
fn sliced_window(node: &StreamNode, id: usize) -> Option<WindowKind> {
    match window_assign(node, id)? {
        StreamNode::WindowAssign { window, slicing: true, .. } => Some(*window),
        _ => None,
    }
}

/// The window of the window assignment `id` under `node`.
fn window_of(node: &StreamNode, id: usize) -> Option<WindowKind> {
    match window_assign(node, id)? {
        StreamNode::WindowAssign { window, .. } => Some(*window),
        _ => None,
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
        let (root, _) = self.compile(plan, UpdateOutput::Upserts)?;
        check_expanding_assigns(&root).map_err(|e| self.unsupported(e))?;
        Ok(root)
    }

    /// Compiles `plan`; `demand` says how its consumer needs an updating aggregate's
    /// changes (a filter or another aggregate must see the old rows taken back), so
    /// that each node is built in its final shape.
    fn compile(&mut self, plan: &Arc<dyn ExecutionPlan>, demand: UpdateOutput) -> Result<(StreamNode, Vec<Lineage>)> {
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
                partition_filter: partition_filter(entry, &scan.partition_filters),
            };
            let lineage = vec![Lineage::Other; entry.schema.fields().len()];
            return Ok((StreamNode::Source(node), lineage));
        }
        if let Some(tvf) = any.downcast_ref::<WindowTvfExec>() {
            let (input, mut lineage) = self.compile(&tvf.input, UpdateOutput::Upserts)?;
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
            // Grouped by an aggregate: each row gets its one slice, which the source
            // judges lateness by; otherwise each row is repeated per window.
            let slicing = self.sliced.contains(&address(plan));
            let mut input = input;
            match &mut input {
                StreamNode::Source(source) if slicing => {
                    source.lateness = Some(LatenessRule { time_column: tvf.time_column, judged_by: LateAfter::Slice(tvf.window) });
                }
                StreamNode::Source(_) => {}
                // A window over a view: its time column must still be a table's event time.
                view => {
                    if !is_time_attribute(view, tvf.time_column) {
                        let name = view.schema().field(tvf.time_column).name().clone();
                        return Err(self
                            .unsupported(format!(
                                "{}: DESCRIPTOR({name}) does not name an event-time attribute of the view (a table's WATERMARK FOR column, unchanged)",
                                tvf.window.name()
                            ))
                            .with_hint("window by the time column the view passes on from its table as it is, e.g. SELECT ts, ... FROM t"));
                    }
                    if slicing {
                        judge_lateness(view, tvf.time_column, LateAfter::Slice(tvf.window));
                    }
                }
            }
            let node = StreamNode::WindowAssign {
                input: Box::new(input),
                id: assign,
                window: tvf.window,
                time_column: tvf.time_column,
                slicing,
                schema: plan.schema(),
            };
            return Ok((node, lineage));
        }
        if let Some(child) = pass_through_child(plan) {
            return self.compile(child, demand);
        }
        if let (Some(sort), true) = (any.downcast_ref::<SortExec>(), self.unordered.contains(&address(plan))) {
            return self.compile(sort.input(), demand);
        }
        if let Some(filter) = any.downcast_ref::<FilterExec>() {
            if let Some((window, limit)) = rank::rank_limit(filter) {
                self.rank_limits.insert(address(window), limit);
            }
            let (input, lineage) = self.compile(filter.input(), UpdateOutput::Retractions)?;
            if input.is_updating() && !input.emits_retractions() {
                return Err(self
                    .unsupported("HAVING (or a filter) over a GROUP BY without a window over an unbounded source is not supported yet: a group that stops matching would need its row deleted")
                    .with_hint("filter where the dashboard reads the rows, or group by a window"));
            }
            self.note_window_use(filter.predicate(), &lineage);
            let mut node = StreamNode::Filter { input: Box::new(input), predicate: Arc::clone(filter.predicate()), filtered_out: FilteredOut::Dropped };
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
            let (input, lineage) = self.compile(projection.input(), demand)?;
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
                inputs.push(self.compile(child, UpdateOutput::Upserts)?.0);
            }
            let width = plan.schema().fields().len();
            return Ok((StreamNode::Union { inputs, schema: plan.schema() }, vec![Lineage::Other; width]));
        }
        if let Some(aggregate) = any.downcast_ref::<AggregateExec>() {
            return self.compile_aggregate(aggregate, plan.schema(), demand);
        }
        if rank::is_row_number_window(plan) {
            return self.compile_rank(plan);
        }
        if let Some((exprs, input)) = over::window_parts(plan) {
            return self.compile_over(exprs, input, plan.schema());
        }
        if let Some(join) = any.downcast_ref::<HashJoinExec>() {
            if join.null_aware {
                return Err(self
                    .unsupported("NOT IN with a subquery is not supported yet (a NULL in the subquery's rows would have to empty the result)")
                    .with_hint("write NOT EXISTS (SELECT ... WHERE ...) instead"));
            }
            let projection = join.projection.as_deref().map(<[usize]>::to_vec);
            let parts = JoinParts { left: join.left(), right: join.right(), on: join.on(), filter: join.filter(), join_type: *join.join_type(), projection };
            return self.compile_join(parts, plan.schema());
        }
        if let Some(join) = any.downcast_ref::<SymmetricHashJoinExec>() {
            let parts =
                JoinParts { left: join.left(), right: join.right(), on: join.on(), filter: join.filter(), join_type: *join.join_type(), projection: None };
            return self.compile_join(parts, plan.schema());
        }
        Err(self.unsupported(refusal(plan)))
    }

    /// `agg(...) OVER (...)` on event time (see [`over`]).
    fn compile_over(
        &mut self,
        exprs: &[Arc<dyn datafusion::physical_expr::window::WindowExpr>],
        input: &Arc<dyn ExecutionPlan>,
        schema: SchemaRef,
    ) -> Result<(StreamNode, Vec<Lineage>)> {
        let location = self.location;
        let refused = move |refusal: OverRefusal| {
            let error = SqlError::plan(location, refusal.message);
            match refusal.hint {
                Some(hint) => error.with_hint(hint),
                None => error,
            }
        };
        let shape = over::over_shape(exprs).map_err(refused)?;
        let input = over::below_sort(input, pass_through_child);
        if over::window_parts(input).is_some() {
            return Err(refused(over::mixed_windows()));
        }
        let (input, mut lineage) = self.compile(input, UpdateOutput::Upserts)?;
        let node = over::over_node(input, shape, Arc::clone(&schema)).map_err(refused)?;
        lineage.resize(schema.fields().len(), Lineage::Other);
        Ok((node, lineage))
    }

    /// An equi-join: temporal, interval, window or regular (see [`JoinBound`]).
    fn compile_join(&mut self, parts: JoinParts<'_>, schema: SchemaRef) -> Result<(StreamNode, Vec<Lineage>)> {
        let JoinParts { left, right, on, filter, join_type, projection } = parts;
        let join_type = match join_type {
            DfJoinType::Inner => JoinType::Inner,
            DfJoinType::Left => JoinType::Left,
            DfJoinType::Right => JoinType::Right,
            DfJoinType::Full => JoinType::Full,
            DfJoinType::LeftSemi => JoinType::Semi(JoinSide::Left),
            DfJoinType::RightSemi => JoinType::Semi(JoinSide::Right),
            DfJoinType::LeftAnti => JoinType::Anti(JoinSide::Left),
            DfJoinType::RightAnti => JoinType::Anti(JoinSide::Right),
            _ => return Err(self.unsupported("this kind of join (a mark join, from a subquery in a disjunction) is not supported yet")),
        };
        let (mut left, left_lineage) = self.compile(left, UpdateOutput::Upserts)?;
        let (mut right, right_lineage) = self.compile(right, UpdateOutput::Upserts)?;
        let as_of = match filter {
            Some(filter) => self.take_as_of(filter)?,
            None => None,
        };
        let probe_node = |as_of: &temporal_join::AsOf| if as_of.probe == JoinSide::Left { &left } else { &right };
        let (bounded_by, filter) = match as_of {
            Some(as_of) if is_proctime_attribute(probe_node(&as_of), as_of.probe_time) => {
                self.check_as_of_join("lookup join", join_type, as_of.probe, !on.is_empty())?;
                (JoinBound::Lookup { probe: as_of.probe }, as_of.filter)
            }
            Some(as_of) => {
                let sides = self.temporal_sides(join_type, &as_of, &left, &right, !on.is_empty())?;
                temporal_join::filters_end_versions(if sides.versioned() == JoinSide::Left { &mut left } else { &mut right });
                (JoinBound::Temporal(sides), as_of.filter)
            }
            None => (self.join_bound(on, filter, (&left, &left_lineage), (&right, &right_lineage))?, filter.cloned()),
        };
        let left_width = left.schema().fields().len();
        let width = left_width + right.schema().fields().len();
        // A semi or anti join outputs one side's columns; the node numbers the
        // left's, then the right's.
        let (first, outputs) = match join_type {
            JoinType::Semi(JoinSide::Right) | JoinType::Anti(JoinSide::Right) => (left_width, width - left_width),
            JoinType::Semi(JoinSide::Left) | JoinType::Anti(JoinSide::Left) => (0, left_width),
            _ => (0, width),
        };
        let projection = projection.unwrap_or_else(|| (0..outputs).collect()).into_iter().map(|i| first + i).collect();
        let node = JoinNode {
            left: Box::new(left),
            right: Box::new(right),
            join_type,
            left_keys: on.iter().map(|(l, _)| Arc::clone(l)).collect(),
            right_keys: on.iter().map(|(_, r)| Arc::clone(r)).collect(),
            filter,
            bounded_by,
            projection,
            schema: Arc::clone(&schema),
        };
        if node.looked_up().is_some() {
            self.check_lookup_table(&node)?;
        }
        Ok((StreamNode::Join(node), vec![Lineage::Other; schema.fields().len()]))
    }

    /// What bounds a join without `FOR SYSTEM_TIME AS OF`: time bounds in its
    /// condition, the same window on both sides, or nothing (a regular join).
    fn join_bound(
        &self,
        on: JoinOnRef<'_>,
        filter: Option<&JoinFilter>,
        (left, left_lineage): (&StreamNode, &[Lineage]),
        (right, right_lineage): (&StreamNode, &[Lineage]),
    ) -> Result<JoinBound> {
        let interval = filter.map_or(Ok(None), time_bounds).map_err(|no| self.unsupported(no.message()))?;
        // Below a regular join rows keep no event time, so times bound nothing.
        let interval = interval.filter(|_| !has_regular_join(left) && !has_regular_join(right));
        let bounded_by = match interval {
            Some(bounds) => JoinBound::Interval(bounds),
            // As in Flink, a join whose condition does not bound both sides' times is a regular join.
            None => match self.window_join(on, (left, left_lineage), (right, right_lineage))? {
                Some((bounds, window)) => JoinBound::Window { window, bounds },
                None => JoinBound::Unbounded { state_ttl_ms: None },
            },
        };
        if [left, right].iter().any(|side| side.is_updating() || side.emits_retractions()) {
            return Err(self
                .unsupported("a join over updating rows (a GROUP BY without a window, a materialized view's changes, or an outer join without time bounds) is not supported yet")
                .with_hint("join the tables the aggregate reads, or aggregate over a window first"));
        }
        if on.is_empty() && matches!(bounded_by, JoinBound::Unbounded { .. }) {
            return Err(self.unsupported(NO_EQUALITY).with_hint("join on equal keys, e.g. ON a.id = b.id"));
        }
        Ok(bounded_by)
    }

    /// A window join: both sides are window TVFs of the same window and the keys
    /// pair their `window_start` (or `window_end`). Its state is bounded by the
    /// window: a row waits until the watermark has passed the end of its window,
    /// as an interval join bounded by the window's size does (the equal window
    /// bounds among the keys decide the match). `None` when the keys pair no window bounds.
    fn window_join(
        &self,
        on: JoinOnRef<'_>,
        (left, left_lineage): (&StreamNode, &[Lineage]),
        (right, right_lineage): (&StreamNode, &[Lineage]),
    ) -> Result<Option<(TimeBounds, WindowKind)>> {
        // The window and bound column `expr` is, and its index: a window TVF's
        // bound, or one an aggregate below grouped by (its rows leave when the
        // window closes, before the watermark passes it, so they still meet).
        let bound_of = |expr: &Arc<dyn PhysicalExpr>, node: &StreamNode, lineage: &[Lineage]| {
            let column = expr.downcast_ref::<Column>()?;
            let (window, bound) = match lineage.get(column.index())? {
                Lineage::Window { assign, column: bound } => (window_of(node, *assign)?, *bound),
                Lineage::Closed { window, column: bound } => (*window, *bound),
                Lineage::Other => return None,
            };
            matches!(bound, WindowColumn::Start | WindowColumn::End).then_some((window, bound, column.index()))
        };
        for (l, r) in on {
            let (Some((left_window, left_column, left_index)), Some((right_window, right_column, right_index))) =
                (bound_of(l, left, left_lineage), bound_of(r, right, right_lineage))
            else {
                continue;
            };
            if left_column != right_column {
                continue;
            }
            if left_window != right_window {
                return Err(self.unsupported(format!(
                    "a window join needs the same window on both sides, not {} and {}",
                    left_window.name(),
                    right_window.name()
                )));
            }
            let size_ms = match left_window {
                WindowKind::Tumble { size_ms } | WindowKind::Hop { size_ms, .. } => size_ms,
                WindowKind::Cumulate { max_size_ms, .. } => max_size_ms,
                WindowKind::Session { .. } => return Err(self.unsupported("a window join over SESSION windows is not supported (nor is it in Flink)")),
            };
            // Both sides' bound columns are equal in a pair, so any distance within
            // the window's size matches; the size bounds how long a row waits.
            let bounds = TimeBounds { left_time: left_index, right_time: right_index, lower_ms: 1 - size_ms, upper_ms: size_ms - 1 };
            return Ok(Some((bounds, left_window)));
        }
        Ok(None)
    }

    fn note_window_use(&mut self, expr: &Arc<dyn PhysicalExpr>, lineage: &[Lineage]) {
        for index in referenced_columns(expr) {
            if let Some(Lineage::Window { assign, .. }) = lineage.get(index) {
                self.window_columns_used.insert(*assign);
            }
        }
    }

    fn compile_aggregate(&mut self, aggregate: &AggregateExec, schema: SchemaRef, demand: UpdateOutput) -> Result<(StreamNode, Vec<Lineage>)> {
        // A Final aggregate reads its Partial twin; both carry the same expressions, so plan from the Partial.
        let logical = match aggregate.mode() {
            AggregateMode::Final | AggregateMode::FinalPartitioned => {
                let mut child = aggregate.input();
                while let Some(next) = pass_through_child(child) {
                    child = next;
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
        // The window this aggregate groups by is decided before it is compiled.
        for (expr, _) in logical.group_expr().expr() {
            if let Some(tvf) = expr.downcast_ref::<Column>().and_then(|c| window_tvf_of(logical.input(), c.index())) {
                self.sliced.insert(address(tvf));
            }
        }
        // An updating input must take its old rows back for this aggregate to subtract them.
        let (input, lineage) = self.compile(logical.input(), UpdateOutput::Retractions)?;
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
                let window = sliced_window(&input, id).ok_or_else(|| self.unsupported("internal error: the window assignment grouped by does not slice"))?;
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
        let retracting = input.emits_retractions();
        if retracting && window.is_some() {
            return Err(self
                .unsupported("a window over a changelog (a materialized view's updates) is not supported")
                .with_hint("GROUP BY without a window over the view"));
        }
        if retracting {
            // The changelog's aggregate recomputes a group from the multiset of its rows,
            // which keeps no arrival order.
            if let Some(name) = aggregates.iter().map(|a| a.fun().name()).find(|n| ARRIVAL_ORDERED.contains(n)) {
                let name = if name == crate::functions::JSON_ARRAYAGG { "JSON_ARRAYAGG".to_string() } else { name.to_uppercase() };
                return Err(self
                    .unsupported(format!("{name} over a changelog (a materialized view's updates) is not supported: its result depends on the order rows arrived in, which rows taken back do not keep"))
                    .with_hint("aggregate the view with an aggregate that does not depend on arrival order, or aggregate its source instead"));
            }
        }
        if input.is_updating() && !retracting {
            return Err(self
                .unsupported("aggregating the output of a GROUP BY without a window over an unbounded source is not supported yet (its rows are updates)")
                .with_hint(
                    "group by a window instead, e.g. FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, key",
                ));
        }
        let kind = match window {
            Some(window) => AggregateKind::over_window(window),
            None if retracting => AggregateKind::Retracting,
            None if all_sources_bounded(&input) => AggregateKind::WholeInput,
            None => AggregateKind::Updating { output: demand },
        };
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
            kind,
            slice_column: slice_column.map(|(i, c)| SliceColumn { index: i, is_end: c == WindowColumn::End }),
            group,
            aggregates,
            filters: logical.filter_expr().to_vec(),
            schema,
            input_rows: AggregateInput::Rows,
        };
        Ok((StreamNode::WindowAggregate(node), out_lineage))
    }
}

/// Aggregates whose result depends on the order their rows arrived in.
const ARRIVAL_ORDERED: &[&str] = &["listagg", "array_agg", "first_value", "last_value", crate::functions::JSON_ARRAYAGG];

/// Why a join without equal keys cannot run.
const NO_EQUALITY: &str = "a join without an equality between the two sides (a cross or theta join) is not supported: every row would have to meet every other";

/// Why a physical node Eddy has no streaming operator for cannot run, in the user's terms.
fn refusal(plan: &Arc<dyn ExecutionPlan>) -> String {
    let any = plan.as_ref();
    if any.is::<HashJoinExec>()
        || any.is::<SortMergeJoinExec>()
        || any.is::<NestedLoopJoinExec>()
        || any.is::<CrossJoinExec>()
        || any.is::<SymmetricHashJoinExec>()
    {
        NO_EQUALITY.to_string()
    } else if any.is::<SortExec>() || any.is::<SortPreservingMergeExec>() {
        "sorting is not supported in a continuous query".to_string()
    } else if any.is::<GlobalLimitExec>() || any.is::<LocalLimitExec>() {
        "LIMIT is not supported in a continuous query yet".to_string()
    } else if any.is::<WindowAggExec>() || any.is::<BoundedWindowAggExec>() {
        "OVER (...) window functions are not supported yet; use TUMBLE, HOP, CUMULATE or SESSION".to_string()
    } else if any.is::<PlaceholderRowExec>() || any.is::<EmptyExec>() || any.is::<DataSourceExec>() {
        "a continuous query must read a table declared with CREATE TABLE".to_string()
    } else {
        format!("the query needs `{}`, which Eddy cannot run incrementally yet", plan.name())
    }
}

/// The input of a node DataFusion adds for parallel batch execution, which changes
/// nothing about the rows; `None` for every other node.
#[allow(deprecated)] // CoalesceBatchesExec, which DataFusion still plans in places
fn pass_through_child(plan: &Arc<dyn ExecutionPlan>) -> Option<&Arc<dyn ExecutionPlan>> {
    let any = plan.as_ref();
    let pass_through = any.is::<CooperativeExec>() || any.is::<CoalescePartitionsExec>() || any.is::<RepartitionExec>() || any.is::<CoalesceBatchesExec>();
    let children = plan.children();
    (pass_through && children.len() == 1).then(|| children[0])
}

/// Whether a regular join (no time bounds) is at or below `node`.
fn has_regular_join(node: &StreamNode) -> bool {
    matches!(node, StreamNode::Join(j) if j.is_regular()) || node.inputs().into_iter().any(has_regular_join)
}

fn all_sources_bounded(node: &StreamNode) -> bool {
    match node {
        StreamNode::Source(s) => s.bounded,
        other => other.inputs().into_iter().all(all_sources_bounded),
    }
}
