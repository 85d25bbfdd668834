//! A stage instance's operators, run in order, and the state they hold.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;

use super::restore::keep_owned_rows;
use crate::error::{EngineError, Result};
use crate::graph::OperatorFactory;
use crate::message::Message;
use crate::metrics::{OperatorPlace, PipelineMetrics, TaskMetrics};
use crate::operator::{Emitter, Operator, SideOutput};
use crate::state::{LastingPart, LastingParts, OperatorState, LASTING_MIN_BYTES};

/// Keeps [`PipelineMetrics::state_bytes`] up to date with one task's operators and
/// fails the task when the pipeline's total passes the limit.
#[derive(Clone)]
pub(super) struct StateBudget {
    pub(super) metrics: Arc<PipelineMetrics>,
    pub(super) max_bytes: Option<u64>,
}

/// Runs operators in order, feeding each one's output to the next.
pub(super) struct Chain {
    operators: Vec<Box<dyn Operator>>,
    /// Rows the operators diverted (late rows), for the source task to send to side sinks.
    pub(super) side: Vec<(SideOutput, RecordBatch)>,
    /// Where this chain reports its state size, and the limit.
    budget: Option<StateBudget>,
    /// The state size this chain reported last, so it adds only the change.
    reported_bytes: u64,
    /// The task's counters, one set per operator in chain order; `None` in tests of the runtime alone.
    metrics: Option<Arc<TaskMetrics>>,
    /// Lasting parts smaller than this are written into each checkpoint ([`OperatorState::encode`]).
    lasting_min_bytes: usize,
}

/// A chain's state at a barrier, as [`crate::checkpoint::TaskSnapshot`] holds it.
pub(super) struct ChainSnapshot {
    /// Each operator's state as bytes, `None` for stateless ones.
    pub(super) operators: Vec<Option<Vec<u8>>>,
    /// The lasting parts those bytes refer to.
    pub(super) lasting: Vec<LastingPart>,
}

impl Chain {
    /// A chain of fresh operators, one from each factory.
    pub(super) fn new(factories: &[OperatorFactory]) -> Result<Self> {
        Ok(Chain {
            operators: factories.iter().map(|f| f()).collect::<Result<_>>()?,
            side: Vec::new(),
            budget: None,
            reported_bytes: 0,
            metrics: None,
            lasting_min_bytes: LASTING_MIN_BYTES,
        })
    }

    /// Makes the chain write lasting parts smaller than `bytes` into each checkpoint.
    pub(super) fn with_lasting_min_bytes(mut self, bytes: usize) -> Self {
        self.lasting_min_bytes = bytes;
        self
    }

