//! The rank operator: deduplication and Top-N (see [`crate::plan::rank`] for
//! which query gets which [`RankKind`]). Rows are kept as Arrow row-format bytes:
//! a partition's key, its rows' order (encoded with the `ORDER BY` directions, so
//! comparing bytes compares rows as SQL sorts them) and the rows themselves.
//!
//! Rows with equal order keep their arrival order (an earlier row ranks first),
//! as in Flink. Late rows (by event time behind the watermark: Flink's timers
//! would never fire for them) are dropped and counted for the first-row
//! deduplication and for window ranks, whose results wait for the watermark.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array, UInt64Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use super::idle_expiry::{wall_clock_ms, Clock, IdleExpiry};
use super::rows::{bytes, Codec, RowBytes, RowMap};
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
        rows: RowMap<FirstRow>,
        /// Partitions to look at once the watermark passes a time, by that time.
        due: BTreeMap<i64, Vec<RowBytes>>,
    },
    Last(RowMap<(i64, RowBytes)>),
    /// Each open window's partitions, by the window's end.
    Window(BTreeMap<i64, RowMap<Vec<Ranked>>>),
    Continuous(RowMap<Vec<Ranked>>),
}

/// Output rows gathered while a batch or a watermark is handled: their
/// row-format bytes back to back, so a change allocates nothing of its own
/// (a Top-N emits a few changes for every row it ranks).
#[derive(Default)]
struct Changes {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    kinds: Vec<RowKind>,
    /// Each row's row number (1-based).
    numbers: Vec<u64>,
}

impl Changes {
    fn push(&mut self, kind: RowKind, row: &[u8], number: u64) {
        self.bytes.extend_from_slice(row);
        self.ends.push(self.bytes.len());
        self.kinds.push(kind);
        self.numbers.push(number);
    }

