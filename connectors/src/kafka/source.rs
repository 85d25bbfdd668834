//! The Kafka source: one reader per topic partition.
//!
//! A reader per partition keeps each partition's records in order and gives every
//! partition a watermark of its own, as Flink does. Start offsets are resolved to
//! numbers when the source opens (earliest, latest, the group's committed offsets,
//! a timestamp, or given offsets), so a reader always knows its exact position:
//! that position is what a checkpoint saves and [`Source::open_at`] resumes from.
//!
//! Values are decoded straight into Arrow (the JSON/CSV decoders of the
//! filesystem connector, a whole poll at once, record by record only when that
//! fails); a record that does not decode becomes a malformed record at
//! `topic partition P offset O` and never stops the pipeline. A broker that goes
//! away is retried by librdkafka forever; meanwhile the reader reports the problem
//! in its status, and resumes from its position when the broker is back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryBuilder, Int32Array, Int64Array, RecordBatch, RecordBatchOptions, StringBuilder, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use eddy_engine::table::TableDef;
use eddy_engine::{BoxError, EventTime, MalformedRecord, ReaderStatus, Source, SourceBatch, SourcePosition, SourceReader, WatermarkOrigin};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::batch::{BatchQueue, RawRecord};
use super::partials::{self, ShuffledRecord};
use super::shuffle::{Marker, ShuffleWatermarks};
use super::{KafkaOptions, StartupMode, TextOrRaw};
use crate::error::ConnectorError;
use crate::filesystem::records::{Chunk, Record};
use crate::filesystem::text::{RecordDecoder, TextFormat};

/// How long a read waits for the first record before returning an empty batch,
/// so the engine can check idleness, status and stop requests.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// Timeout of metadata requests when the source opens.
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);
/// How often an offset lookup that a partition failed is made, and the pause between.
const LOOKUP_ATTEMPTS: u32 = 10;
const LOOKUP_RETRY_AFTER: Duration = Duration::from_millis(300);
/// With no records for this long, a reader checks that the brokers answer (at most this often).
const HEALTH_EVERY: Duration = Duration::from_secs(3);
/// How long that check may block the reader's task.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a read naps when no record is ready (bounds the added latency).
const NAP: Duration = Duration::from_millis(2);
/// A reader with errors and no records for this long re-creates its consumer.
const STUCK_AFTER: Duration = Duration::from_secs(5);
/// A problem older than this, with records flowing or no new error, is over.
const PROBLEM_TTL: Duration = Duration::from_secs(30);

/// Where one column of the table comes from.
#[derive(Debug, Clone, Copy)]
enum ColumnSource {
    /// Column `i` of the decoded value.
    Value(usize),
    Topic,
    Partition,
    Offset,
    Timestamp,
    TimestampType,
    Key,
    Headers,
}

/// A Kafka topic (or pattern) as a table.
pub struct KafkaSource {
    table: String,
    options: KafkaOptions,
    schema: SchemaRef,
    value_schema: SchemaRef,
    columns: Vec<ColumnSource>,
    /// The value fields a text format decodes (`None`: all); the others are left empty.
    read_values: Option<Vec<usize>>,
}

impl KafkaSource {
    /// Checks the options and maps the table's columns to value fields and metadata.
    pub fn try_new(def: &TableDef, schema: SchemaRef) -> Result<Self, ConnectorError> {
        let options = KafkaOptions::parse(def)?;
        super::check_metadata(def, eddy_engine::TableUse::Declared)?;
        let mut value_fields = Vec::new();
        let mut columns = Vec::new();
        for field in schema.fields() {
            let meta = def.columns.iter().find(|c| c.name == *field.name()).and_then(|c| c.metadata.as_ref());
            columns.push(match meta.map(|m| m.key.as_str()) {
                None => {
                    value_fields.push(field.as_ref().clone());
                    ColumnSource::Value(value_fields.len() - 1)
                }
                Some("topic") => ColumnSource::Topic,
                Some("partition") => ColumnSource::Partition,
                Some("offset") => ColumnSource::Offset,
                Some("timestamp") => ColumnSource::Timestamp,
                Some("timestamp-type") => ColumnSource::TimestampType,
                Some("key") => ColumnSource::Key,
                Some(_) => ColumnSource::Headers,
            });
        }
        if matches!(options.format, TextOrRaw::Raw) && (value_fields.len() != 1 || !matches!(value_fields[0].data_type(), DataType::Utf8 | DataType::Binary)) {
            return Err(ConnectorError::invalid("format", "raw", "a raw value fills exactly one STRING or BYTES column (besides METADATA columns)"));
        }
        let value_schema = Arc::new(datafusion::arrow::datatypes::Schema::new(value_fields));
        if let TextOrRaw::Avro | TextOrRaw::AvroConfluent = options.format {
            // With a registry each record is read with its writer's schema; the
            // table's own record still says which columns it can hold.
            let record = super::avro::AvroRecord::for_schema(&value_schema)?;
            tracing::info!(table = %def.name, "kafka values are Avro records of schema {}", record.schema_json());
        }
        Ok(KafkaSource { table: def.name.clone(), value_schema, options, schema, columns, read_values: None })
    }

