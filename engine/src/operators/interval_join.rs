//! The event-time interval join (see [`crate::plan::JoinNode`]): Flink's
//! `IntervalJoin`. Each side keeps its rows by key until the watermark passes the
//! last time a partner could arrive ([`TimeBounds::last_chance`]); a new row probes
//! the other side's rows with its key, and each candidate pair that satisfies the
//! whole `ON` condition (evaluated vectorised on the pairs) leaves at once.
//!
//! Outer joins emit a row that never met a partner, padded with NULLs, when it
//! leaves state (or at once, if it arrives too late to wait for one). The output
//! watermark trails the input's by the larger time bound, as Flink's does, so a
//! window over the join's output does not see its rows as late.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{cast, interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::JoinSide as FilterSide;

use super::rows::{bytes, Codec, RowBytes};
use super::{arrow_error, evaluate, evaluate_predicate};
use crate::changelog::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::operator::{Emitter, Operator};
use crate::plan::{JoinNode, JoinSide, JoinType};
use crate::state::OperatorState;

const NAME: &str = "IntervalJoin";

fn arrow(e: datafusion::arrow::error::ArrowError) -> EngineError {
    arrow_error(NAME, e)
}

/// A row waiting in state for partners.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    batch: u64,
    row: u32,
    time: i64,
    matched: Matched,
}

/// Whether a waiting row has met a partner yet: an outer join emits the ones that never did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matched {
    Yes,
    No,
}

/// One side's rows in state. Rows stay in the batches they arrived in (shared,
/// not copied); a batch is dropped when its last waiting row leaves.
struct SideState {
    batches: HashMap<u64, (RecordBatch, usize)>,
    next_batch: u64,
    by_key: HashMap<RowBytes, Vec<Waiting>>,
    /// Keys to look at when the watermark passes a time, by that time.
    expiry: BTreeMap<i64, Vec<RowBytes>>,
    bytes: usize,
}

impl SideState {
    fn new() -> Self {
        SideState { batches: HashMap::new(), next_batch: 0, by_key: HashMap::new(), expiry: BTreeMap::new(), bytes: 0 }
    }

    fn add_batch(&mut self, batch: &RecordBatch, rows: usize) -> u64 {
        let id = self.next_batch;
        self.next_batch += 1;
        self.bytes += batch.get_array_memory_size();
        self.batches.insert(id, (batch.clone(), rows));
        id
    }

    /// Puts a row of a stored batch in waiting under `key`, until the watermark passes `last_chance`.
    fn wait(&mut self, key: RowBytes, row: Waiting, last_chance: i64) {
        self.expiry.entry(last_chance).or_default().push(key.clone());
        self.by_key.entry(key).or_default().push(row);
    }

    fn release(&mut self, batch: u64) {
        if let Some((stored, live)) = self.batches.get_mut(&batch) {
            *live -= 1;
            if *live == 0 {
                self.bytes = self.bytes.saturating_sub(stored.get_array_memory_size());
                self.batches.remove(&batch);
            }
        }
    }

    /// The stored batches by id, and the `(batch index, row)` pairs that pick `rows` out of them.
    fn picks(&self, rows: &[(u64, u32)]) -> (Vec<&RecordBatch>, Vec<(usize, usize)>) {
        let mut order: HashMap<u64, usize> = HashMap::new();
        let mut batches = Vec::new();
        let picks = rows
            .iter()
            .map(|(batch, row)| {
                let index = *order.entry(*batch).or_insert_with(|| {
                    batches.push(&self.batches[batch].0);
                    batches.len() - 1
                });
                (index, *row as usize)
            })
            .collect();
        (batches, picks)
    }
}

/// Rows of one side picked for output: the incoming batch's rows by index, or
/// stored ones (the batches they are in, and which row of which).
enum Picked<'a> {
    Incoming(&'a RecordBatch, &'a UInt32Array),
    Stored { batches: Vec<&'a RecordBatch>, picks: Vec<(usize, usize)> },
    Absent(usize),
}

