//! `GROUP BY` over a changelog: rows and retractions of earlier rows, as read
//! from a materialized view whose groups update. Every aggregate stays correct
//! when a row is retracted, `MIN`, `MAX` and `COUNT(DISTINCT)` included, which
//! accumulators alone cannot do (a maximum cannot be "un-added").
//!
//! So each group keeps the multiset of its rows' aggregate arguments, as Arrow
//! rows with a count (Flink keeps the same for retractable MIN/MAX). At a
//! checkpoint barrier, and at the end of the input, every group that changed is
//! recomputed from its multiset with DataFusion's accumulators, all changed
//! groups in one vectorised pass, and the change leaves as a retraction of the
//! row emitted before followed by the new row; a group left empty is only
//! retracted, and a group whose row did not change emits nothing. The cost of a
//! recomputation is the group's distinct argument values, not its history.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::plan::{AggregateKind, WindowAggregateNode};
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::Rows;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::PhysicalExpr;

use super::arrow_error;
use super::rows::{bytes, constant, Codec, EmittedRows, RowBytes, RowMap};
use super::window_aggregate::{new_accumulator, output_batch, Inputs, WindowBounds};
use crate::changelog::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::message::CheckpointId;
use crate::operator::{Emitter, Operator};
use crate::state::OperatorState;

const NAME: &str = "RetractAggregate";

fn arrow(e: datafusion::arrow::error::ArrowError) -> EngineError {
    arrow_error(NAME, e)
}

/// Aggregation over a changelog input; see the module docs.
pub struct RetractAggregateOperator {
    node: WindowAggregateNode,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Group keys (a constant column for an aggregate without GROUP BY).
    keys: Codec,
    /// Every aggregate's arguments, then the FILTER flags, side by side (a constant
    /// column when there are none).
    values: Codec,
    /// Each group's argument rows with their multiplicity.
    groups: RowMap<RowMap<i64>>,
    /// The row each group emitted last, to retract exactly what was emitted.
    emitted: EmittedRows,
    /// Groups changed since the last emission; ordered so output is deterministic.
    touched: BTreeSet<RowBytes>,
    /// Retractions of rows this operator never saw (an inconsistent input), counted for the log.
    unmatched: u64,
}

/// A batch of unnamed columns, for snapshots.
fn columns_batch(columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns.iter().enumerate().map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true)).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow)
}

impl RetractAggregateOperator {
    /// An aggregate for `node`, which has no window.
    pub fn new(node: WindowAggregateNode) -> Result<Self> {
        if node.kind != AggregateKind::Retracting {
            return Err(EngineError::Internal("a window aggregate over a changelog input is not supported".into()));
        }
        let input = node.input.schema();
        let df = |e| EngineError::execution(NAME, e);
        let key_exprs = node.key_exprs();
        let key_types: Vec<DataType> = key_exprs.iter().map(|e| e.data_type(&input).map_err(df)).collect::<Result<_>>()?;
        let mut value_types = Vec::new();
        for aggregate in &node.aggregates {
            for e in aggregate.expressions() {
                value_types.push(e.data_type(&input).map_err(df)?);
            }
        }
        value_types.extend(node.filters.iter().flatten().map(|_| DataType::Boolean));
        if value_types.is_empty() {
            value_types.push(DataType::Boolean);
        }
        Ok(RetractAggregateOperator {
            keys: Codec::new(if key_types.is_empty() { vec![DataType::Boolean] } else { key_types.clone() })?,
            values: Codec::new(value_types)?,
            emitted: EmittedRows::new(&node.schema, key_types)?,
            key_exprs,
            node,
            groups: RowMap::default(),
            touched: BTreeSet::new(),
            unmatched: 0,
        })
    }

