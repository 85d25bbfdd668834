//! A merge task: the task of a stage with inputs (a keyed stage's instance, or the
//! sink stage). It receives from every upstream instance, aligns their barriers
//! ([`BarrierAlignment`]), combines their watermarks ([`InputWatermarks`]), runs
//! the stage's chain and sends the results on; in the sink stage it also drives
//! the sink's two-phase commit ([`SinkCommits`]).

use tokio::sync::{mpsc, watch};

use super::alignment::BarrierAlignment;
use super::chain::Chain;
use super::output::{Output, Sent};
use super::sink_task::SinkCommits;
use super::snapshots::Snapshots;
use super::watermarks::{Combined, InputWatermarks};
use super::Tagged;
use crate::checkpoint::TaskSnapshot;
use crate::error::Result;
use crate::message::Message;

/// What a merge task waits for next.
enum MergeEvent {
    /// A message from one of the inputs.
    Received(Tagged),
    /// Every sender is gone without an end-of-stream: the pipeline is being torn down.
    InputsGone,
    /// The checkpoint writer saved a checkpoint: the sink commits what it prepared for it.
    CheckpointSaved,
    /// The checkpoint writer is gone: no checkpoint will be saved any more.
    WriterGone,
}

/// Receives the next message, or learns that a checkpoint was saved (sink stage only).
async fn next_event(rx: &mut mpsc::Receiver<Tagged>, completed: Option<&mut watch::Receiver<u64>>) -> MergeEvent {
    let received = |m: Option<Tagged>| m.map_or(MergeEvent::InputsGone, MergeEvent::Received);
    match completed {
        Some(saved) => tokio::select! {
            m = rx.recv() => received(m),
            changed = saved.changed() => match changed {
                Ok(()) => MergeEvent::CheckpointSaved,
                Err(_) => MergeEvent::WriterGone,
            },
        },
        None => received(rx.recv().await),
    }
}

