//! The OVER aggregate on event time (see [`crate::plan::OverAggregateNode`]), as
//! Flink's `RowTimeRowsBoundedPrecedingFunction` and
//! `RowTimeRangeBoundedPrecedingFunction` run it.
//!
//! Rows wait per partition key, by time, until the watermark reaches their time;
//! then the rows of each time reached leave in time order (arrival order within
//! a time), each with its aggregates over its frame. For a RANGE frame rows of
//! equal time are peers: each sees all of them and all get the same values. For
//! a ROWS frame a row sees the `n` rows before it. A row that arrives at or
//! behind the watermark cannot get a right answer any more (rows of its time
//! may have left): it is counted as late and dropped, as Flink drops it. The
//! source judges lateness first (see [`crate::plan::LateAfter::RowTimeReached`]) and
//! sends such rows to the table's `'late.sink'`; the check here catches the rest.
//!
//! State per key: the rows not emitted yet, and the emitted rows a later frame
//! can still reach (RANGE: those within the range of the watermark; ROWS: the
//! last `n`). An `UNBOUNDED PRECEDING` frame keeps no rows but one accumulator
//! state per key instead (DataFusion's plain accumulator, whose state a snapshot
//! keeps). Bounded frames use DataFusion's sliding accumulators,
//! which add rows entering a frame and retract rows leaving it; an aggregate
//! that cannot retract is recomputed over the frame.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, RecordBatch, UInt64Array};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::scalar::ScalarValue;

use super::project::make_batch;
use super::rows::{bytes, Codec, RowBytes, RowMap};
use super::{arrow_error, evaluate};
use crate::changelog::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::PipelineMetrics;
use crate::operator::{Emitter, Operator};
use crate::plan::{OverAggregateNode, OverFrame, Preceding};
use crate::state::OperatorState;

const NAME: &str = "OverAggregate";

fn df(e: datafusion::error::DataFusionError) -> EngineError {
    EngineError::execution(NAME, e)
}

fn state_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::State(format!("{NAME}: {e}"))
}

/// A row waiting for the watermark: its columns and its aggregates' arguments, encoded.
struct PendingRow {
    row: RowBytes,
    args: RowBytes,
}

/// An emitted row a later frame may still reach: its time, arrival and arguments.
struct RetainedRow {
    time: i64,
    seq: u64,
    args: RowBytes,
}

/// What one partition key holds.
#[derive(Default)]
struct Partition {
    /// Rows not emitted yet, by (time, arrival).
    pending: BTreeMap<(i64, u64), PendingRow>,
    /// Emitted rows later frames still reach, oldest first.
    retained: VecDeque<RetainedRow>,
    /// For an `UNBOUNDED PRECEDING` frame: each aggregate's accumulator state after
    /// the last emitted row.
    carry: Option<Vec<Vec<ScalarValue>>>,
}

impl Partition {
    fn bytes(&self) -> usize {
        let pending: usize = self.pending.values().map(|p| p.row.len() + p.args.len() + 32).sum();
        let retained: usize = self.retained.iter().map(|r| r.args.len() + 24).sum();
        let carry: usize = self.carry.iter().flatten().flatten().map(ScalarValue::size).sum();
        pending + retained + carry
    }
}

/// The OVER aggregate operator; see the module docs.
pub struct OverAggregateOperator {
    node: OverAggregateNode,
    metrics: Arc<PipelineMetrics>,
    /// Partition key values (`None` without `PARTITION BY`: one partition).
    keys: Option<Codec>,
    /// The input's columns.
    rows: Codec,
    /// A constant first column (so a row has bytes whatever the arguments), then
    /// every aggregate's arguments in turn.
    args: Codec,
    /// How many argument columns each aggregate has.
    arg_counts: Vec<usize>,
    partitions: RowMap<Partition>,
    /// Keys with rows waiting at a time, by that time.
    due: BTreeMap<i64, Vec<RowBytes>>,
    watermark: EventTime,
    /// Whether `watermark` came from a restored snapshot (several old instances: the lowest wins).
    restored_watermark: bool,
    next_seq: u64,
    bytes: usize,
}

