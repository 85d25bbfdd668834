//! The regular join (a join without time bounds, see [`crate::plan::JoinBound::Unbounded`]):
//! Flink's `StreamingJoinOperator` over append-only inputs. Each side keeps its
//! rows by key; a new row probes the other side's rows with its key, and each
//! candidate pair that satisfies the whole `ON` condition (evaluated vectorised
//! on the pairs) leaves at once.
//!
//! Each stored row counts its partners, which decides what an outer or anti
//! join emits, as Flink's does:
//! - an outer row without a partner is emitted at once padded with NULLs
//!   (`+I`); when its first partner comes, that row is taken back (`-D`) before
//!   the pair is emitted (`+I`);
//! - an anti join emits a row without a partner at once and takes it back (`-D`)
//!   when its first partner comes; a semi join emits a row when its first
//!   partner comes, once.
//!
//! State is bounded two ways. With `'table.exec.state.ttl'` a row leaves once it
//! has not been written (stored, or its partner count changed) for that long,
//! in processing time, silently, as in Flink. And once one side has ended (a
//! bounded table, such as a dimension file read once), no row can come for the
//! other side's rows to meet: they are dropped and new ones are not stored, so
//! enriching a stream from a file costs one hash table.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, UInt32Type};
use datafusion::arrow::record_batch::RecordBatch;

use super::idle_expiry::wall_clock_ms;
pub use super::idle_expiry::Clock;
use super::join_rows::{JoinRows, Picked, StoredBatches};
use super::rows::{RowBytes, RowMap};
use crate::changelog::{ChangeBatch, RowKind};
use crate::error::{EngineError, Result};
use crate::message::{CheckpointId, EventTime};
use crate::operator::{Emitter, Operator};
use crate::plan::{JoinBound, JoinNode, JoinSide, JoinType};
use crate::state::OperatorState;

const NAME: &str = "RegularJoin";

/// A row in state.
#[derive(Debug, Clone, Copy)]
struct Stored {
    batch: u64,
    row: u32,
    /// How many rows of the other side it has met.
    partners: u32,
    /// When it was last written, in processing time (ms since the epoch): the state TTL counts from here.
    written_ms: i64,
}

/// Whether one of the join's inputs has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Open,
    Ended,
}

/// One side's rows in state, by key.
#[derive(Default)]
struct SideRows {
    stored: StoredBatches,
    by_key: RowMap<Vec<Stored>>,
    /// With a state TTL: keys to look at once the clock passes a time, by that time.
    expiry: BTreeMap<i64, Vec<RowBytes>>,
}

impl SideRows {
    fn store(&mut self, key: RowBytes, row: Stored, ttl_ms: Option<i64>) {
        if let Some(ttl) = ttl_ms {
            self.expiry.entry(row.written_ms.saturating_add(ttl)).or_default().push(key.clone());
        }
        self.by_key.entry(key).or_default().push(row);
    }

    /// Drops the rows not written for `ttl_ms` by `now_ms`.
    fn expire(&mut self, now_ms: i64, ttl_ms: i64) {
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            for key in entry.remove() {
                let Some(rows) = self.by_key.get_mut(&key) else { continue };
                let stored = &mut self.stored;
                rows.retain(|r| {
                    let live = r.written_ms.saturating_add(ttl_ms) > now_ms;
                    if !live {
                        stored.release(r.batch);
                    }
                    live
                });
                if rows.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }
}

/// The regular join operator; see the module docs.
pub struct RegularJoinOperator {
    join: JoinRows,
    state_ttl_ms: Option<i64>,
    sides: [SideRows; 2],
    inputs: [Input; 2],
    clock: Clock,
}

impl RegularJoinOperator {
    /// A join for `node`, its state TTL counted in wall-clock time.
    pub fn new(node: JoinNode) -> Result<Self> {
        Self::with_clock(node, Box::new(wall_clock_ms))
    }

    /// A join for `node` whose state TTL counts in `clock`'s milliseconds.
    pub fn with_clock(node: JoinNode, clock: Clock) -> Result<Self> {
        let JoinBound::Unbounded { state_ttl_ms } = node.bounded_by else {
            return Err(EngineError::Internal("a regular join was planned for a join with time bounds".into()));
        };
        Ok(RegularJoinOperator {
            join: JoinRows::new(node, NAME)?,
            state_ttl_ms,
            sides: [SideRows::default(), SideRows::default()],
            inputs: [Input::Open, Input::Open],
            clock,
        })
    }

