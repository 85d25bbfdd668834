//! Where a stage instance sends what its chain produces: the exchange to the next
//! stage, or (for the sink stage) the sink.

use super::exchange::Exchange;
use super::sink_task::{LastCommit, SinkOutput};
use std::sync::Arc;

use crate::error::Result;
use crate::message::Message;
use crate::metrics::TaskMetrics;

/// Where a stage instance sends what its chain produces.
pub(super) enum Output {
    /// Hash-partition batches over the next stage's instances; broadcast everything else.
    Exchange(Exchange),
    /// The sink itself (the sink stage).
    Sink(SinkOutput),
}

/// Whether messages reached the next stage.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// Every message went on (or was written to the sink).
    Delivered,
    /// A downstream task is gone: the pipeline is stopping, so the sender ends quietly.
    ReceiverGone,
}

impl Output {
    /// Sends `messages` on, in order, stopping at a receiver that is gone.
    pub(super) async fn send(&mut self, messages: Vec<Message>) -> Result<Sent> {
        for message in messages {
            let sent = match self {
                Output::Exchange(exchange) => exchange.send(message).await?,
                Output::Sink(sink) => {
                    sink.send(message).await?;
                    Sent::Delivered
                }
            };
            if sent == Sent::ReceiverGone {
                return Ok(Sent::ReceiverGone);
            }
        }
        Ok(Sent::Delivered)
    }

    /// Counts the time the sending task waits for room downstream in `counters`.
    pub(super) fn count_in(&mut self, counters: &Arc<TaskMetrics>) {
        if let Output::Exchange(exchange) = self {
            exchange.metrics = Some(Arc::clone(counters));
        }
    }

    /// The sink's prepared commit of the last barrier, for its snapshot.
    pub(super) fn take_prepared(&mut self) -> Option<Vec<u8>> {
        match self {
            Output::Sink(sink) => sink.prepared.take(),
            Output::Exchange(_) => None,
        }
    }

    /// Checkpoint `id` is saved: a sink makes what it prepared visible.
    pub(super) async fn commit_checkpoint(&mut self, id: u64) -> Result<()> {
        match self {
            Output::Sink(sink) => sink.commit_checkpoint(id).await,
            Output::Exchange(_) => Ok(()),
        }
    }

    /// The last commit of a run that keeps checkpoints ([`SinkOutput::commit_last`]).
    pub(super) async fn commit_last(&mut self, last: LastCommit, task: &str) -> Result<()> {
        match self {
            Output::Sink(sink) => sink.commit_last(last, task).await,
            Output::Exchange(_) => Ok(()),
        }
    }

    /// After a restart: a sink finishes the commit it had prepared at the restored checkpoint.
    pub(super) async fn recover(&mut self, prepared: &[u8]) -> Result<()> {
        match self {
            Output::Sink(sink) => sink.recover(prepared).await,
            Output::Exchange(_) => Ok(()),
        }
    }
}
