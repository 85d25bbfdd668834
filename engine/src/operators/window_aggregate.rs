//! Windowed `GROUP BY` for TUMBLE, HOP and CUMULATE (and plain `GROUP BY` over a
//! bounded input), emitting each window once when the watermark passes its end.
//!
//! Rows are aggregated into *slices* (Flink's slicing windows): the window itself
//! for TUMBLE, gcd(size, slide) for HOP, the step for CUMULATE. Each open slice
//! holds DataFusion `GroupsAccumulator`s, so updates are vectorised and every
//! DataFusion aggregate works. When the watermark passes a slice's end, the slice
//! is frozen into its intermediate state (Arrow arrays); a window is produced by
//! merging the frozen states of its slices. A HOP row is thus aggregated once, not
//! once per overlapping window.
//!
//! Checkpoints cost what changed since the last one, not all the state: at a
//! barrier, each open slice's live groups are frozen into a *saved part* and the
//! slice starts afresh, and saved parts and closed slices never change again, so
//! a checkpoint stores each once as a lasting part ([`crate::state`]) and later
//! ones refer to it. A slice's parts are merged when its windows fire (and, past
//! [`MAX_SAVED_PARTS`], into one at a barrier, so a long window's memory stays
//! near one copy of its groups).
//!
//! A key group of `eddy run --cluster` reads partial aggregates instead of rows
//! ([`AggregateInput::SlicePartials`], made by [`super::pre_aggregate`]): it merges
//! each into its slice as it merges a frozen state, so its windows are the rows'.
//!
//! Without a window over an unbounded input (`node.updating`), there is one slice
//! for ever; at each checkpoint barrier the current row of every group that took
//! rows since the last barrier is emitted: an upsert stream keyed by the groups.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::plan::{AggregateInput, AggregateKind, GroupColumn, UpdateOutput, WindowAggregateNode, WindowKind};
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::{cast, take, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{new_group_values, GroupValues};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::closing::{advance_watermark, ClosedByWatermark};
use super::project::make_batch;
use super::rows::EmittedRows;
use super::{arrow_error, evaluate, evaluate_predicate};
use crate::changelog::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::PipelineMetrics;
use crate::operator::{Emitter, Operator};
use crate::state::{LastingId, LastingPart, OperatorState};

const NAME: &str = "WindowAggregate";

/// Saved parts an open slice keeps before a barrier merges them into one: a slice
/// open for many checkpoints (a long TUMBLE) would otherwise hold a key once per
/// checkpoint. Merging rewrites the slice once per this many checkpoints.
const MAX_SAVED_PARTS: usize = 4;

fn df(e: datafusion::error::DataFusionError) -> EngineError {
    EngineError::execution(NAME, e)
}

/// Group ids for one slice: interned key values, or the single group of a keyless aggregate.
pub(crate) enum Groups {
    Keyed(Box<dyn GroupValues>),
    Single { present: bool },
}

impl Groups {
    pub(crate) fn new(key_schema: &SchemaRef) -> Result<Self> {
        if key_schema.fields().is_empty() {
            Ok(Groups::Single { present: false })
        } else {
            Ok(Groups::Keyed(new_group_values(Arc::clone(key_schema), &GroupOrdering::None).map_err(df)?))
        }
    }

    pub(crate) fn intern(&mut self, keys: &[ArrayRef], rows: usize, ids: &mut Vec<usize>) -> Result<()> {
        match self {
            Groups::Keyed(values) => values.intern(keys, ids).map_err(df),
            Groups::Single { present } => {
                *present = true;
                ids.clear();
                ids.resize(rows, 0);
                Ok(())
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Groups::Keyed(values) => values.len(),
            Groups::Single { present } => usize::from(*present),
        }
    }

    pub(crate) fn emit(&mut self) -> Result<Vec<ArrayRef>> {
        match self {
            Groups::Keyed(values) => values.emit(EmitTo::All).map_err(df),
            Groups::Single { present } => {
                *present = false;
                Ok(Vec::new())
            }
        }
    }
}

/// Creates the vectorised accumulator of an aggregate, adapting row-based ones.
pub(crate) fn new_accumulator(aggregate: &Arc<AggregateFunctionExpr>) -> Result<Box<dyn GroupsAccumulator>> {
    if aggregate.groups_accumulator_supported() {
        aggregate.create_groups_accumulator().map_err(df)
    } else {
        let aggregate = Arc::clone(aggregate);
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || aggregate.create_accumulator())))
    }
}