    /// Decodes only the table columns `read` (indices of its physical columns; `None`:
    /// all), leaving the others empty: JSON values are parsed only as far as needed.
    pub fn reading(mut self, read: Option<&[usize]>) -> Self {
        self.read_values = read.map(|read| {
            read.iter()
                .filter_map(|c| match self.columns.get(*c) {
                    Some(ColumnSource::Value(i)) => Some(*i),
                    _ => None,
                })
                .collect()
        });
        self
    }

    fn consumer_config(&self) -> rdkafka::ClientConfig {
        let mut config = self.options.client_config();
        let own_group = self.options.group_id.is_some();
        config
            .set("group.id", self.options.group_id.clone().unwrap_or_else(|| format!("eddy-{}", self.table)))
            // Offsets are committed for the user's group only, and only for rows already handed over.
            .set("enable.auto.commit", if own_group { "true" } else { "false" })
            .set("enable.auto.offset.store", "false");
        // librdkafka's defaults prefetch up to 64 MB per partition and, once that
        // queue is full, wait a whole second before fetching again: catching up on
        // a backlog stalled every second, and each reader's memory was fresh pages
        // (one reader per partition). 4 MB and 5 ms doubled the benchmark's events
        // per second and keep the prefetch bounded; `properties.*` still override.
        for (key, value) in [("queued.max.messages.kbytes", "4096"), ("fetch.queue.backoff.ms", "5")] {
            if !self.options.properties.contains_key(key) {
                config.set(key, value);
            }
        }
        config
    }

    /// Every `(topic, partition)` to read, and each one's low and high offsets.
    fn partitions(&self, meta: &BaseConsumer) -> Result<Vec<(String, i32, i64, i64)>, ConnectorError> {
        let brokers = &self.options.bootstrap;
        let context = || format!("cannot read the partitions of {} from {brokers}", self.options.topic_label());
        let metadata = meta.fetch_metadata(self.options.topic.as_deref(), METADATA_TIMEOUT).map_err(|e| ConnectorError::kafka(context(), e))?;
        let mut out = Vec::new();
        for topic in metadata.topics() {
            let wanted = match (&self.options.topic, &self.options.topic_pattern) {
                (Some(t), _) => t == topic.name(),
                (None, Some(p)) => p.is_match(topic.name()) && !topic.name().starts_with("__"),
                _ => false,
            };
            if !wanted {
                continue;
            }
            if let Some(err) = topic.error() {
                if rdkafka::error::RDKafkaErrorCode::from(err) == rdkafka::error::RDKafkaErrorCode::UnknownTopicOrPartition {
                    continue;
                }
                return Err(ConnectorError::kafka(context(), KafkaError::MetadataFetch(err.into())));
            }
            for p in topic.partitions() {
                let (low, high) = meta
                    .fetch_watermarks(topic.name(), p.id(), METADATA_TIMEOUT)
                    .map_err(|e| ConnectorError::kafka(format!("cannot read the offsets of {}/{}", topic.name(), p.id()), e))?;
                out.push((topic.name().to_string(), p.id(), low, high));
            }
        }
        if out.is_empty() {
            return Err(ConnectorError::invalid(
                if self.options.topic.is_some() { "topic" } else { "topic-pattern" },
                self.options.topic.as_deref().unwrap_or_else(|| self.options.topic_pattern.as_ref().map_or("", |p| p.as_str())),
                format!("no such topic on {brokers}; create it first (or check the name)"),
            ));
        }
        out.sort();
        Ok(out)
    }

