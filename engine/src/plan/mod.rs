//! The streaming plan: the contract between the SQL compiler (`eddy-sql`) and this
//! engine, which owns it. The compiler produces it; the graph builder runs it.
//!
//! A tree of nodes, rooted at the pipeline's output, whose expressions and
//! aggregates are DataFusion physical expressions, so the engine evaluates them
//! with DataFusion's vectorised kernels. Every node knows its output schema.

use std::fmt::Write as _;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;

use crate::table::TableDef;

pub mod join;
pub mod over;
pub mod rank;
pub mod window;
pub use join::{JoinBound, JoinNode, JoinSide, JoinType, TemporalSides, TimeBounds};
pub use over::{OverAggregateNode, OverFrame, Preceding};
pub use rank::{RankKind, RankNode, Ties};
pub use window::WindowKind;

/// A compiled continuous query: its operator tree and output schema.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub root: StreamNode,
}

impl StreamPlan {
    /// True when the pipeline emits updates of earlier rows (an upsert stream keyed
    /// by the group columns), which only sinks that overwrite by key can take.
    pub fn is_updating(&self) -> bool {
        self.root.is_updating()
    }

    /// True when the output retracts rows it sent before, so its sink must be able to delete.
    pub fn emits_retractions(&self) -> bool {
        self.root.emits_retractions()
    }

    /// What makes the output retract rows, in the user's terms (see [`StreamNode::retractions_origin`]).
    pub fn retractions_origin(&self) -> Option<String> {
        self.root.retractions_origin()
    }

