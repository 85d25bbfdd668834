//! Helpers for tests against a real Kafka broker: start it (through
//! `scripts/kafka/start`, idempotent), create topics, produce and read back records.
//!
//! Tests, benches and the end-to-end tests of the binary share these, so every
//! Kafka test talks to the same kind of broker the same way.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::testing::{unique_name, KAFKA};

/// Starts a broker (run dir `run_dir`, or the shared one) and returns its
/// bootstrap address.
pub fn start_broker(run_dir: Option<&std::path::Path>) -> String {
    KAFKA.start(run_dir)
}

/// Stops the broker of `run_dir` (keeping its data and port).
pub fn stop_broker(run_dir: &std::path::Path) {
    KAFKA.stop(run_dir)
}

/// The shared test broker's address: `EDDY_KAFKA_BOOTSTRAP` when set (the test
/// command starts the broker and sets it), else started here once.
pub fn broker() -> String {
    KAFKA.shared()
}

/// A topic name no other test (or earlier run) uses.
pub fn unique_topic(prefix: &str) -> String {
    unique_name(prefix)
}

/// Deletes `topics` (best effort): benchmarks write gigabytes a run, which
/// would otherwise pile up in the test broker's data directory.
pub async fn delete_topics(bootstrap: &str, topics: &[&str]) {
    let Ok(admin) = ClientConfig::new().set("bootstrap.servers", bootstrap).create::<AdminClient<DefaultClientContext>>() else { return };
    let _ = admin.delete_topics(topics, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))).await;
}

/// Creates `topic` with `partitions` partitions and waits until it can be used.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let results = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))))
        .await
        .expect("create topic");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
    // Wait until every partition has a leader.
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("consumer");
    for _ in 0..100 {
        if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            let ready = md.topics().iter().any(|t| {
                t.name() == topic && t.error().is_none() && t.partitions().len() == partitions as usize && t.partitions().iter().all(|p| p.leader() >= 0)
            });
            if ready {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("topic {topic} did not become ready");
}

/// One record to produce: partition (or by key), key, value, timestamp.
#[derive(Debug, Clone, Default)]
#[allow(missing_docs)]
pub struct TestRecord {
    pub partition: Option<i32>,
    pub key: Option<String>,
    pub value: Option<String>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, String)>,
}

impl TestRecord {
    /// A record with only a value, to `partition`.
    pub fn value(partition: i32, value: impl Into<String>) -> Self {
        TestRecord { partition: Some(partition), value: Some(value.into()), ..Default::default() }
    }
}

/// A producer for [`produce_with`], to reuse across many small batches.
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // In order and once, even when a loaded broker times a request out: plain
        // retries can put a batch of records behind later ones (or write it twice),
        // which a test then sees as late or doubled rows.
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer")
}

/// Produces `records` in order and waits until the broker acknowledged each.
pub async fn produce(bootstrap: &str, topic: &str, records: &[TestRecord]) {
    produce_with(&producer(bootstrap), topic, records).await;
}

/// [`produce`] with a given producer.
pub async fn produce_with(producer: &FutureProducer, topic: &str, records: &[TestRecord]) {
    let mut deliveries = Vec::new();
    for r in records {
        let mut rec = FutureRecord::<str, str>::to(topic);
        if let Some(p) = r.partition {
            rec = rec.partition(p);
        }
        if let Some(k) = &r.key {
            rec = rec.key(k.as_str());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_str());
        }
        if let Some(ts) = r.timestamp {
            rec = rec.timestamp(ts);
        }
        if !r.headers.is_empty() {
            let mut h = rdkafka::message::OwnedHeaders::new();
            for (k, v) in &r.headers {
                h = h.insert(rdkafka::message::Header { key: k, value: Some(v.as_str()) });
            }
            rec = rec.headers(h);
        }
        loop {
            match producer.send_result(rec) {
                Ok(d) => {
                    deliveries.push(d);
                    break;
                }
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err((e, _)) => panic!("cannot produce to {topic}: {e}"),
            }
        }
    }
    for d in deliveries {
        d.await.expect("delivery canceled").map_err(|(e, _)| e).expect("delivery failed");
    }
}

/// A record read back by [`read_all`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub timestamp: Option<i64>,
    /// Header names and values (as lossy UTF-8), in order.
    pub headers: Vec<(String, Option<String>)>,
}

/// Every committed record now in `topic` (read as `read_committed`), by partition and offset.
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<ReadRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "eddy-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut list = TopicPartitionList::new();
    let mut remaining = 0;
    for p in &parts {
        let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).expect("watermarks");
        remaining += high - low;
        list.add_partition_offset(topic, *p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&list).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Transaction markers take offsets too, so the end is where every partition says so.
    let mut ended = std::collections::BTreeSet::new();
    while (out.len() as i64) < remaining && ended.len() < parts.len() && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = match m {
                Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                    ended.insert(p);
                    continue;
                }
                m => m.expect("consume"),
            };
            out.push(ReadRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
                timestamp: m.timestamp().to_millis(),
                headers: m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(|v| String::from_utf8_lossy(v).into_owned()))).collect())
                    .unwrap_or_default(),
            });
        }
    }
    out.sort();
    out
}

/// Avro values decoded and encoded by the functions the Kafka source and sink use
/// for `'format' = 'avro'`, for `benches/avro_decode.rs` (the codec is private).
pub struct AvroCodec {
    decoder: super::avro::AvroDecoder,
}

impl AvroCodec {
    /// A codec for rows of `schema` (the table's value columns).
    pub fn new(schema: datafusion::arrow::datatypes::SchemaRef) -> Result<Self, crate::ConnectorError> {
        Ok(AvroCodec { decoder: super::avro::AvroDecoder::bare(schema)? })
    }

    /// One Avro datum per row of `batch`, as the sink writes them.
    pub fn encode(&self, batch: &datafusion::arrow::record_batch::RecordBatch) -> Result<Vec<Vec<u8>>, crate::ConnectorError> {
        super::avro::encode_rows(batch)
    }

    /// The rows of `values` (one polled chunk) that decode, and why each other one does not, by index.
    pub fn decode(&mut self, values: &[Vec<u8>]) -> Result<(datafusion::arrow::record_batch::RecordBatch, Vec<(usize, String)>), crate::ConnectorError> {
        let mut chunk = crate::filesystem::records::Chunk::default();
        for (i, value) in values.iter().enumerate() {
            let start = chunk.data.len();
            chunk.data.extend_from_slice(value);
            chunk.records.push(crate::filesystem::records::Record { start, end: chunk.data.len(), line: i as u64 });
        }
        let decoded = self.decoder.decode(&chunk)?;
        Ok((decoded.rows, decoded.errors))
    }
}
