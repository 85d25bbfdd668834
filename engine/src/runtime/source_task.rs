//! A source task: one per source partition. It reads batches, runs the stage's
//! chain over them, injects a barrier for every checkpoint id the coordinator
//! publishes and a refresh for every refresher tick, and sends the results on.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;

use super::chain::Chain;
use super::output::{Output, Sent};
use super::side_outputs::{malformed_batch, SideSenders};
use super::snapshots::Snapshots;
use crate::connector::{BoxError, SourceBatch, SourceReader};
use crate::error::{EngineError, Result};
use crate::message::{CheckpointId, EventTime, Message};
use crate::metrics::{advance, PipelineMetrics, SourceTotals, TaskMetrics};
use crate::operator::SideOutput;

/// Malformed records logged per source partition before logging goes quiet (they are still counted and routed).
const MALFORMED_LOG_LIMIT: usize = 5;

/// Everything a source task runs with.
pub(super) struct SourceTask {
    /// The source table's name, for errors, logs and metrics.
    pub(super) table: String,
    pub(super) reader: Box<dyn SourceReader>,
    pub(super) chain: Chain,
    pub(super) output: Output,
    pub(super) side: SideSenders,
    pub(super) metrics: Arc<PipelineMetrics>,
    /// This task's own counters (its source partition's among them).
    pub(super) counters: Arc<TaskMetrics>,
    /// Turns true when the pipeline is stopped from outside.
    pub(super) stop: watch::Receiver<bool>,
    /// The coordinator's newest checkpoint id.
    pub(super) barriers: watch::Receiver<u64>,
    /// The refresher's newest tick; `None` without refreshes.
    pub(super) refreshes: Option<watch::Receiver<u64>>,
    pub(super) snapshots: Snapshots,
}

/// What woke a source task up.
enum SourceEvent {
    /// The pipeline is stopped from outside.
    Stopped,
    /// The coordinator published a new checkpoint id.
    CheckpointDue,
    /// The coordinator is gone (the pipeline is ending): no more barriers.
    CoordinatorGone,
    /// A read returned rows, malformed records, or nothing new.
    Read(SourceBatch),
    /// The partition has no more rows.
    PartitionEnded,
    /// The read failed.
    ReadFailed(BoxError),
}

