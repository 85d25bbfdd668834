//! Pre-aggregation before a cluster's shuffle (docs/CLUSTER.md): the
//! re-partitioner of a source partition folds the partition's on-time rows into
//! one partial aggregate per slice and key between two of its commits, and sends
//! those instead of the rows. The key group's window aggregate merges them
//! ([`AggregateInput::SlicePartials`]) as it merges its own slices' frozen
//! states, so its windows are the rows' windows, while the shuffle carries a
//! record per slice and key and commit instead of one per event.
//!
//! A partial row is a slice start (`Int64`), the key columns, then each
//! aggregate's intermediate state columns (DataFusion's `state`, which
//! `merge_batch` takes back). Sessions are not pre-aggregated: a session's
//! bounds depend on rows other partitions hold, so its rows are shuffled as they are.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;

use super::filter::FilterOperator;
use super::project::{make_batch, ProjectOperator};
use super::window_aggregate::{key_schema, slice_ms, slice_parts, slice_starts, GroupState, Inputs};
use super::window_assign::WindowAssignOperator;
use crate::changelog::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::operator::{Emitter, Operator};
use crate::plan::{AggregateInput, AggregateKind, GroupColumn, SourceNode, StreamNode, WindowAggregateNode};
use crate::table::ColumnDef;

const NAME: &str = "PreAggregate";

/// One source partition's rows since its last commit, folded per slice and key.
pub struct PreAggregate {
    /// The stateless operators between the source and the aggregate, in order.
    below: Vec<Box<dyn Operator>>,
    node: WindowAggregateNode,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    slice_ms: i64,
    schema: SchemaRef,
    open: BTreeMap<i64, GroupState>,
    ids: Vec<usize>,
    out: Emitter,
}

/// Whether a pipeline's aggregate can be pre-aggregated, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreAggregation {
    /// Partial aggregates per slice and key cross the shuffle.
    Partials,
    /// The rows cross the shuffle as they are, for this reason.
    Rows(&'static str),
}

impl PreAggregation {
    /// `partials` or `rows`: what a shuffle carries, in the cluster's terms topic and options.
    pub fn label(&self) -> &'static str {
        match self {
            PreAggregation::Partials => "partials",
            PreAggregation::Rows(_) => "rows",
        }
    }

    /// Whether `node`'s input can be folded into partials before a shuffle.
    pub fn of(node: &WindowAggregateNode) -> PreAggregation {
        match node.kind {
            AggregateKind::Session { .. } => PreAggregation::Rows("a session's bounds depend on rows other source partitions hold"),
            AggregateKind::Retracting => PreAggregation::Rows("the aggregate reads a changelog"),
            AggregateKind::Windowed(_) | AggregateKind::WholeInput | AggregateKind::Updating { .. } => {
                if below(&node.input).is_some() {
                    PreAggregation::Partials
                } else {
                    PreAggregation::Rows("the aggregate's input is more than filters and projections of one source")
                }
            }
        }
    }
}

/// The stateless nodes from the source up to (not including) the aggregate, source side first.
fn below(mut node: &StreamNode) -> Option<Vec<&StreamNode>> {
    let mut chain = Vec::new();
    loop {
        match node {
            StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } | StreamNode::WindowAssign { input, .. } => {
                chain.push(node);
                node = input;
            }
            StreamNode::Source(_) => break,
            _ => return None,
        }
    }
    chain.reverse();
    Some(chain)
}

impl PreAggregate {
    /// A pre-aggregator of `node`'s input rows, or `None` when [`PreAggregation::of`] says rows.
    pub fn new(node: &WindowAggregateNode) -> Result<Option<Self>> {
        if PreAggregation::of(node) != PreAggregation::Partials {
            return Ok(None);
        }
        let chain = below(&node.input).unwrap_or_default();
        let below = chain
            .into_iter()
            .map(|n| -> Box<dyn Operator> {
                match n {
                    StreamNode::Filter { predicate, filtered_out, .. } => Box::new(FilterOperator::new(Arc::clone(predicate), *filtered_out)),
                    StreamNode::Project { exprs, schema, .. } => Box::new(ProjectOperator::new(exprs.clone(), Arc::clone(schema))),
                    StreamNode::WindowAssign { window, time_column, slicing, schema, .. } => {
                        Box::new(WindowAssignOperator::new(*window, *time_column, *slicing, Arc::clone(schema)))
                    }
                    _ => unreachable!("below() returns only stateless nodes"),
                }
            })
            .collect();
        Ok(Some(PreAggregate {
            below,
            key_exprs: node.key_exprs(),
            key_schema: key_schema(node)?,
            slice_ms: slice_ms(node)?,
            schema: partials_schema(node)?,
            node: node.clone(),
            open: BTreeMap::new(),
            ids: Vec::new(),
            out: Emitter::default(),
        }))
    }

