//! Rows held back until their checkpoint is saved: the common half of every
//! exactly-once sink that cannot resume another process's open transaction
//! (Redis, Kafka, ClickHouse).
//!
//! Such a sink holds what it is given ([`HeldEpochs::hold`]); at a barrier the held
//! rows become checkpoint `n`'s epoch and are saved with the checkpoint
//! ([`HeldEpochs::prepare`]); when the checkpoint is saved the sink writes each
//! epoch atomically together with a marker naming the run and the epoch, and a
//! restarted sink ([`HeldEpochs::restore`]) writes the restored epochs again unless
//! the marker shows they were written before the crash. The run id keeps a fresh run
//! of the same pipeline (checkpoint ids from 1 again) from being taken for a replay.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use eddy_engine::state::OperatorState;
use eddy_engine::{BoxError, ChangeBatch, RowKind};

/// The writes of one checkpoint, in the order the sink was given them.
pub type Epoch = (u64, Vec<ChangeBatch>);

/// The held and prepared writes of one exactly-once sink, and the name of its run.
pub struct HeldEpochs {
    schema: SchemaRef,
    /// Writes since the last barrier.
    held: Vec<ChangeBatch>,
    /// Writes of barriers whose checkpoint is not saved yet, oldest first.
    prepared: Vec<Epoch>,
    run: String,
    /// The pipeline keeps checkpoints (a barrier prepared, or a restore), so the
    /// commit at its end is the run's last and is marked [`FINAL`].
    checkpointed: bool,
    /// Restored from a run whose [`FINAL`] commit is written: everything this sink
    /// is given from now on is a replay of rows already there.
    replayed: bool,
}

/// The epoch of a run's last commit, at the end of a bounded pipeline that keeps
/// checkpoints (the engine's last two-phase commit has this id): it comes after
/// every checkpoint, so its marker says that all the run wrote is written, and a
/// restarted sink that finds it writes nothing again.
pub const FINAL: u64 = eddy_engine::checkpoint::FINAL_CHECKPOINT;

impl HeldEpochs {
    /// Starts a new run: a name no earlier run of this sink had.
    pub fn new(schema: SchemaRef) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let run = format!("{:x}", nanos ^ u128::from(std::process::id()) ^ u128::from(rand::random::<u64>()));
        HeldEpochs { schema, held: Vec::new(), prepared: Vec::new(), run, checkpointed: false, replayed: false }
    }

    /// The run's name, to be written in the marker with each epoch.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// Keeps a write until its checkpoint is saved.
    pub fn hold(&mut self, changes: ChangeBatch) {
        if changes.num_rows() > 0 && !self.replayed {
            self.held.push(changes);
        }
    }

    /// Closes checkpoint `checkpoint`'s epoch and returns everything not yet
    /// written (this epoch and earlier unsaved ones), with the run's name, for
    /// the checkpoint to keep.
    pub fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        self.checkpointed = true;
        self.prepared.push((checkpoint, std::mem::take(&mut self.held)));
        let run = RecordBatch::try_from_iter([("run", Arc::new(StringArray::from(vec![self.run.clone()])) as ArrayRef)])?;
        let mut parts = vec![("run".to_string(), run)];
        for (epoch, writes) in &self.prepared {
            parts.extend(writes.iter().flat_map(|w| w.runs()).map(|(kind, rows)| (part_name(*epoch, kind), rows)));
            // An epoch without rows is still an epoch: its marker moves too.
            parts.push((part_name(*epoch, RowKind::Insert), RecordBatch::new_empty(Arc::clone(&self.schema))));
        }
        Ok(OperatorState::new(parts).to_bytes()?)
    }

    /// The prepared epochs up to and including `checkpoint`, now saved and due to be written.
    pub fn saved(&mut self, checkpoint: u64) -> Vec<Epoch> {
        let due = self.prepared.iter().take_while(|(epoch, _)| *epoch <= checkpoint).count();
        let due: Vec<Epoch> = self.prepared.drain(..due).collect();
        if self.replayed {
            return Vec::new();
        }
        due
    }

    /// At a commit (the end of a bounded pipeline, or a barrier without
    /// checkpoints): everything prepared, then the writes since the last barrier,
    /// as epoch [`FINAL`] when the pipeline keeps checkpoints, else unmarked.
    pub fn drain_all(&mut self) -> (Vec<Epoch>, Vec<ChangeBatch>) {
        let mut prepared = std::mem::take(&mut self.prepared);
        let held = std::mem::take(&mut self.held);
        if self.replayed {
            return (Vec::new(), Vec::new());
        }
        if self.checkpointed {
            prepared.push((FINAL, held));
            return (prepared, Vec::new());
        }
        (prepared, held)
    }

    /// The restored run's [`FINAL`] commit is written: drop all that follows.
    pub fn mark_replayed(&mut self) {
        self.replayed = true;
        self.held.clear();
        self.prepared.clear();
    }

    /// Reads what [`HeldEpochs::prepare`] saved, taking over the saved run's name,
    /// and returns its epochs, to be written unless their marker says they were.
    pub fn restore(&mut self, prepared: &[u8]) -> Result<Vec<Epoch>, BoxError> {
        let mut epochs: BTreeMap<u64, Vec<ChangeBatch>> = BTreeMap::new();
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        self.checkpointed = true;
        for (name, rows) in OperatorState::from_bytes(prepared)?.parts {
            if name == "run" {
                if let Some(run) = rows.column(0).as_string_opt::<i32>().filter(|r| !r.is_empty()) {
                    self.run = run.value(0).to_string();
                }
                continue;
            }
            let (epoch, kind) = RowKind::ALL
                .into_iter()
                .find_map(|kind| name.strip_suffix(kind_suffix(kind)).filter(|epoch| !epoch.contains('-')).map(|epoch| (epoch, kind)))
                .unwrap_or((name.as_str(), RowKind::Insert));
            let epoch: u64 = epoch.parse().map_err(|_| format!("the checkpoint's sink state has an unknown part `{name}`"))?;
            let writes = epochs.entry(epoch).or_default();
            if rows.num_rows() > 0 {
                writes.push(ChangeBatch::all(kind, rows));
            }
        }
        Ok(epochs.into_iter().collect())
    }
}

