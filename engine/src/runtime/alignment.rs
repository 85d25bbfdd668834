//! Flink's barrier alignment for a task with several inputs.
//!
//! Once an input has delivered barrier `n`, its later messages wait until every
//! other live input has delivered `n` too; then the barrier goes on, and the held
//! messages are processed in their order. So a task snapshots a cut with every row
//! before barrier `n` and none after.

use std::collections::VecDeque;

use super::Tagged;
use crate::message::CheckpointId;

/// The alignment of one task's inputs; see the module docs.
#[derive(Default)]
pub(super) struct BarrierAlignment {
    /// The checkpoint being aligned and which inputs have delivered its barrier.
    current: Option<(CheckpointId, Vec<bool>)>,
    /// Messages from inputs past the barrier, waiting for the alignment to complete.
    pub(super) held: VecDeque<Tagged>,
    /// Held messages to process again now that the alignment is complete.
    pub(super) released: VecDeque<Tagged>,
}

impl BarrierAlignment {
    /// Whether a barrier is being aligned (some inputs delivered it, not all).
    pub(super) fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// Whether messages of `input` must wait: it already delivered the current barrier.
    pub(super) fn holds(&self, input: usize) -> bool {
        self.current.as_ref().is_some_and(|(_, arrived)| arrived[input])
    }

    /// Records barrier `id` from `input`; see [`BarrierAlignment::complete`].
    pub(super) fn arrived(&mut self, input: usize, id: CheckpointId, ended: &[bool]) -> Option<CheckpointId> {
        let (_, arrived) = self.current.get_or_insert_with(|| (id, vec![false; ended.len()]));
        arrived[input] = true;
        self.complete(ended)
    }

    /// The current checkpoint's id once every live input (not `ended`) has
    /// delivered its barrier: it goes downstream now, and held messages are released.
    pub(super) fn complete(&mut self, ended: &[bool]) -> Option<CheckpointId> {
        let (id, arrived) = self.current.as_ref()?;
        if !arrived.iter().zip(ended).all(|(a, e)| *a || *e) {
            return None;
        }
        let id = *id;
        self.current = None;
        // Held messages go before anything still in the channel, in their order.
        let mut released = std::mem::take(&mut self.held);
        released.append(&mut self.released);
        self.released = released;
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    #[test]
    fn an_input_past_the_barrier_waits_until_every_live_input_delivered_it() {
        let mut alignment = BarrierAlignment::default();
        let live = [false, false, false];
        assert_eq!(alignment.arrived(0, CheckpointId(1), &live), None);
        assert!(alignment.holds(0), "input 0 is past barrier 1");
        assert!(!alignment.holds(1) && !alignment.holds(2));
        alignment.held.push_back((0, Message::Idle));
        assert_eq!(alignment.arrived(2, CheckpointId(1), &live), None, "input 1 has not delivered barrier 1");
        assert_eq!(alignment.arrived(1, CheckpointId(1), &live), Some(CheckpointId(1)));
        assert!(!alignment.holds(0), "the alignment is over");
        assert_eq!(alignment.released.iter().map(|(input, _)| *input).collect::<Vec<_>>(), vec![0]);
        assert!(alignment.held.is_empty());
    }

    #[test]
    fn an_input_that_ended_completes_the_alignment_it_was_holding_up() {
        let mut alignment = BarrierAlignment::default();
        assert_eq!(alignment.arrived(0, CheckpointId(4), &[false, false]), None);
        assert_eq!(alignment.complete(&[false, false]), None);
        assert_eq!(alignment.complete(&[false, true]), Some(CheckpointId(4)));
        assert_eq!(alignment.complete(&[false, true]), None, "nothing is being aligned any more");
    }
}