    /// Key and value rows of a batch's rows, in row order.
    fn encode(&self, batch: &RecordBatch) -> Result<(Rows, Rows)> {
        let rows = batch.num_rows();
        let inputs = Inputs::evaluate(batch, &self.key_exprs, &self.node.aggregates, &self.node.filters)?;
        let keys = if self.key_exprs.is_empty() { vec![constant(rows)] } else { inputs.keys };
        let mut values: Vec<ArrayRef> = inputs.args.into_iter().flatten().collect();
        values.extend(inputs.filters.into_iter().flatten().map(|f| Arc::new(f) as ArrayRef));
        if values.is_empty() {
            values.push(constant(rows));
        }
        Ok((self.keys.encode(&keys)?, self.values.encode(&values)?))
    }

    /// Adds (`delta` = 1) or retracts (`delta` = -1) every row of `batch`.
    fn apply(&mut self, batch: &RecordBatch, delta: i64) -> Result<()> {
        let (keys, values) = self.encode(batch)?;
        for i in 0..batch.num_rows() {
            let (key, value) = (keys.row(i), values.row(i));
            if delta < 0 {
                let Some(group) = self.groups.get_mut(key.as_ref()) else {
                    self.unmatched += 1;
                    continue;
                };
                match group.get_mut(value.as_ref()) {
                    Some(count) if *count > 1 => *count -= 1,
                    Some(_) => {
                        group.remove(value.as_ref());
                    }
                    None => {
                        self.unmatched += 1;
                        continue;
                    }
                }
            } else {
                let group = match self.groups.get_mut(key.as_ref()) {
                    Some(group) => group,
                    None => self.groups.entry(bytes(key)).or_default(),
                };
                match group.get_mut(value.as_ref()) {
                    Some(count) => *count += 1,
                    None => {
                        group.insert(bytes(value), 1);
                    }
                }
            }
            if !self.touched.contains(key.as_ref()) {
                self.touched.insert(bytes(key));
            }
        }
        Ok(())
    }

    /// The current output rows of the groups in `live`, computed from their multisets
    /// in one pass: group i gets id i, and each value row is repeated by its count.
    fn recompute(&self, live: &[&RowBytes]) -> Result<RecordBatch> {
        let mut distinct: Vec<&RowBytes> = Vec::new();
        let mut repeat: Vec<u32> = Vec::new();
        let mut ids: Vec<usize> = Vec::new();
        for (id, key) in live.iter().enumerate() {
            for (value, &count) in &self.groups[*key] {
                let count = count.max(0) as usize;
                repeat.extend(std::iter::repeat_n(distinct.len() as u32, count));
                ids.extend(std::iter::repeat_n(id, count));
                distinct.push(value);
            }
        }
        let repeat = UInt32Array::from(repeat);
        let mut columns = self.values.decode(distinct)?.into_iter().map(|c| take(&c, &repeat, None).map_err(arrow)).collect::<Result<Vec<_>>>()?.into_iter();
        let mut args: Vec<Vec<ArrayRef>> = self.node.aggregates.iter().map(|a| columns.by_ref().take(a.expressions().len()).collect()).collect();
        let df = |e| EngineError::execution(NAME, e);
        let mut values = Vec::with_capacity(args.len());
        for (i, aggregate) in self.node.aggregates.iter().enumerate() {
            let filter = match self.node.filters.get(i) {
                Some(Some(_)) => columns.next().and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned()),
                _ => None,
            };
            let mut accumulator = new_accumulator(aggregate)?;
            accumulator.update_batch(&std::mem::take(&mut args[i]), &ids, filter.as_ref(), live.len()).map_err(df)?;
            values.push(accumulator.evaluate(EmitTo::All).map_err(df)?);
        }
        let keys = if self.key_exprs.is_empty() { Vec::new() } else { self.keys.decode(live.iter().copied())? };
        output_batch(&self.node, &WindowBounds::Same(0, 0), keys, values, live.len())
    }

    /// Recomputes every touched group and emits retractions of old rows, then new
    /// rows; a group left without rows is only retracted.
    fn emit_changes(&mut self, out: &mut Emitter) -> Result<()> {
        if self.unmatched > 0 {
            tracing::warn!("{NAME}: ignored {} retractions of rows that were never added", self.unmatched);
            self.unmatched = 0;
        }
        let touched = std::mem::take(&mut self.touched);
        let (live, gone): (Vec<&RowBytes>, Vec<&RowBytes>) = touched.iter().partition(|k| self.groups.get(*k).is_some_and(|g| !g.is_empty()));
        let current = if live.is_empty() { None } else { Some(self.recompute(&live)?) };
        for key in &gone {
            self.groups.remove(*key);
        }
        self.emitted.emit(current, gone.into_iter().cloned(), out)
    }
}

