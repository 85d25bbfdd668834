//! The rank operator: deduplication and Top-N (see [`crate::plan::rank`] for
//! which query gets which [`RankKind`]). Rows are kept as Arrow row-format bytes:
//! a partition's key, its rows' order (encoded with the `ORDER BY` directions, so
//! comparing bytes compares rows as SQL sorts them) and the rows themselves.
//!
//! Rows with equal order keep their arrival order (an earlier row ranks first),
//! as in Flink. Late rows (by event time behind the watermark: Flink's timers
//! would never fire for them) are dropped and counted for the first-row
//! deduplication and for window ranks, whose results wait for the watermark.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::row::{RowConverter, SortField};

use super::idle_expiry::{wall_clock_ms, Clock, IdleExpiry};
use super::rows::{bytes, Codec, RowBytes};
use super::source_prep::as_millis;
use super::{arrow_error, evaluate};
use crate::changelog::{ChangeBatch, RowKind};
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::PipelineMetrics;
use crate::operator::{Emitter, Operator};
use crate::plan::{RankKind, RankNode, Ties};
use crate::state::OperatorState;

/// The checkpoint part holding every kept row.
const PART: &str = "rows";

/// A row kept in a partition's ranking: sorted by `order`, then by arrival (`seq`).
#[derive(Debug, Clone)]
struct Ranked {
    order: RowBytes,
    seq: u64,
    row: RowBytes,
}

/// A partition of a first-row deduplication.
#[derive(Debug, Clone)]
enum FirstRow {
    /// The earliest row so far, emitted once the watermark passes `time`.
    Waiting { time: i64, row: RowBytes },
    /// Its row was emitted: every later row of the partition is a duplicate.
    Emitted,
}

/// What the operator keeps, by kind.
enum Partitions {
    First {
        rows: HashMap<RowBytes, FirstRow>,
        /// Partitions to look at once the watermark passes a time, by that time.
        due: BTreeMap<i64, Vec<RowBytes>>,
    },
    Last(HashMap<RowBytes, (i64, RowBytes)>),
    /// Each open window's partitions, by the window's end.
    Window(BTreeMap<i64, HashMap<RowBytes, Vec<Ranked>>>),
    Continuous(HashMap<RowBytes, Vec<Ranked>>),
}

/// One output row: its kind, the row, its row number (1-based).
type Change<'a> = (RowKind, &'a RowBytes, u64);

/// The rank operator; see the module docs.
pub struct RankOperator {
    node: RankNode,
    name: &'static str,
    input: SchemaRef,
    partition_keys: Codec,
    order_keys: Option<RowConverter>,
    rows: Codec,
    /// The row-format bytes of a row of NULLs, kept for a partition whose row was emitted.
    no_row: RowBytes,
    partitions: Partitions,
    watermark: i64,
    next_seq: u64,
    bytes: usize,
    metrics: Arc<PipelineMetrics>,
    /// With `'table.exec.state.ttl'`: when each partition was last written.
    expiry: Option<IdleExpiry>,
    clock: Clock,
}

impl RankOperator {
    /// A rank for `node`, counting late rows in `metrics`; its state TTL counts in wall-clock time.
    pub fn new(node: RankNode, metrics: Arc<PipelineMetrics>) -> Result<Self> {
        Self::with_clock(node, metrics, Box::new(wall_clock_ms))
    }