/// What a saved part's name adds to its epoch for the kind of its rows (`-retract`
/// for deletions, as checkpoints written before updates had kinds of their own say).
fn kind_suffix(kind: RowKind) -> &'static str {
    match kind {
        RowKind::Insert => "",
        RowKind::UpdateBefore => "-update-before",
        RowKind::UpdateAfter => "-update-after",
        RowKind::Delete => "-retract",
    }
}

fn part_name(epoch: u64, kind: RowKind) -> String {
    format!("{epoch}{}", kind_suffix(kind))
}

/// A marker as sinks store it: `run:epoch`.
pub fn marker(run: &str, epoch: u64) -> String {
    format!("{run}:{epoch}")
}

/// Whether the stored marker `stored` (as [`marker`] wrote it) shows that `run`
/// already wrote `epoch`: same run, same or later epoch.
pub fn already_written(stored: Option<&str>, run: &str, epoch: u64) -> bool {
    stored.and_then(|m| m.rsplit_once(':')).is_some_and(|(r, n)| r == run && n.parse::<u64>().is_ok_and(|n| n >= epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    fn rows(values: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(values.to_vec())) as ArrayRef)]).unwrap()
    }

    #[test]
    fn a_restored_sink_gets_every_unsaved_epoch_in_order_with_the_run_that_held_it() {
        let mut before = HeldEpochs::new(rows(&[]).schema());
        before.hold(ChangeBatch::inserts(rows(&[1, 2])));
        before.prepare(1).unwrap();
        before.hold(ChangeBatch::inserts(rows(&[3])));
        before.hold(ChangeBatch::new(rows(&[1, 1, 4]), vec![RowKind::UpdateBefore, RowKind::UpdateAfter, RowKind::Delete]).unwrap());
        let saved = before.prepare(2).unwrap();
        let mut after = HeldEpochs::new(rows(&[]).schema());
        assert_ne!(after.run(), before.run());
        let epochs = after.restore(&saved).unwrap();
        assert_eq!(after.run(), before.run());
        let summary: Vec<(u64, Vec<(usize, RowKind)>)> = epochs.iter().map(|(e, w)| (*e, w.iter().map(|w| (w.num_rows(), w.kind(0))).collect())).collect();
        use RowKind::*;
        assert_eq!(summary, vec![(1, vec![(2, Insert)]), (2, vec![(1, Insert), (1, UpdateBefore), (1, UpdateAfter), (1, Delete)])]);
        // Once checkpoint 1 is saved, only epoch 1 is due.
        assert_eq!(before.saved(1).iter().map(|(e, _)| *e).collect::<Vec<_>>(), vec![1]);
        assert_eq!(before.saved(5).iter().map(|(e, _)| *e).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn the_last_commit_of_a_checkpointed_run_is_final_and_a_replay_after_it_is_dropped() {
        let mut unchecked = HeldEpochs::new(rows(&[]).schema());
        unchecked.hold(ChangeBatch::inserts(rows(&[1])));
        let (epochs, held) = unchecked.drain_all();
        assert!(epochs.is_empty() && held.len() == 1, "without checkpoints a commit is unmarked");
        let mut run = HeldEpochs::new(rows(&[]).schema());
        run.prepare(1).unwrap();
        run.hold(ChangeBatch::inserts(rows(&[2])));
        let (epochs, held) = run.drain_all();
        assert_eq!(epochs.iter().map(|(e, w)| (*e, w.len())).collect::<Vec<_>>(), vec![(1, 0), (FINAL, 1)]);
        assert!(held.is_empty());
        run.mark_replayed();
        run.hold(ChangeBatch::inserts(rows(&[2])));
        run.prepare(2).unwrap();
        assert!(run.saved(2).is_empty() && run.drain_all().0.is_empty(), "a replay writes nothing");
    }

    #[test]
    fn markers_compare_run_and_epoch() {
        let m = marker("ab12", 7);
        assert!(already_written(Some(&m), "ab12", 7));
        assert!(already_written(Some(&m), "ab12", 3));
        assert!(!already_written(Some(&m), "ab12", 8));
        assert!(!already_written(Some(&m), "other", 1));
        assert!(!already_written(None, "ab12", 1));
    }
}