    /// The first offset to read in each partition, as configured.
    fn start_offsets(&self, meta: &BaseConsumer, parts: &[(String, i32, i64, i64)]) -> Result<Vec<i64>, ConnectorError> {
        // A partition's lookup can fail on its own (its leader is still being
        // elected just after the topic was made): taking that as "no offset" would
        // start at the wrong place, so it is asked again, then refused.
        let lookup = |list: TopicPartitionList, what: &str| -> Result<HashMap<(String, i32), Offset>, ConnectorError> {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let found = match what {
                    "committed" => meta.committed_offsets(list.clone(), METADATA_TIMEOUT),
                    _ => meta.offsets_for_times(list.clone(), METADATA_TIMEOUT),
                }
                .map_err(|e| ConnectorError::kafka(format!("cannot look up {what} offsets of {}", self.options.topic_label()), e))?;
                let failed = found.elements().iter().find_map(|e| e.error().err().map(|err| (e.partition(), err)));
                match failed {
                    None => return Ok(found.elements().iter().map(|e| ((e.topic().to_string(), e.partition()), e.offset())).collect()),
                    Some(_) if attempt < LOOKUP_ATTEMPTS => std::thread::sleep(LOOKUP_RETRY_AFTER),
                    Some((partition, err)) => {
                        return Err(ConnectorError::kafka(
                            format!("cannot look up {what} offsets of {} partition {partition}", self.options.topic_label()),
                            err,
                        ))
                    }
                }
            }
        };
        let list_with = |offset: Offset| -> Result<TopicPartitionList, ConnectorError> {
            let mut list = TopicPartitionList::new();
            for (t, p, _, _) in parts {
                list.add_partition_offset(t, *p, offset).map_err(|e| ConnectorError::kafka("cannot build the partition list", e))?;
            }
            Ok(list)
        };
        let found = match &self.options.startup {
            StartupMode::Timestamp(ts) => Some(lookup(list_with(Offset::Offset(*ts))?, "timestamp")?),
            StartupMode::GroupOffsets | StartupMode::Specific(_) => Some(lookup(list_with(Offset::Invalid)?, "committed")?),
            StartupMode::Earliest | StartupMode::Latest => None,
        };
        Ok(parts
            .iter()
            .map(|(t, p, low, high)| {
                let from_lookup = || match found.as_ref().and_then(|f| f.get(&(t.clone(), *p))) {
                    Some(Offset::Offset(o)) => Some(*o),
                    Some(Offset::End) => Some(*high),
                    _ => None,
                };
                let start = match &self.options.startup {
                    StartupMode::Earliest => *low,
                    StartupMode::Latest => *high,
                    // No record at or after the timestamp: start at the end.
                    StartupMode::Timestamp(_) => from_lookup().unwrap_or(*high),
                    // No committed offset: from the beginning, as Flink with 'auto.offset.reset' = earliest.
                    StartupMode::GroupOffsets => from_lookup().unwrap_or(*low),
                    StartupMode::Specific(given) => given.get(p).copied().or_else(from_lookup).unwrap_or(*low),
                };
                start.clamp(*low, *high)
            })
            .collect())
    }

    fn open_readers(&self, positions: &[SourcePosition]) -> Result<Vec<Box<dyn SourceReader>>, ConnectorError> {
        let config = self.consumer_config();
        let meta: BaseConsumer =
            config.create().map_err(|e| ConnectorError::kafka(format!("cannot create a Kafka consumer for {}", self.options.bootstrap), e))?;
        let mut parts = self.partitions(&meta)?;
        if let Some(group) = self.options.key_group {
            // A cluster's shuffle topic: one key group, read from its start (or the checkpoint).
            parts.retain(|(_, p, _, _)| *p == group);
        }
        let starts = match self.options.key_group {
            Some(_) => parts.iter().map(|(_, _, low, _)| *low).collect(),
            None => self.start_offsets(&meta, &parts)?,
        };
        let mut readers: Vec<Box<dyn SourceReader>> = Vec::new();
        for ((topic, partition, low, high), start) in parts.into_iter().zip(starts) {
            let name = format!("{topic}/{partition}");
            let start = positions.iter().find(|p| p.partition == name).map_or(start, |p| p.offset.max(low));
            readers.push(Box::new(self.reader(&config, topic, partition, start, high)?));
        }
        Ok(readers)
    }

    /// A reader of one partition of the topic, keeping each record's bytes, key and
    /// headers next to its decoded row ([`KafkaPartitionReader::read`]): what a
    /// cluster's re-partitioner forwards. Starts at `start`, else as configured.
    pub(crate) fn open_partition(&self, partition: i32, start: Option<i64>) -> Result<KafkaPartitionReader, ConnectorError> {
        let config = self.consumer_config();
        let meta: BaseConsumer =
            config.create().map_err(|e| ConnectorError::kafka(format!("cannot create a Kafka consumer for {}", self.options.bootstrap), e))?;
        let parts: Vec<_> = self.partitions(&meta)?.into_iter().filter(|(_, p, _, _)| *p == partition).collect();
        let configured = self.start_offsets(&meta, &parts)?;
        let Some(((topic, partition, low, high), configured)) = parts.into_iter().zip(configured).next() else {
            return Err(ConnectorError::invalid("topic", &self.options.topic_label(), format!("has no partition {partition}")));
        };
        let mut reader = self.reader(&config, topic, partition, start.map_or(configured, |s| s.max(low)), high)?;
        reader.keep_records = true;
        Ok(reader)
    }

    fn reader(&self, config: &rdkafka::ClientConfig, topic: String, partition: i32, start: i64, high: i64) -> Result<KafkaPartitionReader, ConnectorError> {
        let consumer = assigned_consumer(config, &topic, partition, start)?;
        Ok(KafkaPartitionReader {
            queue: BatchQueue::of(&consumer, self.options.batch_rows),
            name: format!("{topic}/{partition}"),
            topic,
            partition,
            consumer,
            config: config.clone(),
            problem: None,
            options: self.options.clone(),
            value_schema: Arc::clone(&self.value_schema),
            decoder: RecordDecoder::reading(
                match self.options.format {
                    TextOrRaw::Text(format) => format,
                    _ => TextFormat::Json,
                },
                Arc::clone(&self.value_schema),
                self.read_values.as_deref(),
            ),
            avro: match self.options.format {
                TextOrRaw::Avro => Some(super::avro::AvroDecoder::bare(Arc::clone(&self.value_schema))?),
                TextOrRaw::AvroConfluent => Some(super::avro::AvroDecoder::confluent(Arc::clone(&self.value_schema))?),
                _ => None,
            },
            schema: Arc::clone(&self.schema),
            columns: self.columns.clone(),
            next_offset: start,
            // A shuffle topic ends when its markers say every source partition has.
            end_offset: (self.options.bounded_latest && self.options.key_group.is_none()).then_some(high),
            last_record: Instant::now(),
            backoff: Duration::ZERO,
            troubled_since: None,
            last_health_check: Instant::now(),
            buffer: Vec::new(),
            registry: self.options.registry.as_ref().map(|(url, _)| super::registry::SchemaRegistry::new(url)),
            shuffle: self.options.key_group.map(|_| ShuffleWatermarks::default()),
            keep_records: false,
        })
    }
}