    /// A rank for `node` whose state TTL counts in `clock`'s milliseconds.
    pub fn with_clock(node: RankNode, metrics: Arc<PipelineMetrics>, clock: Clock) -> Result<Self> {
        let name = node.kind.operator_name();
        let input = node.input.schema();
        let types = |exprs: &mut dyn Iterator<Item = &Arc<dyn datafusion::physical_expr::PhysicalExpr>>| {
            exprs.map(|e| e.data_type(&input).map_err(|e| EngineError::execution(name, e))).collect::<Result<Vec<_>>>()
        };
        let partition_types = types(&mut node.partition.iter())?;
        let partition_keys = Codec::new(if partition_types.is_empty() { vec![DataType::Boolean] } else { partition_types })?;
        let order_types = types(&mut node.order.iter().map(|o| &o.expr))?;
        let order_keys = if order_types.is_empty() {
            None
        } else {
            let fields = order_types.into_iter().zip(&node.order).map(|(t, o)| SortField::new_with_options(t, o.options)).collect();
            Some(RowConverter::new(fields).map_err(|e| arrow_error(name, e))?)
        };
        let rows = Codec::new(input.fields().iter().map(|f| f.data_type().clone()))?;
        let nulls: Vec<ArrayRef> = input.fields().iter().map(|f| datafusion::arrow::array::new_null_array(f.data_type(), 1)).collect();
        let no_row = bytes(rows.encode(&nulls)?.row(0));
        let partitions = match node.kind {
            RankKind::FirstRow { .. } | RankKind::FirstArrival => Partitions::First { rows: HashMap::new(), due: BTreeMap::new() },
            RankKind::LastRow { .. } | RankKind::LastArrival => Partitions::Last(HashMap::new()),
            RankKind::Window { .. } => Partitions::Window(BTreeMap::new()),
            RankKind::Continuous => Partitions::Continuous(HashMap::new()),
        };
        let (node_ttl, kind) = (node.state_ttl_ms, node.kind);
        Ok(RankOperator {
            node,
            name,
            input,
            partition_keys,
            order_keys,
            rows,
            no_row,
            partitions,
            watermark: EventTime::MIN.0,
            next_seq: 0,
            bytes: 0,
            metrics,
            expiry: node_ttl.filter(|_| !matches!(kind, RankKind::Window { .. })).map(IdleExpiry::new),
            clock,
        })
    }

    fn arrow(&self, e: datafusion::arrow::error::ArrowError) -> EngineError {
        arrow_error(self.name, e)
    }

    /// Each row's partition key.
    fn partition_of(&self, batch: &RecordBatch) -> Result<Vec<RowBytes>> {
        let columns = if self.node.partition.is_empty() {
            vec![Arc::new(BooleanArray::from(vec![true; batch.num_rows()])) as ArrayRef]
        } else {
            self.node.partition.iter().map(|e| evaluate(e, batch, self.name)).collect::<Result<Vec<_>>>()?
        };
        let encoded = self.partition_keys.encode(&columns)?;
        Ok(encoded.iter().map(bytes).collect())
    }

    /// Each row's order key (empty without `ORDER BY`).
    fn order_of(&self, batch: &RecordBatch) -> Result<Vec<RowBytes>> {
        let Some(converter) = &self.order_keys else { return Ok(vec![RowBytes::default(); batch.num_rows()]) };
        let columns = self.node.order.iter().map(|o| evaluate(&o.expr, batch, self.name)).collect::<Result<Vec<_>>>()?;
        let encoded = converter.convert_columns(&columns).map_err(|e| self.arrow(e))?;
        Ok(encoded.iter().map(bytes).collect())
    }

    /// Each row's time in `column` (ms); `None` where it is NULL.
    fn times(&self, batch: &RecordBatch, column: usize) -> Result<Vec<Option<i64>>> {
        let times = as_millis(batch.column(column), self.name)?;
        Ok(times.iter().collect())
    }