impl OverAggregateOperator {
    /// An OVER aggregate for `node`; late rows are counted in `metrics`.
    pub fn new(node: OverAggregateNode, metrics: Arc<PipelineMetrics>) -> Result<Self> {
        let input = node.input.schema();
        let keys = if node.partition_by.is_empty() {
            None
        } else {
            let types = node.partition_by.iter().map(|e| e.data_type(&input).map_err(df)).collect::<Result<Vec<_>>>()?;
            Some(Codec::new(types)?)
        };
        let rows = Codec::new(input.fields().iter().map(|f| f.data_type().clone()))?;
        let mut arg_types = vec![DataType::Boolean];
        let mut arg_counts = Vec::new();
        for aggregate in &node.aggregates {
            let exprs = aggregate.expressions();
            arg_counts.push(exprs.len());
            for e in exprs {
                arg_types.push(e.data_type(&input).map_err(df)?);
            }
        }
        let args = Codec::new(arg_types)?;
        Ok(OverAggregateOperator {
            node,
            metrics,
            keys,
            rows,
            args,
            arg_counts,
            partitions: RowMap::default(),
            due: BTreeMap::new(),
            watermark: EventTime::MIN,
            restored_watermark: false,
            next_seq: 0,
            bytes: 0,
        })
    }

    fn times(&self, batch: &RecordBatch) -> Result<Vec<Option<i64>>> {
        let column = batch.column(self.node.time_column);
        let millis = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(|e| arrow_error(NAME, e))?;
        Ok(millis.as_primitive::<TimestampMillisecondType>().iter().collect())
    }

    /// Each row's partition key, encoded (empty without `PARTITION BY`).
    fn key_rows(&self, batch: &RecordBatch) -> Result<Vec<RowBytes>> {
        let Some(codec) = &self.keys else {
            return Ok(vec![RowBytes::default(); batch.num_rows()]);
        };
        let columns = self.node.partition_by.iter().map(|e| evaluate(e, batch, NAME)).collect::<Result<Vec<_>>>()?;
        let encoded = codec.encode(&columns)?;
        Ok(encoded.iter().map(bytes).collect())
    }