/// A consumer of one partition, positioned at `offset`.
fn assigned_consumer(config: &rdkafka::ClientConfig, topic: &str, partition: i32, offset: i64) -> Result<BaseConsumer, ConnectorError> {
    let name = format!("{topic}/{partition}");
    let consumer: BaseConsumer = config.create().map_err(|e| ConnectorError::kafka(format!("cannot create a Kafka consumer for {name}"), e))?;
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(offset))
        .and_then(|_| consumer.assign(&list))
        .map_err(|e| ConnectorError::kafka(format!("cannot assign {name}"), e))?;
    Ok(consumer)
}

impl Source for KafkaSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn watermark_origin(&self) -> WatermarkOrigin {
        match self.options.key_group {
            Some(_) => WatermarkOrigin::Reader,
            None => WatermarkOrigin::Rows,
        }
    }

    fn is_bounded(&self) -> bool {
        self.options.bounded_latest
    }

    fn open(&self, _parallelism: usize) -> Result<Vec<Box<dyn SourceReader>>, BoxError> {
        Ok(self.open_readers(&[])?)
    }

    fn open_at(&self, _parallelism: usize, positions: &[SourcePosition]) -> Result<Vec<Box<dyn SourceReader>>, BoxError> {
        Ok(self.open_readers(positions)?)
    }
}

/// Reads one Kafka partition from a known offset.
pub(crate) struct KafkaPartitionReader {
    name: String,
    topic: String,
    partition: i32,
    /// Declared before `consumer`: the queue is released before the consumer it belongs to.
    queue: BatchQueue,
    consumer: BaseConsumer,
    config: rdkafka::ClientConfig,
    /// A problem the reader is retrying through, and when it was last seen.
    problem: Option<(String, Instant)>,
    options: KafkaOptions,
    value_schema: SchemaRef,
    /// Decodes the values of text formats.
    decoder: RecordDecoder,
    /// Decodes Avro values (`avro`, `avro-confluent`), with the writer schemas fetched so far.
    avro: Option<super::avro::AvroDecoder>,
    schema: SchemaRef,
    columns: Vec<ColumnSource>,
    /// The offset after the last record returned: where to resume.
    next_offset: i64,
    /// With `'scan.bounded.mode' = 'latest-offset'`: the partition ends here.
    end_offset: Option<i64>,
    last_record: Instant,
    backoff: Duration,
    /// Since when the consumer has reported errors without delivering a record.
    troubled_since: Option<Instant>,
    last_health_check: Instant,
    /// The record bytes of the last read, kept for reuse.
    buffer: Vec<u8>,
    /// `avro-confluent`: the registry the writer schemas are fetched from.
    registry: Option<super::registry::SchemaRegistry>,
    /// Reading a cluster's shuffle topic: the watermarks its markers carry.
    shuffle: Option<ShuffleWatermarks>,
    /// Keys and headers are kept with every read, for [`KafkaPartitionReader::read`].
    keep_records: bool,
}

/// The records of one read, before decoding.
#[derive(Default)]
pub(crate) struct Polled {
    /// Keys and headers cost an allocation per record: kept only when a column reads them.
    want_keys: bool,
    want_headers: bool,
    pub(crate) chunk: Chunk,
    offsets: Vec<i64>,
    pub(crate) timestamps: Vec<Option<i64>>,
    timestamp_types: Vec<&'static str>,
    pub(crate) keys: Vec<Option<Vec<u8>>>,
    pub(crate) headers: Vec<Headers>,
}

