//! `SESSION` windows: per key, rows closer than the gap form one window, which is
//! emitted when the watermark passes its end (last row + gap).
//!
//! Sessions merge as rows arrive, so their bounds are not known up front. An open
//! session keeps references to its rows' aggregate inputs (keys, arguments and
//! filters: only the columns the aggregates need, in the arrival batches). Most
//! sessions are short, and those rows are aggregated together, vectorised with
//! DataFusion `GroupsAccumulator`s, when the watermark closes them. A session that
//! gathers [`SessionMemory::fold_rows`] rows folds them into running accumulators
//! ([`PartialAggregate`]) and lets them go, so a key that never goes idle holds a
//! few accumulators, not every row it sent. Sessions that merge merge their rows
//! and their accumulators.
//!
//! Arrival batches stay in memory while an open session refers to any of their
//! rows; when they hold far more rows than open sessions still need, the needed
//! rows are copied into one batch and the rest let go ([`SessionAggregateOperator::compact`]).
//!
//! To find what a watermark closes, an index holds each session's end as it was
//! when it was indexed. Rows only move a session's end later, so an index entry is
//! never later than its session's end: when the watermark passes the entry, the
//! session either closes or is indexed again at its current end.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::plan::{AggregateKind, WindowAggregateNode};
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::{cast, concat, interleave, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::record_batch::RecordBatchOptions;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::scalar::ScalarValue;

use super::arrow_error;
use super::closing::{advance_watermark, ClosedByWatermark};
use super::partial_aggregate::{scalars_to_array, PartialAggregate};
use super::window_aggregate::{key_schema, output_batch, GroupState, Groups, Inputs, WindowBounds};
use crate::changelog::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::PipelineMetrics;
use crate::operator::{Emitter, Operator};
use crate::state::OperatorState;

const NAME: &str = "SessionAggregate";

/// What one open session costs besides its rows: its bounds, its entry in the
/// by-end index and its row list's header.
const SESSION_ENTRY_BYTES: usize = 64;

/// When the operator stops keeping rows: a session's rows are folded into
/// accumulators, arrival batches compacted. The defaults suit production; tests
/// lower them to take these paths often.
#[derive(Debug, Clone, Copy)]
pub struct SessionMemory {
    /// Rows a session gathers before it folds them: enough that a fold is one
    /// vectorised pass, few enough that a hot key's rows stay small.
    pub fold_rows: usize,
    /// Arrival batches are compacted once they hold this many bytes and four times
    /// the rows open sessions still need.
    pub compact_min_bytes: usize,
}

impl Default for SessionMemory {
    fn default() -> Self {
        SessionMemory { fold_rows: 1024, compact_min_bytes: 32 << 20 }
    }
}

/// How many times the rows open sessions need the arrival batches may hold.
const COMPACT_RATIO: usize = 4;

/// Where one row's aggregate inputs are: (arrival batch, row in it).
type RowRef = (u32, u32);

/// One open session of one key.
struct Session {
    start: i64,
    /// Exclusive: the last row's time plus the gap.
    end: i64,
    /// Rows not folded into `partial` yet.
    rows: Vec<RowRef>,
    /// The aggregates of the rows folded so far, once the session had [`SessionMemory::fold_rows`].
    partial: Option<Box<PartialAggregate>>,
}

/// Session-window aggregation; see the module docs.
pub struct SessionAggregateOperator {
    node: WindowAggregateNode,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    gap_ms: i64,
    memory: SessionMemory,
    /// Interns keys to a dense id.
    keys: Groups,
    /// Open sessions per key id, sorted by start, never overlapping.
    sessions: Vec<Vec<Session>>,
    /// How many keys have at least one open session, kept as their first opens
    /// and their last closes.
    open_keys: usize,
    /// (end when indexed, key id, start) of every open session (and stale entries
    /// of sessions merged away since, dropped when the watermark reaches them).
    by_end: BTreeSet<(i64, usize, i64)>,
    /// Arrival batches' aggregate inputs; `None` once no open session refers to them.
    buffers: Vec<Option<Inputs>>,
    /// Per arrival batch, how many of its rows open sessions refer to.
    live_rows: Vec<usize>,
    /// Bytes and rows the live `buffers` hold, and the rows of theirs still needed.
    buffer_bytes: usize,
    buffered_rows: usize,
    needed_rows: usize,
    /// Bytes the sessions' partial aggregates hold, as of their last change.
    partial_bytes: usize,
    watermark: EventTime,
    metrics: Arc<PipelineMetrics>,
    ids: Vec<usize>,
}

impl SessionAggregateOperator {
    /// A session aggregate for `node`, whose window must be SESSION.
    pub fn new(node: WindowAggregateNode, metrics: Arc<PipelineMetrics>) -> Result<Self> {
        let AggregateKind::Session { gap_ms } = node.kind else {
            return Err(EngineError::Internal("SessionAggregateOperator needs a SESSION window".into()));
        };
        let key_schema = key_schema(&node)?;
        Ok(SessionAggregateOperator {
            key_exprs: node.key_exprs(),
            keys: Groups::new(&key_schema)?,
            key_schema,
            node,
            gap_ms,
            memory: SessionMemory::default(),
            sessions: Vec::new(),
            open_keys: 0,
            by_end: BTreeSet::new(),
            buffers: Vec::new(),
            live_rows: Vec::new(),
            buffer_bytes: 0,
            buffered_rows: 0,
            needed_rows: 0,
            partial_bytes: 0,
            watermark: EventTime::MIN,
            metrics,
            ids: Vec::new(),
        })
    }

    /// The same operator, folding and compacting at other limits.
    pub fn with_memory(mut self, memory: SessionMemory) -> Self {
        self.memory = SessionMemory { fold_rows: memory.fold_rows.max(1), ..memory };
        self
    }

    fn row_times(&self, batch: &RecordBatch) -> Result<TimestampMillisecondArray> {
        let column = self.node.slice_column.ok_or_else(|| EngineError::Internal("session without a time column".into()))?;
        let array = cast(batch.column(column.index), &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(|e| arrow_error(NAME, e))?;
        let array = array.as_any().downcast_ref::<TimestampMillisecondArray>().cloned().ok_or_else(|| EngineError::Internal("time column".into()))?;
        if column.is_end {
            // The column holds row time + gap.
            let shifted: TimestampMillisecondArray = array.iter().map(|v| v.map(|v| v - self.gap_ms)).collect();
            return Ok(shifted);
        }
        Ok(array)
    }

    /// Adds one row at `ts` to the sessions of `key`, merging the sessions it bridges.
    fn add_row(&mut self, key: usize, ts: i64, row: RowRef) -> Result<()> {
        let (start, end) = (ts, ts.saturating_add(self.gap_ms));
        let sessions = &mut self.sessions[key];
        // Sessions never overlap, so their ends are sorted as their starts are: the
        // ones the row touches are a run from the first that ends after its time.
        let first = sessions.partition_point(|s| s.end <= start);
        let mut last = first;
        while last < sessions.len() && sessions[last].start < end {
            last += 1;
        }
        let at = match last - first {
            0 => {
                self.open_keys += usize::from(sessions.is_empty());
                sessions.insert(first, Session { start, end, rows: vec![row], partial: None });
                self.by_end.insert((end, key, start));
                first
            }
            1 => {
                let session = &mut sessions[first];
                session.rows.push(row);
                session.end = session.end.max(end);
                if start < session.start {
                    // A new start is a new identity in the index; the old entry goes stale.
                    session.start = start;
                    self.by_end.insert((session.end, key, start));
                }
                first
            }
            _ => {
                let mut merged = Session { start, end, rows: vec![row], partial: None };
                for session in sessions.drain(first..last) {
                    merged.start = merged.start.min(session.start);
                    merged.end = merged.end.max(session.end);
                    // Append the shorter row list to the longer: a row that joins a
                    // long session must not copy the session's rows.
                    let (mut long, short) = if session.rows.len() >= merged.rows.len() {
                        (session.rows, std::mem::take(&mut merged.rows))
                    } else {
                        (std::mem::take(&mut merged.rows), session.rows)
                    };
                    long.extend(short);
                    merged.rows = long;
                    merged.partial = match (merged.partial.take(), session.partial) {
                        (Some(mut ours), Some(theirs)) => {
                            let before = ours.size_bytes() + theirs.size_bytes();
                            ours.merge(*theirs)?;
                            self.partial_bytes = (self.partial_bytes + ours.size_bytes()).saturating_sub(before);
                            Some(ours)
                        }
                        (ours, theirs) => ours.or(theirs),
                    };
                }
                self.by_end.insert((merged.end, key, merged.start));
                sessions.insert(first, merged);
                first
            }
        };
        if self.sessions[key][at].rows.len() >= self.memory.fold_rows {
            self.fold(key, at)?;
        }
        Ok(())
    }

    /// Folds the rows of session `at` of `key` into its accumulators and lets them go.
    fn fold(&mut self, key: usize, at: usize) -> Result<()> {
        let rows = std::mem::take(&mut self.sessions[key][at].rows);
        let inputs = self.gather(&rows)?;
        let session = &mut self.sessions[key][at];
        let mut partial = match session.partial.take() {
            Some(partial) => partial,
            None => {
                let first = UInt32Array::from(vec![0u32]);
                let key = inputs.keys.iter().map(|k| take(k, &first, None).map_err(|e| arrow_error(NAME, e))).collect::<Result<Vec<_>>>()?;
                Box::new(PartialAggregate::new(&self.node.aggregates, key)?)
            }
        };
        let before = partial.size_bytes();
        partial.update(&inputs.args, &inputs.filters)?;
        self.partial_bytes = (self.partial_bytes + partial.size_bytes()).saturating_sub(before);
        session.partial = Some(partial);
        self.release(&rows);
        Ok(())
    }

    /// Lets go of rows no session needs any more, and of the batches that held only those.
    fn release(&mut self, rows: &[RowRef]) {
        self.needed_rows = self.needed_rows.saturating_sub(rows.len());
        for &(buffer, _) in rows {
            let live = &mut self.live_rows[buffer as usize];
            *live -= 1;
            if *live == 0 {
                if let Some(released) = self.buffers[buffer as usize].take() {
                    self.buffer_bytes = self.buffer_bytes.saturating_sub(released.size_bytes());
                    self.buffered_rows = self.buffered_rows.saturating_sub(released.rows());
                }
            }
        }
    }

    /// Keeps a batch of aggregate inputs, `live` of whose rows are in sessions.
    fn keep(&mut self, inputs: Inputs, live: usize) {
        if live > 0 {
            self.buffer_bytes += inputs.size_bytes();
            self.buffered_rows += inputs.rows();
            self.needed_rows += live;
        }
        self.buffers.push(if live > 0 { Some(inputs) } else { None });
        self.live_rows.push(live);
    }

    /// Copies the rows open sessions need into one batch and lets the arrival
    /// batches go, when they hold far more than that (rows of sessions that closed
    /// or folded, kept for a few that did not).
    fn compact(&mut self) -> Result<()> {
        let worth_it = self.needed_rows > 0 && self.buffer_bytes >= self.memory.compact_min_bytes && self.buffered_rows >= COMPACT_RATIO * self.needed_rows;
        if !worth_it {
            return Ok(());
        }
        let rows: Vec<RowRef> = self.sessions.iter().flatten().flat_map(|s| s.rows.iter().copied()).collect();
        let inputs = self.gather(&rows)?;
        let buffer = self.buffers.len() as u32;
        let mut next = 0u32;
        for session in self.sessions.iter_mut().flatten() {
            for row in &mut session.rows {
                *row = (buffer, next);
                next += 1;
            }
        }
        self.buffers.iter_mut().for_each(|b| *b = None);
        self.live_rows.iter_mut().for_each(|l| *l = 0);
        (self.buffer_bytes, self.buffered_rows, self.needed_rows) = (0, 0, 0);
        self.keep(inputs, rows.len());
        Ok(())
    }

    /// The aggregate inputs of the given rows, in that order.
    fn gather(&self, rows: &[RowRef]) -> Result<Inputs> {
        // Map buffer ids to positions in a dense list of the buffers involved.
        let mut dense: HashMap<u32, usize> = HashMap::new();
        let mut buffers: Vec<&Inputs> = Vec::new();
        let mut picks = Vec::with_capacity(rows.len());
        for &(buffer, row) in rows {
            let position = match dense.get(&buffer) {
                Some(p) => *p,
                None => {
                    let inputs = self.buffers[buffer as usize].as_ref().ok_or_else(|| EngineError::Internal("session row in a dropped buffer".into()))?;
                    buffers.push(inputs);
                    dense.insert(buffer, buffers.len() - 1);
                    buffers.len() - 1
                }
            };
            picks.push((position, row as usize));
        }
        let pick = |select: &dyn Fn(&Inputs) -> ArrayRef| -> Result<ArrayRef> {
            let arrays: Vec<ArrayRef> = buffers.iter().map(|b| select(b)).collect();
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            interleave(&refs, &picks).map_err(|e| arrow_error(NAME, e))
        };
        let key_count = self.key_exprs.len();
        let keys = (0..key_count).map(|k| pick(&|i: &Inputs| Arc::clone(&i.keys[k]))).collect::<Result<_>>()?;
        let mut args = Vec::new();
        let mut filters = Vec::new();
        for (a, filter) in self.node.filters.iter().enumerate() {
            let arg_count = self.node.aggregates[a].expressions().len();
            args.push((0..arg_count).map(|k| pick(&|i: &Inputs| Arc::clone(&i.args[a][k]))).collect::<Result<Vec<_>>>()?);
            filters.push(match filter {
                None => None,
                Some(_) => {
                    let array = pick(&|i: &Inputs| {
                        i.filters[a].as_ref().map_or_else(|| Arc::new(BooleanArray::from(vec![true; 0])) as ArrayRef, |f| Arc::new(f.clone()) as ArrayRef)
                    })?;
                    array.as_any().downcast_ref::<BooleanArray>().cloned()
                }
            });
        }
        Ok(Inputs { keys, args, filters })
    }

    /// Takes the sessions whose end the watermark passed out of the open ones.
    fn take_closed(&mut self, watermark: i64) -> Vec<Session> {
        let mut closed = Vec::new();
        while let Some(&(indexed_end, key, start)) = self.by_end.first() {
            if indexed_end > watermark {
                break;
            }
            self.by_end.pop_first();
            let sessions = &mut self.sessions[key];
            let Ok(at) = sessions.binary_search_by_key(&start, |s| s.start) else {
                continue; // merged into another session since
            };
            if sessions[at].end > watermark {
                self.by_end.insert((sessions[at].end, key, start));
            } else {
                closed.push(sessions.remove(at));
                self.open_keys -= usize::from(sessions.is_empty());
            }
        }
        closed
    }

    /// The key columns and aggregate values of closed sessions whose rows were never
    /// folded, aggregated together, one row per session in `closed`'s order.
    fn aggregate_rows(&self, closed: &[&Session]) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let mut rows: Vec<RowRef> = Vec::new();
        let mut group_ids: Vec<usize> = Vec::new();
        for (ordinal, c) in closed.iter().enumerate() {
            rows.extend_from_slice(&c.rows);
            group_ids.extend(std::iter::repeat_n(ordinal, c.rows.len()));
        }
        let gathered = self.gather(&rows)?;
        // Keys: the first row of each session.
        let first_rows: Vec<RowRef> = closed.iter().map(|c| c.rows[0]).collect();
        let keys = self.gather(&first_rows)?.keys;
        let mut state = GroupState::new(&self.key_schema, &self.node.aggregates)?;
        let total = closed.len();
        for ((accumulator, values), filter) in state.accumulators.iter_mut().zip(&gathered.args).zip(&gathered.filters) {
            accumulator.update_batch(values, &group_ids, filter.as_ref(), total).map_err(|e| EngineError::execution(NAME, e))?;
        }
        let values = state
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(datafusion::logical_expr::EmitTo::All).map_err(|e| EngineError::execution(NAME, e)))
            .collect::<Result<Vec<_>>>()?;
        Ok((keys, values))
    }

    /// The key columns and aggregate values of closed sessions that folded rows,
    /// their last rows folded in too, one row per session in `closed`'s order.
    fn finish_partials(&self, closed: &mut [&mut Session]) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let mut keys: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.key_exprs.len()];
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.node.aggregates.len()];
        for c in closed.iter_mut() {
            let inputs = if c.rows.is_empty() { None } else { Some(self.gather(&c.rows)?) };
            let partial = c.partial.as_mut().ok_or_else(|| EngineError::Internal("a folded session without accumulators".into()))?;
            if let Some(inputs) = inputs {
                partial.update(&inputs.args, &inputs.filters)?;
            }
            for (column, key) in keys.iter_mut().zip(partial.key()) {
                column.push(Arc::clone(key));
            }
            for (column, value) in values.iter_mut().zip(partial.evaluate()?) {
                column.push(value);
            }
        }
        let keys =
            keys.iter().map(|parts| concat(&parts.iter().map(|a| a.as_ref()).collect::<Vec<_>>()).map_err(|e| arrow_error(NAME, e))).collect::<Result<_>>()?;
        let values = values.into_iter().map(scalars_to_array).collect::<Result<_>>()?;
        Ok((keys, values))
    }

    /// The open session of `key` that starts at `start`, made (ending at `end`) if
    /// there is none: restored rows and accumulators of one session meet there.
    fn session_at(&mut self, key: usize, start: i64, end: i64) -> &mut Session {
        let sessions = &mut self.sessions[key];
        let at = match sessions.binary_search_by_key(&start, |s| s.start) {
            Ok(at) => at,
            Err(at) => {
                self.open_keys += usize::from(sessions.is_empty());
                sessions.insert(at, Session { start, end, rows: Vec::new(), partial: None });
                self.by_end.insert((end, key, start));
                at
            }
        };
        &mut sessions[at]
    }

    /// Interns restored keys, making room for their sessions.
    fn intern_restored(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<usize>> {
        let mut ids = Vec::new();
        self.keys.intern(keys, rows, &mut ids)?;
        if self.sessions.len() < self.keys.len() {
            self.sessions.resize_with(self.keys.len(), Vec::new);
        }
        Ok(ids)
    }

    /// Every row not folded yet of every open session, with its session's bounds.
    fn snapshot_rows(&self) -> Result<Option<RecordBatch>> {
        let mut rows = Vec::new();
        let (mut ordinals, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        for (ordinal, session) in self.sessions.iter().flatten().enumerate() {
            rows.extend_from_slice(&session.rows);
            ordinals.extend(std::iter::repeat_n(ordinal as i64, session.rows.len()));
            starts.extend(std::iter::repeat_n(session.start, session.rows.len()));
            ends.extend(std::iter::repeat_n(session.end, session.rows.len()));
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let inputs = self.gather(&rows)?;
        let mut columns: Vec<(String, ArrayRef)> = Vec::new();
        for (i, k) in inputs.keys.iter().enumerate() {
            columns.push((format!("k{i}"), Arc::clone(k)));
        }
        for (a, args) in inputs.args.iter().enumerate() {
            for (i, arg) in args.iter().enumerate() {
                columns.push((format!("a{a}_{i}"), Arc::clone(arg)));
            }
            if let Some(f) = &inputs.filters[a] {
                columns.push((format!("f{a}"), Arc::new(f.clone())));
            }
        }
        columns.push(("session".to_string(), Arc::new(Int64Array::from(ordinals))));
        columns.push(("start".to_string(), Arc::new(Int64Array::from(starts))));
        columns.push(("end".to_string(), Arc::new(Int64Array::from(ends))));
        part_batch(columns, rows.len()).map(Some)
    }

    /// The accumulators of every folded session, as intermediate state, one row each.
    fn snapshot_partials(&mut self) -> Result<Option<RecordBatch>> {
        let mut keys: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.key_exprs.len()];
        let mut states: Vec<Vec<Vec<ScalarValue>>> = vec![Vec::new(); self.node.aggregates.len()];
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        for session in self.sessions.iter_mut().flatten() {
            let Some(partial) = session.partial.as_mut() else { continue };
            for (column, key) in keys.iter_mut().zip(partial.key()) {
                column.push(Arc::clone(key));
            }
            for (columns, state) in states.iter_mut().zip(partial.checkpoint_state(&self.node.aggregates)?) {
                if columns.is_empty() {
                    columns.resize(state.len(), Vec::new());
                }
                for (column, value) in columns.iter_mut().zip(state) {
                    column.push(value);
                }
            }
            starts.push(session.start);
            ends.push(session.end);
        }
        if starts.is_empty() {
            return Ok(None);
        }
        let mut columns: Vec<(String, ArrayRef)> = Vec::new();
        for (i, parts) in keys.iter().enumerate() {
            columns.push((format!("k{i}"), concat(&parts.iter().map(|a| a.as_ref()).collect::<Vec<_>>()).map_err(|e| arrow_error(NAME, e))?));
        }
        for (a, state) in states.into_iter().enumerate() {
            for (i, values) in state.into_iter().enumerate() {
                columns.push((format!("s{a}_{i}"), scalars_to_array(values)?));
            }
        }
        let rows = starts.len();
        columns.push(("start".to_string(), Arc::new(Int64Array::from(starts))));
        columns.push(("end".to_string(), Arc::new(Int64Array::from(ends))));
        part_batch(columns, rows).map(Some)
    }

    /// Restores rows of open sessions: they point into this batch, kept as the next
    /// arrival batch.
    fn restore_rows(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = (0..self.key_exprs.len()).map(|i| column(batch, &format!("k{i}"))).collect::<Result<Vec<_>>>()?;
        let mut args = Vec::new();
        let mut filters = Vec::new();
        for (a, filter) in self.node.filters.iter().enumerate() {
            let count = self.node.aggregates[a].expressions().len();
            args.push((0..count).map(|i| column(batch, &format!("a{a}_{i}"))).collect::<Result<Vec<_>>>()?);
            filters.push(match filter {
                None => None,
                Some(_) => Some(column(batch, &format!("f{a}"))?.as_any().downcast_ref::<BooleanArray>().cloned().ok_or_else(snapshot_mismatch)?),
            });
        }
        let (starts, ends) = (int64_column(batch, "start")?, int64_column(batch, "end")?);
        let ids = self.intern_restored(&keys, batch.num_rows())?;
        let buffer = self.buffers.len() as u32;
        self.keep(Inputs { keys, args, filters }, batch.num_rows());
        for (row, key) in ids.into_iter().enumerate() {
            self.session_at(key, starts.value(row), ends.value(row)).rows.push((buffer, row as u32));
        }
        Ok(())
    }

    /// Restores the accumulators of folded sessions.
    fn restore_partials(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = (0..self.key_exprs.len()).map(|i| column(batch, &format!("k{i}"))).collect::<Result<Vec<_>>>()?;
        let state_counts = self.node.aggregates.iter().map(|a| a.state_fields().map(|f| f.len())).collect::<datafusion::error::Result<Vec<_>>>();
        let state_counts = state_counts.map_err(|e| EngineError::execution(NAME, e))?;
        let states = state_counts
            .iter()
            .enumerate()
            .map(|(a, count)| (0..*count).map(|i| column(batch, &format!("s{a}_{i}"))).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let (starts, ends) = (int64_column(batch, "start")?, int64_column(batch, "end")?);
        let ids = self.intern_restored(&keys, batch.num_rows())?;
        for (row, key) in ids.into_iter().enumerate() {
            let key_row = keys.iter().map(|k| k.slice(row, 1)).collect::<Vec<_>>();
            let key_row =
                key_row.iter().map(|k| take(k, &UInt32Array::from(vec![0u32]), None).map_err(|e| arrow_error(NAME, e))).collect::<Result<Vec<_>>>()?;
            let mut partial = PartialAggregate::new(&self.node.aggregates, key_row)?;
            partial.merge_state(&states.iter().map(|state| state.iter().map(|s| s.slice(row, 1)).collect()).collect::<Vec<_>>())?;
            self.partial_bytes += partial.size_bytes();
            let session = self.session_at(key, starts.value(row), ends.value(row));
            session.partial = Some(match session.partial.take() {
                Some(mut ours) => {
                    ours.merge(partial)?;
                    ours
                }
                None => Box::new(partial),
            });
        }
        Ok(())
    }
}

impl ClosedByWatermark for SessionAggregateOperator {
    fn watermark_mut(&mut self) -> &mut EventTime {
        &mut self.watermark
    }

    fn fire(&mut self, watermark: i64, out: &mut Emitter) -> Result<()> {
        let mut closed = self.take_closed(watermark);
        if closed.is_empty() {
            return Ok(());
        }
        // Sessions that never folded are aggregated together, vectorised; the
        // others finish their accumulators. Each gives one batch, a row per session.
        let (mut folded, unfolded): (Vec<&mut Session>, Vec<&mut Session>) = closed.iter_mut().partition(|c| c.partial.is_some());
        let unfolded: Vec<&Session> = unfolded.into_iter().map(|c| &*c).collect();
        let bounds = |sessions: &mut dyn Iterator<Item = &Session>| {
            let (starts, ends) = sessions.map(|s| (s.start, s.end)).unzip();
            WindowBounds::PerRow { starts, ends }
        };
        if !unfolded.is_empty() {
            let (keys, values) = self.aggregate_rows(&unfolded)?;
            out.inserts(output_batch(&self.node, &bounds(&mut unfolded.iter().copied()), keys, values, unfolded.len())?);
        }
        if !folded.is_empty() {
            let (keys, values) = self.finish_partials(&mut folded)?;
            out.inserts(output_batch(&self.node, &bounds(&mut folded.iter().map(|s| &**s)), keys, values, folded.len())?);
        }
        for c in &closed {
            self.release(&c.rows);
            if let Some(partial) = &c.partial {
                self.partial_bytes = self.partial_bytes.saturating_sub(partial.size_bytes());
            }
        }
        Ok(())
    }
}

impl Operator for SessionAggregateOperator {
    fn name(&self) -> &str {
        NAME
    }

    fn on_rows(&mut self, rows: ChangeBatch, _out: &mut Emitter) -> Result<()> {
        let batch = rows.into_inserts(NAME)?;
        let times = self.row_times(&batch)?;
        let inputs = Inputs::evaluate(&batch, &self.key_exprs, &self.node.aggregates, &self.node.filters)?;
        let mut ids = std::mem::take(&mut self.ids);
        self.keys.intern(&inputs.keys, batch.num_rows(), &mut ids)?;
        if self.sessions.len() < self.keys.len() {
            self.sessions.resize_with(self.keys.len(), Vec::new);
        }
        // The batch is kept before its rows join sessions: a session may fold
        // (gather) its rows, this batch's among them, as soon as one joins.
        let buffer = self.buffers.len() as u32;
        self.keep(inputs, batch.num_rows());
        let mut late = 0usize;
        let watermark = self.watermark.0;
        let mut added = Ok(());
        for (row, key) in ids.iter().enumerate() {
            let on_time = times.is_valid(row) && times.value(row).saturating_add(self.gap_ms) > watermark;
            if !on_time {
                late += usize::from(times.is_valid(row));
                self.release(&[(buffer, row as u32)]);
                continue;
            }
            added = self.add_row(*key, times.value(row), (buffer, row as u32));
            if added.is_err() {
                break;
            }
        }
        self.ids = ids;
        PipelineMetrics::add(&self.metrics.late_rows, late);
        added?;
        self.compact()
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        advance_watermark(self, watermark, out)
    }

    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let meta = RecordBatch::try_from_iter([("watermark", Arc::new(Int64Array::from(vec![self.watermark.0])) as ArrayRef)])
            .map_err(|e| EngineError::State(e.to_string()))?;
        let mut parts = vec![("meta".to_string(), meta)];
        if let Some(rows) = self.snapshot_rows()? {
            parts.push(("sessions".to_string(), rows));
        }
        if let Some(partials) = self.snapshot_partials()? {
            parts.push(("partials".to_string(), partials));
        }
        Ok(Some(OperatorState::new(parts)))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        for (name, batch) in state.parts {
            match name.as_str() {
                "meta" => self.watermark = EventTime(int64_column(&batch, "watermark")?.value(0)),
                "sessions" => self.restore_rows(&batch)?,
                "partials" => self.restore_partials(&batch)?,
                _ => return Err(snapshot_mismatch()),
            }
        }
        Ok(())
    }

    /// Interned keys, the arrival batches open sessions still refer to, folded
    /// sessions' accumulators and a small fixed cost per open session.
    fn state_bytes(&self) -> usize {
        let keys = match &self.keys {
            Groups::Keyed(values) => values.size(),
            Groups::Single { .. } => 0,
        };
        keys + self.buffer_bytes + self.partial_bytes + self.by_end.len() * SESSION_ENTRY_BYTES
    }

    /// Keys with at least one open session (a key with two sessions apart counts
    /// once); falls as the watermark closes a key's last session. The interned
    /// key dictionary keeps every key ever seen and is not counted here (its size
    /// is in [`Operator::state_bytes`]).
    fn state_keys(&self) -> usize {
        self.open_keys
    }

    /// `sessions` and `partials` rows lead with the group key (`k0`, ...); `meta` is
    /// per instance.
    fn state_key_columns(&self, part: &str) -> usize {
        if part == "sessions" || part == "partials" {
            self.key_exprs.len()
        } else {
            0
        }
    }
}

fn snapshot_mismatch() -> EngineError {
    EngineError::State("session aggregate snapshot does not match the query".into())
}

fn int64_column(batch: &RecordBatch, name: &str) -> Result<Int64Array> {
    batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned()).ok_or_else(snapshot_mismatch)
}

fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    batch.column_by_name(name).cloned().ok_or_else(snapshot_mismatch)
}

/// A snapshot part from named columns, all of `rows` rows.
fn part_batch(columns: Vec<(String, ArrayRef)>, rows: usize) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns.iter().map(|(n, c)| Field::new(n, c.data_type().clone(), true)).collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, c)| c).collect(), &options)
        .map_err(|e| EngineError::State(e.to_string()))
}