impl SourceTask {
    /// Runs the partition to its end, until the pipeline is stopped, or until a downstream task is gone.
    pub(super) async fn run(self) -> Result<()> {
        let SourceTask { table, mut reader, mut chain, mut output, side, metrics, counters, mut stop, mut barriers, mut refreshes, snapshots } = self;
        let partition = reader.describe();
        let mut checkpointing = true;
        let mut last_barrier = *barriers.borrow();
        let status_key = format!("{table} {partition}");
        let mut malformed_logged = 0usize;
        let mut yielded = SourceTotals::default();
        let mut idle_sent = false;
        let mut reader_watermark = EventTime::MIN;
        let mut out = Vec::new();
        loop {
            let event = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => SourceEvent::Stopped,
                changed = barriers.changed(), if checkpointing => match changed {
                    Ok(()) => SourceEvent::CheckpointDue,
                    Err(_) => SourceEvent::CoordinatorGone,
                },
                read = reader.next_batch() => match read {
                    Ok(Some(batch)) => SourceEvent::Read(batch),
                    Ok(None) => SourceEvent::PartitionEnded,
                    Err(e) => SourceEvent::ReadFailed(e),
                },
            };
            let batch = match event {
                // Every row read so far belongs to this checkpoint. Ids are sent in
                // order, none skipped, so merges always align the same ids.
                SourceEvent::CheckpointDue => {
                    let latest = *barriers.borrow_and_update();
                    let mut taken = Vec::new();
                    while last_barrier < latest {
                        last_barrier += 1;
                        let id = CheckpointId(last_barrier);
                        chain.push(Message::Barrier(id), &mut out)?;
                        taken.push(snapshots.take(id, &mut chain, reader.position())?);
                    }
                    if output.send(std::mem::take(&mut out)).await? == Sent::ReceiverGone {
                        return Ok(());
                    }
                    taken.into_iter().for_each(|s| snapshots.send(s));
                    continue;
                }
                SourceEvent::CoordinatorGone => {
                    checkpointing = false;
                    continue;
                }
                SourceEvent::Stopped => {
                    // Stopped from outside: end without a final watermark, so open windows are not emitted half-full.
                    chain.push(Message::EndOfStream, &mut out)?;
                    let _ = output.send(std::mem::take(&mut out)).await?;
                    return Ok(());
                }
                SourceEvent::ReadFailed(source) => return Err(EngineError::Source { table: table.clone(), partition: partition.clone(), source }),
                SourceEvent::PartitionEnded => {
                    report_position(&metrics, &counters, &status_key, reader.as_ref());
                    break;
                }
                SourceEvent::Read(batch) => {
                    report_position(&metrics, &counters, &status_key, reader.as_ref());
                    batch
                }
            };
            if let Some(partition) = &counters.source {
                partition.rows.fetch_add(batch.rows.num_rows() as u64, Ordering::Relaxed);
                partition.malformed.fetch_add(batch.malformed.len() as u64, Ordering::Relaxed);
            }
            yielded.rows += batch.rows.num_rows() as u64;
            yielded.malformed += batch.malformed.len() as u64;
            if !batch.malformed.is_empty() {
                PipelineMetrics::add(&metrics.malformed_rows, batch.malformed.len());
                for record in batch.malformed.iter().take(MALFORMED_LOG_LIMIT.saturating_sub(malformed_logged)) {
                    tracing::warn!(table = %table, position = %record.position, "malformed record skipped: {}", record.error);
                    malformed_logged += 1;
                }
                if side.malformed.is_some() {
                    side.send(vec![(SideOutput::Malformed, malformed_batch(&table, &batch.malformed)?)]).await;
                }
            }
            // Judged late upstream (and counted there): only the late sink is left to do.
            side.send(batch.late.into_iter().map(|late| (SideOutput::Late, late)).collect()).await;
            if batch.rows.num_rows() > 0 {
                // Rows make the partition active again: the next merge counts its watermark.
                idle_sent = false;
                PipelineMetrics::add(&metrics.rows_in, batch.rows.num_rows());
                chain.push(Message::Rows(batch.rows), &mut out)?;
                side.send(std::mem::take(&mut chain.side)).await;
            } else if !idle_sent && reader.is_idle() {
                idle_sent = true;
                tracing::debug!(table = %table, partition = %partition, "partition is idle; it no longer holds the watermark back");
                chain.push(Message::Idle, &mut out)?;
            }
            // A reader that gives the watermark (see `WatermarkOrigin::Reader`) moves it after the rows it read.
            if let Some(watermark) = reader.watermark().filter(|w| *w > reader_watermark) {
                reader_watermark = watermark;
                chain.push(Message::Watermark(watermark), &mut out)?;
            }
            // Checked between reads, not raced against one: a read cut short could lose
            // what it had taken (readers return at least every few hundred ms).
            if let Some(refreshes) = refreshes.as_mut() {
                if refreshes.has_changed().unwrap_or(false) {
                    let at = *refreshes.borrow_and_update();
                    chain.push(Message::Refresh(at), &mut out)?;
                }
            }
            record_watermark(&counters, &out);
            if !out.is_empty() && output.send(std::mem::take(&mut out)).await? == Sent::ReceiverGone {
                return Ok(());
            }
        }
        // The partition ended: its final watermark closes every window it fed.
        metrics.add_ended_source(&table, yielded);
        snapshots.send_final(reader.position());
        chain.push(Message::Watermark(EventTime::MAX), &mut out)?;
        chain.push(Message::EndOfStream, &mut out)?;
        side.send(std::mem::take(&mut chain.side)).await;
        let _ = output.send(out).await?;
        Ok(())
    }
}

/// Records where a partition's reader stands: its status (lag, problems, share
/// read) for the progress line and `GetPipeline`, its offset and lag for `/metrics`.
fn report_position(metrics: &PipelineMetrics, counters: &TaskMetrics, status_key: &str, reader: &dyn SourceReader) {
    let status = reader.status();
    if let Some(partition) = &counters.source {
        partition.lag.store(status.lag.map_or(-1, |l| l as i64), Ordering::Relaxed);
        if let Some(position) = reader.position() {
            partition.offset.store(position.offset, Ordering::Relaxed);
        }
    }
    metrics.set_reader_status(status_key, status);
}

/// Records the partition's watermark: the newest its chain sent on.
fn record_watermark(counters: &TaskMetrics, out: &[Message]) {
    let Some(partition) = &counters.source else { return };
    for message in out {
        if let Message::Watermark(w) = message {
            advance(&partition.watermark_ms, *w);
        }
    }
}