impl<'a> Picked<'a> {
    /// Stored rows `rows` of `state`, located once for all the columns taken from them.
    fn stored(state: &'a SideState, rows: &[(u64, u32)]) -> Self {
        let (batches, picks) = state.picks(rows);
        Picked::Stored { batches, picks }
    }

    fn column(&self, schema: &SchemaRef, index: usize) -> Result<ArrayRef> {
        match self {
            Picked::Incoming(batch, rows) => take(batch.column(index), rows, None).map_err(arrow),
            Picked::Stored { batches, picks } => {
                if picks.is_empty() {
                    return Ok(new_null_array(schema.field(index).data_type(), 0));
                }
                let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(index).as_ref()).collect();
                interleave(&arrays, picks).map_err(arrow)
            }
            Picked::Absent(rows) => Ok(new_null_array(schema.field(index).data_type(), *rows)),
        }
    }
}

/// The interval join operator; see the module docs.
pub struct IntervalJoinOperator {
    node: JoinNode,
    schemas: [SchemaRef; 2],
    keys: Codec,
    key_types: Vec<DataType>,
    sides: [SideState; 2],
    watermark: EventTime,
    emitted_watermark: EventTime,
}

impl IntervalJoinOperator {
    /// A join for `node`.
    pub fn new(node: JoinNode) -> Result<Self> {
        let schemas = [node.left.schema(), node.right.schema()];
        let key_types = node.left_keys.iter().map(|k| k.data_type(&schemas[0]).map_err(|e| EngineError::execution(NAME, e))).collect::<Result<Vec<_>>>()?;
        let keys = Codec::new(if key_types.is_empty() { vec![DataType::Boolean] } else { key_types.clone() })?;
        Ok(IntervalJoinOperator {
            node,
            schemas,
            keys,
            key_types,
            sides: [SideState::new(), SideState::new()],
            watermark: EventTime::MIN,
            emitted_watermark: EventTime::MIN,
        })
    }

    fn time_column(&self, side: JoinSide) -> usize {
        match side {
            JoinSide::Left => self.node.bounds.left_time,
            JoinSide::Right => self.node.bounds.right_time,
        }
    }

    /// Each row's key, encoded the same for both sides; `None` where a key is NULL
    /// (which equals nothing, as in SQL).
    fn key_rows(&self, side: JoinSide, batch: &RecordBatch) -> Result<Vec<Option<RowBytes>>> {
        let rows = batch.num_rows();
        if self.key_types.is_empty() {
            return Ok(vec![Some(Box::from(&[][..])); rows]);
        }
        let mut arrays = Vec::with_capacity(self.key_types.len());
        for (expr, data_type) in self.node.keys(side).iter().zip(&self.key_types) {
            let array = evaluate(expr, batch, NAME)?;
            arrays.push(if array.data_type() == data_type { array } else { cast(&array, data_type).map_err(arrow)? });
        }
        let encoded = self.keys.encode(&arrays)?;
        Ok((0..rows).map(|i| arrays.iter().all(|a| a.is_valid(i)).then(|| bytes(encoded.row(i)))).collect())
    }

    fn times(&self, side: JoinSide, batch: &RecordBatch) -> Result<Vec<Option<i64>>> {
        let column = batch.column(self.time_column(side));
        let millis = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(arrow)?;
        Ok(millis.as_primitive::<TimestampMillisecondType>().iter().collect())
    }