    /// The output rows of `changes`: the input's columns, then the row number.
    fn output(&self, changes: &[Change<'_>]) -> Result<ChangeBatch> {
        let mut columns = self.rows.decode(changes.iter().map(|(_, row, _)| *row))?;
        let number: ArrayRef = Arc::new(UInt64Array::from(changes.iter().map(|(_, _, n)| *n).collect::<Vec<_>>()));
        let number_type = self.node.schema.field(self.input.fields().len()).data_type();
        columns.push(if number.data_type() == number_type { number } else { cast(&number, number_type).map_err(|e| self.arrow(e))? });
        let options = RecordBatchOptions::new().with_row_count(Some(changes.len()));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.node.schema), columns, &options).map_err(|e| self.arrow(e))?;
        ChangeBatch::new(batch, changes.iter().map(|(kind, _, _)| *kind).collect())
    }

    fn emit(&self, changes: &[Change<'_>], out: &mut Emitter) -> Result<()> {
        if !changes.is_empty() {
            out.changes(self.output(changes)?);
        }
        Ok(())
    }

    fn late(&self, rows: usize) {
        PipelineMetrics::add(&self.metrics.late_rows, rows);
    }

    /// Drops the partitions the state TTL says are over (silently, as Flink does).
    fn expire(&mut self) {
        let Some(expiry) = &mut self.expiry else { return };
        let now = (self.clock)();
        for key in expiry.expired(now) {
            let freed = match &mut self.partitions {
                Partitions::First { rows, .. } => rows.remove(&key).map(|state| match state {
                    FirstRow::Waiting { row, .. } => row.len(),
                    FirstRow::Emitted => 0,
                }),
                Partitions::Last(rows) => rows.remove(&key).map(|(_, row)| row.len()),
                Partitions::Continuous(partitions) => partitions.remove(&key).map(|ranked| ranked.iter().map(|r| r.order.len() + r.row.len()).sum()),
                Partitions::Window(_) => None,
            };
            if let Some(freed) = freed {
                self.bytes = self.bytes.saturating_sub(freed + key.len());
            }
        }
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.expire();
        let keys = self.partition_of(&batch)?;
        if let Some(expiry) = &mut self.expiry {
            let now = (self.clock)();
            for key in &keys {
                expiry.touch(key, now);
            }
        }
        let encoded = self.rows.encode(batch.columns())?;
        let row = |i: usize| bytes(encoded.row(i));
        match self.node.kind {
            RankKind::FirstRow { time_column } => {
                let times = self.times(&batch, time_column)?;
                let Partitions::First { rows, due } = &mut self.partitions else { return Err(mismatch()) };
                let mut late = 0;
                for (i, key) in keys.into_iter().enumerate() {
                    let Some(time) = times[i] else { continue };
                    if time < self.watermark {
                        late += 1;
                        continue;
                    }
                    let replace = match rows.get(&key) {
                        None => true,
                        Some(FirstRow::Waiting { time: kept, .. }) => time < *kept,
                        Some(FirstRow::Emitted) => false,
                    };
                    if replace {
                        let row = row(i);
                        self.bytes += row.len() + key.len();
                        if let Some(FirstRow::Waiting { row: old, .. }) = rows.insert(key.clone(), FirstRow::Waiting { time, row }) {
                            self.bytes = self.bytes.saturating_sub(old.len() + key.len());
                        }
                        due.entry(time).or_default().push(key);
                    }
                }
                self.late(late);
            }
            RankKind::FirstArrival => {
                let Partitions::First { rows, .. } = &mut self.partitions else { return Err(mismatch()) };
                let mut first = Vec::new();
                for (i, key) in keys.into_iter().enumerate() {
                    if let std::collections::hash_map::Entry::Vacant(entry) = rows.entry(key) {
                        self.bytes += entry.key().len();
                        entry.insert(FirstRow::Emitted);
                        first.push(row(i));
                    }
                }
                let changes: Vec<Change<'_>> = first.iter().map(|row| (RowKind::Insert, row, 1)).collect();
                self.emit(&changes, out)?;
            }
            RankKind::LastRow { .. } | RankKind::LastArrival => {
                // By processing time every row is the latest so far.
                let times = match self.node.kind {
                    RankKind::LastRow { time_column } => self.times(&batch, time_column)?,
                    _ => vec![Some(0); batch.num_rows()],
                };
                let Partitions::Last(rows) = &mut self.partitions else { return Err(mismatch()) };
                // Each row replaces its partition's at once; several rows of one
                // partition in a batch each replace the one before.
                let mut changes: Vec<(RowKind, RowBytes)> = Vec::new();
                for (i, key) in keys.into_iter().enumerate() {
                    let Some(time) = times[i] else { continue };
                    match rows.get_mut(&key) {
                        None => {
                            let row = row(i);
                            self.bytes += row.len() + key.len();
                            changes.push((RowKind::Insert, row.clone()));
                            rows.insert(key, (time, row));
                        }
                        Some((kept, old)) if time >= *kept => {
                            let row = row(i);
                            self.bytes = (self.bytes + row.len()).saturating_sub(old.len());
                            changes.push((RowKind::UpdateBefore, std::mem::replace(old, row.clone())));
                            changes.push((RowKind::UpdateAfter, row));
                            *kept = time;
                        }
                        Some(_) => {}
                    }
                }
                let changes: Vec<Change<'_>> = changes.iter().map(|(kind, row)| (*kind, row, 1)).collect();
                self.emit(&changes, out)?;
            }
            RankKind::Window { window, end_column, end_is_start, ties } => {
                let ends = self.times(&batch, end_column)?;
                let size = window_size(window);
                let orders = self.order_of(&batch)?;
                let limit = self.node.limit;
                let Partitions::Window(windows) = &mut self.partitions else { return Err(mismatch()) };
                let mut late = 0;
                for (i, (key, order)) in keys.into_iter().zip(orders).enumerate() {
                    let Some(end) = ends[i].map(|t| if end_is_start { t.saturating_add(size) } else { t }) else { continue };
                    if end <= self.watermark {
                        late += 1;
                        continue;
                    }
                    let ranked = windows.entry(end).or_default().entry(key).or_default();
                    // Ties go by arrival: a later row first when it is to replace an equal one.
                    let seq = if ties == Ties::LaterFirst { u64::MAX - self.next_seq } else { self.next_seq };
                    let item = Ranked { order, seq, row: row(i) };
                    self.next_seq += 1;
                    let size = item.order.len() + item.row.len();
                    if let Some((_, evicted)) = insert_ranked(ranked, item, limit) {
                        self.bytes += size;
                        if let Some(evicted) = evicted {
                            self.bytes = self.bytes.saturating_sub(evicted.order.len() + evicted.row.len());
                        }
                    }
                }
                self.late(late);
            }
            RankKind::Continuous => {
                let orders = self.order_of(&batch)?;
                let limit = self.node.limit;
                let Partitions::Continuous(partitions) = &mut self.partitions else { return Err(mismatch()) };
                let mut changes: Vec<(RowKind, RowBytes, u64)> = Vec::new();
                for (i, (key, order)) in keys.into_iter().zip(orders).enumerate() {
                    let ranked = partitions.entry(key).or_default();
                    let before = ranked.len();
                    let item = Ranked { order, seq: self.next_seq, row: row(i) };
                    self.next_seq += 1;
                    let size = item.order.len() + item.row.len();
                    let Some((position, evicted)) = insert_ranked(ranked, item, limit) else { continue };
                    self.bytes += size;
                    // Every rank from the new row's down to the last kept moves: the
                    // row that held it (now one rank lower, or pushed out) is taken
                    // back and the one that holds it now is sent.
                    for rank in position..ranked.len() {
                        let number = rank as u64 + 1;
                        if rank < before {
                            let held = match ranked.get(rank + 1) {
                                Some(next) => &next.row,
                                None => &evicted.as_ref().ok_or_else(mismatch)?.row,
                            };
                            changes.push((RowKind::UpdateBefore, held.clone(), number));
                            changes.push((RowKind::UpdateAfter, ranked[rank].row.clone(), number));
                        } else {
                            changes.push((RowKind::Insert, ranked[rank].row.clone(), number));
                        }
                    }
                    if let Some(evicted) = evicted {
                        self.bytes = self.bytes.saturating_sub(evicted.order.len() + evicted.row.len());
                    }
                }
                let changes: Vec<Change<'_>> = changes.iter().map(|(kind, row, n)| (*kind, row, *n)).collect();
                self.emit(&changes, out)?;
            }
        }
        Ok(())
    }

    /// Emits what the watermark completes: first rows whose time it passed, windows whose end it reached.
    fn fire(&mut self, out: &mut Emitter) -> Result<()> {
        let watermark = self.watermark;
        match &mut self.partitions {
            Partitions::First { rows, due } => {
                let mut emitted: Vec<RowBytes> = Vec::new();
                while let Some(entry) = due.first_entry() {
                    if *entry.key() >= watermark {
                        break;
                    }
                    for key in entry.remove() {
                        if let Some(state) = rows.get_mut(&key) {
                            if let FirstRow::Waiting { time, .. } = state {
                                if *time < watermark {
                                    if let FirstRow::Waiting { row, .. } = std::mem::replace(state, FirstRow::Emitted) {
                                        self.bytes = self.bytes.saturating_sub(row.len());
                                        emitted.push(row);
                                    }
                                }
                            }
                        }
                    }
                }
                let changes: Vec<Change<'_>> = emitted.iter().map(|row| (RowKind::Insert, row, 1)).collect();
                self.emit(&changes, out)
            }
            Partitions::Window(windows) => {
                let mut closed = Vec::new();
                while let Some(entry) = windows.first_entry() {
                    if *entry.key() > watermark {
                        break;
                    }
                    closed.push(entry.remove());
                }
                let mut freed = 0;
                let mut changes: Vec<Change<'_>> = Vec::new();
                for partitions in &closed {
                    for ranked in partitions.values() {
                        for (rank, kept) in ranked.iter().enumerate() {
                            freed += kept.order.len() + kept.row.len();
                            changes.push((RowKind::Insert, &kept.row, rank as u64 + 1));
                        }
                    }
                }
                self.bytes = self.bytes.saturating_sub(freed);
                self.emit(&changes, out)
            }
            Partitions::Last(_) | Partitions::Continuous(_) => Ok(()),
        }
    }

    /// Every kept row as (partition, row, emitted), ranked rows in rank order.
    fn kept(&self) -> Vec<(&RowBytes, &RowBytes, bool)> {
        match &self.partitions {
            Partitions::First { rows, .. } => rows
                .iter()
                .map(|(key, state)| match state {
                    FirstRow::Waiting { row, .. } => (key, row, false),
                    FirstRow::Emitted => (key, &self.no_row, true),
                })
                .collect(),
            Partitions::Last(rows) => rows.iter().map(|(key, (_, row))| (key, row, false)).collect(),
            Partitions::Window(windows) => {
                windows.values().flat_map(|w| w.iter()).flat_map(|(key, ranked)| ranked.iter().map(move |r| (key, &r.row, false))).collect()
            }
            Partitions::Continuous(partitions) => partitions.iter().flat_map(|(key, ranked)| ranked.iter().map(move |r| (key, &r.row, false))).collect(),
        }
    }
}