impl Operator for RetractAggregateOperator {
    fn name(&self) -> &str {
        NAME
    }

    /// Inserts and `+U`s add their rows to their groups; `-U`s and `-D`s take them out.
    fn on_rows(&mut self, rows: ChangeBatch, _out: &mut Emitter) -> Result<()> {
        for (kind, run) in rows.runs() {
            self.apply(&run, if kind.is_retraction() { -1 } else { 1 })?;
        }
        Ok(())
    }

    fn on_barrier(&mut self, _id: CheckpointId, out: &mut Emitter) -> Result<()> {
        self.emit_changes(out)
    }

    fn on_refresh(&mut self, out: &mut Emitter) -> Result<()> {
        self.emit_changes(out)
    }

    fn on_end(&mut self, out: &mut Emitter) -> Result<()> {
        self.emit_changes(out)
    }

    /// Two parts, keys first in each: `values` (key, value columns, count) and
    /// `emitted` (output rows, which lead with the key). Called right after a
    /// barrier emitted every change.
    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let (mut keys, mut values, mut counts) = (Vec::new(), Vec::new(), Vec::new());
        for (key, group) in &self.groups {
            for (value, &count) in group {
                keys.push(key);
                values.push(value);
                counts.push(count);
            }
        }
        let mut columns = self.keys.decode(keys)?;
        columns.extend(self.values.decode(values)?);
        columns.push(Arc::new(Int64Array::from(counts)));
        Ok(Some(OperatorState::new(vec![("values".into(), columns_batch(columns)?), ("emitted".into(), self.emitted.snapshot()?)])))
    }

    /// Only the rows emitted last are counted; the groups' argument rows are not
    /// measured yet (see docs/SQL.md, State and memory).
    fn state_bytes(&self) -> usize {
        self.emitted.size_bytes()
    }

    /// Groups held: each group with rows, plus a group whose last row was taken
    /// back since the last emission (dropped when that emission retracts its row).
    fn state_keys(&self) -> usize {
        self.groups.len()
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        let key_width = self.key_exprs.len().max(1);
        let malformed = || EngineError::State(format!("{NAME}: the snapshot does not match this query's columns"));
        for (name, batch) in state.parts {
            match name.as_str() {
                "values" => {
                    let columns = batch.columns();
                    if columns.len() < key_width {
                        return Err(malformed());
                    }
                    let keys = self.keys.encode(&columns[..key_width])?;
                    let (counts, values) = columns[key_width..].split_last().ok_or_else(malformed)?;
                    let counts = counts.as_any().downcast_ref::<Int64Array>().ok_or_else(malformed)?;
                    let values = self.values.encode(values)?;
                    for i in 0..batch.num_rows() {
                        self.groups.entry(bytes(keys.row(i))).or_default().insert(bytes(values.row(i)), counts.value(i));
                    }
                }
                "emitted" => self.emitted.restore(&batch)?,
                other => return Err(EngineError::State(format!("{NAME}: unknown snapshot part `{other}`"))),
            }
        }
        Ok(())
    }

    /// Both parts lead with the group key (a constant without GROUP BY, which runs one instance).
    fn state_key_columns(&self, _part: &str) -> usize {
        self.key_exprs.len()
    }
}