/// Runs a merge task over `inputs` upstream instances until every input has ended.
/// `input_sides` says which of the stage's inputs each upstream instance feeds (a
/// join's side), for the chain's first operator.
pub(super) async fn run_merge(
    mut rx: mpsc::Receiver<Tagged>,
    inputs: usize,
    input_sides: Vec<usize>,
    mut chain: Chain,
    mut output: Output,
    snapshots: Snapshots,
    commits: Option<SinkCommits>,
) -> Result<()> {
    let mut completed = None;
    let mut last = None;
    if let Some(commits) = commits {
        if let Some(prepared) = &commits.recover {
            output.recover(prepared).await?;
        }
        completed = commits.completed;
        last = commits.last;
    }
    let mut inputs_state = InputWatermarks::new(inputs);
    let mut alignment = BarrierAlignment::default();
    // The newest refresh passed on; other inputs' copies of it are dropped.
    let mut last_refresh = 0u64;
    let mut taken: Option<TaskSnapshot> = None;
    let mut out = Vec::new();
    if inputs == 0 {
        chain.push(Message::EndOfStream, &mut out)?;
        let _ = output.send(out).await?;
        if let Some(last) = last.take() {
            output.commit_last(last, &snapshots.task).await?;
        }
        return Ok(());
    }
    loop {
        // Messages held back during an alignment that has completed come first.
        let (input, message) = match alignment.released.pop_front() {
            Some(m) => m,
            None => match next_event(&mut rx, completed.as_mut()).await {
                MergeEvent::Received(m) => m,
                MergeEvent::InputsGone => return Ok(()),
                MergeEvent::CheckpointSaved => {
                    let id = completed.as_mut().map_or(0, |c| *c.borrow_and_update());
                    output.commit_checkpoint(id).await?;
                    continue;
                }
                MergeEvent::WriterGone => {
                    completed = None;
                    continue;
                }
            },
        };
        if alignment.holds(input) {
            alignment.held.push_back((input, message));
            continue;
        }
        // Only watermarks, idleness and ended inputs can move this task's watermark.
        let may_move = !matches!(message, Message::Rows(_) | Message::Barrier(_) | Message::Refresh(_));
        // The checkpoint whose barrier every live input has now delivered, if any.
        let mut aligned = None;
        match message {
            Message::Rows(_) => {
                // Rows make an idle input active again. That only adds an input at or
                // below this task's watermark to the minimum, so the watermark cannot move.
                inputs_state.activate(input);
                chain.push_input(input_sides.get(input).copied().unwrap_or(0), message, &mut out)?;
            }
            Message::Barrier(id) => aligned = alignment.arrived(input, id, &inputs_state.ended),
            Message::Refresh(at) => {
                if at > last_refresh {
                    last_refresh = at;
                    chain.push(Message::Refresh(at), &mut out)?;
                }
            }
            Message::Watermark(w) => {
                inputs_state.activate(input);
                inputs_state.watermarks[input] = inputs_state.watermarks[input].max(w);
            }
            Message::Idle => inputs_state.idle[input] = true,
            Message::EndOfStream => {
                inputs_state.ended[input] = true;
                if inputs_state.all_ended() {
                    // A checkpoint saved just before the end is committed before the sink closes.
                    if let Some(saved) = completed.as_mut() {
                        if saved.has_changed().unwrap_or(false) {
                            let id = *saved.borrow_and_update();
                            output.commit_checkpoint(id).await?;
                        }
                    }
                    chain.push(Message::EndOfStream, &mut out)?;
                    let _ = output.send(std::mem::take(&mut out)).await?;
                    if let Some(last) = last.take() {
                        output.commit_last(last, &snapshots.task).await?;
                    }
                    return Ok(());
                }
                // The last upstream instance of one of the head's inputs (a join's side) ended.
                let side = input_sides.get(input).copied().unwrap_or(0);
                let side_instances = || (0..inputs).filter(|&i| input_sides.get(i).copied().unwrap_or(0) == side);
                if side_instances().all(|i| inputs_state.ended[i]) {
                    chain.end_input(side, &mut out)?;
                }
                // An ended input sends no barrier: the others may now be aligned.
                aligned = alignment.complete(&inputs_state.ended);
            }
        }
        if let Some(id) = aligned {
            chain.push(Message::Barrier(id), &mut out)?;
            taken = snapshots.take(id, &mut chain, None)?;
        }
        if may_move {
            match inputs_state.combined() {
                Combined::Advanced(w) => chain.push(Message::Watermark(w), &mut out)?,
                Combined::AllIdle { advanced } => {
                    if let Some(w) = advanced {
                        chain.push(Message::Watermark(w), &mut out)?;
                    }
                    chain.push(Message::Idle, &mut out)?;
                }
                Combined::Unchanged => {}
            }
        }
        if !out.is_empty() && output.send(std::mem::take(&mut out)).await? == Sent::ReceiverGone {
            return Ok(());
        }
        // Sent on only now: the barrier has gone downstream (and a sink has prepared its commit).
        if let Some(snapshot) = taken.as_mut() {
            snapshot.sink = output.take_prepared();
        }
        snapshots.send(taken.take());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
    use datafusion::arrow::record_batch::RecordBatch;

    use super::super::exchange::Exchange;
    use super::*;
    use crate::changelog::ChangeBatch;
    use crate::message::CheckpointId;

    fn rows(v: i64) -> Message {
        Message::Rows(ChangeBatch::inserts(RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![v])) as ArrayRef)]).unwrap()))
    }

    /// What a merge task with `inputs` inputs sends on, given `messages`: batches as
    /// their value, barriers as `-id`, end of stream as `i64::MIN`.
    async fn merge(inputs: usize, messages: Vec<Tagged>) -> Vec<i64> {
        let (tx, rx) = mpsc::channel(64);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        for m in messages {
            tx.send(m).await.unwrap();
        }
        drop(tx);
        let output = Output::Exchange(Exchange { senders: vec![out_tx], input_index: 0, keys: Vec::new() });
        let snapshots = Snapshots { task: "test".into(), sender: None, finals: None };
        run_merge(rx, inputs, vec![0; inputs], Chain::new(&[]).unwrap(), output, snapshots, None).await.unwrap();
        let mut seen = Vec::new();
        while let Some((_, m)) = out_rx.recv().await {
            seen.push(match m {
                Message::Rows(b) => b.rows().column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0),
                Message::Barrier(id) => -(id.0 as i64),
                Message::Refresh(at) => 1_000_000 + at as i64,
                Message::EndOfStream => i64::MIN,
                other => panic!("unexpected {other:?}"),
            });
        }
        seen
    }

    #[tokio::test]
    async fn barriers_are_aligned_across_inputs() {
        let b = |id| Message::Barrier(CheckpointId(id));
        let got = merge(
            2,
            vec![
                (0, rows(1)),
                (0, b(1)),
                (0, rows(2)),
                (1, rows(3)),
                (1, b(1)),
                (0, b(2)),
                (1, rows(4)),
                (1, b(2)),
                (0, Message::EndOfStream),
                (1, Message::EndOfStream),
            ],
        )
        .await;
        // Row 2 came after input 0's barrier 1: it waits until input 1 delivered barrier 1.
        // Row 4 came before input 1's barrier 2: it belongs to checkpoint 2.
        assert_eq!(got, vec![1, 3, -1, 2, 4, -2, i64::MIN]);
    }

    /// Every input passes each refresh on; the merge sends it on once, when the
    /// first copy arrives, without waiting for the others (refreshes are not aligned).
    #[tokio::test]
    async fn a_refresh_goes_on_once_however_many_inputs_send_it() {
        let r = Message::Refresh;
        let got = merge(
            2,
            vec![(0, rows(1)), (0, r(5)), (1, rows(2)), (1, r(5)), (1, r(6)), (0, rows(3)), (0, r(6)), (0, Message::EndOfStream), (1, Message::EndOfStream)],
        )
        .await;
        assert_eq!(got, vec![1, 1_000_005, 2, 1_000_006, 3, i64::MIN]);
    }

    #[tokio::test]
    async fn an_ended_input_does_not_block_an_alignment() {
        let b = |id| Message::Barrier(CheckpointId(id));
        let got = merge(2, vec![(0, b(1)), (0, rows(2)), (1, rows(3)), (1, Message::EndOfStream), (0, Message::EndOfStream)]).await;
        assert_eq!(got, vec![3, -1, 2, i64::MIN]);
    }
}