    fn arg_rows(&self, batch: &RecordBatch) -> Result<Vec<RowBytes>> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(BooleanArray::from(vec![true; batch.num_rows()]))];
        for aggregate in &self.node.aggregates {
            for e in aggregate.expressions() {
                columns.push(evaluate(&e, batch, NAME)?);
            }
        }
        let encoded = self.args.encode(&columns)?;
        Ok(encoded.iter().map(bytes).collect())
    }

    /// Puts a row in waiting under `key`.
    fn wait(&mut self, key: RowBytes, time: i64, seq: u64, row: PendingRow) {
        self.bytes += row.row.len() + row.args.len() + 32;
        let partition = self.partitions.entry(key.clone()).or_default();
        let first_at_time = partition.pending.range((time, 0)..=(time, u64::MAX)).next().is_none();
        partition.pending.insert((time, seq), row);
        if first_at_time {
            self.due.entry(time).or_default().push(key);
        }
    }

    /// Emits the rows of `key` whose time the watermark reached, as one batch.
    fn fire(&mut self, key: &RowBytes) -> Result<Option<RecordBatch>> {
        let watermark = self.watermark.0;
        let frame = self.node.frame;
        let Some(partition) = self.partitions.get_mut(key) else { return Ok(None) };
        let before = partition.bytes();
        let later = match watermark.checked_add(1) {
            Some(next) => partition.pending.split_off(&(next, 0)),
            None => BTreeMap::new(),
        };
        let fired = std::mem::replace(&mut partition.pending, later);
        if fired.is_empty() {
            return Ok(None);
        }
        // Every row a frame of the fired rows may reach: the retained ones, then the fired ones.
        let retained = partition.retained.len();
        let mut times: Vec<i64> = partition.retained.iter().map(|r| r.time).collect();
        let mut seqs: Vec<u64> = partition.retained.iter().map(|r| r.seq).collect();
        times.extend(fired.keys().map(|(t, _)| *t));
        seqs.extend(fired.keys().map(|(_, s)| *s));
        let arg_bytes: Vec<&RowBytes> = partition.retained.iter().map(|r| &r.args).chain(fired.values().map(|p| &p.args)).collect();
        let mut arg_columns = self.args.decode(arg_bytes)?.into_iter().skip(1);
        let frames: Vec<(usize, usize)> = (retained..times.len()).map(|i| frame_of(frame, &times, i)).collect();
        let unbounded = frame.preceding() == Preceding::Unbounded;
        let mut values = Vec::with_capacity(self.node.aggregates.len());
        let mut carry = Vec::new();
        for (a, (aggregate, count)) in self.node.aggregates.iter().zip(&self.arg_counts).enumerate() {
            let args: Vec<ArrayRef> = arg_columns.by_ref().take(*count).collect();
            let start = partition.carry.as_ref().and_then(|c| c.get(a)).map(Vec::as_slice);
            let (column, state) = frame_values(aggregate, start, &args, &frames, unbounded)?;
            let field = self.node.schema.field(self.node.schema.fields().len() - self.node.aggregates.len() + a);
            values.push(if column.data_type() == field.data_type() { column } else { cast(&column, field.data_type()).map_err(|e| arrow_error(NAME, e))? });
            carry.extend(state);
        }
        // Keep what later frames can reach: rows come later only after the watermark.
        let all = times.len();
        let keep_from = match frame.preceding() {
            Preceding::Unbounded => all,
            Preceding::Bounded(n) => match frame {
                OverFrame::Rows { .. } => all.saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
                OverFrame::Range { .. } => {
                    let oldest = watermark.saturating_add(1).saturating_sub(i64::try_from(n).unwrap_or(i64::MAX));
                    times.partition_point(|t| *t < oldest)
                }
            },
        };
        let mut kept = VecDeque::new();
        let fired_args: Vec<RowBytes> = fired.values().map(|p| p.args.clone()).collect();
        let all_args = partition.retained.drain(..).map(|r| r.args).chain(fired_args);
        for (i, args) in all_args.enumerate() {
            if i >= keep_from {
                kept.push_back(RetainedRow { time: times[i], seq: seqs[i], args });
            }
        }
        partition.retained = kept;
        if unbounded {
            partition.carry = Some(carry);
        }
        let after = partition.bytes();
        let empty = partition.pending.is_empty() && partition.retained.is_empty() && partition.carry.is_none();
        if empty {
            self.partitions.remove(key);
        }
        self.bytes = (self.bytes + after).saturating_sub(before);
        let count = fired.len();
        let mut columns = self.rows.decode(fired.values().map(|p| &p.row))?;
        columns.extend(values);
        make_batch(&self.node.schema, columns, count, NAME).map(Some)
    }

    fn state_columns(&self, keys: &[&RowBytes]) -> Result<Vec<(Field, ArrayRef)>> {
        let Some(codec) = &self.keys else { return Ok(Vec::new()) };
        let input = self.node.input.schema();
        let columns = codec.decode(keys.iter().copied())?;
        Ok(columns
            .into_iter()
            .zip(&self.node.partition_by)
            .enumerate()
            .map(|(i, (column, expr))| {
                let nullable = expr.nullable(&input).unwrap_or(true);
                (Field::new(format!("key{i}"), column.data_type().clone(), nullable), column)
            })
            .collect())
    }

    fn restored_keys(&self, batch: &RecordBatch) -> Result<Vec<RowBytes>> {
        let Some(codec) = &self.keys else { return Ok(vec![RowBytes::default(); batch.num_rows()]) };
        let columns: Vec<ArrayRef> = batch.columns()[..self.node.partition_by.len()].to_vec();
        Ok(codec.encode(&columns)?.iter().map(bytes).collect())
    }
}

