//! The contract every connector implements: one [`Connector`] type per external
//! system (its name, options, capabilities and constructors), which builds its
//! [`Source`]s and [`Sink`]s.
//!
//! A source is split into partitions, each read by its own task through a
//! [`SourceReader`]; watermarks are tracked per partition by the engine, so a
//! reader only returns rows in its own order. A sink receives batches from one task
//! and makes them visible on [`Sink::commit`], which the engine calls at checkpoint
//! barriers and at the end of a bounded pipeline.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::changelog::ChangeBatch;
use crate::message::EventTime;
use crate::table::TableDef;

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
    /// Decoded rows, in the source's physical schema, in partition order: new rows,
    /// or for a changelog source (a materialized view's updates) changes of any kind.
    pub rows: ChangeBatch,
    /// Records of this read that could not be decoded.
    pub malformed: Vec<MalformedRecord>,
    /// Rows already judged late where they were read: a cluster's re-partitioner
    /// judges lateness, and its key group sends them on to the table's `'late.sink'`.
    pub late: Vec<RecordBatch>,
}

impl SourceBatch {
    /// New rows, and the records of the same read that could not be decoded.
    pub fn inserts(rows: RecordBatch, malformed: Vec<MalformedRecord>) -> Self {
        SourceBatch { rows: ChangeBatch::inserts(rows), malformed, late: Vec::new() }
    }
}

/// Where a source partition's watermark comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatermarkOrigin {
    /// From its rows: the running maximum of the table's `WATERMARK FOR` expression.
    #[default]
    Rows,
    /// From its reader ([`SourceReader::watermark`]): rows a cluster re-partitioned
    /// through Kafka carry the watermarks of the partitions they were read from,
    /// and their own times would run ahead of the partitions not heard from yet.
    Reader,
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

    /// Where its partitions' watermarks come from; rows, unless the reader knows better.
    fn watermark_origin(&self) -> WatermarkOrigin {
        WatermarkOrigin::Rows
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
    /// How much of a bounded input it has read, as `(read, total)` bytes of its
    /// file, when it knows: what `eddy run`'s progress bar and time left come from.
    pub input_bytes: Option<(u64, u64)>,
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

    /// The partition's watermark as the reader knows it, polled after every read;
    /// used only when the source's [`Source::watermark_origin`] is the reader.
    fn watermark(&self) -> Option<EventTime> {
        None
    }
}

/// A table that can be written.
#[async_trait]
pub trait Sink: Send {
    /// Accepts changes in the sink table's schema. May buffer. Only sinks the planner
    /// lets take a changelog ([`SinkChanges`] beyond appends, a table with a PRIMARY
    /// KEY) get anything but inserts; they apply the changes in order, and a keyed
    /// sink deletes a retracted row's key unless a row with the same key follows.
    /// An append-only sink takes [`ChangeBatch::into_inserts`].
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError>;

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

/// One kind of external system tables are declared over (`'connector' = 'kafka'`):
/// everything the planner, the binary and the runtime need to know about it, so
/// that adding a connector is writing one type and listing it once in a registry.
///
/// The engine defines the contract; the implementations and the one list of them
/// live outside it (`eddy-connectors`), which hands that list to whoever needs to
/// name connectors (see [`resumable_connectors`]). Option checks that hold for every
/// connector (unknown keys, required ones, METADATA columns) are the registry's;
/// [`Connector::validate`] adds only what is particular to one.
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// What is known of it before any table is declared: name, options, capabilities.
    fn info(&self) -> &'static ConnectorInfo;

