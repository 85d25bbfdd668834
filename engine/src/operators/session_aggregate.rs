//! `SESSION` windows: per key, rows closer than the gap form one window, which is
//! emitted when the watermark passes its end (last row + gap).
//!
//! Sessions merge as rows arrive, so their bounds are not known up front. The
//! operator keeps the aggregate inputs of rows in open sessions (keys, arguments
//! and filters: only the columns the aggregates need) and aggregates a session's
//! rows with DataFusion `GroupsAccumulator`s when it closes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, TimestampMillisecondArray};
use datafusion::arrow::compute::{cast, interleave};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use eddy_sql::{WindowAggregateNode, WindowKind};

use super::arrow_error;
use super::window_aggregate::{key_schema, output_batch, GroupState, Groups, Inputs};
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::PipelineMetrics;
use crate::operator::{Emitter, Operator};

const NAME: &str = "SessionAggregate";

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
    live_rows: Vec<usize>,
    watermark: EventTime,
    metrics: Arc<PipelineMetrics>,
    ids: Vec<usize>,
}

impl SessionAggregateOperator {
    /// A session aggregate for `node`, whose window must be SESSION.
    pub fn new(node: WindowAggregateNode, metrics: Arc<PipelineMetrics>) -> Result<Self> {
        let Some(WindowKind::Session { gap_ms }) = node.window else {
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
        let mut merged = Session { start, end, rows: vec![row] };
        // Sessions overlap the new one when they start before its end and end after its start.
        let mut i = 0;
        while i < sessions.len() {
            let s = &sessions[i];
            if s.start < merged.end && merged.start < s.end {
                let s = sessions.remove(i);
                self.by_end.remove(&(s.end, key, s.start));
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                merged.rows.extend(s.rows);
            } else {
                i += 1;
            }
        }
        self.by_end.insert((merged.end, key, merged.start));
        let position = sessions.partition_point(|s| s.start < merged.start);
        sessions.insert(position, merged);
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
        let gather = |select: &dyn Fn(&Inputs) -> Option<ArrayRef>, rows: &[(usize, usize)]| -> Result<Option<ArrayRef>> {
            // Map buffer ids to positions in a dense list of the buffers involved.
            let mut dense: HashMap<usize, usize> = HashMap::new();
            let mut arrays: Vec<ArrayRef> = Vec::new();
            let mut picks = Vec::with_capacity(rows.len());
            for &(buffer, row) in rows {
                let position = match dense.get(&buffer) {
                    Some(p) => *p,
                    None => {
                        let inputs = self.buffers[buffer].as_ref().ok_or_else(|| EngineError::Internal("session row in a dropped buffer".into()))?;
                        let Some(array) = select(inputs) else { return Ok(None) };
                        arrays.push(array);
                        dense.insert(buffer, arrays.len() - 1);
                        arrays.len() - 1
                    }
                };
                picks.push((position, row));
            }
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            Ok(Some(interleave(&refs, &picks).map_err(|e| arrow_error(NAME, e))?))
        };
        let aggregate_count = self.node.aggregates.len();
        let mut args: Vec<Vec<ArrayRef>> = Vec::with_capacity(aggregate_count);
        let mut filters: Vec<Option<BooleanArray>> = Vec::with_capacity(aggregate_count);
        for a in 0..aggregate_count {
            let arg_count = self.buffers.iter().flatten().next().map_or(0, |b| b.args[a].len());
            let mut values = Vec::with_capacity(arg_count);
            for k in 0..arg_count {
                values.extend(gather(&|i: &Inputs| Some(Arc::clone(&i.args[a][k])), &rows)?);
            }
            args.push(values);
            let filter = gather(&|i: &Inputs| i.filters[a].as_ref().map(|f| Arc::new(f.clone()) as ArrayRef), &rows)?;
            filters.push(filter.and_then(|f| f.as_any().downcast_ref::<BooleanArray>().cloned()));
        }
        // Keys: the first row of each session.
        let first_rows: Vec<(usize, usize)> = closed.iter().map(|(_, s)| (s.rows[0].0 as usize, s.rows[0].1 as usize)).collect();
        let mut keys = Vec::with_capacity(self.key_exprs.len());
        for k in 0..self.key_exprs.len() {
            keys.extend(gather(&|i: &Inputs| Some(Arc::clone(&i.keys[k])), &first_rows)?);
        }
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
            out.batch(output_batch(&self.node, (start, end), part_keys, part_values, ordinals.len())?);
        }
        // Release buffers no open session refers to.
        for (_, session) in &closed {
            for &(buffer, _) in &session.rows {
                let live = &mut self.live_rows[buffer as usize];
                *live -= 1;
                if *live == 0 {
                    self.buffers[buffer as usize] = None;
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

    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Emitter) -> Result<()> {
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
        self.buffers.push(if live > 0 { Some(inputs) } else { None });
        self.live_rows.push(live);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire(watermark.0, out)?;
        }
        out.watermark(watermark);
        Ok(())
    }
}