    /// Bounds the state of every regular join, deduplication and Top-N: a row or
    /// partition leaves `ttl_ms` after it was last written, as with Flink's
    /// `'table.exec.state.ttl'` (a session setting, applied once the query is planned).
    pub fn set_state_ttl(&mut self, ttl_ms: i64) {
        fn visit(node: &mut StreamNode, ttl_ms: i64) {
            match node {
                StreamNode::Source(_) => {}
                StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } | StreamNode::WindowAssign { input, .. } => visit(input, ttl_ms),
                StreamNode::WindowAggregate(a) => visit(&mut a.input, ttl_ms),
                StreamNode::Rank(r) => {
                    r.state_ttl_ms = Some(ttl_ms);
                    visit(&mut r.input, ttl_ms)
                }
                StreamNode::OverAggregate(o) => visit(&mut o.input, ttl_ms),
                StreamNode::Union { inputs, .. } => inputs.iter_mut().for_each(|i| visit(i, ttl_ms)),
                StreamNode::Join(j) => {
                    if let JoinBound::Unbounded { state_ttl_ms } = &mut j.bounded_by {
                        *state_ttl_ms = Some(ttl_ms);
                    }
                    visit(&mut j.left, ttl_ms);
                    visit(&mut j.right, ttl_ms);
                }
            }
        }
        visit(&mut self.root, ttl_ms);
    }

    /// The columns a consumer replaces and deletes the pipeline's rows by: the
    /// output columns that are the GROUP BY keys of its updating aggregate (none
    /// for a GROUP BY-less aggregate's single row), or those of the changelog it
    /// reads. A materialized view keys its rows by them; an upsert sink could too.
    pub fn output_key(&self) -> std::result::Result<OutputKey, KeyLost> {
        if !self.is_updating() && !self.emits_retractions() {
            return Ok(OutputKey::AppendOnly);
        }
        let identity = || (0..self.schema().fields().len()).map(Some).collect::<Vec<_>>();
        // Which input column each output column is, through the projections walked so far.
        let mut projection: Option<Vec<Option<usize>>> = None;
        let mut node = &self.root;
        loop {
            match node {
                StreamNode::Project { input, exprs, .. } => {
                    let direct: Vec<Option<usize>> = exprs.iter().map(|e| e.downcast_ref::<Column>().map(|c| c.index())).collect();
                    projection = Some(match projection {
                        None => direct,
                        Some(outer) => outer.into_iter().map(|i| i.and_then(|i| direct.get(i).copied().flatten())).collect(),
                    });
                    node = input;
                }
                StreamNode::Filter { input, .. } => node = input,
                // The aggregate's output is its group columns, then its aggregates.
                StreamNode::WindowAggregate(aggregate) => {
                    let groups = aggregate.group.iter().filter(|g| matches!(g, GroupColumn::Key(_))).count();
                    let output = projection.unwrap_or_else(identity);
                    let key: Vec<usize> = output.iter().enumerate().filter(|(_, i)| i.is_some_and(|i| i < groups)).map(|(o, _)| o).collect();
                    return if key.len() == groups { Ok(OutputKey::Columns(key)) } else { Err(KeyLost::GroupColumnNotSelected) };
                }
                StreamNode::Source(source) if source.changelog => {
                    let output = projection.unwrap_or_else(identity);
                    let key: Option<Vec<usize>> = source
                        .table
                        .primary_key
                        .iter()
                        .map(|k| source.schema.index_of(k).ok().and_then(|i| output.iter().position(|o| *o == Some(i))))
                        .collect();
                    return key
                        .map(OutputKey::Columns)
                        .ok_or_else(|| KeyLost::ChangelogKeyNotSelected { table: source.table.name.clone(), key: source.table.primary_key.clone() });
                }
                // A deduplication's rows are replaced by partition; a Top-N's by partition and row number.
                StreamNode::Rank(rank) if rank.kind.retracts() => {
                    let output = projection.unwrap_or_else(identity);
                    let mut columns: Vec<usize> =
                        rank.partition.iter().map(|e| e.downcast_ref::<Column>().map(|c| c.index())).collect::<Option<_>>().ok_or(KeyLost::Unsupported)?;
                    if rank.kind.is_top_n() {
                        columns.push(rank.input.schema().fields().len());
                    }
                    let key: Option<Vec<usize>> = columns.iter().map(|i| output.iter().position(|o| *o == Some(*i))).collect();
                    return key.map(OutputKey::Columns).ok_or(KeyLost::RankKeyNotSelected);
                }
                _ => return Err(KeyLost::Unsupported),
            }
        }
    }

    /// The schema of the rows the pipeline emits.
    pub fn schema(&self) -> SchemaRef {
        self.root.schema()
    }

    /// True when every source of the plan ends by itself.
    pub fn sources(&self) -> Vec<&SourceNode> {
        let mut out = Vec::new();
        self.root.collect_sources(&mut out);
        out
    }

    /// Every lookup join, to check before running that its table can be looked up.
    pub fn lookup_joins(&self) -> Vec<&JoinNode> {
        fn collect<'a>(node: &'a StreamNode, out: &mut Vec<&'a JoinNode>) {
            if let StreamNode::Join(j) = node {
                if j.looked_up().is_some() {
                    out.push(j);
                }
            }
            node.inputs().into_iter().for_each(|input| collect(input, out));
        }
        let mut out = Vec::new();
        collect(&self.root, &mut out);
        out
    }

    /// What the user should know before the pipeline runs, though it is allowed:
    /// a HOP or CUMULATE window that puts every row into more than
    /// [`window::WINDOWS_PER_ROW_WARN`] windows, whose state and work grow
    /// with that number. One line per window, without duplicates.
    pub fn warnings(&self) -> Vec<String> {
        let mut windows = Vec::new();
        self.root.collect_windows(&mut windows);
        let mut out: Vec<String> = Vec::new();
        for window in windows {
            let per_row = window.windows_per_row();
            if per_row <= window::WINDOWS_PER_ROW_WARN {
                continue;
            }
            let text = window::duration_text;
            let shape = match window {
                WindowKind::Hop { slide_ms, size_ms } => format!("HOP with a size of {} sliding every {}", text(size_ms), text(slide_ms)),
                WindowKind::Cumulate { step_ms, max_size_ms } => format!("CUMULATE up to {} in steps of {}", text(max_size_ms), text(step_ms)),
                other => other.name().to_string(),
            };
            let warning = format!(
                "{shape} puts every row into {per_row} windows (more than {}): the state kept and the rows emitted per input row grow with that number; use a larger slide (or step), or SET 'pipeline.state.max-memory' to stop the pipeline before it takes the machine's memory",
                window::WINDOWS_PER_ROW_WARN
            );
            if !out.contains(&warning) {
                out.push(warning);
            }
        }
        out
    }

    /// A readable operator tree for `EXPLAIN` and logs: each operator with how
    /// many tasks run it (keyed operators run `parallelism` tasks), how the
    /// watermark reaches and leaves it, and what state it keeps.
    pub fn explain(&self, parallelism: usize) -> String {
        let mut out = String::new();
        self.root.explain(0, parallelism.max(1), &mut out);
        out
    }
}

/// What identifies a row of a pipeline's output for a consumer that applies updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKey {
    /// The output only appends rows: nothing is ever replaced.
    AppendOnly,
    /// Rows are replaced and deleted by these output columns (empty: the one row of a GROUP BY-less aggregate).
    Columns(Vec<usize>),
}