/// Inserts `item` into `ranked` (sorted by order, then arrival) if it ranks
/// within `limit`: where it went, and the row it pushed out of the first `limit`.
fn insert_ranked(ranked: &mut Vec<Ranked>, item: Ranked, limit: usize) -> Option<(usize, Option<Ranked>)> {
    let position = ranked.partition_point(|r| (&r.order, r.seq) <= (&item.order, item.seq));
    if position >= limit {
        return None;
    }
    ranked.insert(position, item);
    let evicted = (ranked.len() > limit).then(|| ranked.pop()).flatten();
    Some((position, evicted))
}

fn window_size(window: crate::plan::WindowKind) -> i64 {
    use crate::plan::WindowKind;
    match window {
        WindowKind::Tumble { size_ms } | WindowKind::Hop { size_ms, .. } => size_ms,
        WindowKind::Cumulate { max_size_ms, .. } => max_size_ms,
        WindowKind::Session { gap_ms } => gap_ms,
    }
}

fn mismatch() -> EngineError {
    EngineError::Internal("a rank's state does not match its kind".into())
}

impl Operator for RankOperator {
    fn name(&self) -> &str {
        self.name
    }

    fn on_rows(&mut self, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        let batch = rows.into_inserts(self.name)?;
        self.on_batch(batch, out)
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        self.expire();
        if watermark.0 > self.watermark {
            self.watermark = watermark.0;
            self.fire(out)?;
        }
        out.watermark(watermark);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Emitter) -> Result<()> {
        self.watermark = EventTime::MAX.0;
        self.fire(out)
    }

