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

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;

use super::join_rows::{JoinRows, Picked, StoredBatches};
use super::rows::{RowBytes, RowMap};
use crate::changelog::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::operator::{Emitter, Operator};
use crate::plan::{JoinNode, JoinSide, JoinType, TimeBounds};
use crate::state::OperatorState;

const NAME: &str = "IntervalJoin";

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

/// One side's rows in state, by key. Keys are interned in slots: the expiry
/// queue names a slot, so a waiting row costs no copy of its key and expiry no
/// hash lookup (Nexmark q7 keeps every bid for ten seconds).
struct SideState {
    stored: StoredBatches,
    by_key: RowMap<u32>,
    slots: Vec<Slot>,
    /// Slots whose rows all left, to reuse.
    free: Vec<u32>,
    /// Slots to look at when the watermark passes a time, by that time. A slot
    /// freed and reused meanwhile is looked at in vain: only rows due leave.
    expiry: BTreeMap<i64, Vec<u32>>,
}

/// A key's waiting rows; a free slot has none.
#[derive(Default)]
struct Slot {
    key: RowBytes,
    waiting: Vec<Waiting>,
}

impl SideState {
    fn new() -> Self {
        SideState { stored: StoredBatches::default(), by_key: RowMap::default(), slots: Vec::new(), free: Vec::new(), expiry: BTreeMap::new() }
    }

    /// The rows waiting under `key`.
    fn waiting(&self, key: &[u8]) -> Option<(u32, &[Waiting])> {
        self.by_key.get(key).map(|&slot| (slot, &self.slots[slot as usize].waiting[..]))
    }

    /// Puts a row of a stored batch in waiting under `key`, until the watermark passes `last_chance`.
    fn wait(&mut self, key: &[u8], row: Waiting, last_chance: i64) {
        let slot = match self.by_key.get(key) {
            Some(&slot) => slot,
            None => {
                let key: RowBytes = key.into();
                let slot = match self.free.pop() {
                    Some(slot) => slot,
                    None => {
                        self.slots.push(Slot::default());
                        (self.slots.len() - 1) as u32
                    }
                };
                self.slots[slot as usize].key = key.clone();
                self.by_key.insert(key, slot);
                slot
            }
        };
        self.slots[slot as usize].waiting.push(row);
        let due = self.expiry.entry(last_chance).or_default();
        if due.last() != Some(&slot) {
            due.push(slot);
        }
    }

    /// Takes the rows `leaves` says are over out of `slot`, freeing it when none is left.
    fn leave(&mut self, slot: u32, mut leaves: impl FnMut(&Waiting) -> bool) {
        let entry = &mut self.slots[slot as usize];
        if entry.waiting.is_empty() {
            return;
        }
        entry.waiting.retain(|w| !leaves(w));
        if entry.waiting.is_empty() {
            self.by_key.remove(&entry.key);
            entry.key = RowBytes::default();
            self.free.push(slot);
        }
    }

    /// Every waiting row.
    fn all_waiting(&self) -> impl Iterator<Item = &Waiting> {
        self.slots.iter().flat_map(|slot| &slot.waiting)
    }
}

/// The interval join operator; see the module docs.
pub struct IntervalJoinOperator {
    join: JoinRows,
    bounds: TimeBounds,
    sides: [SideState; 2],
    watermark: EventTime,
    emitted_watermark: EventTime,
}

impl IntervalJoinOperator {
    /// A join for `node`.
    pub fn new(node: JoinNode) -> Result<Self> {
        let bounds = node.time_bounds().ok_or_else(|| EngineError::Internal("an interval join was planned for a join without time bounds".into()))?;
        Ok(IntervalJoinOperator {
            join: JoinRows::new(node, NAME)?,
            bounds,
            sides: [SideState::new(), SideState::new()],
            watermark: EventTime::MIN,
            emitted_watermark: EventTime::MIN,
        })
    }

    fn time_column(&self, side: JoinSide) -> usize {
        match side {
            JoinSide::Left => self.bounds.left_time,
            JoinSide::Right => self.bounds.right_time,
        }
    }

