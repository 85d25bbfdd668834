//! `SESSION` windows: per key, rows closer than the gap form one window, which is
//! emitted when the watermark passes its end (last row + gap).
//!
//! Sessions merge as rows arrive, so their bounds are not known up front. The
//! operator keeps the aggregate inputs of rows in open sessions (keys, arguments
//! and filters: only the columns the aggregates need) and aggregates a session's
//! rows with DataFusion `GroupsAccumulator`s when it closes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::plan::{AggregateKind, WindowAggregateNode};
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, TimestampMillisecondArray};
use datafusion::arrow::compute::{cast, interleave};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::record_batch::RecordBatchOptions;
use datafusion::physical_expr::PhysicalExpr;

use super::arrow_error;
use super::closing::{advance_watermark, ClosedByWatermark};
use super::window_aggregate::{key_schema, output_batch, GroupState, Groups, Inputs};
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

/// One open session of one key.
#[derive(Debug, Clone)]
struct Session {
    start: i64,
    /// Exclusive: the last row's time plus the gap.
    end: i64,
    /// (buffered input, row) of every row in the session.
    rows: Vec<(u32, u32)>,
}

/// Session-window aggregation; see the module docs.
pub struct SessionAggregateOperator {
    node: WindowAggregateNode,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    gap_ms: i64,
    /// Interns keys to a dense id.
    keys: Groups,
    /// Open sessions per key id, sorted by start, never overlapping.
    sessions: Vec<Vec<Session>>,
    /// (end, key id, start) of every open session, to find the ones the watermark closes.
    by_end: BTreeSet<(i64, usize, i64)>,
    /// Buffered aggregate inputs; `None` once no open session refers to them.
    buffers: Vec<Option<Inputs>>,
    /// Bytes the live `buffers` hold, kept as they come and go.
    buffer_bytes: usize,
    live_rows: Vec<usize>,
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
            sessions: Vec::new(),
            by_end: BTreeSet::new(),
            buffers: Vec::new(),
            buffer_bytes: 0,
            live_rows: Vec::new(),
            watermark: EventTime::MIN,
            metrics,
            ids: Vec::new(),
        })
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
    fn add_row(&mut self, key: usize, ts: i64, row: (u32, u32)) {
        let sessions = &mut self.sessions[key];
        let (start, end) = (ts, ts.saturating_add(self.gap_ms));
        let mut merged = Session { start, end, rows: Vec::new() };
        // Sessions overlap the new one when they start before its end and end after its start.
        let mut i = 0;
        while i < sessions.len() {
            let s = &sessions[i];
            if s.start < merged.end && merged.start < s.end {
                let s = sessions.remove(i);
                self.by_end.remove(&(s.end, key, s.start));
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                // Keep the longer row list and append the shorter: a row joining a
                // long session must not copy the session's rows.
                let (mut long, short) =
                    if s.rows.len() >= merged.rows.len() { (s.rows, std::mem::take(&mut merged.rows)) } else { (std::mem::take(&mut merged.rows), s.rows) };
                long.extend(short);
                merged.rows = long;
            } else {
                i += 1;
            }
        }
        merged.rows.push(row);
        self.by_end.insert((merged.end, key, merged.start));
        let position = sessions.partition_point(|s| s.start < merged.start);
        sessions.insert(position, merged);
    }

    /// The aggregate inputs of the given (buffer, row) pairs, in that order.
    fn gather(&self, rows: &[(usize, usize)]) -> Result<Inputs> {
        // Map buffer ids to positions in a dense list of the buffers involved.
        let mut dense: HashMap<usize, usize> = HashMap::new();
        let mut buffers: Vec<&Inputs> = Vec::new();
        let mut picks = Vec::with_capacity(rows.len());
        for &(buffer, row) in rows {
            let position = match dense.get(&buffer) {
                Some(p) => *p,
                None => {
                    let inputs = self.buffers[buffer].as_ref().ok_or_else(|| EngineError::Internal("session row in a dropped buffer".into()))?;
                    buffers.push(inputs);
                    dense.insert(buffer, buffers.len() - 1);
                    buffers.len() - 1
                }
            };
            picks.push((position, row));
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
}

impl ClosedByWatermark for SessionAggregateOperator {
    fn watermark_mut(&mut self) -> &mut EventTime {
        &mut self.watermark
    }

    fn fire(&mut self, watermark: i64, out: &mut Emitter) -> Result<()> {
        let mut closed: Vec<(usize, Session)> = Vec::new();
        while let Some(&(end, key, start)) = self.by_end.first() {
            if end > watermark {
                break;
            }
            self.by_end.pop_first();
            let sessions = &mut self.sessions[key];
            if let Some(i) = sessions.iter().position(|s| s.start == start) {
                closed.push((key, sessions.remove(i)));
            }
        }
        if closed.is_empty() {
            return Ok(());
        }
        // Rows of all closing sessions in one set of arrays; group id = session ordinal.
        let mut rows: Vec<(usize, usize)> = Vec::new();
        let mut group_ids: Vec<usize> = Vec::new();
        for (ordinal, (_, session)) in closed.iter().enumerate() {
            for &(buffer, row) in &session.rows {
                rows.push((buffer as usize, row as usize));
                group_ids.push(ordinal);
            }
        }
        let gathered = self.gather(&rows)?;
        let (args, filters) = (gathered.args, gathered.filters);
        // Keys: the first row of each session.
        let first_rows: Vec<(usize, usize)> = closed.iter().map(|(_, s)| (s.rows[0].0 as usize, s.rows[0].1 as usize)).collect();
        let keys = self.gather(&first_rows)?.keys;
        let mut state = GroupState::new(&self.key_schema, &self.node.aggregates)?;
        let total = closed.len();
        for ((accumulator, values), filter) in state.accumulators.iter_mut().zip(&args).zip(&filters) {
            accumulator.update_batch(values, &group_ids, filter.as_ref(), total).map_err(|e| EngineError::execution(NAME, e))?;
        }
        let values = state
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(datafusion::logical_expr::EmitTo::All).map_err(|e| EngineError::execution(NAME, e)))
            .collect::<Result<Vec<_>>>()?;
        // One output batch per session bound pair would be tiny; emit sessions grouped by bounds.
        let mut by_bounds: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
        for (ordinal, (_, s)) in closed.iter().enumerate() {
            by_bounds.entry((s.start, s.end)).or_default().push(ordinal);
        }
        let mut bounds: Vec<_> = by_bounds.into_iter().collect();
        bounds.sort();
        for ((start, end), ordinals) in bounds {
            let indices = datafusion::arrow::array::UInt32Array::from(ordinals.iter().map(|o| *o as u32).collect::<Vec<_>>());
            let t = |a: &ArrayRef| datafusion::arrow::compute::take(a, &indices, None).map_err(|e| arrow_error(NAME, e));
            let part_keys = keys.iter().map(t).collect::<Result<Vec<_>>>()?;
            let part_values = values.iter().map(t).collect::<Result<Vec<_>>>()?;
            out.inserts(output_batch(&self.node, (start, end), part_keys, part_values, ordinals.len())?);
        }
        // Release buffers no open session refers to.
        for (_, session) in &closed {
            for &(buffer, _) in &session.rows {
                let live = &mut self.live_rows[buffer as usize];
                *live -= 1;
                if *live == 0 {
                    if let Some(released) = self.buffers[buffer as usize].take() {
                        self.buffer_bytes = self.buffer_bytes.saturating_sub(released.size_bytes());
                    }
                }
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
        let buffer = self.buffers.len() as u32;
        let mut live = 0usize;
        let watermark = self.watermark.0;
        for (row, key) in ids.iter().enumerate() {
            if !times.is_valid(row) {
                continue;
            }
            let ts = times.value(row);
            if ts.saturating_add(self.gap_ms) <= watermark {
                PipelineMetrics::add(&self.metrics.late_rows, 1);
                continue;
            }
            self.add_row(*key, ts, (buffer, row as u32));
            live += 1;
        }
        self.ids = ids;
        if live > 0 {
            self.buffer_bytes += inputs.size_bytes();
        }
        self.buffers.push(if live > 0 { Some(inputs) } else { None });
        self.live_rows.push(live);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        advance_watermark(self, watermark, out)
    }

    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        // Every row of every open session, with its session's bounds, as one batch.
        let mut rows = Vec::new();
        let (mut ordinals, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        let mut ordinal = 0i64;
        for sessions in &self.sessions {
            for session in sessions {
                for &(buffer, row) in &session.rows {
                    rows.push((buffer as usize, row as usize));
                    ordinals.push(ordinal);
                    starts.push(session.start);
                    ends.push(session.end);
                }
                ordinal += 1;
            }
        }
        let meta = RecordBatch::try_from_iter([("watermark", Arc::new(Int64Array::from(vec![self.watermark.0])) as ArrayRef)])
            .map_err(|e| EngineError::State(e.to_string()))?;
        if rows.is_empty() {
            // No open session (nothing to gather rows from): only the watermark.
            return Ok(Some(OperatorState { parts: vec![("meta".to_string(), meta)] }));
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
        columns.push(("watermark".to_string(), Arc::new(Int64Array::from(vec![self.watermark.0; rows.len()]))));
        let fields: Vec<Field> = columns.iter().map(|(n, c)| Field::new(n, c.data_type().clone(), true)).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, c)| c).collect(), &options)
            .map_err(|e| EngineError::State(e.to_string()))?;
        Ok(Some(OperatorState { parts: vec![("meta".to_string(), meta), ("sessions".to_string(), batch)] }))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        let bad = || EngineError::State("session aggregate snapshot does not match the query".into());
        for (name, batch) in state.parts {
            let int64 = |name: &str| -> Result<Int64Array> {
                batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned()).ok_or_else(bad)
            };
            if name == "meta" {
                self.watermark = EventTime(int64("watermark")?.value(0));
                continue;
            }
            let column = |name: &str| batch.column_by_name(name).cloned().ok_or_else(bad);
            let keys = (0..self.key_exprs.len()).map(|i| column(&format!("k{i}"))).collect::<Result<Vec<_>>>()?;
            let mut args = Vec::new();
            let mut filters = Vec::new();
            for (a, filter) in self.node.filters.iter().enumerate() {
                let count = self.node.aggregates[a].expressions().len();
                args.push((0..count).map(|i| column(&format!("a{a}_{i}"))).collect::<Result<Vec<_>>>()?);
                filters.push(match filter {
                    None => None,
                    Some(_) => Some(column(&format!("f{a}"))?.as_any().downcast_ref::<BooleanArray>().cloned().ok_or_else(bad)?),
                });
            }
            let (ordinals, starts, ends) = (int64("session")?, int64("start")?, int64("end")?);
            let mut ids = Vec::new();
            self.keys.intern(&keys, batch.num_rows(), &mut ids)?;
            self.sessions.resize_with(self.keys.len(), Vec::new);
            // Rows point into this batch, the next buffer (earlier restores added theirs).
            let buffer = self.buffers.len() as u32;
            let mut row = 0;
            while row < batch.num_rows() {
                let ordinal = ordinals.value(row);
                let (key, start, end) = (ids[row], starts.value(row), ends.value(row));
                let mut session = Session { start, end, rows: Vec::new() };
                while row < batch.num_rows() && ordinals.value(row) == ordinal {
                    session.rows.push((buffer, row as u32));
                    row += 1;
                }
                self.by_end.insert((end, key, start));
                let sessions = &mut self.sessions[key];
                let position = sessions.partition_point(|s| s.start < start);
                sessions.insert(position, session);
            }
            self.live_rows.push(batch.num_rows());
            let inputs = Inputs { keys, args, filters };
            if batch.num_rows() > 0 {
                self.buffer_bytes += inputs.size_bytes();
            }
            self.buffers.push(if batch.num_rows() > 0 { Some(inputs) } else { None });
        }
        Ok(())
    }

    /// `sessions` rows lead with the group key (`k0`, ...); `meta` is per instance.
    /// Interned keys, the rows of open sessions (kept until they close) and a
    /// small fixed cost per open session.
    fn state_bytes(&self) -> usize {
        let keys = match &self.keys {
            Groups::Keyed(values) => values.size(),
            Groups::Single { .. } => 0,
        };
        keys + self.buffer_bytes + self.by_end.len() * SESSION_ENTRY_BYTES
    }

    fn state_key_columns(&self, part: &str) -> usize {
        if part == "sessions" {
            self.key_exprs.len()
        } else {
            0
        }
    }
}
