//! The event-time temporal join (see [`crate::plan::TemporalSides`]): Flink's
//! `TemporalRowTimeJoinOperator`, for `JOIN versioned FOR SYSTEM_TIME AS OF
//! probe.ts ON probe.k = versioned.k`.
//!
//! The versioned side's rows are versions: each holds for its key from its time
//! on, until the next one. They come as a changelog (a view keeping the last row
//! per key sends `-U` old, `+U` new): new rows and `+U`s are versions, a `-D`
//! ends its key's row at its time, and `-U`s say nothing a version does not
//! (Flink reads this input as upserts too). Two versions of a key at one time:
//! the later arrival holds.
//!
//! A probe row waits until the watermark (the lower of both inputs') reaches its
//! time, so every version up to that time has arrived; it then meets the version
//! of its key with the latest time at or before its own, if the rest of the `ON`
//! condition holds for that version (older versions are not tried, as in Flink).
//! A LEFT join emits a row that meets none padded with NULLs. The output is
//! append-only.
//!
//! Once the watermark passes a version's successor, no waiting or future row can
//! need it (later probe rows are at or above the watermark, late ones aside), so
//! a key keeps its versions from the last one at or before the watermark on.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;

use super::join_rows::{JoinRows, Picked, StoredBatches};
use super::rows::{RowBytes, RowMap};
use crate::changelog::{ChangeBatch, RowKind};
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::operator::{Emitter, Operator};
use crate::plan::{JoinBound, JoinNode, JoinSide, TemporalSides};
use crate::state::OperatorState;

const NAME: &str = "TemporalJoin";

/// A stored row: its batch and place in it.
type RowId = (u64, u32);

/// A probe row waiting for the watermark to reach its time.
#[derive(Debug, Clone)]
struct Waiting {
    key: Option<RowBytes>,
    row: RowId,
}

/// What a version says about its key from its time on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// The row holds.
    Holds,
    /// The key has no row (a `-D`).
    Deleted,
}

#[derive(Debug, Clone, Copy)]
struct Version {
    row: RowId,
    change: Change,
}

/// The temporal join operator; see the module docs.
pub struct TemporalJoinOperator {
    join: JoinRows,
    sides: TemporalSides,
    probe_rows: StoredBatches,
    /// Waiting probe rows by time.
    waiting: BTreeMap<i64, Vec<Waiting>>,
    version_rows: StoredBatches,
    versions: RowMap<BTreeMap<i64, Version>>,
    /// Keys whose older versions may be dropped once the watermark passes a time, by that time.
    prune_at: BTreeMap<i64, Vec<RowBytes>>,
    watermark: EventTime,
}

impl TemporalJoinOperator {
    /// A temporal join for `node`.
    pub fn new(node: JoinNode) -> Result<Self> {
        let JoinBound::Temporal(sides) = node.bounded_by else {
            return Err(EngineError::Internal("a temporal join was planned for a join without FOR SYSTEM_TIME AS OF".into()));
        };
        Ok(TemporalJoinOperator {
            join: JoinRows::new(node, NAME)?,
            sides,
            probe_rows: StoredBatches::default(),
            waiting: BTreeMap::new(),
            version_rows: StoredBatches::default(),
            versions: RowMap::default(),
            prune_at: BTreeMap::new(),
            watermark: EventTime::MIN,
        })
    }

    fn times(&self, side: JoinSide, batch: &RecordBatch) -> Result<Vec<Option<i64>>> {
        let column = batch.column(self.sides.time_column(side));
        let millis = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(|e| self.join.arrow(e))?;
        Ok(millis.as_primitive::<TimestampMillisecondType>().iter().collect())
    }

