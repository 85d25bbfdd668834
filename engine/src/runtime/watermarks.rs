//! Combining the watermarks of a task's inputs into the task's own watermark.

use crate::message::EventTime;

/// The watermark state of a task's inputs: its own watermark is the minimum over
/// inputs that are neither ended nor idle.
pub(super) struct InputWatermarks {
    pub(super) watermarks: Vec<EventTime>,
    pub(super) ended: Vec<bool>,
    pub(super) idle: Vec<bool>,
    current: EventTime,
    /// Whether `Idle` was already sent downstream for the current all-idle spell.
    idle_sent: bool,
}

/// What [`InputWatermarks::combined`] found.
#[derive(Debug, PartialEq)]
pub(super) enum Combined {
    Advanced(EventTime),
    /// Every live input is idle; like Flink, the watermark moves to the highest one
    /// among them (idle inputs have nothing older to send), then `Idle` goes downstream.
    AllIdle {
        advanced: Option<EventTime>,
    },
    Unchanged,
}

impl InputWatermarks {
    /// `inputs` inputs that have said nothing yet.
    pub(super) fn new(inputs: usize) -> Self {
        InputWatermarks {
            watermarks: vec![EventTime::MIN; inputs],
            ended: vec![false; inputs],
            idle: vec![false; inputs],
            current: EventTime::MIN,
            idle_sent: false,
        }
    }

    /// Rows or a watermark came from `input`: it counts in the minimum again.
    pub(super) fn activate(&mut self, input: usize) {
        self.idle[input] = false;
        self.idle_sent = false;
    }

    /// Whether every input has ended.
    pub(super) fn all_ended(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }

    /// The task's watermark after its inputs changed, if it moved (or every live input went idle).
    pub(super) fn combined(&mut self) -> Combined {
        let live = || (0..self.watermarks.len()).filter(|&i| !self.ended[i]);
        if live().next().is_some() && live().all(|i| self.idle[i]) {
            if self.idle_sent {
                return Combined::Unchanged;
            }
            self.idle_sent = true;
            let max = live().map(|i| self.watermarks[i]).max().unwrap_or(EventTime::MIN);
            let advanced = (max > self.current).then(|| {
                self.current = max;
                max
            });
            return Combined::AllIdle { advanced };
        }
        let min = live().filter(|&i| !self.idle[i]).map(|i| self.watermarks[i]).min().unwrap_or(EventTime::MAX);
        if min > self.current {
            self.current = min;
            Combined::Advanced(min)
        } else {
            Combined::Unchanged
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_inputs_do_not_hold_the_watermark_back() {
        let mut w = InputWatermarks::new(2);
        w.watermarks[0] = EventTime(100);
        assert_eq!(w.combined(), Combined::Unchanged, "input 1 has said nothing yet");
        w.idle[1] = true;
        assert_eq!(w.combined(), Combined::Advanced(EventTime(100)));
        // Input 1 comes back with an older watermark: it counts again, but the watermark never goes back.
        w.activate(1);
        w.watermarks[1] = EventTime(50);
        assert_eq!(w.combined(), Combined::Unchanged);
        w.watermarks[1] = EventTime(150);
        w.watermarks[0] = EventTime(120);
        assert_eq!(w.combined(), Combined::Advanced(EventTime(120)));
    }

    #[test]
    fn all_idle_is_forwarded_once_with_the_highest_watermark() {
        let mut w = InputWatermarks::new(2);
        w.idle = vec![true, true];
        assert_eq!(w.combined(), Combined::AllIdle { advanced: None });
        assert_eq!(w.combined(), Combined::Unchanged);
        // Input 0 brings rows up to 30, then goes idle again before input 1 wakes up.
        w.activate(0);
        w.watermarks[0] = EventTime(30);
        assert_eq!(w.combined(), Combined::Advanced(EventTime(30)));
        w.idle[0] = true;
        assert_eq!(w.combined(), Combined::AllIdle { advanced: None });
        w.activate(0);
        w.watermarks[0] = EventTime(40);
        w.idle[0] = true;
        assert_eq!(w.combined(), Combined::AllIdle { advanced: Some(EventTime(40)) });
        // An ended input is not idle and not live: the other one decides.
        w.ended[1] = true;
        w.activate(0);
        w.watermarks[0] = EventTime(50);
        assert_eq!(w.combined(), Combined::Advanced(EventTime(50)));
    }
}