/// Why an updating pipeline's output has no key a consumer could apply updates by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLost {
    /// A GROUP BY column is not in the output as it is (dropped or computed on).
    GroupColumnNotSelected,
    /// The key columns of the changelog read are not all in the output as they are.
    ChangelogKeyNotSelected { table: String, key: Vec<String> },
    /// The PARTITION BY columns of a deduplication (and the row number of a Top-N) are not all in the output as they are.
    RankKeyNotSelected,
    /// The updates come from a shape whose key is not tracked (a union, a window over updates).
    Unsupported,
}

/// How lateness is judged at a source, per row, in source order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatenessRule {
    /// The event-time column in the source's visible schema.
    pub time_column: usize,
    /// What decides when a row is too late.
    pub judged_by: LateAfter,
}

/// When a row arrives too late for the stateful operator above its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateAfter {
    /// The window whose slices (or sessions) decide: a row is late when its slice
    /// ended at or before the watermark in effect just before the row.
    Slice(WindowKind),
    /// The row's own time: late when at or behind the watermark in effect just
    /// before the row, as an OVER aggregate emits the rows of a time once the
    /// watermark reaches it (Flink's drops such rows too).
    RowTimeReached,
    /// The row's own time: late only when behind the watermark, as Flink's
    /// deduplication keeping the first row judges it (a row exactly at the
    /// watermark still counts).
    RowTimePassed,
}

impl LateAfter {
    /// For `EXPLAIN`.
    fn describe(&self) -> String {
        match self {
            LateAfter::Slice(window) => format!("late rows judged by {} slices", window.name()),
            LateAfter::RowTimeReached => "late rows judged by their time (at or behind the watermark)".to_string(),
            LateAfter::RowTimePassed => "late rows judged by their time (behind the watermark)".to_string(),
        }
    }
}

/// Reading one table: physical columns from the connector, computed columns, the watermark.
#[derive(Debug, Clone)]
pub struct SourceNode {
    pub table: TableDef,
    /// The connector's schema (physical columns).
    pub physical_schema: SchemaRef,
    /// Expressions over the physical schema appended as computed columns.
    pub computed: Vec<Arc<dyn PhysicalExpr>>,
    /// Physical + computed columns: what queries see.
    pub schema: SchemaRef,
    /// `WATERMARK FOR ... AS expr`, over the visible schema, as millisecond timestamps.
    pub watermark: Option<Arc<dyn PhysicalExpr>>,
    /// True when reading ends by itself (files, counted generators).
    pub bounded: bool,
    /// Set when a window aggregate reads this source: late rows are diverted at the source.
    pub lateness: Option<LatenessRule>,
    /// The source is a changelog: it retracts rows it returned before (a
    /// materialized view's updates), keyed by the table's PRIMARY KEY.
    pub changelog: bool,
    /// The physical columns the pipeline reads (ascending), when it reads fewer than
    /// all: a source may leave the others empty instead of decoding or generating them.
    pub read_columns: Option<Vec<usize>>,
    /// The query's conditions on the table's `PARTITIONED BY` columns alone: a file
    /// source need not read a partition directory they rule out.
    pub partition_filter: Option<PartitionFilter>,
}

/// A condition on partition values (Hive `column=value` directories), taken from a
/// query's filters. It stays in the plan too, so a source that ignores it is still
/// correct; one that uses it skips whole directories.
#[derive(Debug, Clone)]
pub struct PartitionFilter {
    /// The partition columns, with the table's types.
    pub schema: SchemaRef,
    /// Over `schema`.
    pub predicate: Arc<dyn PhysicalExpr>,
}

impl PartitionFilter {
    /// Whether rows with these partition values (by column name, as text; `None` is
    /// NULL) can pass the condition. Values that cannot be judged (a column missing,
    /// text that is not of the column's type) are kept: skipping is only an optimisation.
    pub fn keeps(&self, values: &[(String, Option<String>)]) -> bool {
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let Some((_, value)) = values.iter().find(|(name, _)| name == field.name()) else { return true };
            let scalar = match value {
                Some(text) => datafusion::common::ScalarValue::try_from_string(text.clone(), field.data_type()),
                None => datafusion::common::ScalarValue::try_from(field.data_type()),
            };
            match scalar.and_then(|v| v.to_array()) {
                Ok(array) => columns.push(array),
                Err(_) => return true,
            }
        }
        let Ok(batch) = datafusion::arrow::record_batch::RecordBatch::try_new(SchemaRef::clone(&self.schema), columns) else { return true };
        match self.predicate.evaluate(&batch).and_then(|v| v.into_array(1)) {
            // FALSE or NULL: no row of the partition passes the WHERE.
            Ok(result) => match result.as_any().downcast_ref::<datafusion::arrow::array::BooleanArray>() {
                Some(keep) => datafusion::arrow::array::Array::is_valid(keep, 0) && keep.value(0),
                None => true,
            },
            Err(_) => true,
        }
    }
}