/// Aggregation state of rows that are still arriving.
pub(crate) struct GroupState {
    pub(crate) groups: Groups,
    pub(crate) accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

impl GroupState {
    pub(crate) fn new(key_schema: &SchemaRef, aggregates: &[Arc<AggregateFunctionExpr>]) -> Result<Self> {
        Ok(GroupState { groups: Groups::new(key_schema)?, accumulators: aggregates.iter().map(new_accumulator).collect::<Result<_>>()? })
    }

    /// Adds rows: `keys` and per-aggregate `args`/`filters`, all of `rows` length.
    pub(crate) fn update(
        &mut self,
        keys: &[ArrayRef],
        args: &[Vec<ArrayRef>],
        filters: &[Option<datafusion::arrow::array::BooleanArray>],
        rows: usize,
        ids: &mut Vec<usize>,
    ) -> Result<()> {
        self.groups.intern(keys, rows, ids)?;
        let total = self.groups.len();
        for ((accumulator, values), filter) in self.accumulators.iter_mut().zip(args).zip(filters) {
            accumulator.update_batch(values, ids, filter.as_ref(), total).map_err(df)?;
        }
        Ok(())
    }

    /// Adds the rows of `inputs` (a batch of `rows` rows) at `indices`, or (`None`) all of them.
    pub(crate) fn update_rows(&mut self, inputs: &Inputs, rows: usize, indices: Option<Vec<u32>>, ids: &mut Vec<usize>) -> Result<()> {
        match indices {
            None => self.update(&inputs.keys, &inputs.args, &inputs.filters, rows, ids),
            Some(indices) => {
                let count = indices.len();
                let part = inputs.take(&UInt32Array::from(indices))?;
                self.update(&part.keys, &part.args, &part.filters, count, ids)
            }
        }
    }

    /// Adds intermediate states (as produced by [`GroupState::freeze`]).
    pub(crate) fn merge(&mut self, frozen: &FrozenState, ids: &mut Vec<usize>) -> Result<()> {
        self.groups.intern(&frozen.keys, frozen.rows, ids)?;
        let total = self.groups.len();
        for (accumulator, states) in self.accumulators.iter_mut().zip(&frozen.states) {
            accumulator.merge_batch(states, ids, total).map_err(df)?;
        }
        Ok(())
    }

    /// Turns the state into arrays, leaving it empty.
    pub(crate) fn freeze(&mut self) -> Result<FrozenState> {
        let rows = self.groups.len();
        let keys = self.groups.emit()?;
        let states = self.accumulators.iter_mut().map(|a| a.state(EmitTo::All).map_err(df)).collect::<Result<_>>()?;
        Ok(FrozenState { keys, states, rows, id: LastingId::fresh() })
    }

    /// Bytes this state holds in memory: interned keys and accumulators (both O(1) to ask).
    pub(crate) fn size_bytes(&self) -> usize {
        let keys = match &self.groups {
            Groups::Keyed(values) => values.size(),
            Groups::Single { .. } => 0,
        };
        keys + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Final values: (key columns, one array per aggregate).
    pub(crate) fn finish(&mut self) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>, usize)> {
        let rows = self.groups.len();
        let keys = self.groups.emit()?;
        let values = self.accumulators.iter_mut().map(|a| a.evaluate(EmitTo::All).map_err(df)).collect::<Result<_>>()?;
        Ok((keys, values, rows))
    }
}

/// A slice's intermediate state, kept until every window that contains it has fired.
pub(crate) struct FrozenState {
    pub(crate) keys: Vec<ArrayRef>,
    pub(crate) states: Vec<Vec<ArrayRef>>,
    pub(crate) rows: usize,
    /// Its name in checkpoints, which store it once.
    id: LastingId,
}

impl FrozenState {
    /// The state whose columns are `columns`, as [`FrozenState::columns`] laid them
    /// out: the keys, then each aggregate's state columns.
    pub(crate) fn from_columns(columns: &[ArrayRef], rows: usize, key_count: usize, aggregates: &[Arc<AggregateFunctionExpr>]) -> Result<Self> {
        let keys = columns.get(..key_count).ok_or_else(|| EngineError::State("aggregate state does not match the query".into()))?.to_vec();
        let mut states = Vec::with_capacity(aggregates.len());
        let mut next = key_count;
        for aggregate in aggregates {
            let end = next + aggregate.state_fields().map_err(df)?.len();
            let state = columns.get(next..end).ok_or_else(|| EngineError::State("aggregate state does not match the query".into()))?;
            states.push(state.to_vec());
            next = end;
        }
        Ok(FrozenState { keys, states, rows, id: LastingId::fresh() })
    }