    fn times(&self, side: JoinSide, batch: &RecordBatch) -> Result<Vec<Option<i64>>> {
        let column = batch.column(self.time_column(side));
        let millis = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(|e| self.join.arrow(e))?;
        Ok(millis.as_primitive::<TimestampMillisecondType>().iter().collect())
    }

    fn on_side_rows(&mut self, side: JoinSide, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        let keys = self.join.keys(side, &batch)?;
        let times = self.times(side, &batch)?;
        let bounds = self.bounds;
        // Candidate pairs: same key, times within the bounds.
        // Each candidate's incoming row, stored row, and place in its key's waiting list.
        let (mut incoming, mut stored, mut positions) = (Vec::new(), Vec::new(), Vec::new());
        let other = &self.sides[side.other() as usize];
        for (i, time) in times.iter().enumerate() {
            let (Some(key), Some(time)) = (keys.get(i), time) else { continue };
            let Some((slot, waiting)) = other.waiting(key) else { continue };
            for (position, w) in waiting.iter().enumerate() {
                let distance = match side {
                    JoinSide::Left => w.time - time,
                    JoinSide::Right => time - w.time,
                };
                if (bounds.lower_ms..=bounds.upper_ms).contains(&distance) {
                    incoming.push(i as u32);
                    stored.push((w.batch, w.row));
                    positions.push((slot, position));
                }
            }
        }
        let mut matched = vec![Matched::No; batch.num_rows()];
        if !incoming.is_empty() {
            let incoming_rows = UInt32Array::from(incoming);
            let keep = self.join.filter_pairs(side, &batch, &incoming_rows, Picked::stored(&other.stored, &stored))?;
            let kept: Vec<usize> = (0..keep.len()).filter(|&p| keep.is_valid(p) && keep.value(p)).collect();
            let other = &mut self.sides[side.other() as usize];
            // Stored rows meeting their first partner now: what a semi join emits of them.
            let mut first_matches = Vec::new();
            for &p in &kept {
                let row = incoming_rows.value(p) as usize;
                matched[row] = Matched::Yes;
                let (slot, position) = positions[p];
                if let Some(w) = other.slots[slot as usize].waiting.get_mut(position) {
                    if w.matched == Matched::No {
                        first_matches.push((w.batch, w.row));
                    }
                    w.matched = Matched::Yes;
                }
            }
            if let JoinType::Semi(emitted) = self.join.node.join_type {
                if emitted == side {
                    let rows = UInt32Array::from((0..batch.num_rows() as u32).filter(|&i| matched[i as usize] == Matched::Yes).collect::<Vec<_>>());
                    if !rows.is_empty() {
                        out.inserts(self.join.padded(side, Picked::Incoming(&batch, &rows), rows.len())?);
                    }
                } else if !first_matches.is_empty() {
                    let other = &self.sides[emitted as usize];
                    out.inserts(self.join.padded(emitted, Picked::stored(&other.stored, &first_matches), first_matches.len())?);
                }
            }
            if !kept.is_empty() && self.join.node.join_type.emits_pairs() {
                let incoming_kept = UInt32Array::from(kept.iter().map(|&p| incoming_rows.value(p)).collect::<Vec<_>>());
                let stored_kept: Vec<(u64, u32)> = kept.iter().map(|&p| stored[p]).collect();
                let other = &self.sides[side.other() as usize];
                let here = Picked::Incoming(&batch, &incoming_kept);
                let there = Picked::stored(&other.stored, &stored_kept);
                out.inserts(self.join.pairs(side, here, there, incoming_kept.len())?);
            }
        }
        // Rows that may still meet a partner wait; an outer join's others leave now if alone.
        let mut alone = Vec::new();
        let mut waiting = Vec::new();
        for (i, time) in times.into_iter().enumerate() {
            match (keys.get(i), time) {
                (Some(key), Some(time)) if bounds.last_chance(side, time) > self.watermark.0 => waiting.push((i, key, time)),
                _ if matched[i] == Matched::No => alone.push(i as u32),
                _ => {}
            }
        }
        if !waiting.is_empty() {
            let state = &mut self.sides[side as usize];
            let id = state.stored.add(&batch, waiting.len());
            for (i, key, time) in waiting {
                state.wait(key, Waiting { batch: id, row: i as u32, time, matched: matched[i] }, bounds.last_chance(side, time));
            }
        }
        if self.join.node.join_type.keeps_unmatched(side) && !alone.is_empty() {
            let rows = UInt32Array::from(alone);
            out.inserts(self.join.padded(side, Picked::Incoming(&batch, &rows), rows.len())?);
        }
        Ok(())
    }