    /// Drops what the state TTL says is over; returns the time it is now.
    fn now_expired(&mut self) -> i64 {
        let now = (self.clock)();
        if let Some(ttl) = self.state_ttl_ms {
            self.sides.iter_mut().for_each(|side| side.expire(now, ttl));
        }
        now
    }

    /// Whether a row of `side` must count its partners in state: when its first
    /// partner changes what was emitted for it.
    fn counts_partners(&self, side: JoinSide) -> bool {
        let join_type = self.join.node.join_type;
        join_type.keeps_unmatched(side) || join_type == JoinType::Semi(side)
    }

    fn on_side_rows(&mut self, side: JoinSide, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        let now = self.now_expired();
        let join_type = self.join.node.join_type;
        let keys = self.join.key_rows(side, &batch)?;
        // Candidate pairs: same key. Each candidate's incoming row, stored row, and place in its key's list.
        let (mut incoming, mut stored, mut positions) = (Vec::new(), Vec::new(), Vec::new());
        let other = &self.sides[side.other() as usize];
        for (i, key) in keys.iter().enumerate() {
            let Some(rows) = key.as_ref().and_then(|key| other.by_key.get(key)) else { continue };
            for (position, r) in rows.iter().enumerate() {
                incoming.push(i as u32);
                stored.push((r.batch, r.row));
                positions.push(position);
            }
        }
        let incoming = UInt32Array::from(incoming);
        let kept: Vec<usize> = if incoming.is_empty() {
            Vec::new()
        } else {
            let keep = self.join.filter_pairs(side, &batch, &incoming, Picked::stored(&other.stored, &stored))?;
            (0..keep.len()).filter(|&p| keep.is_valid(p) && keep.value(p)).collect()
        };
        // Count the partners on both sides; the stored rows meeting their first partner now.
        let mut partners = vec![0u32; batch.num_rows()];
        let mut first_met = Vec::new();
        let (rewrite, ttl) = (self.counts_partners(side.other()), self.state_ttl_ms);
        let other = &mut self.sides[side.other() as usize];
        for &p in &kept {
            let row = incoming.value(p) as usize;
            partners[row] += 1;
            let Some(key) = keys[row].as_ref() else { continue };
            let Some(r) = other.by_key.get_mut(key).and_then(|rows| rows.get_mut(positions[p])) else { continue };
            if r.partners == 0 {
                first_met.push((r.batch, r.row));
            }
            r.partners += 1;
            if let (true, Some(ttl)) = (rewrite, ttl) {
                r.written_ms = now;
                other.expiry.entry(now.saturating_add(ttl)).or_default().push(key.clone());
            }
        }
        let other_side = side.other();
        if !first_met.is_empty() {
            let rows = Picked::stored(&self.sides[other_side as usize].stored, &first_met);
            if join_type.keeps_unmatched(other_side) {
                // Emitted alone (padded, or by an anti join) before: taken back.
                out.changes(ChangeBatch::all(RowKind::Delete, self.join.padded(other_side, rows, first_met.len())?));
            } else if join_type == JoinType::Semi(other_side) {
                out.inserts(self.join.padded(other_side, rows, first_met.len())?);
            }
        }
        if join_type.emits_pairs() && !kept.is_empty() {
            let here = UInt32Array::from(kept.iter().map(|&p| incoming.value(p)).collect::<Vec<_>>());
            let there: Vec<(u64, u32)> = kept.iter().map(|&p| stored[p]).collect();
            let there = Picked::stored(&self.sides[other_side as usize].stored, &there);
            out.inserts(self.join.pairs(side, Picked::Incoming(&batch, &here), there, here.len())?);
        }
        let rows_where = |met: fn(u32) -> bool| UInt32Array::from((0..batch.num_rows() as u32).filter(|&i| met(partners[i as usize])).collect::<Vec<_>>());
        if join_type == JoinType::Semi(side) {
            let met = rows_where(|n| n > 0);
            if !met.is_empty() {
                out.inserts(self.join.padded(side, Picked::Incoming(&batch, &met), met.len())?);
            }
        }
        if join_type.keeps_unmatched(side) {
            let alone = rows_where(|n| n == 0);
            if !alone.is_empty() {
                out.inserts(self.join.padded(side, Picked::Incoming(&batch, &alone), alone.len())?);
            }
        }
        // Rows are kept for the other side's rows to come, if any can; a semi or
        // anti join's row that has a partner is done (no partner is ever taken back).
        if self.inputs[other_side as usize] == Input::Ended {
            return Ok(());
        }
        let done_when_met = matches!(join_type, JoinType::Semi(s) | JoinType::Anti(s) if s == side);
        let keep: Vec<(usize, RowBytes)> =
            keys.into_iter().enumerate().filter_map(|(i, key)| key.filter(|_| !(done_when_met && partners[i] > 0)).map(|key| (i, key))).collect();
        if !keep.is_empty() {
            let state = &mut self.sides[side as usize];
            let id = state.stored.add(&batch, keep.len());
            for (i, key) in keep {
                state.store(key, Stored { batch: id, row: i as u32, partners: partners[i], written_ms: now }, self.state_ttl_ms);
            }
        }
        Ok(())
    }
}

impl Operator for RegularJoinOperator {
    fn name(&self) -> &str {
        NAME
    }