    /// The keys, then each aggregate's state columns: how checkpoints and a
    /// cluster's shuffle carry it.
    pub(crate) fn columns(&self) -> impl Iterator<Item = &ArrayRef> {
        self.keys.iter().chain(self.states.iter().flatten())
    }

    /// Bytes its arrays hold in memory.
    fn size_bytes(&self) -> usize {
        self.columns().map(|a| a.get_array_memory_size()).sum()
    }
}

/// A slice still taking rows: what it took before the last checkpoint, frozen
/// into saved parts (stored once each), and what it took since, live.
struct OpenSlice {
    saved: Vec<FrozenState>,
    live: GroupState,
}

impl OpenSlice {
    /// Everything the slice took, in one live state (to be finished).
    fn into_merged(self, ids: &mut Vec<usize>) -> Result<GroupState> {
        let mut live = self.live;
        for part in &self.saved {
            live.merge(part, ids)?;
        }
        Ok(live)
    }

    /// Everything the slice took, frozen: its saved parts and its live groups.
    fn into_frozen(mut self) -> Result<Vec<FrozenState>> {
        if self.live.groups.len() > 0 {
            self.saved.push(self.live.freeze()?);
        }
        Ok(self.saved)
    }

    fn size_bytes(&self) -> usize {
        self.live.size_bytes() + self.saved.iter().map(FrozenState::size_bytes).sum::<usize>()
    }

    fn groups(&self) -> usize {
        self.live.groups.len() + self.saved.iter().map(|part| part.rows).sum::<usize>()
    }
}

/// Assembles output rows in the node's column order: window bounds, keys, aggregates.
pub(crate) fn output_batch(node: &WindowAggregateNode, bounds: &WindowBounds, keys: Vec<ArrayRef>, values: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let times = |pick: &dyn Fn(i64, i64) -> i64| -> ArrayRef {
        Arc::new(match bounds {
            WindowBounds::Same(start, end) => TimestampMillisecondArray::from(vec![pick(*start, *end); rows]),
            WindowBounds::PerRow { starts, ends } => starts.iter().zip(ends).map(|(s, e)| pick(*s, *e)).collect::<Vec<_>>().into(),
        })
    };
    let mut keys = keys.into_iter();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(node.schema.fields().len());
    for g in &node.group {
        columns.push(match g {
            GroupColumn::WindowStart => times(&|start, _| start),
            GroupColumn::WindowEnd => times(&|_, end| end),
            GroupColumn::WindowTime => times(&|_, end| end - 1),
            GroupColumn::Key(_) => keys.next().ok_or_else(|| EngineError::Internal("missing key column".into()))?,
        });
    }
    columns.extend(values);
    let columns = columns
        .into_iter()
        .zip(node.schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c) } else { cast(&c, f.data_type()).map_err(|e| arrow_error(NAME, e)) })
        .collect::<Result<Vec<_>>>()?;
    make_batch(&node.schema, columns, rows, NAME)
}

/// The window bounds of an output batch's rows: one window for all (TUMBLE, HOP,
/// CUMULATE close windows one at a time) or one per row (sessions close many at once).
pub(crate) enum WindowBounds {
    Same(i64, i64),
    PerRow { starts: Vec<i64>, ends: Vec<i64> },
}

/// The arrays one batch contributes: keys, aggregate arguments and filters.
pub(crate) struct Inputs {
    pub(crate) keys: Vec<ArrayRef>,
    pub(crate) args: Vec<Vec<ArrayRef>>,
    pub(crate) filters: Vec<Option<datafusion::arrow::array::BooleanArray>>,
}

