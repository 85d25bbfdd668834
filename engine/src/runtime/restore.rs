//! Putting a checkpoint's state back into the tasks of a restarted pipeline, and
//! redistributing keyed state when a stage now runs another number of instances.

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;

use super::chain::Chain;
use super::exchange::hash_rows;
use super::snapshots::Snapshots;
use crate::checkpoint::{Checkpoint, TaskSnapshot};
use crate::error::{EngineError, Result};
use crate::operator::Operator;
use crate::state::OperatorState;

/// Restores a source task's chain from its part of `restored`, if any.
pub(super) fn restore_task(snapshots: &Snapshots, restored: Option<&Checkpoint>, chain: &mut Chain) -> Result<()> {
    match restored.and_then(|c| c.tasks.get(&snapshots.task).map(|snapshot| (c, snapshot))) {
        Some((checkpoint, snapshot)) => chain.restore(&snapshot.operators, &checkpoint.lasting),
        None => Ok(()),
    }
}

/// Restores instance `instance` of keyed stage `stage`, which now runs `parallelism`
/// instances. With as many instances as the checkpoint had, each restores its own
/// state; with another number, every old instance's state is cut to the keys this
/// instance owns now (the exchange's hash) and restored in turn.
pub(super) fn restore_keyed(
    snapshots: &Snapshots,
    restored: Option<&Checkpoint>,
    chain: &mut Chain,
    stage: usize,
    instance: usize,
    parallelism: usize,
) -> Result<()> {
    let Some(checkpoint) = restored else { return Ok(()) };
    let prefix = format!("stage:{stage}:");
    let mut old: Vec<(&String, &TaskSnapshot)> = checkpoint.tasks.iter().filter(|(task, _)| task.starts_with(&prefix)).collect();
    if old.len() == parallelism {
        if let Some(snapshot) = checkpoint.tasks.get(&snapshots.task) {
            return chain.restore(&snapshot.operators, &checkpoint.lasting);
        }
    }
    if old.is_empty() {
        return Err(EngineError::State(format!("checkpoint {} has no state for task {} (was the pipeline's SQL changed?)", checkpoint.id, snapshots.task)));
    }
    old.sort_by(|a, b| a.0.cmp(b.0));
    if instance == 0 {
        tracing::info!("checkpoint {}: redistributing the state of {} instance(s) of stage {stage} over {parallelism}", checkpoint.id, old.len());
    }
    for (_, snapshot) in old {
        chain.restore_owned(&snapshot.operators, &checkpoint.lasting, instance, parallelism)?;
    }
    Ok(())
}

/// Cuts `operator`'s saved `state` to the rows of keyed parts whose key hashes to
/// `instance` of `parallelism`, as the exchange would send them.
pub(super) fn keep_owned_rows(operator: &dyn Operator, state: &mut OperatorState, instance: usize, parallelism: usize) -> Result<()> {
    for (name, batch) in state.parts.iter_mut() {
        let keys = operator.state_key_columns(name);
        if keys == 0 || batch.num_rows() == 0 {
            continue;
        }
        let hashes = hash_rows(&batch.columns()[..keys], batch.num_rows())?;
        let mine = BooleanArray::from(hashes.iter().map(|h| (*h % parallelism as u64) as usize == instance).collect::<Vec<_>>());
        *batch = filter_record_batch(batch, &mine).map_err(|e| EngineError::State(e.to_string()))?;
    }
    Ok(())
}