/// The frame of row `i` of `times` (sorted) as a range `[start, end)` of indices.
fn frame_of(frame: OverFrame, times: &[i64], i: usize) -> (usize, usize) {
    let time = times[i];
    let end = match frame {
        OverFrame::Rows { .. } => i + 1,
        // Peers: every row of the same time.
        OverFrame::Range { .. } => times.partition_point(|t| *t <= time),
    };
    let start = match (frame, frame.preceding()) {
        (_, Preceding::Unbounded) => 0,
        (OverFrame::Rows { .. }, Preceding::Bounded(n)) => i.saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
        (OverFrame::Range { .. }, Preceding::Bounded(ms)) => {
            let oldest = time.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX));
            times.partition_point(|t| *t < oldest)
        }
    };
    (start, end)
}

/// One aggregate's value for each frame (ranges over `args`, both ends never
/// moving back), starting from the accumulator state `start` (an unbounded
/// frame's earlier rows); with `unbounded`, also the state after the last frame.
fn frame_values(
    aggregate: &AggregateFunctionExpr,
    start: Option<&[ScalarValue]>,
    args: &[ArrayRef],
    frames: &[(usize, usize)],
    unbounded: bool,
) -> Result<(ArrayRef, Option<Vec<ScalarValue>>)> {
    let fresh = || -> Result<Box<dyn Accumulator>> {
        // An unbounded frame only adds rows; its plain accumulator's state is the
        // one `state_fields` describes, which a snapshot keeps (a sliding
        // accumulator's can differ: SUM's also counts its rows).
        let mut accumulator = if unbounded { aggregate.create_accumulator() } else { aggregate.create_sliding_accumulator() }.map_err(df)?;
        if let Some(state) = start {
            let arrays = state.iter().map(|s| s.to_array().map_err(df)).collect::<Result<Vec<_>>>()?;
            accumulator.merge_batch(&arrays).map_err(df)?;
        }
        Ok(accumulator)
    };
    let slice = |from: usize, to: usize| -> Vec<ArrayRef> { args.iter().map(|a| a.slice(from, to - from)).collect() };
    let mut accumulator = fresh()?;
    let retracts = accumulator.supports_retract_batch();
    let (mut low, mut high) = (0usize, 0usize);
    let mut values = Vec::with_capacity(frames.len());
    for &(from, to) in frames {
        if from > low && !retracts {
            // Only bounded frames move their start, and they have no carried state.
            accumulator = fresh()?;
            low = from;
            high = from;
        }
        if to > high {
            accumulator.update_batch(&slice(high, to)).map_err(df)?;
            high = to;
        }
        if from > low {
            accumulator.retract_batch(&slice(low, from)).map_err(df)?;
            low = from;
        }
        values.push(accumulator.evaluate().map_err(df)?);
    }
    let column = ScalarValue::iter_to_array(values).map_err(df)?;
    let state = if unbounded { Some(accumulator.state().map_err(df)?) } else { None };
    Ok((column, state))
}

impl Operator for OverAggregateOperator {
    fn name(&self) -> &str {
        NAME
    }

