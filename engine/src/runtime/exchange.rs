//! The hash exchange between stages: rows go to the instance that owns their key,
//! every other message to every instance.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::common::hash_utils::create_hashes;
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::output::Sent;
use super::Tagged;
use crate::changelog::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::metrics::TaskMetrics;
use crate::operators::evaluate;

/// One stage instance's side of the exchange to the next stage's instances.
pub(super) struct Exchange {
    /// One channel per downstream instance, in instance order.
    pub(super) senders: Vec<mpsc::Sender<Tagged>>,
    /// Which of the downstream stage's inputs this instance is.
    pub(super) input_index: usize,
    /// The downstream stage's group keys (empty when it is not keyed).
    pub(super) keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The sending task's counters, where time waiting for room goes; `None` in tests.
    pub(super) metrics: Option<Arc<TaskMetrics>>,
}

impl Exchange {
    /// Hash-partitions rows on the keys over the instances; broadcasts everything else.
    pub(super) async fn send(&mut self, message: Message) -> Result<Sent> {
        let Exchange { senders, input_index, keys, metrics } = self;
        let metrics = metrics.as_deref();
        match message {
            // Rows, and their retractions, go where their key's state is.
            Message::Rows(rows) if senders.len() > 1 => send_partitioned(senders, *input_index, keys, &rows, metrics).await,
            rows @ Message::Rows(_) => Ok(send(&senders[0], (*input_index, rows), metrics).await),
            other => {
                for sender in senders.iter() {
                    if send(sender, (*input_index, other.clone()), metrics).await == Sent::ReceiverGone {
                        return Ok(Sent::ReceiverGone);
                    }
                }
                Ok(Sent::Delivered)
            }
        }
    }
}

/// Sends one message; a receiver that is gone means the pipeline is stopping. Time
/// spent waiting for room in a full channel is back-pressure, counted in `metrics`.
async fn send(sender: &mpsc::Sender<Tagged>, message: Tagged, metrics: Option<&TaskMetrics>) -> Sent {
    let message = match sender.try_send(message) {
        Ok(()) => return Sent::Delivered,
        Err(TrySendError::Closed(_)) => return Sent::ReceiverGone,
        Err(TrySendError::Full(message)) => message,
    };
    let waiting = Instant::now();
    let sent = sender.send(message).await;
    if let Some(metrics) = metrics {
        metrics.add_backpressure(waiting.elapsed());
    }
    match sent {
        Ok(()) => Sent::Delivered,
        Err(_) => Sent::ReceiverGone,
    }
}

/// Sends each key's part of `rows` to the instance that owns the key.
async fn send_partitioned(
    senders: &[mpsc::Sender<Tagged>],
    input_index: usize,
    keys: &[Arc<dyn PhysicalExpr>],
    rows: &ChangeBatch,
    metrics: Option<&TaskMetrics>,
) -> Result<Sent> {
    for (target, part) in partition(rows, keys, senders.len())? {
        if send(&senders[target], (input_index, Message::Rows(part)), metrics).await == Sent::ReceiverGone {
            return Ok(Sent::ReceiverGone);
        }
    }
    Ok(Sent::Delivered)
}

/// The exchange's hash of each row's key. Fixed seeds: every upstream instance must
/// send a key to the same downstream instance, and a restore with another
/// parallelism must place saved state where the key's rows will go.
pub(super) fn hash_rows(keys: &[ArrayRef], rows: usize) -> Result<Vec<u64>> {
    let mut hashes = vec![0u64; rows];
    let state = datafusion::common::hash_utils::RandomState::with_seed(7);
    create_hashes(keys, &state, &mut hashes).map_err(|e| EngineError::execution("Exchange", e))?;
    Ok(hashes)
}

/// Splits changes by the hash of their rows' key columns into (instance, changes) parts.
fn partition(changes: &ChangeBatch, keys: &[Arc<dyn PhysicalExpr>], parts: usize) -> Result<Vec<(usize, ChangeBatch)>> {
    let batch = changes.rows();
    let arrays: Vec<ArrayRef> = keys.iter().map(|k| evaluate(k, batch, "Exchange")).collect::<Result<_>>()?;
    let hashes = hash_rows(&arrays, batch.num_rows())?;
    let mut indices: Vec<Vec<u32>> = vec![Vec::new(); parts];
    for (row, hash) in hashes.iter().enumerate() {
        indices[(*hash % parts as u64) as usize].push(row as u32);
    }
    let mut out = Vec::new();
    for (target, rows) in indices.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        out.push((target, changes.take(&UInt32Array::from(rows))?));
    }
    Ok(out)
}