    /// The value of `'connector'` that selects it.
    fn name(&self) -> &'static str {
        self.info().name
    }

    /// Checks the values of `def`'s options and its columns, without opening anything.
    fn validate(&self, def: &TableDef, table_use: TableUse) -> Result<(), BoxError> {
        let _ = (def, table_use);
        Ok(())
    }

    /// Whether a source of `def` ends by itself, decided from its options alone, so
    /// the planner knows before anything is opened whether windows close and a run ends.
    fn boundedness(&self, def: &TableDef) -> Boundedness {
        let _ = def;
        Boundedness::Unbounded
    }

    /// Whether a source of `def` can resume from a checkpoint, so a pipeline reading
    /// it keeps checkpoints; follows [`Capabilities::resume`] unless overridden.
    fn resumption(&self, def: &TableDef) -> Resumption {
        let _ = def;
        match self.info().capabilities.resume {
            Resume::Always => Resumption::Resumes,
            Resume::Never | Resume::Partly { .. } => Resumption::StartsOver,
        }
    }

    /// Whether a checkpoint of a source of `def`, saved with one parallelism, can be
    /// resumed with another, so `RESTART PIPELINE ... WITH PARALLELISM` can refuse up
    /// front what the restore would fail on. Sources whose positions are per
    /// partition (Kafka, files) can; generators save one position per reader, so
    /// they override this.
    fn rescaling(&self, def: &TableDef) -> Rescaling {
        let _ = def;
        Rescaling::AnyParallelism
    }

    /// The physical schema a source of `def` produces: the declared columns, unless
    /// the connector knows its own (a generator declared without columns).
    fn source_schema(&self, def: &TableDef) -> Result<SchemaRef, BoxError> {
        Ok(def.physical_schema())
    }

    /// Builds a source of `def` producing `schema`, for a pipeline that reads only
    /// the columns at positions `read` (all when `None`): a source that can skip the
    /// work for the others leaves them NULL. Only called when [`Roles::reads`].
    fn create_source(&self, def: &TableDef, schema: SchemaRef, read: Option<&[usize]>) -> Result<Arc<dyn Source>, BoxError> {
        let _ = (def, schema, read);
        Err(format!("connector '{}' cannot be used as a source", self.name()).into())
    }

    /// [`Connector::create_source`] for a query whose filters say which partition
    /// directories can hold its rows: a connector that can skip the others does.
    /// The filter stays in the plan, so ignoring it (the default) is correct too.
    fn create_pruned_source(
        &self,
        def: &TableDef,
        schema: SchemaRef,
        read: Option<&[usize]>,
        partitions: &crate::plan::PartitionFilter,
    ) -> Result<Arc<dyn Source>, BoxError> {
        let _ = partitions;
        self.create_source(def, schema, read)
    }

    /// Whether its tables can be looked up by key (the table of a lookup join).
    fn lookups(&self) -> crate::lookup::Lookups {
        crate::lookup::Lookups::Unsupported
    }

    /// Opens `def` (of physical columns `schema`) to be looked up by the columns
    /// at `keys`. Only called when [`Connector::lookups`] says it can be.
    fn create_lookup(&self, def: &TableDef, schema: SchemaRef, keys: &[usize]) -> Result<Box<dyn crate::lookup::Lookup>, BoxError> {
        let _ = (def, schema, keys);
        Err(format!("connector '{}' cannot be looked up (a lookup join reads redis, clickhouse and filesystem tables)", self.name()).into())
    }

    /// Builds a sink of `def` accepting rows in `schema`. Only called when [`Roles::writes`].
    fn create_sink(&self, def: &TableDef, schema: SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        let _ = (def, schema);
        Err(format!("connector '{}' cannot be used as a sink", self.name()).into())
    }
}

/// The static facts of a connector, kept apart from its behaviour so that they can
/// be listed (`--help`), checked against and tested without building anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectorInfo {
    /// The value of `'connector'` that selects it.
    pub name: &'static str,
    /// One line saying what it is for, shown by `--help`.
    pub description: &'static str,
    /// The `WITH` options it accepts besides the engine's own, in the order `--help` lists them.
    pub options: &'static [OptionSpec],
    /// What it can do whatever a table's options say.
    pub capabilities: Capabilities,
}

/// One documented `WITH` option of a connector, so options are validated,
/// suggested on typos and listed by `--help` from the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
    /// The key; `#` stands for a column name (`fields.#.kind`) or any suffix (`properties.#`).
    pub key: &'static str,
    /// What it means and what it looks like.
    pub doc: &'static str,
    /// Whether a table must set it.
    pub presence: Presence,
}

impl OptionSpec {
    /// An option a table may leave out.
    pub const fn optional(key: &'static str, doc: &'static str) -> Self {
        OptionSpec { key, doc, presence: Presence::Optional }
    }

    /// An option every table of the connector must set.
    pub const fn required(key: &'static str, doc: &'static str) -> Self {
        OptionSpec { key, doc, presence: Presence::Required }
    }

    /// Whether `key` is this option (`#` standing for one column name or suffix).
    pub fn matches(&self, key: &str) -> bool {
        match self.key.split_once('#') {
            None => self.key == key,
            Some((pre, post)) => key.len() > pre.len() + post.len() && key.starts_with(pre) && key.ends_with(post),
        }
    }
}

/// Whether a table must set an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Validation fails without it.
    Required,
    /// It has a default.
    Optional,
}

/// What a connector can do whatever a table's options say: what the planner checks
/// a statement against, and what `--help` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether tables of it can be read, written or both.
    pub roles: Roles,
    /// What a sink of it can apply besides appended rows.
    pub changes: SinkChanges,
    /// Whether its sources can continue from a checkpoint.
    pub resume: Resume,
    /// Whether its tables may declare `METADATA` columns.
    pub metadata: MetadataColumns,
}

/// Whether tables of a connector can be read, written or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// Only read (generators).
    Source,
    /// Only written (dashboards' stores, stdout).
    Sink,
    /// Read and written (files, topics).
    SourceAndSink,
}

impl Roles {
    /// Whether a pipeline can read such a table.
    pub fn reads(self) -> bool {
        matches!(self, Roles::Source | Roles::SourceAndSink)
    }