    fn on_rows(&mut self, rows: ChangeBatch, _out: &mut Emitter) -> Result<()> {
        let batch = rows.into_inserts(NAME)?;
        let times = self.times(&batch)?;
        let keys = self.key_rows(&batch)?;
        let encoded = self.rows.encode(batch.columns())?;
        let args = self.arg_rows(&batch)?;
        let (mut late, mut null_time) = (0usize, 0usize);
        for (i, (key, (time, args))) in keys.into_iter().zip(times.into_iter().zip(args)).enumerate() {
            let Some(time) = time else {
                null_time += 1;
                continue;
            };
            if time <= self.watermark.0 {
                late += 1;
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.wait(key, time, seq, PendingRow { row: bytes(encoded.row(i)), args });
        }
        PipelineMetrics::add(&self.metrics.late_rows, late);
        PipelineMetrics::add(&self.metrics.null_time_rows, null_time);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            let later = match watermark.0.checked_add(1) {
                Some(next) => self.due.split_off(&next),
                None => BTreeMap::new(),
            };
            let reached = std::mem::replace(&mut self.due, later);
            let mut seen = HashSet::new();
            let mut batches = Vec::new();
            for key in reached.into_values().flatten() {
                if seen.insert(key.clone()) {
                    batches.extend(self.fire(&key)?);
                }
            }
            if !batches.is_empty() {
                out.inserts(concat_batches(&self.node.schema, &batches).map_err(|e| arrow_error(NAME, e))?);
            }
        }
        out.watermark(watermark);
        Ok(())
    }