/// Which input column tells a window aggregate the slice of each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceColumn {
    pub index: usize,
    /// The column holds the slice's end (exclusive) rather than its start.
    pub is_end: bool,
}

/// A group-by column of a window aggregate.
#[derive(Debug, Clone)]
pub enum GroupColumn {
    WindowStart,
    WindowEnd,
    WindowTime,
    /// A grouping expression over the aggregate's input.
    Key(Arc<dyn PhysicalExpr>),
}

/// What an aggregate aggregates over and when it emits: it decides the operator
/// that runs it and the changelog it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    /// A TUMBLE, HOP or CUMULATE window, aggregated by slices: each window's groups
    /// are emitted once, when the watermark passes the window's end.
    Windowed(WindowKind),
    /// Per-key SESSION windows, each emitted once the watermark passes its last row plus the gap.
    Session { gap_ms: i64 },
    /// No window over bounded input: each group once, at the end of the input.
    WholeInput,
    /// No window over an unbounded append-only input: the current row of every
    /// group that changed, at each checkpoint barrier, as `output` says.
    Updating { output: UpdateOutput },
    /// The input is a changelog (it retracts rows): the aggregate keeps each group's
    /// rows so it can take them back, and emits its updates as retractions of the
    /// old rows followed by the new ones.
    Retracting,
}

/// How an updating aggregate over append-only input sends a changed group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutput {
    /// The new row only: an upsert stream keyed by the group columns, for a sink that overwrites by key.
    Upserts,
    /// A retraction of the row emitted before, then the new row: for a consumer
    /// (a filter, another aggregate) that must take the old row back.
    Retractions,
}

impl AggregateKind {
    /// The aggregate over `window`: by slices, or by sessions.
    pub fn over_window(window: WindowKind) -> AggregateKind {
        match window {
            WindowKind::Session { gap_ms } => AggregateKind::Session { gap_ms },
            other => AggregateKind::Windowed(other),
        }
    }

    /// The window the aggregate groups by, if any.
    pub fn window(&self) -> Option<WindowKind> {
        match *self {
            AggregateKind::Windowed(window) => Some(window),
            AggregateKind::Session { gap_ms } => Some(WindowKind::Session { gap_ms }),
            AggregateKind::WholeInput | AggregateKind::Updating { .. } | AggregateKind::Retracting => None,
        }
    }

    /// Emits changes of groups it emitted before, at checkpoints, rather than final rows.
    pub fn is_updating(&self) -> bool {
        matches!(self, AggregateKind::Updating { .. } | AggregateKind::Retracting)
    }

    /// Its output takes back rows it sent before.
    pub fn emits_retractions(&self) -> bool {
        matches!(self, AggregateKind::Updating { output: UpdateOutput::Retractions } | AggregateKind::Retracting)
    }
}

/// An aggregation (`GROUP BY`), windowed or not; [`AggregateKind`] says which.
#[derive(Debug, Clone)]
pub struct WindowAggregateNode {
    pub input: Box<StreamNode>,
    pub kind: AggregateKind,
    /// The input column holding each row's slice (or, for sessions, the row's own interval).
    pub slice_column: Option<SliceColumn>,
    /// Output group columns, in output order.
    pub group: Vec<GroupColumn>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// `FILTER (WHERE ...)` per aggregate.
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    pub schema: SchemaRef,
    /// Whether the input holds rows, or partial aggregates of rows to merge.
    pub input_rows: AggregateInput,
}

/// What a window aggregate's input rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AggregateInput {
    /// The rows to aggregate.
    #[default]
    Rows,
    /// Partial aggregates a cluster's re-partitioners computed before the shuffle
    /// ([`crate::operators::pre_aggregate`]): a slice start, the key columns, then
    /// each aggregate's intermediate state. They are merged, not aggregated again.
    SlicePartials,
}

impl WindowAggregateNode {
    /// The key expressions (group columns other than window bounds), which the exchange hashes on.
    pub fn key_exprs(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.group
            .iter()
            .filter_map(|g| match g {
                GroupColumn::Key(e) => Some(Arc::clone(e)),
                _ => None,
            })
            .collect()
    }

