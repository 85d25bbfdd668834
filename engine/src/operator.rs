//! The operator trait: a small push-based interface with default hooks.
//!
//! An operator sees one message at a time and writes what it produces into an
//! [`Emitter`]. The runtime (see [`crate::runtime`]) owns the channels, merges
//! inputs, combines watermarks and aligns barriers, so operators stay plain
//! synchronous code over Arrow batches.

use datafusion::arrow::record_batch::RecordBatch;

use crate::changelog::ChangeBatch;
use crate::error::Result;
use crate::message::{CheckpointId, EventTime, Message};
use crate::state::OperatorState;

/// Where rows leave the main flow: late events and undecodable records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SideOutput {
    /// Rows whose window had already closed when they arrived.
    Late,
    /// Records a source could not decode (position, error, raw text).
    Malformed,
}

/// Collects what an operator produces for the runtime to send on.
#[derive(Debug, Default)]
pub struct Emitter {
    /// Messages for the main output, in order.
    pub messages: Vec<Message>,
    /// Batches for side outputs.
    pub side: Vec<(SideOutput, RecordBatch)>,
}

impl Emitter {
    /// Sends changes downstream; empty batches are dropped here so no operator has to.
    pub fn changes(&mut self, changes: ChangeBatch) {
        if changes.num_rows() > 0 {
            self.messages.push(Message::Rows(changes));
        }
    }

    /// Sends new rows downstream (an append-only operator's output).
    pub fn inserts(&mut self, batch: RecordBatch) {
        self.changes(ChangeBatch::inserts(batch));
    }

    /// Sends a watermark downstream.
    pub fn watermark(&mut self, watermark: EventTime) {
        self.messages.push(Message::Watermark(watermark));
    }

    /// Sends rows to a side output.
    pub fn side(&mut self, output: SideOutput, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.side.push((output, batch));
        }
    }

    /// Takes everything collected so far, leaving the emitter empty for reuse.
    pub fn drain(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.messages)
    }
}

/// One step of a pipeline. Only [`Operator::on_rows`] is required.
pub trait Operator: Send {
    /// A short name for logs, errors and `EXPLAIN`.
    fn name(&self) -> &str;

    /// Processes one batch of input changes. The planner puts an operator that
    /// takes only new rows ([`ChangeBatch::into_inserts`]) only behind append-only inputs.
    fn on_rows(&mut self, rows: ChangeBatch, out: &mut Emitter) -> Result<()>;

    /// Rows from input `input` of a stage whose head reads several inputs apart
    /// (a join's two sides are inputs 0 and 1). Other operators read all their
    /// inputs as one stream.
    fn on_input_rows(&mut self, input: usize, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        let _ = input;
        self.on_rows(rows, out)
    }

    /// The input watermark advanced (already the minimum over all inputs).
    /// Stateful operators emit what it completes, then forward it.
    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<()> {
        out.watermark(watermark);
        Ok(())
    }

    /// Input `input` of a stage whose head reads several inputs apart (a join's
    /// side) has ended while others go on: rows kept only to meet its rows can go.
    fn on_input_end(&mut self, input: usize, out: &mut Emitter) -> Result<()> {
        let _ = (input, out);
        Ok(())
    }

    /// Called before checkpoint barrier `id` goes on: what is emitted here belongs to that checkpoint.
    fn on_barrier(&mut self, _id: CheckpointId, _out: &mut Emitter) -> Result<()> {
        Ok(())
    }

    /// A refresh ([`Message::Refresh`]): an operator that emits only at barriers
    /// (an updating aggregate) emits what changed since it last emitted, so a view
    /// shows it before the next checkpoint. What it emits still belongs to the
    /// checkpoint whose barrier comes next.
    fn on_refresh(&mut self, _out: &mut Emitter) -> Result<()> {
        Ok(())
    }

    /// Every input has ended. Operators holding rows flush what is final.
    fn on_end(&mut self, _out: &mut Emitter) -> Result<()> {
        Ok(())
    }

    /// Serializes the operator's state at a barrier; `None` for stateless operators.
    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        Ok(None)
    }

    /// Adds the state of a snapshot taken by [`Operator::snapshot`] to this (fresh)
    /// operator. Restoring with another parallelism calls it once per old instance,
    /// with the rows of the keys this instance now owns, so state must add up.
    fn restore(&mut self, _state: OperatorState) -> Result<()> {
        Ok(())
    }

    /// Bytes of state the operator holds in memory now (0 for stateless ones), so
    /// the pipeline can show its size and stop at `'pipeline.state.max-memory'`
    /// before it takes the machine down. Asked after every message: keep it cheap.
    fn state_bytes(&self) -> usize {
        0
    }

    /// How many keys the operator holds state for now (0 for stateless ones):
    /// groups of an aggregate, keys with an open session, join keys, partitions
    /// of a rank or an OVER aggregate. Bytes say how big the state is; keys say
    /// whose it is, so an operator whose key space keeps growing (a GROUP BY on
    /// a user id, a join on a key that never repeats) shows up before its bytes
    /// hurt. Each operator documents what it counts. Asked as often as
    /// [`Operator::state_bytes`]: an exact count known in O(1) (a map's length,
    /// or a counter kept as keys come and go), never a walk over the state.
    fn state_keys(&self) -> usize {
        0
    }

    /// How many leading columns of snapshot part `part` are the group key the
    /// exchange hashes, so a checkpoint can be restored with another parallelism;
    /// 0 for parts that are not per key (a watermark), which every instance restores.
    fn state_key_columns(&self, _part: &str) -> usize {
        0
    }
}