    /// Takes the rows of `side` that can meet no partner any more out of its index;
    /// returns those that never met one, and the batches each taken row held (to
    /// release once the padded rows are built from them).
    fn expire(&mut self, side: JoinSide) -> (Vec<(u64, u32)>, Vec<u64>) {
        let watermark = self.watermark.0;
        let bounds = self.bounds;
        let state = &mut self.sides[side as usize];
        let later = match watermark.checked_add(1) {
            Some(after) => state.expiry.split_off(&after),
            None => BTreeMap::new(),
        };
        // Each slot once, however many of its rows' times the watermark passed:
        // a key with many rows would otherwise be scanned once per row.
        let mut slots: Vec<u32> = std::mem::replace(&mut state.expiry, later).into_values().flatten().collect();
        slots.sort_unstable();
        slots.dedup();
        let mut alone = Vec::new();
        let mut released = Vec::new();
        for slot in slots {
            state.leave(slot, |w| {
                if bounds.last_chance(side, w.time) > watermark {
                    return false;
                }
                if w.matched == Matched::No {
                    alone.push((w.time, w.batch, w.row));
                }
                released.push(w.batch);
                true
            });
        }
        // Rows left alone go out in the order of their times, then of their arrival.
        alone.sort_unstable();
        (alone.into_iter().map(|(_, batch, row)| (batch, row)).collect(), released)
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
            if self.join.node.join_type.keeps_unmatched(side) && !alone.is_empty() {
                let count = alone.len();
                let padded = self.join.padded(side, Picked::stored(&self.sides[side as usize].stored, &alone), count)?;
                out.inserts(padded);
            }
            for batch in released {
                self.sides[side as usize].stored.release(batch);
            }
        }
        let delayed = match watermark {
            EventTime::MAX => EventTime::MAX,
            EventTime(ms) => EventTime(ms.saturating_sub(self.bounds.watermark_delay_ms())),
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
            let entries: Vec<Waiting> = state.all_waiting().copied().collect();
            let rows: Vec<(u64, u32)> = entries.iter().map(|w| (w.batch, w.row)).collect();
            let matched = BooleanArray::from(entries.iter().map(|w| w.matched == Matched::Yes).collect::<Vec<_>>());
            let extra = vec![(Field::new("matched", DataType::Boolean, false), Arc::new(matched) as _)];
            parts.push((side.name().to_string(), self.join.state_part(side, &state.stored, &rows, extra)?));
        }
        Ok(Some(OperatorState::new(parts)))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        for (name, part) in state.parts {
            let (side, rows, extra) = self.join.restored_part(&name, &part, 1)?;
            let matched = extra[0].as_boolean().clone();
            let keys = self.join.keys(side, &rows)?;
            let times = self.times(side, &rows)?;
            let bounds = self.bounds;
            let state = &mut self.sides[side as usize];
            let id = state.stored.add(&rows, rows.num_rows());
            for (i, time) in times.into_iter().enumerate() {
                let (Some(key), Some(time)) = (keys.get(i), time) else {
                    state.stored.release(id);
                    continue;
                };
                let matched = if matched.value(i) { Matched::Yes } else { Matched::No };
                state.wait(key, Waiting { batch: id, row: i as u32, time, matched }, bounds.last_chance(side, time));
            }
        }
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.sides.iter().map(|s| s.stored.bytes()).sum()
    }

    /// Join keys with rows waiting, per side, added up (a key waiting on both
    /// sides counts twice). Falls as the watermark passes a key's last row's last chance.
    fn state_keys(&self) -> usize {
        self.sides.iter().map(|s| s.by_key.len()).sum()
    }

    fn state_key_columns(&self, part: &str) -> usize {
        self.join.state_key_columns(part)
    }
}