    /// How many tasks run the aggregate: `parallelism` behind a hash exchange on its
    /// keys; without keys every row belongs to one group, so one task.
    pub fn tasks(&self, parallelism: usize) -> usize {
        if self.key_exprs().is_empty() {
            1
        } else {
            parallelism.max(1)
        }
    }
}

/// What a filter does with a row its predicate does not keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilteredOut {
    /// Dropped, as `WHERE` does.
    Dropped,
    /// Sent on as a deletion (a `-U` is dropped): below a temporal join's
    /// versioned side, where a condition on the versioned table applies to the
    /// version a row meets, as in Flink. A version failing it must still end the
    /// version before it, or that older one would be met instead.
    Deleted,
}

/// One node of the streaming plan.
#[derive(Debug, Clone)]
pub enum StreamNode {
    Source(SourceNode),
    /// Keeps rows where the predicate is true.
    Filter {
        input: Box<StreamNode>,
        predicate: Arc<dyn PhysicalExpr>,
        filtered_out: FilteredOut,
    },
    /// Computes new columns from each row.
    Project {
        input: Box<StreamNode>,
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
    /// Appends `window_start`, `window_end`, `window_time`. With `slicing`, a row gets
    /// its one slice (the aggregate above combines slices into windows); without, a row
    /// is repeated once per window it belongs to.
    WindowAssign {
        input: Box<StreamNode>,
        id: usize,
        window: WindowKind,
        time_column: usize,
        slicing: bool,
        schema: SchemaRef,
    },
    WindowAggregate(WindowAggregateNode),
    /// All rows of all inputs (same schema).
    Union {
        inputs: Vec<StreamNode>,
        schema: SchemaRef,
    },
    /// Rows of two inputs joined on keys within a time interval.
    Join(JoinNode),
    /// The first rows of each partition by an order: deduplication and Top-N.
    Rank(RankNode),
    /// Each row with aggregates over the rows before it (`agg(...) OVER (...)`).
    OverAggregate(OverAggregateNode),
}

impl StreamNode {
    /// The node's output schema.
    pub fn schema(&self) -> SchemaRef {
        match self {
            StreamNode::Source(s) => Arc::clone(&s.schema),
            StreamNode::Filter { input, .. } => input.schema(),
            StreamNode::Project { schema, .. } | StreamNode::WindowAssign { schema, .. } | StreamNode::Union { schema, .. } => Arc::clone(schema),
            StreamNode::WindowAggregate(a) => Arc::clone(&a.schema),
            StreamNode::Join(j) => Arc::clone(&j.schema),
            StreamNode::Rank(r) => Arc::clone(&r.schema),
            StreamNode::OverAggregate(o) => Arc::clone(&o.schema),
        }
    }

    /// True when this node or one below it is an updating aggregate.
    pub fn is_updating(&self) -> bool {
        matches!(self, StreamNode::WindowAggregate(a) if a.kind.is_updating()) || self.inputs().into_iter().any(StreamNode::is_updating)
    }

    /// True when this node's output retracts rows it sent before (`-U`/`-D` rows
    /// of a [`crate::ChangeBatch`]): it reads a changelog source or aggregates one, and nothing on
    /// the way turned it back into upserts.
    pub fn emits_retractions(&self) -> bool {
        match self {
            StreamNode::Source(s) => s.changelog,
            StreamNode::WindowAggregate(a) => a.kind.emits_retractions(),
            StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } => input.emits_retractions(),
            StreamNode::Join(j) => j.retracts(),
            StreamNode::Rank(r) => r.kind.retracts() || r.input.emits_retractions(),
            StreamNode::WindowAssign { .. } | StreamNode::OverAggregate(_) => false,
            StreamNode::Union { inputs, .. } => inputs.iter().any(StreamNode::emits_retractions),
        }
    }

    /// What makes this node's output retract rows, in the user's terms, for a
    /// message refusing it where rows cannot be taken back; `None` when it does not.
    pub fn retractions_origin(&self) -> Option<String> {
        if !self.emits_retractions() {
            return None;
        }
        match self {
            StreamNode::Source(s) => Some(format!("it reads `{}`, whose rows update", s.table.name)),
            StreamNode::WindowAggregate(_) => Some("a GROUP BY without a window updates its rows".to_string()),
            StreamNode::Join(j) if j.retracts() => Some(format!(
                "{} (a {} join without time bounds) takes back the rows it emitted {} once a partner comes",
                j.operator_name(),
                j.join_type.sql(),
                if matches!(j.join_type, JoinType::Anti(_)) { "alone" } else { "padded with NULLs" }
            )),
            StreamNode::Rank(r) if r.kind.retracts() => Some(format!(
                "{} ({}) takes back the rows it emitted when a {} row comes",
                r.kind.operator_name(),
                if r.kind.is_top_n() { "a Top-N without a window" } else { "keeping the last row" },
                if r.kind.is_top_n() { "higher ranked" } else { "later" }
            )),
            other => other.inputs().into_iter().find_map(StreamNode::retractions_origin),
        }
    }