    /// Probe rows wait; one without a time can meet no version and leaves at once.
    fn on_probe_rows(&mut self, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        let probe = self.sides.probe;
        let keys = self.join.key_rows(probe, &batch)?;
        let times = self.times(probe, &batch)?;
        let timeless = UInt32Array::from((0..batch.num_rows() as u32).filter(|&i| times[i as usize].is_none()).collect::<Vec<_>>());
        if self.join.node.join_type.keeps_unmatched(probe) && !timeless.is_empty() {
            out.inserts(self.join.padded(probe, Picked::Incoming(&batch, &timeless), timeless.len())?);
        }
        let timed = batch.num_rows() - timeless.len();
        if timed == 0 {
            return Ok(());
        }
        let id = self.probe_rows.add(&batch, timed);
        for (i, (key, time)) in keys.into_iter().zip(times).enumerate() {
            if let Some(time) = time {
                self.waiting.entry(time).or_default().push(Waiting { key, row: (id, i as u32) });
            }
        }
        Ok(())
    }

    /// Each versioned row is a version of its key from its time on (see the module docs).
    fn on_version_rows(&mut self, changes: ChangeBatch) -> Result<()> {
        let side = self.sides.versioned();
        let batch = changes.rows().clone();
        let keys = self.join.key_rows(side, &batch)?;
        let times = self.times(side, &batch)?;
        let mut kept = Vec::new();
        for (i, (key, time)) in keys.into_iter().zip(times).enumerate() {
            let change = match changes.kind(i) {
                RowKind::Insert | RowKind::UpdateAfter => Change::Holds,
                RowKind::Delete => Change::Deleted,
                RowKind::UpdateBefore => continue,
            };
            if let (Some(key), Some(time)) = (key, time) {
                kept.push((key, time, i as u32, change));
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        let id = self.version_rows.add(&batch, kept.len());
        for (key, time, row, change) in kept {
            self.add_version(key, time, Version { row: (id, row), change });
        }
        Ok(())
    }

    fn add_version(&mut self, key: RowBytes, time: i64, version: Version) {
        self.prune_at.entry(time).or_default().push(key.clone());
        if let Some(replaced) = self.versions.entry(key).or_default().insert(time, version) {
            self.version_rows.release(replaced.row.0);
        }
    }

    /// Emits the waiting probe rows the watermark has reached, each with its version.
    fn emit_due(&mut self, out: &mut Emitter) -> Result<()> {
        let watermark = self.watermark.0;
        let mut due: Vec<(i64, Waiting)> = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let time = *entry.key();
            due.extend(entry.remove().into_iter().map(|w| (time, w)));
        }
        if due.is_empty() {
            return Ok(());
        }
        let probe = self.sides.probe;
        let rows: Vec<RowId> = due.iter().map(|(_, w)| w.row).collect();
        let probe_batch = self.join.stored_rows(probe, &self.probe_rows, &rows)?;
        for row in &rows {
            self.probe_rows.release(row.0);
        }
        // Each due row's version, where its key has one holding at its time.
        let (mut candidates, mut version_rows) = (Vec::new(), Vec::new());
        for (i, (time, waiting)) in due.iter().enumerate() {
            let current = waiting.key.as_ref().and_then(|key| self.versions.get(key)).and_then(|v| v.range(..=*time).next_back());
            if let Some((_, Version { row, change: Change::Holds })) = current {
                candidates.push(i as u32);
                version_rows.push(*row);
            }
        }
        let candidates = UInt32Array::from(candidates);
        let keep = if candidates.is_empty() {
            BooleanArray::from(Vec::<bool>::new())
        } else {
            self.join.filter_pairs(probe, &probe_batch, &candidates, Picked::stored(&self.version_rows, &version_rows))?
        };
        let kept: Vec<usize> = (0..keep.len()).filter(|&p| keep.is_valid(p) && keep.value(p)).collect();
        if !kept.is_empty() {
            let here = UInt32Array::from(kept.iter().map(|&p| candidates.value(p)).collect::<Vec<_>>());
            let there: Vec<RowId> = kept.iter().map(|&p| version_rows[p]).collect();
            let there = Picked::stored(&self.version_rows, &there);
            out.inserts(self.join.pairs(probe, Picked::Incoming(&probe_batch, &here), there, here.len())?);
        }
        if self.join.node.join_type.keeps_unmatched(probe) {
            let mut met = vec![false; due.len()];
            for &p in &kept {
                met[candidates.value(p) as usize] = true;
            }
            let alone = UInt32Array::from((0..due.len() as u32).filter(|&i| !met[i as usize]).collect::<Vec<_>>());
            if !alone.is_empty() {
                out.inserts(self.join.padded(probe, Picked::Incoming(&probe_batch, &alone), alone.len())?);
            }
        }
        Ok(())
    }

    /// Drops the versions no probe row can need any more: per key, those before
    /// the last one at or before the watermark (and that one too, if it is a deletion).
    fn prune(&mut self) {
        let watermark = self.watermark.0;
        while let Some(entry) = self.prune_at.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for key in entry.remove() {
                let Some(versions) = self.versions.get_mut(&key) else { continue };
                let Some(current) = versions.range(..=watermark).next_back().map(|(t, _)| *t) else { continue };
                let mut newer = versions.split_off(&current);
                for old in versions.values() {
                    self.version_rows.release(old.row.0);
                }
                if newer.len() == 1 && newer[&current].change == Change::Deleted {
                    self.version_rows.release(newer[&current].row.0);
                    newer.clear();
                }
                if newer.is_empty() {
                    self.versions.remove(&key);
                } else {
                    *versions = newer;
                }
            }
        }
    }
}