impl Inputs {
    pub(crate) fn evaluate(
        batch: &RecordBatch,
        key_exprs: &[Arc<dyn PhysicalExpr>],
        aggregates: &[Arc<AggregateFunctionExpr>],
        filters: &[Option<Arc<dyn PhysicalExpr>>],
    ) -> Result<Self> {
        let keys = key_exprs.iter().map(|e| evaluate(e, batch, NAME)).collect::<Result<_>>()?;
        let args = aggregates.iter().map(|a| a.expressions().iter().map(|e| evaluate(e, batch, NAME)).collect::<Result<Vec<_>>>()).collect::<Result<_>>()?;
        let filters = filters.iter().map(|f| f.as_ref().map(|f| evaluate_predicate(f, batch, NAME)).transpose()).collect::<Result<_>>()?;
        Ok(Inputs { keys, args, filters })
    }

    /// Bytes the arrays hold in memory.
    pub(crate) fn size_bytes(&self) -> usize {
        let arrays = self.keys.iter().chain(self.args.iter().flatten()).map(|a| a.get_array_memory_size()).sum::<usize>();
        arrays + self.filters.iter().flatten().map(|f| f.get_array_memory_size()).sum::<usize>()
    }

    /// How many rows the arrays hold (0 with no keys and no aggregate arguments).
    pub(crate) fn rows(&self) -> usize {
        self.keys.iter().chain(self.args.iter().flatten()).next().map_or(0, |a| a.len())
    }

    /// The subset of rows at `indices`.
    pub(crate) fn take(&self, indices: &UInt32Array) -> Result<Self> {
        let t = |a: &ArrayRef| take(a, indices, None).map_err(|e| arrow_error(NAME, e));
        Ok(Inputs {
            keys: self.keys.iter().map(t).collect::<Result<_>>()?,
            args: self.args.iter().map(|v| v.iter().map(t).collect::<Result<Vec<_>>>()).collect::<Result<_>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| {
                    f.as_ref()
                        .map(|f| {
                            take(f, indices, None).map_err(|e| arrow_error(NAME, e)).and_then(|a| {
                                a.as_any()
                                    .downcast_ref::<datafusion::arrow::array::BooleanArray>()
                                    .cloned()
                                    .ok_or_else(|| EngineError::Internal("aggregate filter is not boolean".into()))
                            })
                        })
                        .transpose()
                })
                .collect::<Result<_>>()?,
        })
    }
}