    /// Output rows from the two sides' picks: the left columns, the right ones, projected.
    fn output(&self, left: Picked<'_>, right: Picked<'_>, rows: usize) -> Result<RecordBatch> {
        let width = self.schemas[0].fields().len();
        let columns = self
            .node
            .projection
            .iter()
            .map(|&i| if i < width { left.column(&self.schemas[0], i) } else { right.column(&self.schemas[1], i - width) })
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::clone(&self.node.schema), columns, &options).map_err(arrow)
    }

    /// Which candidate pairs satisfy the whole `ON` condition.
    fn filter_pairs(&self, side: JoinSide, batch: &RecordBatch, incoming: &UInt32Array, stored: &[(u64, u32)]) -> Result<BooleanArray> {
        let other = &self.sides[side.other() as usize];
        let Some(filter) = &self.node.filter else { return Ok(BooleanArray::from(vec![true; incoming.len()])) };
        let (here, there) = (Picked::Incoming(batch, incoming), Picked::stored(other, stored));
        let mut columns = Vec::with_capacity(filter.column_indices().len());
        for c in filter.column_indices() {
            let from = match c.side {
                FilterSide::Left => JoinSide::Left,
                _ => JoinSide::Right,
            };
            let picked = if from == side { &here } else { &there };
            columns.push(picked.column(&self.schemas[from as usize], c.index)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(incoming.len()));
        let pairs = RecordBatch::try_new_with_options(Arc::clone(filter.schema()), columns, &options).map_err(arrow)?;
        evaluate_predicate(filter.expression(), &pairs, NAME)
    }

    fn on_side_rows(&mut self, side: JoinSide, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        let keys = self.key_rows(side, &batch)?;
        let times = self.times(side, &batch)?;
        let bounds = self.node.bounds;
        // Candidate pairs: same key, times within the bounds.
        // Each candidate's incoming row, stored row, and place in its key's waiting list.
        let (mut incoming, mut stored, mut positions) = (Vec::new(), Vec::new(), Vec::new());
        let other = &self.sides[side.other() as usize];
        for (i, (key, time)) in keys.iter().zip(&times).enumerate() {
            let (Some(key), Some(time)) = (key, time) else { continue };
            let Some(waiting) = other.by_key.get(key) else { continue };
            for (position, w) in waiting.iter().enumerate() {
                let distance = match side {
                    JoinSide::Left => w.time - time,
                    JoinSide::Right => time - w.time,
                };
                if (bounds.lower_ms..=bounds.upper_ms).contains(&distance) {
                    incoming.push(i as u32);
                    stored.push((w.batch, w.row));
                    positions.push(position);
                }
            }
        }
        let mut matched = vec![Matched::No; batch.num_rows()];
        if !incoming.is_empty() {
            let incoming_rows = UInt32Array::from(incoming);
            let keep = self.filter_pairs(side, &batch, &incoming_rows, &stored)?;
            let kept: Vec<usize> = (0..keep.len()).filter(|&p| keep.is_valid(p) && keep.value(p)).collect();
            let other = &mut self.sides[side.other() as usize];
            // Stored rows meeting their first partner now: what a semi join emits of them.
            let mut first_matches = Vec::new();
            for &p in &kept {
                let row = incoming_rows.value(p) as usize;
                matched[row] = Matched::Yes;
                let waiting = keys[row].as_ref().and_then(|key| other.by_key.get_mut(key));
                if let Some(w) = waiting.and_then(|v| v.get_mut(positions[p])) {
                    if w.matched == Matched::No {
                        first_matches.push((w.batch, w.row));
                    }
                    w.matched = Matched::Yes;
                }
            }
            if let JoinType::Semi(emitted) = self.node.join_type {
                if emitted == side {
                    let rows = UInt32Array::from((0..batch.num_rows() as u32).filter(|&i| matched[i as usize] == Matched::Yes).collect::<Vec<_>>());
                    if !rows.is_empty() {
                        out.inserts(self.padded(side, Picked::Incoming(&batch, &rows), rows.len())?);
                    }
                } else if !first_matches.is_empty() {
                    let other = &self.sides[emitted as usize];
                    out.inserts(self.padded(emitted, Picked::stored(other, &first_matches), first_matches.len())?);
                }
            }
            if !kept.is_empty() && self.node.join_type.emits_pairs() {
                let incoming_kept = UInt32Array::from(kept.iter().map(|&p| incoming_rows.value(p)).collect::<Vec<_>>());
                let stored_kept: Vec<(u64, u32)> = kept.iter().map(|&p| stored[p]).collect();
                let other = &self.sides[side.other() as usize];
                let here = Picked::Incoming(&batch, &incoming_kept);
                let there = Picked::stored(other, &stored_kept);
                let rows = incoming_kept.len();
                let output = match side {
                    JoinSide::Left => self.output(here, there, rows)?,
                    JoinSide::Right => self.output(there, here, rows)?,
                };
                out.inserts(output);
            }
        }
        // Rows that may still meet a partner wait; an outer join's others leave now if alone.
        let mut alone = Vec::new();
        let mut waiting = Vec::new();
        for (i, (key, time)) in keys.into_iter().zip(times).enumerate() {
            match (key, time) {
                (Some(key), Some(time)) if bounds.last_chance(side, time) > self.watermark.0 => waiting.push((i, key, time)),
                _ if matched[i] == Matched::No => alone.push(i as u32),
                _ => {}
            }
        }
        if !waiting.is_empty() {
            let state = &mut self.sides[side as usize];
            let id = state.add_batch(&batch, waiting.len());
            for (i, key, time) in waiting {
                state.wait(key, Waiting { batch: id, row: i as u32, time, matched: matched[i] }, bounds.last_chance(side, time));
            }
        }
        if self.node.join_type.keeps_unmatched(side) && !alone.is_empty() {
            let rows = UInt32Array::from(alone);
            out.inserts(self.padded(side, Picked::Incoming(&batch, &rows), rows.len())?);
        }
        Ok(())
    }

    /// Rows of `side` alone: without a partner, with NULLs for the other side's
    /// columns (an outer join), or with none of them (a semi or anti join).
    fn padded(&self, side: JoinSide, rows: Picked<'_>, count: usize) -> Result<RecordBatch> {
        match side {
            JoinSide::Left => self.output(rows, Picked::Absent(count), count),
            JoinSide::Right => self.output(Picked::Absent(count), rows, count),
        }
    }

    /// Takes the rows of `side` that can meet no partner any more out of its index;
    /// returns those that never met one, and the batches each taken row held (to
    /// release once the padded rows are built from them).
    fn expire(&mut self, side: JoinSide) -> (Vec<(u64, u32)>, Vec<u64>) {
        let watermark = self.watermark.0;
        let bounds = self.node.bounds;
        let state = &mut self.sides[side as usize];
        let due: Vec<i64> = state.expiry.range(..=watermark).map(|(t, _)| *t).collect();
        let mut alone = Vec::new();
        let mut released = Vec::new();
        for time in due {
            for key in state.expiry.remove(&time).unwrap_or_default() {
                let Some(waiting) = state.by_key.get_mut(&key) else { continue };
                waiting.retain(|w| {
                    if bounds.last_chance(side, w.time) > watermark {
                        return true;
                    }
                    if w.matched == Matched::No {
                        alone.push((w.batch, w.row));
                    }
                    released.push(w.batch);
                    false
                });
                if waiting.is_empty() {
                    state.by_key.remove(&key);
                }
            }
        }
        (alone, released)
    }
}