    fn on_rows(&mut self, _rows: ChangeBatch, _out: &mut Emitter) -> Result<()> {
        Err(EngineError::Internal("a regular join was given rows without the side they come from".into()))
    }

    fn on_input_rows(&mut self, input: usize, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        let side = JoinSide::of_input(input).ok_or_else(|| EngineError::Internal(format!("a regular join has two inputs, not input {input}")))?;
        self.on_side_rows(side, rows.into_inserts(NAME)?, out)
    }

    /// No row of `input` can come any more: the other side's rows can meet nothing new.
    fn on_input_end(&mut self, input: usize, _out: &mut Emitter) -> Result<()> {
        if let Some(side) = JoinSide::of_input(input) {
            self.inputs[side as usize] = Input::Ended;
            self.sides[side.other() as usize] = SideRows::default();
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        self.now_expired();
        out.watermark(watermark);
        Ok(())
    }

    fn on_barrier(&mut self, _id: CheckpointId, _out: &mut Emitter) -> Result<()> {
        self.now_expired();
        Ok(())
    }

    /// One part per side: the key columns, the side's columns, each row's partner count and last write.
    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let mut parts = Vec::new();
        for side in [JoinSide::Left, JoinSide::Right] {
            let state = &self.sides[side as usize];
            let entries: Vec<Stored> = state.by_key.values().flatten().copied().collect();
            let rows: Vec<(u64, u32)> = entries.iter().map(|r| (r.batch, r.row)).collect();
            let partners = UInt32Array::from(entries.iter().map(|r| r.partners).collect::<Vec<_>>());
            let written = Int64Array::from(entries.iter().map(|r| r.written_ms).collect::<Vec<_>>());
            let extra = vec![
                (Field::new("partners", DataType::UInt32, false), Arc::new(partners) as _),
                (Field::new("written_ms", DataType::Int64, false), Arc::new(written) as _),
            ];
            parts.push((side.name().to_string(), self.join.state_part(side, &state.stored, &rows, extra)?));
        }
        Ok(Some(OperatorState::new(parts)))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        for (name, part) in state.parts {
            let (side, rows, extra) = self.join.restored_part(&name, &part, 2)?;
            let (Some(partners), Some(written)) = (extra[0].as_primitive_opt::<UInt32Type>(), extra[1].as_primitive_opt::<Int64Type>()) else {
                return Err(EngineError::State("a regular join's checkpoint has partner counts of another type (was it written by another version?)".into()));
            };
            let keys = self.join.key_rows(side, &rows)?;
            let state = &mut self.sides[side as usize];
            let id = state.stored.add(&rows, rows.num_rows());
            for (i, key) in keys.into_iter().enumerate() {
                let Some(key) = key else {
                    state.stored.release(id);
                    continue;
                };
                let row = Stored { batch: id, row: i as u32, partners: partners.value(i), written_ms: written.value(i) };
                state.store(key, row, self.state_ttl_ms);
            }
        }
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.sides.iter().map(|s| s.stored.bytes()).sum()
    }

    /// Join keys with rows stored, per side, added up (a key stored on both sides
    /// counts twice). Falls as the state TTL expires a key's last row, and to the
    /// other side's keys alone once one side has ended.
    fn state_keys(&self) -> usize {
        self.sides.iter().map(|s| s.by_key.len()).sum()
    }

    fn state_key_columns(&self, part: &str) -> usize {
        self.join.state_key_columns(part)
    }
}