/// One read of a partition: its rows, and the records they were decoded from.
pub(crate) struct Read {
    pub(crate) batch: SourceBatch,
    pub(crate) records: Polled,
    /// The record each row came from (`None`: row `i` is record `i`); the others were malformed.
    pub(crate) rows_from: Option<Vec<u32>>,
}

/// One record's headers: name and value, in the order they were written.
pub(crate) type Headers = Vec<(String, Option<Vec<u8>>)>;

impl Polled {
    fn push(&mut self, record: &RawRecord<'_>) {
        let Some(payload) = record.payload else { return };
        let start = self.chunk.data.len();
        self.chunk.data.extend_from_slice(payload);
        let end = self.chunk.data.len();
        self.chunk.data.push(b'\n');
        self.chunk.records.push(Record { start, end, line: record.offset as u64 });
        self.offsets.push(record.offset);
        self.timestamps.push(record.timestamp.to_millis());
        self.timestamp_types.push(match record.timestamp {
            rdkafka::Timestamp::NotAvailable => "NoTimestampType",
            rdkafka::Timestamp::CreateTime(_) => "CreateTime",
            rdkafka::Timestamp::LogAppendTime(_) => "LogAppendTime",
        });
        if self.want_keys {
            self.keys.push(record.key.map(<[u8]>::to_vec));
        }
        if self.want_headers {
            self.headers.push(record.headers());
        }
    }
}

impl KafkaPartitionReader {
    /// The partition's end offset as of the last fetch response, without asking the broker.
    fn cached_high_offset(&self) -> Option<i64> {
        let topic = std::ffi::CString::new(self.topic.as_str()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid while `self.consumer` lives; librdkafka
        // only reads `topic` and writes the two offsets.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(self.consumer.client().native_ptr(), topic.as_ptr(), self.partition, &mut low, &mut high)
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
    }

    /// Asks the broker for the topic's metadata when nothing has arrived for a while:
    /// librdkafka's connection errors do not reach the batch API, this does.
    fn check_health(&mut self) {
        if self.last_record.elapsed() < HEALTH_EVERY || self.last_health_check.elapsed() < HEALTH_EVERY {
            return;
        }
        self.last_health_check = Instant::now();
        match self.consumer.fetch_metadata(Some(&self.topic), HEALTH_TIMEOUT) {
            Ok(_) => self.problem = None,
            Err(e) => {
                let message = format!("cannot reach the brokers ({e})");
                if self.problem.as_ref().is_none_or(|(p, _)| *p != message) {
                    tracing::warn!(partition = %self.name, "kafka: {message}; retrying");
                }
                self.problem = Some((message, Instant::now()));
                self.troubled_since.get_or_insert_with(Instant::now);
            }
        }
    }

    /// After an outage a librdkafka consumer may keep failing although the broker
    /// is back; a new consumer at our position resumes without skipping or
    /// repeating a record.
    fn recover_if_stuck(&mut self) {
        let Some(since) = self.troubled_since else { return };
        if since.elapsed() < STUCK_AFTER {
            return;
        }
        self.troubled_since = Some(Instant::now());
        match assigned_consumer(&self.config, &self.topic, self.partition, self.next_offset) {
            Ok(consumer) => {
                self.queue = BatchQueue::of(&consumer, self.options.batch_rows);
                self.consumer = consumer;
                tracing::info!(partition = %self.name, offset = self.next_offset, "kafka: reconnecting with a new consumer");
            }
            Err(e) => tracing::warn!(partition = %self.name, "kafka: cannot reconnect: {e}"),
        }
    }

    fn finished(&self) -> bool {
        self.end_offset.is_some_and(|end| self.next_offset >= end) || self.shuffle.as_ref().is_some_and(ShuffleWatermarks::ended)
    }

    fn empty(&self) -> SourceBatch {
        SourceBatch::inserts(RecordBatch::new_empty(Arc::clone(&self.schema)), Vec::new())
    }

    /// Decodes the values and adds the metadata columns, in the table's column order.
    fn decode(&mut self, polled: &Polled) -> Result<(SourceBatch, Option<Vec<u32>>), ConnectorError> {
        let n = polled.chunk.records.len();
        let (values, good, errors): DecodedValues = match self.options.format {
            TextOrRaw::Partials => return self.decode_partials(polled),
            TextOrRaw::Text(_) if !self.value_schema.fields().is_empty() => {
                let d = self.decoder.decode_records(&polled.chunk)?;
                (d.rows.columns().to_vec(), d.good, d.errors)
            }
            TextOrRaw::Text(_) => (Vec::new(), None, Vec::new()),
            TextOrRaw::Raw => raw_values(&self.value_schema, &polled.chunk),
            TextOrRaw::Avro | TextOrRaw::AvroConfluent => {
                let avro = self.avro.as_ref().ok_or_else(|| ConnectorError::invalid("format", "avro", "no Avro decoder"))?;
                let d = avro.decode(&polled.chunk)?;
                (d.rows.columns().to_vec(), d.good, d.errors)
            }
        };
        let malformed = errors
            .into_iter()
            .map(|(i, error)| MalformedRecord {
                position: format!("{} partition {} offset {}", self.topic, self.partition, polled.offsets[i]),
                error,
                raw: String::from_utf8_lossy(polled.chunk.bytes(&polled.chunk.records[i])).into_owned(),
            })
            .collect();
        let rows = good.as_ref().map_or(n, Vec::len);
        let rows_from = good.clone();
        let indices = good.map(UInt32Array::from);
        let pick = |array: ArrayRef| -> Result<ArrayRef, ConnectorError> {
            match &indices {
                Some(i) => take(&array, i, None).map_err(|e| ConnectorError::arrow("selecting metadata", e)),
                None => Ok(array),
            }
        };
        let mut columns = Vec::with_capacity(self.columns.len());
        for (source, field) in self.columns.iter().zip(self.schema.fields()) {
            let array: ArrayRef = match source {
                ColumnSource::Value(i) => Arc::clone(&values[*i]),
                ColumnSource::Topic => pick(Arc::new(datafusion::arrow::array::StringArray::from(vec![self.topic.as_str(); n])))?,
                ColumnSource::Partition => pick(Arc::new(Int32Array::from(vec![self.partition; n])))?,
                ColumnSource::Offset => pick(Arc::new(Int64Array::from(polled.offsets.clone())))?,
                ColumnSource::Timestamp => pick(Arc::new(TimestampMillisecondArray::from(polled.timestamps.clone())))?,
                ColumnSource::TimestampType => pick(Arc::new(datafusion::arrow::array::StringArray::from(polled.timestamp_types.clone())))?,
                ColumnSource::Key => {
                    let mut b = BinaryBuilder::new();
                    for k in &polled.keys {
                        b.append_option(k.as_deref());
                    }
                    let keys: ArrayRef = Arc::new(b.finish());
                    pick(if field.data_type() == &DataType::Binary { keys } else { lossy_strings(&keys) })?
                }
                ColumnSource::Headers => pick(headers_column(&polled.headers, field.data_type())?)?,
            };
            let array = if array.data_type() == field.data_type() {
                array
            } else {
                cast(&array, field.data_type()).map_err(|e| ConnectorError::arrow(format!("converting column '{}'", field.name()), e))?
            };
            columns.push(array);
        }
        let rows = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &RecordBatchOptions::new().with_row_count(Some(rows)))
            .map_err(|e| ConnectorError::arrow(format!("assembling rows of {}", self.name), e))?;
        Ok((SourceBatch::inserts(rows, malformed), rows_from))
    }
}