impl Operator for IntervalJoinOperator {
    fn name(&self) -> &str {
        NAME
    }

    fn on_rows(&mut self, _rows: ChangeBatch, _out: &mut Emitter) -> Result<()> {
        Err(EngineError::Internal("an interval join was given rows without the side they come from".into()))
    }

    fn on_input_rows(&mut self, input: usize, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        let side = JoinSide::of_input(input).ok_or_else(|| EngineError::Internal(format!("an interval join has two inputs, not input {input}")))?;
        self.on_side_rows(side, rows.into_inserts(NAME)?, out)
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        for side in [JoinSide::Left, JoinSide::Right] {
            let (alone, released) = self.expire(side);
            if self.node.join_type.keeps_unmatched(side) && !alone.is_empty() {
                let count = alone.len();
                let padded = self.padded(side, Picked::stored(&self.sides[side as usize], &alone), count)?;
                out.inserts(padded);
            }
            for batch in released {
                self.sides[side as usize].release(batch);
            }
        }
        let delayed = match watermark {
            EventTime::MAX => EventTime::MAX,
            EventTime(ms) => EventTime(ms.saturating_sub(self.node.bounds.watermark_delay_ms())),
        };
        if delayed > self.emitted_watermark {
            self.emitted_watermark = delayed;
            out.watermark(delayed);
        }
        Ok(())
    }