    fn rows(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, &end)| &self.bytes[start..end])
    }
}

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
    /// For a window rank: the (window, partition) pairs `partitions` holds, kept
    /// as windows take partitions and fire, so counting them walks nothing.
    window_partitions: usize,
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
            RankKind::FirstRow { .. } | RankKind::FirstArrival => Partitions::First { rows: RowMap::default(), due: BTreeMap::new() },
            RankKind::LastRow { .. } | RankKind::LastArrival => Partitions::Last(RowMap::default()),
            RankKind::Window { .. } => Partitions::Window(BTreeMap::new()),
            RankKind::Continuous | RankKind::Retracting => Partitions::Continuous(RowMap::default()),
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
            window_partitions: 0,
            metrics,
            expiry: node_ttl.filter(|_| !matches!(kind, RankKind::Window { .. })).map(IdleExpiry::new),
            clock,
        })
    }

    fn arrow(&self, e: datafusion::arrow::error::ArrowError) -> EngineError {
        arrow_error(self.name, e)
    }

    /// Each row's partition key.
    fn partition_of(&self, batch: &RecordBatch) -> Result<Rows> {
        let columns = if self.node.partition.is_empty() {
            vec![Arc::new(BooleanArray::from(vec![true; batch.num_rows()])) as ArrayRef]
        } else {
            self.node.partition.iter().map(|e| evaluate(e, batch, self.name)).collect::<Result<Vec<_>>>()?
        };
        self.partition_keys.encode(&columns)
    }

    /// Each row's order key (`None` without `ORDER BY`: every row's is empty).
    fn order_of(&self, batch: &RecordBatch) -> Result<Option<Rows>> {
        let Some(converter) = &self.order_keys else { return Ok(None) };
        let columns = self.node.order.iter().map(|o| evaluate(&o.expr, batch, self.name)).collect::<Result<Vec<_>>>()?;
        converter.convert_columns(&columns).map(Some).map_err(|e| self.arrow(e))
    }

    /// The row-format bytes of `batch`'s rows `picked`, in that order.
    fn encode_picked(&self, batch: &RecordBatch, picked: &[u32]) -> Result<Rows> {
        if picked.len() == batch.num_rows() {
            return self.rows.encode(batch.columns());
        }
        let indices = UInt32Array::from(picked.to_vec());
        let columns = batch.columns().iter().map(|c| take(c, &indices, None)).collect::<std::result::Result<Vec<_>, _>>().map_err(|e| self.arrow(e))?;
        self.rows.encode(&columns)
    }

    /// Each row's time in `column` (ms); `None` where it is NULL.
    fn times(&self, batch: &RecordBatch, column: usize) -> Result<Vec<Option<i64>>> {
        let times = as_millis(batch.column(column), self.name)?;
        Ok(times.iter().collect())
    }

    /// The output rows of `changes`: the input's columns, then the row number.
    fn output(&self, changes: Changes) -> Result<ChangeBatch> {
        let mut columns = self.rows.decode(changes.rows())?;
        let number: ArrayRef = Arc::new(UInt64Array::from(changes.numbers));
        let number_type = self.node.schema.field(self.input.fields().len()).data_type();
        columns.push(if number.data_type() == number_type { number } else { cast(&number, number_type).map_err(|e| self.arrow(e))? });
        let options = RecordBatchOptions::new().with_row_count(Some(changes.kinds.len()));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.node.schema), columns, &options).map_err(|e| self.arrow(e))?;
        ChangeBatch::new(batch, changes.kinds)
    }

    fn emit(&self, changes: Changes, out: &mut Emitter) -> Result<()> {
        if !changes.kinds.is_empty() {
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

    /// Handles `batch`, whose rows are of `kinds` (inserts, but for a Top-N over updating rows).
    fn on_batch(&mut self, batch: RecordBatch, kinds: &[RowKind], out: &mut Emitter) -> Result<()> {
        let count = batch.num_rows();
        if count == 0 {
            return Ok(());
        }
        self.expire();
        let keys = self.partition_of(&batch)?;
        let key = |i: usize| keys.row(i).data();
        if let Some(expiry) = &mut self.expiry {
            let now = (self.clock)();
            for i in 0..count {
                expiry.touch(key(i), now);
            }
        }
        let mut changes = Changes::default();
        match self.node.kind {
            RankKind::FirstRow { time_column } => {
                let times = self.times(&batch, time_column)?;
                let Partitions::First { rows, .. } = &self.partitions else { return Err(mismatch()) };
                // The rows that are earlier than their partition's kept one, on time.
                let mut late = 0;
                let candidates: Vec<u32> = (0..count)
                    .filter(|&i| {
                        let Some(time) = times[i] else { return false };
                        if time < self.watermark {
                            late += 1;
                            return false;
                        }
                        match rows.get(key(i)) {
                            None => true,
                            Some(FirstRow::Waiting { time: kept, .. }) => time < *kept,
                            Some(FirstRow::Emitted) => false,
                        }
                    })
                    .map(|i| i as u32)
                    .collect();
                self.late(late);
                let encoded = self.encode_picked(&batch, &candidates)?;
                let Partitions::First { rows, due } = &mut self.partitions else { return Err(mismatch()) };
                for (c, &i) in candidates.iter().enumerate() {
                    let (i, Some(time)) = (i as usize, times[i as usize]) else { continue };
                    // An earlier row of the same partition in this batch may have come first.
                    if let Some(FirstRow::Waiting { time: kept, .. }) = rows.get(key(i)) {
                        if time >= *kept {
                            continue;
                        }
                    }
                    let row: RowBytes = encoded.row(c).data().into();
                    self.bytes += row.len() + key(i).len();
                    if let Some(FirstRow::Waiting { row: old, .. }) = rows.insert(key(i).into(), FirstRow::Waiting { time, row }) {
                        self.bytes = self.bytes.saturating_sub(old.len() + key(i).len());
                    }
                    due.entry(time).or_default().push(key(i).into());
                }
            }
            RankKind::FirstArrival => {
                let Partitions::First { rows, .. } = &mut self.partitions else { return Err(mismatch()) };
                let mut first = Vec::new();
                for i in 0..count {
                    if !rows.contains_key(key(i)) {
                        self.bytes += key(i).len();
                        rows.insert(key(i).into(), FirstRow::Emitted);
                        first.push(i as u32);
                    }
                }
                let encoded = self.encode_picked(&batch, &first)?;
                for row in encoded.iter() {
                    changes.push(RowKind::Insert, row.data(), 1);
                }
            }
            RankKind::LastRow { .. } | RankKind::LastArrival => {
                // By processing time every row is the latest so far.
                let times = match self.node.kind {
                    RankKind::LastRow { time_column } => self.times(&batch, time_column)?,
                    _ => vec![Some(0); count],
                };
                let encoded = self.rows.encode(batch.columns())?;
                let Partitions::Last(rows) = &mut self.partitions else { return Err(mismatch()) };
                // Each row replaces its partition's at once; several rows of one
                // partition in a batch each replace the one before.
                for (i, time) in times.into_iter().enumerate() {
                    let Some(time) = time else { continue };
                    let row = encoded.row(i).data();
                    match rows.get_mut(key(i)) {
                        None => {
                            self.bytes += row.len() + key(i).len();
                            changes.push(RowKind::Insert, row, 1);
                            rows.insert(key(i).into(), (time, row.into()));
                        }
                        Some((kept, old)) if time >= *kept => {
                            self.bytes = (self.bytes + row.len()).saturating_sub(old.len());
                            changes.push(RowKind::UpdateBefore, old, 1);
                            changes.push(RowKind::UpdateAfter, row, 1);
                            *old = row.into();
                            *kept = time;
                        }
                        Some(_) => {}
                    }
                }
            }
            RankKind::Window { window, end_column, end_is_start, ties } => {
                let size = window_size(window);
                let ends: Vec<Option<i64>> =
                    self.times(&batch, end_column)?.into_iter().map(|e| e.map(|t| if end_is_start { t.saturating_add(size) } else { t })).collect();
                let orders = self.order_of(&batch)?;
                let order = |i: usize| orders.as_ref().map_or(&[][..], |o| o.row(i).data());
                let limit = self.node.limit;
                let Partitions::Window(windows) = &self.partitions else { return Err(mismatch()) };
                let mut late = 0;
                let candidates: Vec<u32> = (0..count)
                    .filter(|&i| {
                        let Some(end) = ends[i] else { return false };
                        if end <= self.watermark {
                            late += 1;
                            return false;
                        }
                        may_rank(windows.get(&end).and_then(|w| w.get(key(i))), order(i), limit)
                    })
                    .map(|i| i as u32)
                    .collect();
                self.late(late);
                let encoded = self.encode_picked(&batch, &candidates)?;
                let Partitions::Window(windows) = &mut self.partitions else { return Err(mismatch()) };
                for (c, &i) in candidates.iter().enumerate() {
                    let (i, Some(end)) = (i as usize, ends[i as usize]) else { continue };
                    let partitions = windows.entry(end).or_default();
                    self.window_partitions += usize::from(!partitions.contains_key(key(i)));
                    let Some(ranked) = partition(partitions, key(i)) else { return Err(mismatch()) };
                    // Ties go by arrival: a later row first when it is to replace an equal one.
                    let seq = if ties == Ties::LaterFirst { u64::MAX - self.next_seq } else { self.next_seq };
                    self.next_seq += 1;
                    let item = Ranked { order: order(i).into(), seq, row: encoded.row(c).data().into() };
                    let size = item.order.len() + item.row.len();
                    if let Some((_, evicted)) = insert_ranked(ranked, item, limit) {
                        self.bytes += size;
                        if let Some(evicted) = evicted {
                            self.bytes = self.bytes.saturating_sub(evicted.order.len() + evicted.row.len());
                        }
                    }
                }
            }
            RankKind::Continuous => {
                let orders = self.order_of(&batch)?;
                let order = |i: usize| orders.as_ref().map_or(&[][..], |o| o.row(i).data());
                let limit = self.node.limit;
                let Partitions::Continuous(partitions) = &self.partitions else { return Err(mismatch()) };
                // Only rows that may rank are encoded: most rows of a long-running
                // Top-N rank below its last kept row.
                let candidates: Vec<u32> = (0..count).filter(|&i| may_rank(partitions.get(key(i)), order(i), limit)).map(|i| i as u32).collect();
                let encoded = self.encode_picked(&batch, &candidates)?;
                let Partitions::Continuous(partitions) = &mut self.partitions else { return Err(mismatch()) };
                for (c, &i) in candidates.iter().enumerate() {
                    let i = i as usize;
                    let Some(ranked) = partition(partitions, key(i)) else { return Err(mismatch()) };
                    let before = ranked.len();
                    let item = Ranked { order: order(i).into(), seq: self.next_seq, row: encoded.row(c).data().into() };
                    self.next_seq += 1;
                    let size = item.order.len() + item.row.len();
                    let Some((position, evicted)) = insert_ranked(ranked, item, limit) else { continue };
                    self.bytes += size;
                    moves_after_insert(ranked, position, before, limit, evicted.as_ref(), &mut changes)?;
                    if let Some(evicted) = evicted {
                        self.bytes = self.bytes.saturating_sub(evicted.order.len() + evicted.row.len());
                    }
                }
            }
            RankKind::Retracting => {
                let orders = self.order_of(&batch)?;
                let order = |i: usize| orders.as_ref().map_or(&[][..], |o| o.row(i).data());
                let encoded = self.rows.encode(batch.columns())?;
                let limit = self.node.limit;
                let Partitions::Continuous(partitions) = &mut self.partitions else { return Err(mismatch()) };
                for (i, kind) in kinds.iter().enumerate() {
                    let (order, row) = (order(i), encoded.row(i).data());
                    if kind.is_retraction() {
                        // A row never kept (its partition's state expired) has nothing to take back, as in Flink.
                        let Some(ranked) = partitions.get_mut(key(i)) else { continue };
                        let equal = ranked.partition_point(|r| &r.order[..] < order);
                        let found = ranked[equal..].iter().take_while(|r| &r.order[..] == order).position(|r| &r.row[..] == row);
                        let Some(position) = found.map(|p| equal + p) else { continue };
                        let removed = ranked.remove(position);
                        self.bytes = self.bytes.saturating_sub(removed.order.len() + removed.row.len());
                        moves_after_retraction(ranked, position, &removed, limit, &mut changes);
                        if ranked.is_empty() {
                            partitions.remove(key(i));
                        }
                    } else {
                        let Some(ranked) = partition(partitions, key(i)) else { return Err(mismatch()) };
                        let before = ranked.len();
                        let item = Ranked { order: order.into(), seq: self.next_seq, row: row.into() };
                        self.next_seq += 1;
                        self.bytes += item.order.len() + item.row.len();
                        // Every row stays: one below the first `limit` may rank again.
                        if let Some((position, _)) = insert_ranked(ranked, item, usize::MAX) {
                            moves_after_insert(ranked, position, before, limit, None, &mut changes)?;
                        }
                    }
                }
            }
        }
        self.emit(changes, out)
    }

    /// Emits what the watermark completes: first rows whose time it passed, windows whose end it reached.
    fn fire(&mut self, out: &mut Emitter) -> Result<()> {
        let watermark = self.watermark;
        let mut changes = Changes::default();
        match &mut self.partitions {
            Partitions::First { rows, due } => {
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
                                        changes.push(RowKind::Insert, &row, 1);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Partitions::Window(windows) => {
                let mut freed = 0;
                while let Some(entry) = windows.first_entry() {
                    if *entry.key() > watermark {
                        break;
                    }
                    let fired = entry.remove();
                    self.window_partitions = self.window_partitions.saturating_sub(fired.len());
                    for ranked in fired.values() {
                        for (rank, kept) in ranked.iter().enumerate() {
                            freed += kept.order.len() + kept.row.len();
                            changes.push(RowKind::Insert, &kept.row, rank as u64 + 1);
                        }
                    }
                }
                self.bytes = self.bytes.saturating_sub(freed);
            }
            Partitions::Last(_) | Partitions::Continuous(_) => {}
        }
        self.emit(changes, out)
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

/// The kept rows of partition `key`, a new empty one if there is none (the key
/// is copied only then). `None` cannot happen: the partition was just put there.
fn partition<'a>(partitions: &'a mut RowMap<Vec<Ranked>>, key: &[u8]) -> Option<&'a mut Vec<Ranked>> {
    if !partitions.contains_key(key) {
        partitions.insert(key.into(), Vec::new());
    }
    partitions.get_mut(key)
}

/// Whether a row of `order` may rank within `limit` in a partition kept as
/// `ranked`: rows a batch adds only raise the bar, so a row that may not against
/// the state before the batch does not after it. Equal orders may (a later row
/// ranks first when ties go that way).
fn may_rank(ranked: Option<&Vec<Ranked>>, order: &[u8], limit: usize) -> bool {
    ranked.is_none_or(|ranked| ranked.len() < limit || ranked.last().is_some_and(|last| order <= &last.order[..]))
}

/// The changes when a row went into `ranked` at `position` (which held `before`
/// rows): every rank from there down to the last of the first `limit` moves. The
/// row that held it (now one rank lower, or `pushed_out` of a Top-N that keeps
/// only `limit` rows) is taken back and the one that holds it now is sent; a rank
/// nobody held before is inserted. As Flink's Top-N functions emit them.
fn moves_after_insert(ranked: &[Ranked], position: usize, before: usize, limit: usize, pushed_out: Option<&Ranked>, changes: &mut Changes) -> Result<()> {
    for rank in position..ranked.len().min(limit) {
        let number = rank as u64 + 1;
        if rank < before {
            let held = match ranked.get(rank + 1) {
                Some(next) => &next.row,
                None => &pushed_out.ok_or_else(mismatch)?.row,
            };
            changes.push(RowKind::UpdateBefore, held, number);
            changes.push(RowKind::UpdateAfter, &ranked[rank].row, number);
        } else {
            changes.push(RowKind::Insert, &ranked[rank].row, number);
        }
    }
    Ok(())
}

/// The changes when `removed` left `ranked` from `position`: each rank from there
/// to the last of the first `limit` passes to the row below it (`-U` the row that
/// held it, `+U` the next), and a rank nobody takes is deleted.
fn moves_after_retraction(ranked: &[Ranked], position: usize, removed: &Ranked, limit: usize, changes: &mut Changes) {
    for rank in position..limit.min(ranked.len() + 1) {
        let number = rank as u64 + 1;
        let held = if rank == position { &removed.row } else { &ranked[rank - 1].row };
        match ranked.get(rank) {
            Some(now) => {
                changes.push(RowKind::UpdateBefore, held, number);
                changes.push(RowKind::UpdateAfter, &now.row, number);
            }
            None => changes.push(RowKind::Delete, held, number),
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
        if self.node.kind == RankKind::Retracting {
            let kinds: Vec<RowKind> = (0..rows.num_rows()).map(|i| rows.kind(i)).collect();
            return self.on_batch(rows.into_rows(), &kinds, out);
        }
        let batch = rows.into_inserts(self.name)?;
        let kinds = vec![RowKind::Insert; batch.num_rows()];
        self.on_batch(batch, &kinds, out)
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
        Ok(Some(OperatorState::new(vec![(PART.to_string(), part)])))
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
            let kinds = vec![RowKind::Insert; waiting.num_rows()];
            self.on_batch(waiting, &kinds, &mut ignored)?;
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

    /// Partitions held. A deduplication keeping the first row counts every
    /// partition it has seen, those whose row was emitted too (their key stays to
    /// drop later duplicates, until the state TTL forgets it); one keeping the last
    /// row and a Top-N count partitions with rows kept (a Top-N over updating rows
    /// drops a partition when its last row is taken back); a window Top-N counts
    /// (window, partition) pairs of windows not fired yet, which fall as they fire.
    fn state_keys(&self) -> usize {
        match &self.partitions {
            Partitions::First { rows, .. } => rows.len(),
            Partitions::Last(rows) => rows.len(),
            Partitions::Window(_) => self.window_partitions,
            Partitions::Continuous(partitions) => partitions.len(),
        }
    }

    fn state_key_columns(&self, part: &str) -> usize {
        if part == PART {
            self.node.hashed
        } else {
            0
        }
    }
}