    /// Parts: `meta` (watermark, next arrival number); `rows` (key columns, time,
    /// arrival, whether emitted, the encoded row if not, the encoded arguments);
    /// `carry` (key columns, then each aggregate's accumulator state).
    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let meta = RecordBatch::try_from_iter([
            ("watermark", Arc::new(Int64Array::from(vec![self.watermark.0])) as ArrayRef),
            ("next_seq", Arc::new(UInt64Array::from(vec![self.next_seq])) as ArrayRef),
        ])
        .map_err(state_error)?;
        let (mut keys, mut times, mut seqs, mut emitted, mut rows, mut args) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut carry_keys, mut carry_states): (Vec<&RowBytes>, Vec<Vec<ScalarValue>>) = (Vec::new(), Vec::new());
        for (key, partition) in &self.partitions {
            for r in &partition.retained {
                keys.push(key);
                times.push(r.time);
                seqs.push(r.seq);
                emitted.push(true);
                rows.push(None);
                args.push(Some(r.args.as_ref()));
            }
            for ((time, seq), p) in &partition.pending {
                keys.push(key);
                times.push(*time);
                seqs.push(*seq);
                emitted.push(false);
                rows.push(Some(p.row.as_ref()));
                args.push(Some(p.args.as_ref()));
            }
            if let Some(carry) = &partition.carry {
                carry_keys.push(key);
                carry_states.push(carry.iter().flatten().cloned().collect());
            }
        }
        let mut columns = self.state_columns(&keys)?;
        columns.push((Field::new("time", DataType::Int64, false), Arc::new(Int64Array::from(times))));
        columns.push((Field::new("seq", DataType::UInt64, false), Arc::new(UInt64Array::from(seqs))));
        columns.push((Field::new("emitted", DataType::Boolean, false), Arc::new(BooleanArray::from(emitted))));
        columns.push((Field::new("row", DataType::Binary, true), Arc::new(BinaryArray::from(rows))));
        columns.push((Field::new("args", DataType::Binary, true), Arc::new(BinaryArray::from(args))));
        let mut parts = vec![("meta".to_string(), meta), ("rows".to_string(), state_batch(columns)?)];
        if !carry_keys.is_empty() {
            let mut columns = self.state_columns(&carry_keys)?;
            let fields: Vec<_> = self.node.aggregates.iter().map(|a| a.state_fields().map_err(df)).collect::<Result<Vec<_>>>()?.into_iter().flatten().collect();
            for (i, field) in fields.iter().enumerate() {
                let values = carry_states.iter().map(|s| s.get(i).cloned().ok_or_else(|| state_error("an accumulator state is missing a field")));
                let column = ScalarValue::iter_to_array(values.collect::<Result<Vec<_>>>()?).map_err(df)?;
                columns.push((Field::new(format!("state{i}"), column.data_type().clone(), field.is_nullable() || column.null_count() > 0), column));
            }
            parts.push(("carry".to_string(), state_batch(columns)?));
        }
        Ok(Some(OperatorState::new(parts)))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        let key_width = self.node.partition_by.len();
        for (name, batch) in state.parts {
            match name.as_str() {
                "meta" => {
                    let watermark = batch.column(0).as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>().map(|a| a.value(0));
                    let next_seq = batch.column(1).as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>().map(|a| a.value(0));
                    let (Some(watermark), Some(next_seq)) = (watermark, next_seq) else { return Err(state_error("a bad `meta` part")) };
                    let watermark = EventTime(watermark);
                    self.watermark = if self.restored_watermark { self.watermark.min(watermark) } else { watermark };
                    self.restored_watermark = true;
                    self.next_seq = self.next_seq.max(next_seq);
                }
                "rows" => {
                    let keys = self.restored_keys(&batch)?;
                    let bad = || state_error("a bad `rows` part");
                    let times = batch.column(key_width).as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>().ok_or_else(bad)?;
                    let seqs = batch.column(key_width + 1).as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>().ok_or_else(bad)?;
                    let emitted = batch.column(key_width + 2).as_boolean_opt().ok_or_else(bad)?;
                    let rows = batch.column(key_width + 3).as_binary_opt::<i32>().ok_or_else(bad)?;
                    let args = batch.column(key_width + 4).as_binary_opt::<i32>().ok_or_else(bad)?;
                    for (i, key) in keys.into_iter().enumerate() {
                        let (time, seq) = (times.value(i), seqs.value(i));
                        let arg_bytes: RowBytes = args.value(i).into();
                        if emitted.value(i) {
                            self.bytes += arg_bytes.len() + 24;
                            self.partitions.entry(key).or_default().retained.push_back(RetainedRow { time, seq, args: arg_bytes });
                        } else {
                            let row: RowBytes = rows.value(i).into();
                            self.wait(key, time, seq, PendingRow { row, args: arg_bytes });
                        }
                    }
                }
                "carry" => {
                    let keys = self.restored_keys(&batch)?;
                    for (i, key) in keys.into_iter().enumerate() {
                        let flat = batch.columns()[key_width..].iter().map(|c| ScalarValue::try_from_array(c, i).map_err(df)).collect::<Result<Vec<_>>>()?;
                        let mut flat = flat.into_iter();
                        let mut carry = Vec::new();
                        for aggregate in &self.node.aggregates {
                            let width = aggregate.state_fields().map_err(df)?.len();
                            carry.push(flat.by_ref().take(width).collect());
                        }
                        self.partitions.entry(key).or_default().carry = Some(carry);
                    }
                }
                other => return Err(state_error(format!("unexpected part `{other}` in a snapshot"))),
            }
        }
        for partition in self.partitions.values_mut() {
            partition.retained.make_contiguous().sort_by_key(|r| (r.time, r.seq));
        }
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// Partition keys held: those with rows waiting for the watermark, emitted
    /// rows a later frame may reach, or (`UNBOUNDED PRECEDING`) a running
    /// accumulator, which a key keeps for good. Emitted rows are let go when the
    /// key's next rows are emitted, so a key that goes quiet keeps its last ones
    /// (and counts). One without `PARTITION BY`.
    fn state_keys(&self) -> usize {
        self.partitions.len()
    }

    /// `rows` and `carry` lead with the partition key; `meta` is per instance.
    fn state_key_columns(&self, part: &str) -> usize {
        if part == "meta" {
            0
        } else {
            self.node.partition_by.len()
        }
    }
}

fn state_batch(columns: Vec<(Field, ArrayRef)>) -> Result<RecordBatch> {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    let rows = arrays.first().map_or(0, |a| a.len());
    let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options).map_err(state_error)
}