    /// One part per side: the key columns, the side's columns, whether the row met a partner.
    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let mut parts = Vec::new();
        for side in [JoinSide::Left, JoinSide::Right] {
            let state = &self.sides[side as usize];
            let entries: Vec<Waiting> = state.by_key.values().flatten().copied().collect();
            let rows: Vec<(u64, u32)> = entries.iter().map(|w| (w.batch, w.row)).collect();
            let schema = &self.schemas[side as usize];
            let picked = Picked::stored(state, &rows);
            let columns = (0..schema.fields().len()).map(|i| picked.column(schema, i)).collect::<Result<Vec<ArrayRef>>>()?;
            let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
            let side_rows = RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options).map_err(arrow)?;
            let mut fields: Vec<Field> = Vec::new();
            let mut all: Vec<ArrayRef> = Vec::new();
            for (i, key) in self.node.keys(side).iter().enumerate() {
                let array = evaluate(key, &side_rows, NAME)?;
                fields.push(Field::new(format!("key{i}"), array.data_type().clone(), true));
                all.push(array);
            }
            for (field, column) in schema.fields().iter().zip(side_rows.columns()) {
                fields.push(field.as_ref().clone().with_nullable(true));
                all.push(Arc::clone(column));
            }
            fields.push(Field::new("matched", DataType::Boolean, false));
            all.push(Arc::new(BooleanArray::from(entries.iter().map(|w| w.matched == Matched::Yes).collect::<Vec<_>>())));
            let part = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), all, &options).map_err(arrow)?;
            parts.push((side_part(side).to_string(), part));
        }
        Ok(Some(OperatorState { parts }))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        for (name, part) in state.parts {
            let side = match name.as_str() {
                "left" => JoinSide::Left,
                "right" => JoinSide::Right,
                other => return Err(EngineError::State(format!("an interval join's checkpoint has an unknown part `{other}`"))),
            };
            let keys = self.node.keys(side).len();
            let schema = Arc::clone(&self.schemas[side as usize]);
            let width = schema.fields().len();
            if part.num_columns() != keys + width + 1 {
                return Err(EngineError::State("the checkpoint does not match the join's inputs (was its SQL changed?)".into()));
            }
            let options = RecordBatchOptions::new().with_row_count(Some(part.num_rows()));
            let rows = RecordBatch::try_new_with_options(schema, part.columns()[keys..keys + width].to_vec(), &options).map_err(arrow)?;
            let matched = part.column(keys + width).as_boolean().clone();
            let key_rows = self.key_rows(side, &rows)?;
            let times = self.times(side, &rows)?;
            let bounds = self.node.bounds;
            let state = &mut self.sides[side as usize];
            let id = state.add_batch(&rows, rows.num_rows());
            for (i, (key, time)) in key_rows.into_iter().zip(times).enumerate() {
                let (Some(key), Some(time)) = (key, time) else {
                    state.release(id);
                    continue;
                };
                let matched = if matched.value(i) { Matched::Yes } else { Matched::No };
                state.wait(key, Waiting { batch: id, row: i as u32, time, matched }, bounds.last_chance(side, time));
            }
        }
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.sides.iter().map(|s| s.bytes).sum()
    }

    fn state_key_columns(&self, part: &str) -> usize {
        match part {
            "left" => self.node.left_keys.len(),
            "right" => self.node.right_keys.len(),
            _ => 0,
        }
    }
}

fn side_part(side: JoinSide) -> &'static str {
    match side {
        JoinSide::Left => "left",
        JoinSide::Right => "right",
    }
}