/// The schema of the key columns, for `GroupValues`.
pub(crate) fn key_schema(node: &WindowAggregateNode) -> Result<SchemaRef> {
    let input = node.input.schema();
    let fields = node
        .key_exprs()
        .iter()
        .enumerate()
        .map(|(i, e)| Ok(Field::new(format!("k{i}"), e.data_type(&input).map_err(df)?, true)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// How long the node's slices are (`i64::MAX`: one slice for ever, without a window).
pub(crate) fn slice_ms(node: &WindowAggregateNode) -> Result<i64> {
    match node.kind {
        AggregateKind::Windowed(window) => window.slice_ms().ok_or_else(|| EngineError::Internal("session windows use SessionAggregateOperator".into())),
        AggregateKind::Session { .. } => Err(EngineError::Internal("session windows use SessionAggregateOperator".into())),
        AggregateKind::WholeInput | AggregateKind::Updating { .. } | AggregateKind::Retracting => Ok(i64::MAX),
    }
}

/// The slice start of each row of the node's input (`None`: no window, one slice).
pub(crate) fn slice_starts(node: &WindowAggregateNode, slice_ms: i64, batch: &RecordBatch) -> Result<Option<Vec<i64>>> {
    let Some(column) = node.slice_column else { return Ok(None) };
    let array = cast(batch.column(column.index), &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(|e| arrow_error(NAME, e))?;
    let array = array.as_any().downcast_ref::<TimestampMillisecondArray>().cloned().ok_or_else(|| EngineError::Internal("slice column".into()))?;
    let shift = if column.is_end { slice_ms } else { 0 };
    Ok(Some(array.values().iter().map(|v| v - shift).collect()))
}

/// The slice starts of partial aggregates: their first column.
fn partial_slice_starts(batch: &RecordBatch) -> Result<Vec<i64>> {
    let column = batch.columns().first().and_then(|c| c.as_any().downcast_ref::<Int64Array>());
    Ok(column.ok_or_else(|| EngineError::Internal("partial aggregates without their slice column".into()))?.values().to_vec())
}

/// Rows grouped by slice: each slice start with the rows in it (`None`: all rows).
pub(crate) fn slice_parts(starts: &[i64]) -> Vec<(i64, Option<Vec<u32>>)> {
    let Some(first) = starts.first() else { return Vec::new() };
    if starts.iter().all(|s| s == first) {
        return vec![(*first, None)];
    }
    let mut by_slice: HashMap<i64, Vec<u32>> = HashMap::new();
    for (row, start) in starts.iter().enumerate() {
        by_slice.entry(*start).or_default().push(row as u32);
    }
    by_slice.into_iter().map(|(s, rows)| (s, Some(rows))).collect()
}

/// Updating mode: the groups `ids` (of a state holding `groups` groups) took rows.
fn mark_touched(touched: &mut Vec<bool>, groups: usize, ids: &[usize]) {
    touched.resize(groups, false);
    for &id in ids {
        touched[id] = true;
    }
}

/// Windowed aggregation over slices; see the module docs.
pub struct WindowAggregateOperator {
    node: WindowAggregateNode,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    slice_ms: i64,
    /// Slices still receiving rows, by slice start.
    open: BTreeMap<i64, OpenSlice>,
    /// Slices past the watermark whose windows have not all fired (HOP, CUMULATE):
    /// each slice's parts, merged when a window fires.
    frozen: BTreeMap<i64, Vec<FrozenState>>,
    /// Bytes `frozen` holds, kept as slices come and go so asking costs nothing.
    frozen_bytes: usize,
    /// Groups (rows) `frozen` holds, kept alike.
    frozen_groups: usize,
    /// Every window ending at or before this has been emitted.
    fired_until: i64,
    watermark: EventTime,
    metrics: Arc<PipelineMetrics>,
    ids: Vec<usize>,
    /// Updating mode: which groups (by id) took rows since the last emission.
    touched: Vec<bool>,
    /// Updating mode with `retract_output`: the row each group emitted last.
    emitted: Option<EmittedRows>,
}

impl WindowAggregateOperator {
    /// An aggregate for `node` (not a SESSION window: see `session_aggregate`).
    pub fn new(node: WindowAggregateNode, metrics: Arc<PipelineMetrics>) -> Result<Self> {
        let slice_ms = slice_ms(&node)?;
        let key_schema = key_schema(&node)?;
        let emitted = if node.kind == (AggregateKind::Updating { output: UpdateOutput::Retractions }) {
            Some(EmittedRows::new(&node.schema, key_schema.fields().iter().map(|f| f.data_type().clone()).collect())?)
        } else {
            None
        };
        Ok(WindowAggregateOperator {
            key_exprs: node.key_exprs(),
            key_schema,
            node,
            slice_ms,
            open: BTreeMap::new(),
            frozen: BTreeMap::new(),
            frozen_bytes: 0,
            frozen_groups: 0,
            fired_until: i64::MIN,
            watermark: EventTime::MIN,
            metrics,
            ids: Vec::new(),
            touched: Vec::new(),
            emitted,
        })
    }

    /// Updating mode: emits the current row of every touched group. Accumulators
    /// cannot be read without being emptied, so the state is frozen, merged back,
    /// and the touched groups' part merged into a fresh state that is finished.
    fn emit_updates(&mut self, out: &mut Emitter) -> Result<()> {
        if !self.touched.iter().any(|t| *t) {
            return Ok(());
        }
        let Some(state) = self.open.get_mut(&0).map(|slice| &mut slice.live) else { return Ok(()) };
        let frozen = state.freeze()?;
        let mut ids = std::mem::take(&mut self.ids);
        state.merge(&frozen, &mut ids)?;
        let touched: Vec<u32> = (0..frozen.rows as u32).filter(|&g| self.touched.get(g as usize).copied().unwrap_or(false)).collect();
        self.touched.iter_mut().for_each(|t| *t = false);
        let indices = UInt32Array::from(touched);
        let t = |a: &ArrayRef| take(a, &indices, None).map_err(|e| arrow_error(NAME, e));
        let part = FrozenState {
            keys: frozen.keys.iter().map(t).collect::<Result<_>>()?,
            states: frozen.states.iter().map(|s| s.iter().map(t).collect::<Result<Vec<_>>>()).collect::<Result<_>>()?,
            rows: indices.len(),
            id: LastingId::fresh(),
        };
        let mut changed = GroupState::new(&self.key_schema, &self.node.aggregates)?;
        changed.merge(&part, &mut ids)?;
        self.ids = ids;
        match self.emitted.as_mut() {
            None => self.emit_window(&mut changed, (0, 0), out),
            Some(emitted) => {
                let (keys, values, rows) = changed.finish()?;
                if rows > 0 {
                    emitted.emit(Some(output_batch(&self.node, &WindowBounds::Same(0, 0), keys, values, rows)?), [], out)?;
                }
                Ok(())
            }
        }
    }

    /// The live state of the slice starting at `start`, created on its first row.
    fn slice_state<'a>(
        open: &'a mut BTreeMap<i64, OpenSlice>,
        start: i64,
        key_schema: &SchemaRef,
        aggregates: &[Arc<AggregateFunctionExpr>],
    ) -> Result<&'a mut GroupState> {
        match open.entry(start) {
            std::collections::btree_map::Entry::Occupied(e) => Ok(&mut e.into_mut().live),
            std::collections::btree_map::Entry::Vacant(e) => {
                Ok(&mut e.insert(OpenSlice { saved: Vec::new(), live: GroupState::new(key_schema, aggregates)? }).live)
            }
        }
    }

    fn emit_window(&mut self, state: &mut GroupState, bounds: (i64, i64), out: &mut Emitter) -> Result<()> {
        let (keys, values, rows) = state.finish()?;
        if rows > 0 {
            out.inserts(output_batch(&self.node, &WindowBounds::Same(bounds.0, bounds.1), keys, values, rows)?);
        }
        Ok(())
    }

    fn frozen_to_batch(frozen: &FrozenState) -> Result<RecordBatch> {
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for (i, k) in frozen.keys.iter().enumerate() {
            fields.push(Field::new(format!("k{i}"), k.data_type().clone(), true));
        }
        for (a, states) in frozen.states.iter().enumerate() {
            for (i, s) in states.iter().enumerate() {
                fields.push(Field::new(format!("a{a}_{i}"), s.data_type().clone(), true));
            }
        }
        columns.extend(frozen.columns().cloned());
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(frozen.rows));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options).map_err(|e| EngineError::State(e.to_string()))
    }

    /// A frozen state as a lasting part of a snapshot.
    fn lasting_part(frozen: &FrozenState) -> Result<LastingPart> {
        Ok(LastingPart { id: frozen.id, batch: Self::frozen_to_batch(frozen)? })
    }

    fn batch_to_frozen(&self, batch: &RecordBatch) -> Result<FrozenState> {
        FrozenState::from_columns(batch.columns(), batch.num_rows(), self.key_exprs.len(), &self.node.aggregates)
    }

    /// Merges partial aggregates ([`AggregateInput::SlicePartials`]) into their slices.
    fn merge_partials(&mut self, batch: &RecordBatch) -> Result<()> {
        let starts = partial_slice_starts(batch)?;
        let watermark = self.watermark.0;
        for (start, indices) in slice_parts(&starts) {
            let part = match indices {
                None => batch.clone(),
                Some(indices) => take_record_batch(batch, &UInt32Array::from(indices)).map_err(|e| arrow_error(NAME, e))?,
            };
            if start.saturating_add(self.slice_ms) <= watermark {
                // The shuffle writes a partial before the marker that passes its slice.
                PipelineMetrics::add(&self.metrics.late_rows, part.num_rows());
                continue;
            }
            let frozen = FrozenState::from_columns(&part.columns()[1..], part.num_rows(), self.key_exprs.len(), &self.node.aggregates)?;
            let state = Self::slice_state(&mut self.open, start, &self.key_schema, &self.node.aggregates)?;
            state.merge(&frozen, &mut self.ids)?;
            if self.node.kind.is_updating() {
                mark_touched(&mut self.touched, state.groups.len(), &self.ids);
            }
        }
        Ok(())
    }
}