    /// The node's inputs.
    pub fn inputs(&self) -> Vec<&StreamNode> {
        match self {
            StreamNode::Source(_) => vec![],
            StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } | StreamNode::WindowAssign { input, .. } => {
                vec![input]
            }
            StreamNode::WindowAggregate(a) => vec![&a.input],
            StreamNode::Union { inputs, .. } => inputs.iter().collect(),
            // A lookup join's table is read by key, not as an input stream.
            StreamNode::Join(j) => match j.bounded_by {
                JoinBound::Lookup { probe: JoinSide::Left } => vec![&j.left],
                JoinBound::Lookup { probe: JoinSide::Right } => vec![&j.right],
                _ => vec![&j.left, &j.right],
            },
            StreamNode::Rank(r) => vec![&r.input],
            StreamNode::OverAggregate(o) => vec![&o.input],
        }
    }

    fn collect_windows(&self, out: &mut Vec<WindowKind>) {
        match self {
            StreamNode::WindowAssign { window, .. } => out.push(*window),
            StreamNode::WindowAggregate(a) => out.extend(a.kind.window()),
            _ => {}
        }
        for input in self.inputs() {
            input.collect_windows(out);
        }
    }

    fn collect_sources<'a>(&'a self, out: &mut Vec<&'a SourceNode>) {
        if let StreamNode::Source(s) = self {
            out.push(s);
        }
        for input in self.inputs() {
            input.collect_sources(out);
        }
    }

    fn explain(&self, depth: usize, parallelism: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        let line = match self {
            StreamNode::Source(s) => {
                format!(
                    "Source: {} (connector={}, {}{}{})",
                    s.table.name,
                    s.table.connector(),
                    if s.bounded { "bounded" } else { "unbounded" },
                    s.read_columns
                        .as_ref()
                        .map(|read| {
                            let names: Vec<&str> = read.iter().map(|&i| s.physical_schema.field(i).name().as_str()).collect();
                            format!(", reads [{}]", names.join(", "))
                        })
                        .unwrap_or_default(),
                    s.lateness.map(|l| format!(", {}", l.judged_by.describe())).unwrap_or_default()
                ) + &s.partition_filter.as_ref().map(|f| format!(" (partitions where {})", f.predicate)).unwrap_or_default()
            }
            StreamNode::Filter { predicate, filtered_out: FilteredOut::Dropped, .. } => format!("Filter: {predicate}"),
            StreamNode::Filter { predicate, filtered_out: FilteredOut::Deleted, .. } => {
                format!("Filter: {predicate} (a version failing it is sent on as a deletion: it still ends the version before it)")
            }
            StreamNode::Project { exprs, .. } => {
                format!("Project: {}", exprs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "))
            }
            StreamNode::WindowAssign { window, slicing, .. } => {
                format!("WindowAssign: {window:?}{}", if *slicing { " (slices)" } else { "" })
            }
            StreamNode::WindowAggregate(a) => format!(
                "WindowAggregate: window={}, keys=[{}], aggregates=[{}]",
                match a.kind {
                    AggregateKind::Windowed(_) | AggregateKind::Session { .. } => a.kind.window().map(|w| format!("{w:?}")).unwrap_or_default(),
                    AggregateKind::Retracting => "none, over a changelog: retractions and updates at each checkpoint".to_string(),
                    AggregateKind::Updating { .. } => "none, updates at each checkpoint".to_string(),
                    AggregateKind::WholeInput => "whole input".to_string(),
                },
                a.key_exprs().iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "),
                a.aggregates.iter().map(|e| e.name().to_string()).collect::<Vec<_>>().join(", ")
            ),
            StreamNode::Union { .. } => "Union".to_string(),
            StreamNode::Rank(r) => r.explain(),
            StreamNode::OverAggregate(o) => format!(
                "OverAggregate: partition by [{}], order by {} ({}), aggregates=[{}]",
                o.partition_by.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "),
                o.input.schema().field(o.time_column).name(),
                o.frame.sql(),
                // The function and its arguments: DataFusion's names repeat the whole OVER clause.
                o.aggregates
                    .iter()
                    .map(|a| format!("{}({})", a.fun().name(), a.expressions().iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            StreamNode::Join(j) => {
                let keys = j.left_keys.iter().zip(&j.right_keys).map(|(l, r)| format!("{l} = {r}")).collect::<Vec<_>>().join(", ");
                let filter = j.filter.as_ref().map(|f| format!(", where {f}")).unwrap_or_default();
                match j.bounded_by {
                    JoinBound::Interval(bounds) => format!(
                        "IntervalJoin: {} join on [{keys}], right time - left time in [{} ms, {} ms]{filter}",
                        j.join_type.sql(),
                        bounds.lower_ms,
                        bounds.upper_ms
                    ),
                    JoinBound::Window { window, .. } => format!("WindowJoin: {} join on [{keys}] in {window:?} windows{filter}", j.join_type.sql()),
                    JoinBound::Temporal(sides) => {
                        let (probe, versioned) = (sides.probe, sides.versioned());
                        let schema = |side: JoinSide| if side == JoinSide::Left { j.left.schema() } else { j.right.schema() };
                        format!(
                            "TemporalJoin: {} join on [{keys}], {} rows meet the {} version current at `{}` (by `{}`){filter}",
                            j.join_type.sql(),
                            probe.name(),
                            versioned.name(),
                            schema(probe).field(sides.probe_time).name(),
                            schema(versioned).field(sides.version_time).name(),
                        )
                    }
                    JoinBound::Lookup { probe } => {
                        let table = j.lookup_table().map(|t| format!("`{}` (connector={})", t.table.name, t.table.connector())).unwrap_or_default();
                        let steps = j.lookup_side().map(|(steps, _)| steps).unwrap_or_default();
                        let kept: String = steps
                            .iter()
                            .filter_map(|step| match step {
                                StreamNode::Filter { predicate, .. } => Some(format!(", the table's rows kept where {predicate}")),
                                _ => None,
                            })
                            .collect();
                        format!(
                            "LookupJoin: {} join on [{keys}], each {} row looks up {table} by its key as it comes{kept}{filter}",
                            j.join_type.sql(),
                            probe.name()
                        )
                    }
                    JoinBound::Unbounded { .. } => format!(
                        "RegularJoin: {} join on [{keys}]{filter}{}",
                        j.join_type.sql(),
                        if j.retracts() { " (a changelog: takes back the rows it emitted alone once a partner comes)" } else { "" }
                    ),
                }
            }
        };
        let _ = writeln!(out, "{pad}{line}");
        let (tasks, watermark, state) = self.runtime_traits(parallelism);
        let _ = writeln!(out, "{pad}  | tasks: {tasks} | watermark: {watermark} | state: {state}");
        for input in self.inputs() {
            input.explain(depth + 1, parallelism, out);
        }
    }

    /// How the engine runs this operator (see the engine's `graph` module, which
    /// chains stateless operators into the task below and puts a hash exchange
    /// in front of each aggregate): tasks, watermark, state.
    fn runtime_traits(&self, parallelism: usize) -> (String, String, String) {
        let chained = "chained into its input's task(s)".to_string();
        let passed = "passed through".to_string();
        match self {
            StreamNode::Source(s) => {
                let watermark = match (&s.watermark, &s.table.watermark) {
                    (Some(_), Some(w)) => {
                        let idle = s
                            .table
                            .option("scan.watermark.idle-timeout")
                            .map(|t| format!("; a partition idle for {t} stops holding it back"))
                            .unwrap_or_default();
                        format!("{} per partition, the lowest over partitions{idle}", w.expr_sql)
                    }
                    (Some(w), None) => format!("{w} per partition, the lowest over partitions"),
                    _ if s.changelog => "the view's, at each of its checkpoints".to_string(),
                    _ => "none (no WATERMARK FOR)".to_string(),
                };
                let state = if s.changelog { "position in the view's changelog" } else { "read position (offset) per partition" };
                ("one per source partition".to_string(), watermark, state.to_string())
            }
            StreamNode::Filter { .. } | StreamNode::Project { .. } => (chained, passed, "none".to_string()),
            StreamNode::WindowAssign { .. } => (chained, passed, "none (assigns each row its window or slice)".to_string()),
            StreamNode::Union { .. } => (chained, "the lowest over its inputs".to_string(), "none".to_string()),
            StreamNode::Rank(r) => {
                let keys = r.key_exprs();
                let tasks = if keys.is_empty() && matches!(r.kind, RankKind::Window { .. }) {
                    "1 (no partition keys besides the window's bounds: each window is one partition)".to_string()
                } else if keys.is_empty() {
                    "1 (no partition keys: every row is one partition)".to_string()
                } else {
                    format!("{}, behind a hash exchange on [{}]", r.tasks(parallelism), keys.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "))
                };
                let (watermark, mut state) = r.runtime_traits();
                if let (Some(ttl), false) = (r.state_ttl_ms, matches!(r.kind, RankKind::Window { .. })) {
                    state.push_str(&format!("; each partition until {ttl} ms after it was last written ('table.exec.state.ttl')"));
                }
                (tasks, watermark.to_string(), state)
            }
            StreamNode::Join(j) => {
                let tasks = if j.looked_up().is_some() {
                    chained.clone()
                } else if j.left_keys.is_empty() {
                    "1 (no equality keys: every row may meet every other)".to_string()
                } else {
                    format!("{}, behind a hash exchange on the keys of each side", j.tasks(parallelism))
                };
                let (watermark, state) = match j.bounded_by {
                    JoinBound::Unbounded { state_ttl_ms } => (
                        "the lowest over both inputs, passed through".to_string(),
                        match state_ttl_ms {
                            Some(ttl) => format!("each side's rows by key, each until {ttl} ms after it was last written ('table.exec.state.ttl'); a side's rows are dropped once the other side has ended"),
                            None => "each side's rows by key, for good (SET 'table.exec.state.ttl' to bound it); a side's rows are dropped once the other side has ended".to_string(),
                        },
                    ),
                    JoinBound::Interval(bounds) | JoinBound::Window { bounds, .. } => (
                        format!("the lowest over both inputs, held back {} ms (the larger time bound)", bounds.watermark_delay_ms()),
                        "each side's rows, until the watermark passes the last time a partner could come".to_string(),
                    ),
                    JoinBound::Lookup { .. } => {
                        (passed.clone(), "none (with 'lookup.cache' = 'PARTIAL', a cache of looked-up keys per task; with 'FULL', the whole table per task, read again every reload interval; neither is checkpointed)".to_string())
                    }
                    JoinBound::Temporal(sides) => (
                        "the lowest over both inputs, passed through once the rows it lets out are emitted".to_string(),
                        format!(
                            "{} rows until the watermark passes their time; per key, the {} versions from the last one at or before the watermark on",
                            sides.probe.name(),
                            sides.versioned().name()
                        ),
                    ),
                };
                (tasks, watermark, state)
            }
            StreamNode::OverAggregate(o) => {
                let tasks = if o.partition_by.is_empty() {
                    "1 (no PARTITION BY: every row is in one partition)".to_string()
                } else {
                    format!(
                        "{}, behind a hash exchange on [{}]",
                        o.tasks(parallelism),
                        o.partition_by.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
                    )
                };
                let state = match o.frame.preceding() {
                    Preceding::Bounded(_) => "rows per partition key not yet emitted, and the emitted rows later frames still reach",
                    Preceding::Unbounded => "rows per partition key not yet emitted, and one accumulator per partition key, for good",
                };
                (tasks, "the lowest over its input tasks; a row is emitted once the watermark reaches its time".to_string(), state.to_string())
            }
            StreamNode::WindowAggregate(a) => {
                let keys = a.key_exprs();
                let tasks = if keys.is_empty() {
                    "1 (no group keys: every row is one group)".to_string()
                } else {
                    format!("{}, behind a hash exchange on [{}]", a.tasks(parallelism), keys.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "))
                };
                let (watermark, state) = match a.kind {
                    AggregateKind::Session { .. } => (
                        "the lowest over its input tasks; a session is emitted once the watermark passes its end (last row + gap)",
                        "open sessions per key, with their partial aggregates",
                    ),
                    AggregateKind::Windowed(_) => (
                        "the lowest over its input tasks; a window is emitted once the watermark passes its end",
                        "partial aggregates per key and slice, for windows not yet emitted",
                    ),
                    AggregateKind::Retracting => (
                        "the lowest over its input tasks (changes are emitted at checkpoints, not by the watermark)",
                        "every group's input rows, so retracted rows can be taken back out of MIN/MAX/COUNT DISTINCT",
                    ),
                    AggregateKind::Updating { .. } => (
                        "the lowest over its input tasks (changes are emitted at checkpoints, not by the watermark)",
                        "one accumulator per group, kept for the life of the pipeline",
                    ),
                    AggregateKind::WholeInput => ("the lowest over its input tasks", "one accumulator per group, until the input ends"),
                };
                (tasks, watermark.to_string(), state.to_string())
            }
        }
    }
}
