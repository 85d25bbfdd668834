//! The two traits every connector implements: one [`Source`], one [`Sink`].
//!
//! A source is split into partitions, each read by its own task through a
//! [`SourceReader`]; watermarks are tracked per partition by the engine, so a
//! reader only returns rows in its own order. A sink receives batches from one task
//! and makes them visible on [`Sink::commit`], which the engine calls at checkpoint
//! barriers and at the end of a bounded pipeline.

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

/// The error type connectors return; the engine wraps it with the table it came from.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A record a source could not decode, kept so it can be counted, reported and
/// routed to a dead-letter table instead of being lost.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedRecord {
    /// Where the record is, e.g. `events.json:17` or `partition 3 offset 120`.
    pub position: String,
    /// Why it could not be decoded, in words a user can act on.
    pub error: String,
    /// The raw record text (lossy UTF-8 for binary input).
    pub raw: String,
}

/// What one read of a partition returns.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// Decoded rows, in the source's physical schema, in partition order.
    pub rows: RecordBatch,
    /// Records of this read that could not be decoded.
    pub malformed: Vec<MalformedRecord>,
    /// The rows retract rows this source returned before (a changelog source,
    /// such as a materialized view's updates); see [`crate::Message::Retract`].
    pub retract: bool,
}

/// A table that can be read: a set of files, a generator, a topic.
pub trait Source: Send + Sync {
    /// The columns the source produces (the table's physical columns, without computed ones).
    fn schema(&self) -> SchemaRef;

    /// True when every partition ends by itself (files, generators with a count).
    fn is_bounded(&self) -> bool;

    /// Opens the partitions, each to be read by one task. `parallelism` is a hint
    /// for sources that can split freely (generators).
    fn open(&self, parallelism: usize) -> Result<Vec<Box<dyn SourceReader>>, BoxError>;

    /// Opens the partitions to continue from `positions` (taken from readers'
    /// [`SourceReader::position`] at a checkpoint); partitions without a position
    /// start as configured. Sources that cannot resume refuse a non-empty list.
    fn open_at(&self, parallelism: usize, positions: &[SourcePosition]) -> Result<Vec<Box<dyn SourceReader>>, BoxError> {
        if positions.is_empty() {
            self.open(parallelism)
        } else {
            Err("this source cannot resume from a saved position".into())
        }
    }
}

/// Where a partition's reader stands: enough to resume right after the last row
/// it returned, so offsets can be part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// The partition, as the source names it (e.g. `orders/3` for Kafka).
    pub partition: String,
    /// The next offset to read in that partition.
    pub offset: i64,
}

/// How a partition's reader is doing, for pipeline status and the progress line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderStatus {
    /// Records available but not read yet (Kafka consumer lag), when known.
    pub lag: Option<u64>,
    /// A problem the reader is retrying through (e.g. the broker is unreachable).
    pub problem: Option<String>,
}

/// Reads one partition of a source, in order.
#[async_trait]
pub trait SourceReader: Send {
    /// Names the partition in messages, e.g. a file path.
    fn describe(&self) -> String;

    /// The next rows, or `None` when the partition has ended. May wait (rate limits,
    /// polling); a reader of an unbounded source returns an empty batch now and then
    /// when nothing arrives, so the engine can check status and idleness.
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, BoxError>;

    /// Where to resume after the rows returned so far; `None` for sources that cannot resume.
    fn position(&self) -> Option<SourcePosition> {
        None
    }

    /// True when the partition has had no rows for longer than its idle timeout.
    fn is_idle(&self) -> bool {
        false
    }

    /// Lag and problems, polled by the engine after every read.
    fn status(&self) -> ReaderStatus {
        ReaderStatus::default()
    }
}

/// A table that can be written.
#[async_trait]
pub trait Sink: Send {
    /// Accepts rows in the sink table's schema. May buffer.
    async fn write(&mut self, batch: RecordBatch) -> Result<(), BoxError>;

    /// Retracts rows written before (a changelog's `-U`/`-D`): a keyed sink deletes
    /// their keys unless rows with the same key follow. Only sinks the planner lets
    /// take a changelog ([`Sink`]s of tables with a PRIMARY KEY that accept updates) get these.
    async fn retract(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        let _ = batch;
        Err("this sink cannot delete rows, so it cannot take a changelog with retractions".into())
    }

    /// Makes everything written so far durable and visible. Called at checkpoint
    /// barriers when the pipeline keeps no checkpoints, and once at the end.
    async fn commit(&mut self) -> Result<(), BoxError>;

    /// Two-phase commit, first phase, at checkpoint barrier `checkpoint` of a
    /// pipeline that keeps checkpoints: make everything written so far durable
    /// but, for a transactional sink, not yet visible. Returns what a restarted
    /// pipeline needs to finish the commit ([`Sink::recover`]); it is saved with the
    /// checkpoint. By default the sink simply commits (at-least-once).
    async fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        let _ = checkpoint;
        self.commit().await?;
        Ok(Vec::new())
    }

    /// Second phase: checkpoint `checkpoint` is saved, so what `prepare` kept for
    /// it (and for earlier ones) becomes visible.
    async fn commit_checkpoint(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        let _ = checkpoint;
        Ok(())
    }

    /// A refresh ([`crate::Message::Refresh`]) reached the sink: a sink whose readers
    /// may see rows before their checkpoint is saved (a materialized view) shows
    /// what it was given so far. Other sinks ignore it; the engine sends refreshes
    /// only to pipelines that ask for them.
    async fn refresh(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// On restart from a checkpoint: finishes the commit of what [`Sink::prepare`]
    /// returned for it (the crash may have come before the second phase).
    async fn recover(&mut self, prepared: &[u8]) -> Result<(), BoxError> {
        let _ = prepared;
        Ok(())
    }
}