impl ClosedByWatermark for WindowAggregateOperator {
    fn watermark_mut(&mut self) -> &mut EventTime {
        &mut self.watermark
    }

    fn fire(&mut self, watermark: i64, out: &mut Emitter) -> Result<()> {
        let AggregateKind::Windowed(window) = self.node.kind else { return Ok(()) };
        // Slices the watermark has passed can take no more rows.
        let closing: Vec<i64> = self.open.range(..watermark.saturating_sub(self.slice_ms).saturating_add(1)).map(|(s, _)| *s).collect();
        if let WindowKind::Tumble { .. } = window {
            for start in closing {
                if let Some(slice) = self.open.remove(&start) {
                    let mut state = slice.into_merged(&mut self.ids)?;
                    self.emit_window(&mut state, (start, start + self.slice_ms), out)?;
                }
            }
            return Ok(());
        }
        for start in closing {
            if let Some(slice) = self.open.remove(&start) {
                let parts = slice.into_frozen()?;
                self.frozen_bytes += parts.iter().map(FrozenState::size_bytes).sum::<usize>();
                self.frozen_groups += parts.iter().map(|part| part.rows).sum::<usize>();
                self.frozen.insert(start, parts);
            }
        }
        let mut due: BTreeSet<(i64, i64)> = BTreeSet::new();
        for start in self.frozen.keys() {
            for (ws, we) in window.windows_of_slice(*start) {
                if we <= watermark && we > self.fired_until {
                    due.insert((we, ws));
                }
            }
        }
        for (we, ws) in due {
            let mut state = GroupState::new(&self.key_schema, &self.node.aggregates)?;
            let mut ids = std::mem::take(&mut self.ids);
            for frozen in self.frozen.range(ws..we).flat_map(|(_, parts)| parts) {
                state.merge(frozen, &mut ids)?;
            }
            self.ids = ids;
            self.emit_window(&mut state, (ws, we), out)?;
        }
        self.fired_until = self.fired_until.max(watermark);
        // Drop slices whose last window has fired.
        let fired_until = self.fired_until;
        let (mut dropped_bytes, mut dropped_groups) = (0, 0);
        self.frozen.retain(|start, parts| {
            let keep = window.windows_of_slice(*start).last().is_some_and(|(_, end)| *end > fired_until);
            if !keep {
                dropped_bytes += parts.iter().map(FrozenState::size_bytes).sum::<usize>();
                dropped_groups += parts.iter().map(|part| part.rows).sum::<usize>();
            }
            keep
        });
        self.frozen_bytes = self.frozen_bytes.saturating_sub(dropped_bytes);
        self.frozen_groups = self.frozen_groups.saturating_sub(dropped_groups);
        Ok(())
    }
}