impl KafkaPartitionReader {
    /// Partial aggregates from a cluster's shuffle topic: rows are not records here.
    fn decode_partials(&self, polled: &Polled) -> Result<(SourceBatch, Option<Vec<u32>>), ConnectorError> {
        let header = |i: usize, name: &str| {
            let headers = polled.headers.get(i)?;
            let value = headers.iter().rev().find(|(n, _)| n == name)?.1.as_deref()?;
            Some(String::from_utf8_lossy(value).into_owned())
        };
        let records: Vec<ShuffledRecord> = polled
            .chunk
            .records
            .iter()
            .enumerate()
            .map(|(i, record)| ShuffledRecord {
                value: polled.chunk.bytes(record),
                malformed: header(i, partials::MALFORMED),
                position: header(i, partials::POSITION),
                shuffle_position: format!("{} partition {} offset {}", self.topic, self.partition, polled.offsets[i]),
            })
            .collect();
        let (rows, malformed) = partials::decode(&records, &self.schema)?;
        Ok((SourceBatch::inserts(rows, malformed), None))
    }
}

/// The `headers` metadata column: Flink's `MAP<STRING, BYTES>` (a later
/// header of the same name wins; a record without headers has an empty map),
/// `MAP<STRING, STRING>` with values as lossy UTF-8, or a STRING holding a
/// JSON object of them (NULL for a record without headers).
fn headers_column(headers: &[Headers], data_type: &DataType) -> Result<ArrayRef, ConnectorError> {
    let DataType::Map(entries, _) = data_type else {
        let json: Vec<Option<String>> = headers
            .iter()
            .map(|h| {
                (!h.is_empty()).then(|| {
                    let map: serde_json::Map<String, serde_json::Value> = h
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_ref().map_or(serde_json::Value::Null, |v| String::from_utf8_lossy(v).into_owned().into())))
                        .collect();
                    serde_json::Value::Object(map).to_string()
                })
            })
            .collect();
        return Ok(Arc::new(datafusion::arrow::array::StringArray::from(json)));
    };
    let text_values = matches!(entries.data_type(), DataType::Struct(f) if f.len() == 2 && f[1].data_type() == &DataType::Utf8);
    let mut keys = datafusion::arrow::array::StringBuilder::new();
    let mut values = BinaryBuilder::new();
    let mut offsets = Vec::with_capacity(headers.len() + 1);
    offsets.push(0i32);
    let mut total = 0i32;
    for record in headers {
        // A later header of the same name wins, where it first stood (as a Java map's put).
        let mut kept: Vec<(&str, Option<&[u8]>)> = Vec::with_capacity(record.len());
        for (name, value) in record {
            match kept.iter_mut().find(|(k, _)| *k == name.as_str()) {
                Some(entry) => entry.1 = value.as_deref(),
                None => kept.push((name, value.as_deref())),
            }
        }
        for (name, value) in &kept {
            keys.append_value(name);
            values.append_option(*value);
        }
        total += kept.len() as i32;
        offsets.push(total);
    }
    let values: ArrayRef = Arc::new(values.finish());
    let values = if text_values { lossy_strings(&values) } else { values };
    let DataType::Struct(fields) = entries.data_type() else {
        return Err(ConnectorError::Metadata { column: "headers".into(), reason: format!("a MAP's entries must be a struct, not {}", entries.data_type()) });
    };
    let keys: ArrayRef = Arc::new(keys.finish());
    let entries_array = datafusion::arrow::array::StructArray::try_new(fields.clone(), vec![keys, values], None)
        .map_err(|e| ConnectorError::arrow("assembling the headers map", e))?;
    let map = datafusion::arrow::array::MapArray::try_new(
        Arc::clone(entries),
        datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
        entries_array,
        None,
        false,
    )
    .map_err(|e| ConnectorError::arrow("assembling the headers map", e))?;
    Ok(Arc::new(map))
}