    /// One part: each kept row's partition values, its columns (NULLs for a
    /// partition whose first row was emitted), and whether it was.
    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let kept = self.kept();
        let mut fields: Vec<Field> = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        if !self.node.partition.is_empty() {
            let values = self.partition_keys.decode(kept.iter().map(|(key, _, _)| *key))?;
            for (i, column) in values.into_iter().enumerate() {
                fields.push(Field::new(format!("key{i}"), column.data_type().clone(), true));
                columns.push(column);
            }
        }
        let rows = self.rows.decode(kept.iter().map(|(_, row, _)| *row))?;
        for (field, column) in self.input.fields().iter().zip(rows) {
            fields.push(field.as_ref().clone().with_nullable(true));
            columns.push(column);
        }
        fields.push(Field::new("emitted", DataType::Boolean, false));
        columns.push(Arc::new(BooleanArray::from(kept.iter().map(|(_, _, emitted)| *emitted).collect::<Vec<_>>())));
        let options = RecordBatchOptions::new().with_row_count(Some(kept.len()));
        let part = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options).map_err(|e| self.arrow(e))?;
        Ok(Some(OperatorState { parts: vec![(PART.to_string(), part)] }))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        for (name, part) in state.parts {
            if name != PART {
                return Err(EngineError::State(format!("a {}'s checkpoint has an unknown part `{name}`", self.name)));
            }
            let keys = self.node.partition.len();
            let width = self.input.fields().len();
            if part.num_columns() != keys + width + 1 {
                return Err(EngineError::State(format!("the checkpoint does not match the {}'s input (was its SQL changed?)", self.name)));
            }
            let Some(emitted) = part.column(keys + width).as_boolean_opt().cloned() else {
                return Err(EngineError::State(format!("a {}'s checkpoint has no `emitted` flags (was it written by another version?)", self.name)));
            };
            let options = RecordBatchOptions::new().with_row_count(Some(part.num_rows()));
            let rows =
                RecordBatch::try_new_with_options(Arc::clone(&self.input), part.columns()[keys..keys + width].to_vec(), &options).map_err(|e| self.arrow(e))?;
            // Partitions whose first row was emitted keep only their key.
            if let Partitions::First { rows: partitions, .. } = &mut self.partitions {
                if keys > 0 {
                    let encoded = self.partition_keys.encode(&part.columns()[..keys])?;
                    for i in (0..part.num_rows()).filter(|&i| emitted.value(i)) {
                        partitions.insert(bytes(encoded.row(i)), FirstRow::Emitted);
                    }
                } else if emitted.iter().any(|e| e == Some(true)) {
                    let encoded = self.partition_keys.encode(&[Arc::new(BooleanArray::from(vec![true])) as ArrayRef])?;
                    partitions.insert(bytes(encoded.row(0)), FirstRow::Emitted);
                }
            }
            let waiting = UInt32Array::from((0..part.num_rows() as u32).filter(|&i| !emitted.value(i as usize)).collect::<Vec<_>>());
            let waiting = datafusion::arrow::compute::take_record_batch(&rows, &waiting).map_err(|e| self.arrow(e))?;
            // Ranked rows come in rank order: adding them in turn keeps it, ties
            // included. What that emits was emitted before the checkpoint.
            let mut ignored = Emitter::default();
            self.on_batch(waiting, &mut ignored)?;
        }
        // The state TTL of restored partitions counts from the restart.
        if let Some(expiry) = &mut self.expiry {
            let now = (self.clock)();
            let keys: Vec<&RowBytes> = match &self.partitions {
                Partitions::First { rows, .. } => rows.keys().collect(),
                Partitions::Last(rows) => rows.keys().collect(),
                Partitions::Continuous(partitions) => partitions.keys().collect(),
                Partitions::Window(_) => Vec::new(),
            };
            for key in keys {
                expiry.touch(key, now);
            }
        }
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.bytes
    }

    fn state_key_columns(&self, part: &str) -> usize {
        if part == PART {
            self.node.hashed
        } else {
            0
        }
    }
}