    /// Whether a pipeline can write such a table.
    pub fn writes(self) -> bool {
        matches!(self, Roles::Sink | Roles::SourceAndSink)
    }
}

/// What a sink can apply, from least to most: each kind also takes what the ones before it take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SinkChanges {
    /// Only new rows (files, a Kafka topic's log); also what a source-only connector has.
    Appends,
    /// Rows that replace earlier rows of the same key (it overwrites by key, or only shows or drops rows).
    Updates,
    /// Also rows deleted again: it deletes by key (`upsert-kafka` writes tombstones), or only shows or drops rows.
    Retractions,
}

/// Whether a connector's sources can continue from a checkpoint (they save positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// They start over: a pipeline reading one keeps no checkpoints.
    Never,
    /// Every source of it resumes.
    Always,
    /// Some of its tables resume, as `which` says (e.g. `bids`); [`Connector::resumption`] decides per table.
    Partly {
        /// The tables that resume, as a user would name them.
        which: &'static str,
    },
}

/// Whether a connector's tables may declare `METADATA` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataColumns {
    /// They may not: every column is payload.
    Unsupported,
    /// They may (a record's envelope: Kafka's partition, offset, timestamp...).
    Supported,
}

/// How a table is being used when its options are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableUse {
    /// `CREATE TABLE`, or a pipeline reading it: nothing is written to it, so a
    /// sink-only connector passes (reading one fails when its source is built).
    Declared,
    /// It is the target of `INSERT INTO`: the connector must take writes.
    Written,
}

/// Whether a source ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundedness {
    /// It ends (files, generators with a count): windows close and `eddy run` exits.
    Bounded,
    /// It runs until stopped.
    Unbounded,
}

/// Whether one table's source can continue from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumption {
    /// It saves positions and continues from them.
    Resumes,
    /// It starts from its beginning every time.
    StartsOver,
}

/// Which parallelism a source's checkpoint can be resumed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rescaling {
    /// Any: its positions are kept per partition, whichever task reads it.
    AnyParallelism,
    /// Only the one it was saved with: it keeps one position per reader.
    SavedParallelismOnly,
}

/// The connectors of `connectors` whose sources can resume, as a user would list
/// them (`kafka, nexmark bids`), for messages that suggest one.
pub fn resumable_connectors(connectors: &[&dyn Connector]) -> String {
    let names = connectors.iter().filter_map(|c| match c.info().capabilities.resume {
        Resume::Never => None,
        Resume::Always => Some(c.name().to_string()),
        Resume::Partly { which } => Some(format!("{} {which}", c.name())),
    });
    names.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test connectors, one per way of resuming.
    macro_rules! test_connector {
        ($type:ident, $name:literal, $resume:expr) => {
            #[derive(Debug)]
            struct $type;

            impl Connector for $type {
                fn info(&self) -> &'static ConnectorInfo {
                    const INFO: ConnectorInfo = ConnectorInfo {
                        name: $name,
                        description: "a test connector",
                        options: &[],
                        capabilities: Capabilities {
                            roles: Roles::Sink,
                            changes: SinkChanges::Appends,
                            resume: $resume,
                            metadata: MetadataColumns::Unsupported,
                        },
                    };
                    &INFO
                }
            }
        };
    }

    test_connector!(Always, "a", Resume::Always);
    test_connector!(Never, "b", Resume::Never);
    test_connector!(Partly, "c", Resume::Partly { which: "bids" });

    #[test]
    fn resumable_connectors_are_named_in_list_order_with_which_tables() {
        let (a, b, c) = (Always, Never, Partly);
        assert_eq!(resumable_connectors(&[&c, &b, &a]), "c bids, a");
        assert_eq!(resumable_connectors(&[&b]), "");
        let table = TableDef::from_fields("t", &[], &[]);
        assert_eq!((a.resumption(&table), b.resumption(&table), c.resumption(&table)), (Resumption::Resumes, Resumption::StartsOver, Resumption::StartsOver));
        let refused = a.create_source(&table, table.physical_schema(), None).err().map(|e| e.to_string());
        assert_eq!(refused.as_deref(), Some("connector 'a' cannot be used as a source"));
    }

    #[test]
    fn option_keys_match_with_a_column_name_for_the_hash() {
        let field = OptionSpec::optional("fields.#.min", "");
        assert!(field.matches("fields.v.min") && field.matches("fields.a.b.min"));
        assert!(!field.matches("fields..min") && !field.matches("fields.v.minimum") && !field.matches("fields.min"));
        let plain = OptionSpec::required("path", "");
        assert!(plain.matches("path") && !plain.matches("paths"));
        assert!(SinkChanges::Retractions > SinkChanges::Updates && SinkChanges::Updates > SinkChanges::Appends);
    }
}