/// Binary keys as UTF-8 text, replacing invalid bytes.
fn lossy_strings(keys: &ArrayRef) -> ArrayRef {
    let binary = keys.as_any().downcast_ref::<datafusion::arrow::array::BinaryArray>();
    let mut b = StringBuilder::new();
    if let Some(binary) = binary {
        for v in binary.iter() {
            b.append_option(v.map(|v| String::from_utf8_lossy(v).into_owned()));
        }
    }
    Arc::new(b.finish())
}

/// Decoded value columns, the rows kept (`None`: all of them), and the rows refused with why.
type DecodedValues = (Vec<ArrayRef>, Option<Vec<u32>>, Vec<(usize, String)>);

/// The raw format: each whole value as the one value column.
fn raw_values(schema: &SchemaRef, chunk: &Chunk) -> DecodedValues {
    if schema.field(0).data_type() == &DataType::Binary {
        let mut b = BinaryBuilder::new();
        for r in &chunk.records {
            b.append_value(chunk.bytes(r));
        }
        return (vec![Arc::new(b.finish())], None, Vec::new());
    }
    let mut b = StringBuilder::new();
    let mut good = Vec::new();
    let mut errors = Vec::new();
    for (i, r) in chunk.records.iter().enumerate() {
        match std::str::from_utf8(chunk.bytes(r)) {
            Ok(s) => {
                b.append_value(s);
                good.push(i as u32);
            }
            Err(e) => errors.push((i, format!("the value is not UTF-8 text ({e}); declare the column BYTES to read binary values"))),
        }
    }
    let all_good = errors.is_empty();
    (vec![Arc::new(b.finish())], (!all_good).then_some(good), errors)
}

#[async_trait]
impl SourceReader for KafkaPartitionReader {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, BoxError> {
        let Some(mut read) = self.read().await? else { return Ok(None) };
        // Keep the byte buffer for the next read: a fresh one per batch costs page faults.
        self.buffer = std::mem::take(&mut read.records.chunk.data);
        self.buffer.clear();
        Ok(Some(read.batch))
    }

    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition { partition: self.name.clone(), offset: self.next_offset })
    }

    fn is_idle(&self) -> bool {
        // A shuffle topic's markers say which source partitions are idle.
        self.shuffle.is_none() && self.options.idle_timeout.is_some_and(|t| self.last_record.elapsed() >= t)
    }

    fn watermark(&self) -> Option<EventTime> {
        self.shuffle.as_ref().and_then(ShuffleWatermarks::combined)
    }

    fn status(&self) -> ReaderStatus {
        let lag = self.cached_high_offset().map(|h| (h - self.next_offset).max(0) as u64);
        ReaderStatus {
            lag,
            problem: self.problem.as_ref().filter(|(_, at)| at.elapsed() < PROBLEM_TTL).map(|(p, _)| format!("{p}; retrying")),
            input_bytes: None,
        }
    }
}