impl Operator for TemporalJoinOperator {
    fn name(&self) -> &str {
        NAME
    }

    fn on_rows(&mut self, _rows: ChangeBatch, _out: &mut Emitter) -> Result<()> {
        Err(EngineError::Internal("a temporal join was given rows without the side they come from".into()))
    }

    fn on_input_rows(&mut self, input: usize, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        let side = JoinSide::of_input(input).ok_or_else(|| EngineError::Internal(format!("a temporal join has two inputs, not input {input}")))?;
        if side == self.sides.probe {
            self.on_probe_rows(rows.into_inserts(NAME)?, out)
        } else {
            self.on_version_rows(rows)
        }
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        self.emit_due(out)?;
        self.prune();
        out.watermark(watermark);
        Ok(())
    }

    /// Two parts: the waiting probe rows, and the versions with whether each is a deletion.
    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let probe = self.sides.probe;
        let waiting: Vec<RowId> = self.waiting.values().flatten().map(|w| w.row).collect();
        let probes = self.join.state_part(probe, &self.probe_rows, &waiting, Vec::new())?;
        let versions: Vec<Version> = self.versions.values().flat_map(|v| v.values().copied()).collect();
        let rows: Vec<RowId> = versions.iter().map(|v| v.row).collect();
        let deleted = BooleanArray::from(versions.iter().map(|v| v.change == Change::Deleted).collect::<Vec<_>>());
        let extra = vec![(Field::new("deleted", DataType::Boolean, false), Arc::new(deleted) as _)];
        let versioned = self.join.state_part(self.sides.versioned(), &self.version_rows, &rows, extra)?;
        Ok(Some(OperatorState::new(vec![(probe.name().to_string(), probes), (self.sides.versioned().name().to_string(), versioned)])))
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        for (name, part) in state.parts {
            let probe = name == self.sides.probe.name();
            let (side, rows, extra) = self.join.restored_part(&name, &part, if probe { 0 } else { 1 })?;
            if probe {
                let mut discard = Emitter::default();
                self.on_probe_rows(rows, &mut discard)?;
                continue;
            }
            let Some(deleted) = extra[0].as_boolean_opt() else {
                return Err(EngineError::State("a temporal join's checkpoint has versions of another type (was it written by another version?)".into()));
            };
            let kinds = deleted.iter().map(|d| if d == Some(true) { RowKind::Delete } else { RowKind::Insert }).collect();
            debug_assert_eq!(side, self.sides.versioned());
            self.on_version_rows(ChangeBatch::new(rows, kinds)?)?;
        }
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.probe_rows.bytes() + self.version_rows.bytes()
    }

    /// Keys of the versioned side with versions kept (a key keeps its current
    /// version until a deletion reaches the watermark). Waiting probe rows are
    /// kept by time, not key, and are not counted here (their size is in
    /// [`Operator::state_bytes`]).
    fn state_keys(&self) -> usize {
        self.versions.len()
    }

    fn state_key_columns(&self, part: &str) -> usize {
        self.join.state_key_columns(part)
    }
}