impl Operator for WindowAggregateOperator {
    fn name(&self) -> &str {
        NAME
    }

    fn on_rows(&mut self, rows: ChangeBatch, _out: &mut Emitter) -> Result<()> {
        let batch = rows.into_inserts(NAME)?;
        if self.node.input_rows == AggregateInput::SlicePartials {
            return self.merge_partials(&batch);
        }
        let inputs = Inputs::evaluate(&batch, &self.key_exprs, &self.node.aggregates, &self.node.filters)?;
        let rows = batch.num_rows();
        let Some(starts) = slice_starts(&self.node, self.slice_ms, &batch)? else {
            let state = Self::slice_state(&mut self.open, 0, &self.key_schema, &self.node.aggregates)?;
            state.update(&inputs.keys, &inputs.args, &inputs.filters, rows, &mut self.ids)?;
            if self.node.kind.is_updating() {
                mark_touched(&mut self.touched, state.groups.len(), &self.ids);
            }
            return Ok(());
        };
        let watermark = self.watermark.0;
        for (start, indices) in slice_parts(&starts) {
            let count = indices.as_ref().map_or(rows, Vec::len);
            if start.saturating_add(self.slice_ms) <= watermark {
                // Cannot happen for rows judged at the source; count rather than corrupt a closed window.
                PipelineMetrics::add(&self.metrics.late_rows, count);
                continue;
            }
            let state = Self::slice_state(&mut self.open, start, &self.key_schema, &self.node.aggregates)?;
            state.update_rows(&inputs, rows, indices, &mut self.ids)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        advance_watermark(self, watermark, out)
    }

    fn on_barrier(&mut self, _id: crate::message::CheckpointId, out: &mut Emitter) -> Result<()> {
        if self.node.kind.is_updating() {
            self.emit_updates(out)?;
        }
        Ok(())
    }

    fn on_refresh(&mut self, out: &mut Emitter) -> Result<()> {
        if self.node.kind.is_updating() {
            self.emit_updates(out)?;
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Emitter) -> Result<()> {
        if self.node.kind.is_updating() {
            return self.emit_updates(out);
        }
        if self.node.kind == AggregateKind::WholeInput {
            if let Some(slice) = self.open.remove(&0) {
                let mut state = slice.into_merged(&mut self.ids)?;
                self.emit_window(&mut state, (0, 0), out)?;
            }
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let mut state = OperatorState::default();
        let meta = RecordBatch::try_from_iter([
            ("watermark", Arc::new(Int64Array::from(vec![self.watermark.0])) as ArrayRef),
            ("fired_until", Arc::new(Int64Array::from(vec![self.fired_until])) as ArrayRef),
        ])
        .map_err(|e| EngineError::State(e.to_string()))?;
        state.parts.push(("meta".to_string(), meta));
        let windowed = matches!(self.node.kind, AggregateKind::Windowed(_));
        for (start, slice) in self.open.iter_mut() {
            if !windowed {
                // One slice for ever, whose group ids the updating output tracks:
                // saved whole, and the frozen groups merged back to continue.
                let frozen = slice.live.freeze()?;
                state.parts.push((format!("open:{start}"), Self::frozen_to_batch(&frozen)?));
                slice.live.merge(&frozen, &mut self.ids)?;
                continue;
            }
            if slice.live.groups.len() > 0 {
                let part = slice.live.freeze()?;
                slice.live = GroupState::new(&self.key_schema, &self.node.aggregates)?;
                slice.saved.push(part);
            }
            if slice.saved.len() > MAX_SAVED_PARTS {
                let mut merged = GroupState::new(&self.key_schema, &self.node.aggregates)?;
                for part in &slice.saved {
                    merged.merge(part, &mut self.ids)?;
                }
                slice.saved = vec![merged.freeze()?];
            }
            for part in &slice.saved {
                state.lasting.push((format!("open:{start}"), Self::lasting_part(part)?));
            }
        }
        for (start, parts) in &self.frozen {
            for part in parts {
                state.lasting.push((format!("frozen:{start}"), Self::lasting_part(part)?));
            }
        }
        if let Some(emitted) = &self.emitted {
            state.parts.push(("emitted".to_string(), emitted.snapshot()?));
        }
        Ok(Some(state))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        for (name, batch) in state.parts {
            let bad = || EngineError::State(format!("unexpected part `{name}` in a window aggregate snapshot"));
            if name == "meta" {
                let column = |i: usize| batch.column(i).as_any().downcast_ref::<Int64Array>().map(|a| a.value(0)).ok_or_else(bad);
                self.watermark = EventTime(column(0)?);
                self.fired_until = column(1)?;
                continue;
            }
            if name == "emitted" {
                if let Some(emitted) = self.emitted.as_mut() {
                    emitted.restore(&batch)?;
                }
                continue;
            }
            let (kind, start) = name.split_once(':').ok_or_else(bad)?;
            let start: i64 = start.parse().map_err(|_| bad())?;
            let frozen = self.batch_to_frozen(&batch)?;
            match kind {
                // Another old instance's groups, or another saved part, of the same slice add to it.
                "open" => Self::slice_state(&mut self.open, start, &self.key_schema, &self.node.aggregates)?.merge(&frozen, &mut self.ids)?,
                "frozen" => self.frozen.entry(start).or_default().push(frozen),
                _ => return Err(bad()),
            }
        }
        self.frozen_bytes = self.frozen.values().flatten().map(FrozenState::size_bytes).sum();
        self.frozen_groups = self.frozen.values().flatten().map(|f| f.rows).sum();
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        let emitted = self.emitted.as_ref().map_or(0, EmittedRows::size_bytes);
        self.open.values().map(OpenSlice::size_bytes).sum::<usize>() + self.frozen_bytes + self.touched.capacity() + emitted
    }

    /// Groups held: the distinct keys of each slice still taking rows plus those
    /// of each slice kept for windows yet to fire, so a key in three slices counts
    /// three times (and a key in two saved parts of a slice, twice). For TUMBLE a slice is a window, so this is the open (window,
    /// key) groups; HOP and CUMULATE count (slice, key) groups; a GROUP BY without
    /// a window has one slice: its distinct keys. Falls as windows fire. O(open
    /// slices), as [`Operator::state_bytes`] is: each slice knows its group count.
    fn state_keys(&self) -> usize {
        self.open.values().map(OpenSlice::groups).sum::<usize>() + self.frozen_groups
    }

    /// Slices (`open:*`, `frozen:*`) lead with the group key; `meta` is per instance.
    fn state_key_columns(&self, part: &str) -> usize {
        if part == "meta" {
            0
        } else {
            self.key_exprs.len()
        }
    }
}