    /// The aggregate's input rows from rows of the source: the filters,
    /// projections and window assignment between them applied.
    pub fn rows_below(&mut self, rows: RecordBatch) -> Result<Vec<RecordBatch>> {
        let mut batches = vec![rows];
        for operator in &mut self.below {
            let mut next = Vec::new();
            for batch in batches {
                operator.on_rows(ChangeBatch::inserts(batch), &mut self.out)?;
                for message in self.out.drain() {
                    if let Message::Rows(changes) = message {
                        next.push(changes.into_inserts(NAME)?);
                    }
                }
            }
            batches = next;
        }
        Ok(batches)
    }

    /// Folds in on-time rows of the source (its visible schema, computed columns included).
    pub fn add(&mut self, rows: RecordBatch) -> Result<()> {
        for batch in self.rows_below(rows)? {
            let inputs = Inputs::evaluate(&batch, &self.key_exprs, &self.node.aggregates, &self.node.filters)?;
            let starts = slice_starts(&self.node, self.slice_ms, &batch)?.unwrap_or_else(|| vec![0; batch.num_rows()]);
            for (start, indices) in slice_parts(&starts) {
                let state = match self.open.entry(start) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => e.insert(GroupState::new(&self.key_schema, &self.node.aggregates)?),
                };
                state.update_rows(&inputs, batch.num_rows(), indices, &mut self.ids)?;
            }
        }
        Ok(())
    }

    /// The partial aggregates of everything added since the last drain, one row per
    /// slice and key (`None`: nothing was added), leaving the pre-aggregator empty.
    pub fn drain(&mut self) -> Result<Option<RecordBatch>> {
        if self.open.is_empty() {
            return Ok(None);
        }
        let mut batches = Vec::with_capacity(self.open.len());
        for (start, mut state) in std::mem::take(&mut self.open) {
            let frozen = state.freeze()?;
            let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![start; frozen.rows]))];
            columns.extend(frozen.columns().cloned());
            batches.push(make_batch(&self.schema, columns, frozen.rows, NAME)?);
        }
        datafusion::arrow::compute::concat_batches(&self.schema, &batches).map(Some).map_err(|e| super::arrow_error(NAME, e))
    }

    /// The partial rows' schema ([`partials_schema`]).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The columns of a partial row that hold its key.
    pub fn key_columns(&self) -> std::ops::Range<usize> {
        1..1 + self.key_exprs.len()
    }
}

/// The schema of `node`'s partial rows: `slice`, the keys `k0`.., then each
/// aggregate's state columns `a0_0`...
pub fn partials_schema(node: &WindowAggregateNode) -> Result<SchemaRef> {
    let mut fields = vec![Field::new("slice", DataType::Int64, false)];
    fields.extend(key_schema(node)?.fields().iter().map(|f| f.as_ref().clone()));
    for (a, aggregate) in node.aggregates.iter().enumerate() {
        let states = aggregate.state_fields().map_err(|e| EngineError::execution(NAME, e))?;
        for (i, state) in states.iter().enumerate() {
            fields.push(Field::new(format!("a{a}_{i}"), state.data_type().clone(), true));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// The aggregate a key group runs over the partials of `node`: `node`'s, reading
/// its keys from the partials' columns, over `source` (the table the pipeline
/// reads) turned into a table of partials: [`partials_schema`]'s columns, no
/// computed columns, and no watermark of its own (the shuffle's markers give it).
pub fn merging_node(node: &WindowAggregateNode, source: &SourceNode) -> Result<WindowAggregateNode> {
    let schema = partials_schema(node)?;
    let mut table = source.table.clone();
    table.columns = schema.fields().iter().map(|f| ColumnDef::from(f.as_ref())).collect();
    table.computed = Vec::new();
    table.watermark = None;
    table.primary_key = Vec::new();
    table.partitioned_by = Vec::new();
    let source = SourceNode {
        table,
        physical_schema: Arc::clone(&schema),
        computed: Vec::new(),
        schema,
        watermark: None,
        bounded: source.bounded,
        lateness: None,
        changelog: false,
        read_columns: None,
        partition_filter: None,
    };
    let mut key = 0;
    let group = node
        .group
        .iter()
        .map(|g| match g {
            GroupColumn::Key(_) => {
                key += 1;
                GroupColumn::Key(Arc::new(Column::new(&format!("k{}", key - 1), key)) as Arc<dyn PhysicalExpr>)
            }
            other => other.clone(),
        })
        .collect();
    Ok(WindowAggregateNode {
        input: Box::new(StreamNode::Source(source)),
        kind: node.kind,
        slice_column: None,
        group,
        aggregates: node.aggregates.clone(),
        filters: vec![None; node.filters.len()],
        schema: Arc::clone(&node.schema),
        input_rows: AggregateInput::SlicePartials,
    })
}