    /// Makes the chain report its state size to `budget` after every message.
    pub(super) fn with_budget(mut self, budget: StateBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Where each operator of the chain (as it is now: after [`Chain::prepend`])
    /// sits in stage `stage`, for the labels of its counters.
    pub(super) fn places(&self, stage: usize) -> Vec<OperatorPlace> {
        self.operators.iter().enumerate().map(|(i, o)| OperatorPlace { id: format!("{stage}.{i}"), name: o.name().to_string() }).collect()
    }

    /// Makes the chain count each operator's rows, time, state and watermark in `metrics`
    /// (made from [`Chain::places`]).
    pub(super) fn with_metrics(mut self, metrics: Arc<TaskMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The task's counters, when it keeps them.
    pub(super) fn counters(&self) -> Option<&TaskMetrics> {
        self.metrics.as_deref()
    }

    /// Reports the chain's state size to the pipeline's gauge and checks the limit;
    /// each operator's state bytes and keys go to its counters.
    fn account(&mut self) -> Result<()> {
        let Some(budget) = &self.budget else { return Ok(()) };
        let mut now = 0u64;
        for (i, operator) in self.operators.iter().enumerate() {
            let bytes = operator.state_bytes() as u64;
            if let Some(counters) = self.metrics.as_ref().and_then(|m| m.operators.get(i)) {
                counters.state_bytes.store(bytes, Ordering::Relaxed);
                counters.state_keys.store(operator.state_keys() as u64, Ordering::Relaxed);
            }
            now += bytes;
        }
        let total = if now >= self.reported_bytes {
            budget.metrics.state_bytes.fetch_add(now - self.reported_bytes, Ordering::Relaxed) + (now - self.reported_bytes)
        } else {
            budget.metrics.state_bytes.fetch_sub(self.reported_bytes - now, Ordering::Relaxed).saturating_sub(self.reported_bytes - now)
        };
        self.reported_bytes = now;
        match budget.max_bytes {
            Some(limit) if total > limit => Err(EngineError::StateLimit { held_bytes: total, limit_bytes: limit }),
            _ => Ok(()),
        }
    }

    /// Puts `head` (a keyed stage's aggregate) before the chain's operators.
    pub(super) fn prepend(&mut self, head: Box<dyn Operator>) {
        self.operators.insert(0, head);
    }

    /// Every operator's state, as bytes (`None` for stateless ones), and the
    /// lasting parts those bytes refer to (stored once by the checkpoint).
    pub(super) fn snapshot(&mut self) -> Result<ChainSnapshot> {
        let mut snapshot = ChainSnapshot { operators: Vec::with_capacity(self.operators.len()), lasting: Vec::new() };
        for operator in &mut self.operators {
            snapshot.operators.push(match operator.snapshot()? {
                None => None,
                Some(state) => {
                    let (bytes, parts) = state.encode(self.lasting_min_bytes)?;
                    snapshot.lasting.extend(parts);
                    Some(bytes)
                }
            });
        }
        Ok(snapshot)
    }

    /// Puts back what [`Chain::snapshot`] saved; `lasting` holds the parts it refers to.
    pub(super) fn restore(&mut self, states: &[Option<Vec<u8>>], lasting: &LastingParts) -> Result<()> {
        self.check_matches(states)?;
        for (operator, state) in self.operators.iter_mut().zip(states) {
            if let Some(bytes) = state {
                operator.restore(OperatorState::decode(bytes, lasting)?)?;
            }
        }
        Ok(())
    }

    /// Adds another instance's saved state, keeping the rows of keyed parts whose
    /// key hashes to `instance` of `parallelism` (see [`super::restore::restore_keyed`]).
    pub(super) fn restore_owned(&mut self, states: &[Option<Vec<u8>>], lasting: &LastingParts, instance: usize, parallelism: usize) -> Result<()> {
        self.check_matches(states)?;
        for (operator, state) in self.operators.iter_mut().zip(states) {
            let Some(bytes) = state else { continue };
            let mut state = OperatorState::decode(bytes, lasting)?;
            keep_owned_rows(operator.as_ref(), &mut state, instance, parallelism)?;
            operator.restore(state)?;
        }
        Ok(())
    }

    /// A checkpoint holds one state per operator; another count means another pipeline.
    fn check_matches(&self, states: &[Option<Vec<u8>>]) -> Result<()> {
        if states.len() != self.operators.len() {
            return Err(EngineError::State("the checkpoint does not match the pipeline's operators (was its SQL changed?)".into()));
        }
        Ok(())
    }

    /// Pushes one message through the chain; what leaves the last operator is appended to `out`.
    pub(super) fn push(&mut self, message: Message, out: &mut Vec<Message>) -> Result<()> {
        self.push_input(0, message, out)
    }

    /// Pushes one message that arrived as input `input` of the stage (a join's
    /// side), which the chain's first operator is told.
    pub(super) fn push_input(&mut self, input: usize, message: Message, out: &mut Vec<Message>) -> Result<()> {
        self.push_from(0, input, message, out)?;
        self.account()
    }

    /// Tells the chain's first operator that its input `input` (a join's side) has
    /// ended while others go on; what it emits goes down the chain.
    pub(super) fn end_input(&mut self, input: usize, out: &mut Vec<Message>) -> Result<()> {
        let Some(operator) = self.operators.first_mut() else { return Ok(()) };
        let mut emitter = Emitter::default();
        operator.on_input_end(input, &mut emitter)?;
        self.side.append(&mut emitter.side);
        for produced in emitter.drain() {
            self.push_from(1, 0, produced, out)?;
        }
        self.account()
    }

    fn push_from(&mut self, index: usize, input: usize, message: Message, out: &mut Vec<Message>) -> Result<()> {
        let Some(operator) = self.operators.get_mut(index) else {
            out.push(message);
            return Ok(());
        };
        let mut emitter = Emitter::default();
        let end = matches!(message, Message::EndOfStream);
        let rows_in = match &message {
            Message::Rows(rows) => rows.num_rows(),
            _ => 0,
        };
        let started = Instant::now();
        match message {
            Message::Rows(rows) if index == 0 => operator.on_input_rows(input, rows, &mut emitter)?,
            Message::Rows(rows) => operator.on_rows(rows, &mut emitter)?,
            Message::Watermark(w) => operator.on_watermark(w, &mut emitter)?,
            Message::Barrier(id) => {
                operator.on_barrier(id, &mut emitter)?;
                emitter.messages.push(Message::Barrier(id));
            }
            Message::Refresh(at) => {
                operator.on_refresh(&mut emitter)?;
                emitter.messages.push(Message::Refresh(at));
            }
            Message::Idle => emitter.messages.push(Message::Idle),
            Message::EndOfStream => operator.on_end(&mut emitter)?,
        }
        if let Some(counters) = self.metrics.as_ref().and_then(|m| m.operators.get(index)) {
            counters.record(rows_in, started.elapsed(), &emitter.messages);
        }
        self.side.append(&mut emitter.side);
        for produced in emitter.drain() {
            self.push_from(index + 1, 0, produced, out)?;
        }
        if end {
            self.push_from(index + 1, 0, Message::EndOfStream, out)?;
        }
        Ok(())
    }
}