impl KafkaPartitionReader {
    /// The next rows with the records they came from; `None` once the partition has ended.
    pub(crate) async fn read(&mut self) -> Result<Option<Read>, BoxError> {
        if self.finished() {
            return Ok(None);
        }
        if !self.backoff.is_zero() {
            tokio::time::sleep(self.backoff).await;
        }
        let mut polled = Polled {
            chunk: Chunk { data: std::mem::take(&mut self.buffer), records: Vec::with_capacity(self.options.batch_rows), unterminated: Vec::new() },
            want_keys: self.keep_records || self.columns.iter().any(|c| matches!(c, ColumnSource::Key)),
            want_headers: self.keep_records
                || matches!(self.options.format, TextOrRaw::Partials)
                || self.columns.iter().any(|c| matches!(c, ColumnSource::Headers)),
            ..Polled::default()
        };
        let mut error = None;
        let mut last_offset = None;
        // A cluster's key group: rows its re-partitioners judged late, by offset.
        let mut late: Vec<(i64, Vec<u8>)> = Vec::new();
        let end = self.end_offset.unwrap_or(i64::MAX);
        let batch_rows = self.options.batch_rows;
        // Take what librdkafka has fetched, a batch at a time; wait in short naps when nothing is there.
        let started = Instant::now();
        let shuffle = &mut self.shuffle;
        loop {
            let want = batch_rows - polled.offsets.len();
            let taken = self.queue.take(want, |record| {
                if let Some(e) = record.error {
                    error = Some(e);
                } else if record.offset < end {
                    last_offset = Some(record.offset);
                    match (shuffle.as_mut(), record.payload) {
                        // A cluster's watermark marker: no row, but the position moves past it.
                        (Some(watermarks), None) => {
                            if let Some(marker) = record.key.and_then(Marker::decode) {
                                watermarks.observe(marker);
                            }
                        }
                        (Some(_), Some(value)) if record.key == Some(partials::LATE_KEY) => late.push((record.offset, value.to_vec())),
                        _ => polled.push(&record),
                    }
                }
                // Past the bounded end: not ours to read.
            });
            let done = last_offset.is_some_and(|o| o + 1 >= end) || polled.offsets.len() >= batch_rows;
            let drained = taken < want;
            if done || error.is_some() || (last_offset.is_some() && drained) || started.elapsed() >= POLL_WAIT {
                break;
            }
            if last_offset.is_none() {
                tokio::time::sleep(NAP).await;
            }
        }
        if let Some(e) = error {
            // Consumer errors (an unreachable broker, a failed fetch) are retried, never fatal.
            tracing::debug!(partition = %self.name, "kafka consumer error: {e}");
            self.backoff = (self.backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
            self.troubled_since.get_or_insert_with(Instant::now);
            self.problem = Some((e, Instant::now()));
        }
        let Some(last) = last_offset else {
            self.buffer = std::mem::take(&mut polled.chunk.data);
            self.check_health();
            self.recover_if_stuck();
            return Ok(Some(Read { batch: self.empty(), records: Polled::default(), rows_from: None }));
        };
        // Writer schemas the records name, before the position moves past them:
        // while the registry cannot be reached, the pipeline waits and says so.
        if let (Some(registry), Some(avro)) = (self.registry.as_ref(), self.avro.as_mut()) {
            let mut wait = Duration::from_millis(200);
            while let Err(e) = registry.fetch_missing(&polled.chunk, avro).await {
                if self.problem.as_ref().is_none_or(|(p, _)| *p != e) {
                    tracing::warn!(partition = %self.name, "kafka: {e}; retrying");
                }
                self.problem = Some((e, Instant::now()));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
        self.backoff = Duration::ZERO;
        self.troubled_since = None;
        self.last_record = Instant::now();
        self.problem = None;
        self.next_offset = last + 1;
        if self.options.group_id.is_some() {
            // Committed (by auto-commit) once handed over; checkpoints make this exact later.
            // librdkafka stores `offset + 1`, the next record to read: pass the last one read.
            let _ = self.consumer.store_offset(&self.topic, self.partition, last);
        }
        let (mut batch, rows_from) = self.decode(&polled)?;
        for (offset, value) in late {
            match partials::decode_late(&value) {
                Ok(rows) => batch.late.extend(rows),
                Err(error) => batch.malformed.push(MalformedRecord {
                    position: format!("{} partition {} offset {offset}", self.topic, self.partition),
                    error: format!("not late rows of a re-partitioner: {error}"),
                    raw: String::from_utf8_lossy(&value).into_owned(),
                }),
            }
        }
        Ok(Some(Read { batch, records: polled, rows_from }))
    }
}
