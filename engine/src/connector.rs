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
}

/// Reads one partition of a source, in order.
#[async_trait]
pub trait SourceReader: Send {
    /// Names the partition in messages, e.g. a file path.
    fn describe(&self) -> String;

    /// The next rows, or `None` when the partition has ended. May wait (rate limits, polling).
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, BoxError>;
}

/// A table that can be written.
#[async_trait]
pub trait Sink: Send {
    /// Accepts rows in the sink table's schema. May buffer.
    async fn write(&mut self, batch: RecordBatch) -> Result<(), BoxError>;

    /// Makes everything written so far durable and visible. Called at checkpoint
    /// barriers and once at the end of the pipeline.
    async fn commit(&mut self) -> Result<(), BoxError>;
}
