//! A task's part in checkpoints: its stable key, and where its snapshots go.

use tokio::sync::mpsc;

use super::chain::Chain;
use crate::checkpoint::{TaskSnapshot, FINAL_CHECKPOINT};
use crate::connector::SourcePosition;
use crate::error::Result;
use crate::message::CheckpointId;

/// What a task needs to take part in checkpoints: its stable key and where its snapshots go.
#[derive(Clone)]
pub(super) struct Snapshots {
    /// The task's key in a checkpoint (`source:<stage>:<partition>` or `stage:<stage>:<instance>`).
    pub(super) task: String,
    /// Where snapshots go, to the checkpoint writer; `None` without checkpoints.
    pub(super) sender: Option<mpsc::UnboundedSender<TaskSnapshot>>,
    /// Where a source task sends its final position when its partition ends, for the completion record.
    pub(super) finals: Option<mpsc::UnboundedSender<TaskSnapshot>>,
}

impl Snapshots {
    /// Saves the chain's state (and a source's position) for checkpoint `id`.
    pub(super) fn take(&self, id: CheckpointId, chain: &mut Chain, position: Option<SourcePosition>) -> Result<Option<TaskSnapshot>> {
        if self.sender.is_none() {
            return Ok(None);
        }
        let snapshot = chain.snapshot()?;
        Ok(Some(TaskSnapshot { checkpoint: id.0, task: self.task.clone(), position, operators: snapshot.operators, sink: None, lasting: snapshot.lasting }))
    }

    /// Hands a snapshot to the checkpoint writer (a writer that is gone has stopped caring).
    pub(super) fn send(&self, snapshot: Option<TaskSnapshot>) {
        if let (Some(sender), Some(snapshot)) = (&self.sender, snapshot) {
            let _ = sender.send(snapshot);
        }
    }

    /// A source partition ended at `position`: recorded in the completion record.
    pub(super) fn send_final(&self, position: Option<SourcePosition>) {
        if let Some(finals) = &self.finals {
            let _ = finals.send(TaskSnapshot {
                checkpoint: FINAL_CHECKPOINT,
                task: self.task.clone(),
                position,
                operators: Vec::new(),
                sink: None,
                lasting: Vec::new(),
            });
        }
    }
}
