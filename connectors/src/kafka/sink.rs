//! The Kafka sink: every row becomes one record.
//!
//! Values are JSON (Flink's SQL timestamp format), CSV or raw; the key is the
//! `'key.fields'` columns in `'key.format'`; the record timestamp comes from a
//! `timestamp` METADATA column when the table has one. Records are handed to
//! librdkafka as they come (it batches and retries them); [`Sink::commit`] waits
//! until the broker has acknowledged every record written so far and fails if one
//! could not be delivered, which is the at-least-once guarantee.
//!
//! With `'sink.delivery-guarantee' = 'exactly-once'` rows are held until their
//! checkpoint is saved (see [`crate::epochs`]), then written in one Kafka
//! transaction of a producer with a stable `transactional.id` (so a restarted sink
//! fences its predecessor and aborts what it left open). The same transaction
//! commits a marker, `run:epoch`, as the committed offset of the consumer group
//! named like the transactional id, so a marker is visible exactly when its rows
//! are. A restarted sink reads the marker and writes the restored epochs again only
//! if their transaction did not commit. Readers see each row once with
//! `isolation.level = read_committed` (librdkafka's default).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use eddy_engine::table::TableDef;
use eddy_engine::{BoxError, ChangeBatch, Sink};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::registry::SchemaRegistry;
use super::{KafkaOptions, Partitioner, TextOrRaw};
use crate::epochs::{self, already_written, HeldEpochs};
use crate::error::ConnectorError;
use crate::filesystem::text::TextFormat;
use crate::format::{common_timestamp_format, json_rows};

/// Records awaiting acknowledgement before the sink waits for the oldest ones.
const MAX_IN_FLIGHT: usize = 200_000;

/// Writes rows to one topic; see the module docs.
pub struct KafkaSink {
    topic: String,
    producer: FutureProducer,
    options: KafkaOptions,
    schema: SchemaRef,
    /// Columns of the value (all but `timestamp` metadata).
    value_columns: Vec<usize>,
    key_columns: Vec<usize>,
    timestamp_column: Option<usize>,
    /// The `headers` METADATA column (a MAP) each record's headers come from, if written.
    headers_column: Option<usize>,
    timestamp_format: String,
    partitions: i32,
    next_partition: i32,
    in_flight: VecDeque<DeliveryFuture>,
    /// `upsert-kafka`: keys whose rows were retracted and not written again since;
    /// they become tombstones when the sink commits, so an update (a retraction
    /// then the new row) writes only the new row.
    deletes: HashMap<Vec<u8>, usize>,
    /// `avro-confluent`: the registry, and the id of the schema once registered.
    registry: Option<SchemaRegistry>,
    schema_id: Option<u32>,
    /// `exactly-once`: the held rows and the transaction marker.
    transactions: Option<Transactions>,
}

/// How long a transaction call may take before the sink gives up and the pipeline restarts.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// An exactly-once sink's transactional state; see the module docs.
struct Transactions {
    epochs: HeldEpochs,
    /// The producer's transactional id, also the marker's consumer group.
    id: String,
    /// Reads the marker (the group's committed offset) and names the group to the transaction.
    marker: BaseConsumer,
}

impl KafkaSink {
    /// Connects a producer and checks the topic exists (its partition count is needed for round robin).
    pub fn try_new(def: &TableDef, schema: SchemaRef) -> Result<Self, ConnectorError> {
        let options = KafkaOptions::parse(def)?;
        super::check_metadata(def, eddy_engine::TableUse::Written)?;
        let topic = options.topic.clone().ok_or_else(|| {
            ConnectorError::invalid("topic-pattern", options.topic_pattern.as_ref().map_or("", |p| p.as_str()), "a sink writes to one 'topic'")
        })?;
        let mut config = options.client_config();
        config.set("acks", if options.acknowledged { "all" } else { "1" });
        if let Some(id) = &options.transactional_id {
            config.set("transactional.id", id);
        }
        let producer: FutureProducer =
            config.create().map_err(|e| ConnectorError::kafka(format!("cannot create a Kafka producer for {}", options.bootstrap), e))?;
        let metadata = producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(15))
            .map_err(|e| ConnectorError::kafka(format!("cannot reach {} to write topic '{topic}'", options.bootstrap), e))?;
        let partitions = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len()) as i32;
        if partitions == 0 {
            return Err(ConnectorError::invalid("topic", &topic, format!("no such topic on {}; create it first", options.bootstrap)));
        }
        let column = |name: &str| schema.index_of(name).ok();
        let written = |key: &str| def.columns.iter().find(|c| c.metadata.as_ref().is_some_and(|m| m.key == key && !m.is_virtual)).and_then(|c| column(&c.name));
        let timestamp_column = written("timestamp");
        let headers_column = written("headers");
        let value_columns = (0..schema.fields().len()).filter(|i| Some(*i) != timestamp_column && Some(*i) != headers_column).collect();
        let key_columns = options.key_fields.iter().filter_map(|k| column(k)).collect();
        if matches!(options.format, TextOrRaw::Raw) {
            let ok = schema.fields().len() - usize::from(timestamp_column.is_some()) - usize::from(headers_column.is_some()) == 1;
            if !ok {
                return Err(ConnectorError::invalid("format", "raw", "a raw value is exactly one column"));
            }
        }
        let transactions = match &options.transactional_id {
            Some(id) => Some(Transactions::start(&options, id, &producer, Arc::clone(&schema))?),
            None => None,
        };
        Ok(KafkaSink {
            transactions,
            timestamp_format: common_timestamp_format(&schema),
            topic,
            producer,
            schema,
            value_columns,
            key_columns,
            timestamp_column,
            headers_column,
            partitions,
            next_partition: 0,
            in_flight: VecDeque::new(),
            deletes: HashMap::new(),
            registry: options.registry.as_ref().map(|(url, _)| SchemaRegistry::new(url)),
            schema_id: None,
            options,
        })
    }

    fn encode(&self, format: TextOrRaw, batch: &RecordBatch, columns: &[usize]) -> Result<Vec<Vec<u8>>, ConnectorError> {
        let projected = batch.project(columns).map_err(|e| ConnectorError::arrow("selecting columns", e))?;
        encode_rows(format, &projected, &self.timestamp_format)
    }

    /// The registry id of the value schema, registered on first use.
    async fn schema_id(&mut self, batch: &RecordBatch) -> Result<u32, ConnectorError> {
        if let Some(id) = self.schema_id {
            return Ok(id);
        }
        let (Some(registry), Some((_, subject))) = (&self.registry, &self.options.registry) else {
            return Err(ConnectorError::invalid("format", "avro-confluent", "no schema registry configured"));
        };
        let values = batch.project(&self.value_columns).map_err(|e| ConnectorError::arrow("selecting columns", e))?;
        let record = super::avro::AvroRecord::for_schema(values.schema_ref())?;
        let id = registry.register(subject, &record).await.map_err(|e| ConnectorError::invalid("avro-confluent.url", subject, e))?;
        tracing::info!(topic = %self.topic, subject = %subject, id, "registered the value schema {}", record.schema_json());
        self.schema_id = Some(id);
        Ok(id)
    }

    /// Waits for the oldest record's acknowledgement; an undeliverable record is an error.
    async fn settle_one(&mut self) -> Result<(), ConnectorError> {
        let Some(delivery) = self.in_flight.pop_front() else { return Ok(()) };
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(ConnectorError::kafka(format!("a record to topic '{}' was not delivered", self.topic), e)),
            Err(_) => Err(ConnectorError::kafka(format!("the producer for topic '{}' went away", self.topic), KafkaError::Canceled)),
        }
    }
}

impl KafkaSink {
    /// Writes a tombstone for every retracted key not written again, in retraction order.
    async fn flush_deletes(&mut self) -> Result<(), ConnectorError> {
        let mut keys: Vec<(Vec<u8>, usize)> = self.deletes.drain().collect();
        keys.sort_by_key(|(_, order)| *order);
        for (key, _) in keys {
            loop {
                let record = FutureRecord::<[u8], [u8]>::to(&self.topic).key(key.as_slice());
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        self.in_flight.push_back(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if !self.in_flight.is_empty() => self.settle_one().await?,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => tokio::time::sleep(Duration::from_millis(10)).await,
                    Err((e, _)) => return Err(ConnectorError::kafka(format!("cannot write a tombstone to topic '{}'", self.topic), e)),
                }
            }
        }
        Ok(())
    }
}

/// One encoded value per row of `batch`, in `format`.
pub(crate) fn encode_rows(format: TextOrRaw, batch: &RecordBatch, timestamp_format: &str) -> Result<Vec<Vec<u8>>, ConnectorError> {
    let ctx = "encoding rows for Kafka";
    match format {
        TextOrRaw::Raw => {
            let column = batch.column(0);
            let column = match column.data_type() {
                DataType::Binary => Arc::clone(column),
                _ => cast(column, &DataType::Binary).map_err(|e| ConnectorError::arrow(ctx, e))?,
            };
            let binary = column.as_binary::<i32>();
            Ok((0..binary.len()).map(|i| if binary.is_null(i) { Vec::new() } else { binary.value(i).to_vec() }).collect())
        }
        TextOrRaw::Avro => super::avro::encode_rows(batch),
        TextOrRaw::AvroConfluent => Err(ConnectorError::invalid("format", "avro-confluent", "records in the registry's format need the schema id first")),
        TextOrRaw::Partials => {
            Err(ConnectorError::invalid("eddy.cluster.shuffled", "partials", "only a cluster's key groups read partials; nothing writes them as rows"))
        }
        TextOrRaw::Text(TextFormat::Json) => json_rows(batch, timestamp_format).map_err(|e| ConnectorError::arrow(ctx, e)),
        TextOrRaw::Text(TextFormat::Csv { delimiter, .. }) => (0..batch.num_rows())
            .map(|i| {
                let mut buf = Vec::new();
                let mut w = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .with_timestamp_format(timestamp_format.to_string())
                    .with_timestamp_tz_format(timestamp_format.to_string())
                    .build(&mut buf);
                w.write(&batch.slice(i, 1)).map_err(|e| ConnectorError::arrow(ctx, e))?;
                drop(w);
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                Ok(buf)
            })
            .collect(),
    }
}

/// Record timestamps in epoch milliseconds from a timestamp or BIGINT column.
fn timestamps(batch: &RecordBatch, column: usize) -> Result<Vec<Option<i64>>, ConnectorError> {
    let array = cast(batch.column(column), &DataType::Timestamp(TimeUnit::Millisecond, None))
        .map_err(|e| ConnectorError::arrow("reading the record timestamp column", e))?;
    let ts = array.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
    Ok((0..ts.len()).map(|i| ts.is_valid(i).then(|| ts.value(i))).collect())
}

impl Transactions {
    /// Fences any earlier producer with the same id (aborting its open
    /// transaction) and opens the marker's consumer group.
    fn start(options: &KafkaOptions, id: &str, producer: &FutureProducer, schema: SchemaRef) -> Result<Self, ConnectorError> {
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(|e| ConnectorError::kafka(format!("cannot start transactions as '{id}' on {}", options.bootstrap), e))?;
        let mut config = options.client_config();
        config.set("group.id", id).set("enable.auto.commit", "false").set("isolation.level", "read_committed");
        let marker: BaseConsumer = config.create().map_err(|e| ConnectorError::kafka(format!("cannot create the marker consumer for '{id}'"), e))?;
        Ok(Transactions { epochs: HeldEpochs::new(schema), id: id.to_string(), marker })
    }

    /// The marker of the last committed transaction, `run:epoch`, if any.
    fn committed_marker(&self, topic: &str) -> Result<Option<String>, ConnectorError> {
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(topic, 0);
        let committed = self
            .marker
            .committed_offsets(partitions, TRANSACTION_TIMEOUT)
            .map_err(|e| ConnectorError::kafka(format!("cannot read the commit marker of '{}'", self.id), e))?;
        Ok(committed.elements().first().map(|e| e.metadata().to_string()).filter(|m| !m.is_empty()))
    }
}

impl KafkaSink {
    /// The rows in the sink table's schema (names and all), or a clear error.
    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch, ConnectorError> {
        RecordBatch::try_new(Arc::clone(&self.schema), batch.columns().to_vec())
            .map_err(|e| ConnectorError::arrow(format!("rows do not match the columns of topic '{}'", self.topic), e))
    }

    /// Hands every row to the producer.
    async fn write_now(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let values = match self.options.format {
            TextOrRaw::AvroConfluent => {
                let id = self.schema_id(batch).await?;
                let datums = self.encode(TextOrRaw::Avro, batch, &self.value_columns)?;
                datums.iter().map(|d| super::registry::frame(id, d)).collect()
            }
            format => self.encode(format, batch, &self.value_columns)?,
        };
        let keys = if self.key_columns.is_empty() { None } else { Some(self.encode(self.options.key_format, batch, &self.key_columns)?) };
        let times = self.timestamp_column.map(|c| timestamps(batch, c)).transpose()?;
        let headers = self.headers_column.and_then(|c| batch.column(c).as_map_opt().cloned());
        if let (Some(keys), false) = (&keys, self.deletes.is_empty()) {
            for key in keys {
                self.deletes.remove(key);
            }
        }
        for (i, value) in values.iter().enumerate() {
            let partition = match self.options.partitioner {
                Partitioner::Default => None,
                Partitioner::Fixed => Some(0),
                Partitioner::RoundRobin => {
                    self.next_partition = (self.next_partition + 1) % self.partitions;
                    Some(self.next_partition)
                }
            };
            loop {
                let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).payload(value.as_slice());
                if let Some(keys) = &keys {
                    record = record.key(keys[i].as_slice());
                }
                if let Some(p) = partition {
                    record = record.partition(p);
                }
                if let Some(Some(ts)) = times.as_ref().map(|t| t[i]) {
                    record = record.timestamp(ts);
                }
                if let Some(headers) = headers.as_ref().filter(|h| h.is_valid(i)) {
                    record = record.headers(record_headers(&headers.value(i)));
                }
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        self.in_flight.push_back(delivery);
                        break;
                    }
                    // librdkafka's queue is full: wait for the broker to take some.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        if self.in_flight.is_empty() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        } else {
                            self.settle_one().await?;
                        }
                    }
                    Err((e, _)) => return Err(ConnectorError::kafka(format!("cannot write to topic '{}'", self.topic), e)),
                }
            }
            while self.in_flight.len() > MAX_IN_FLIGHT {
                self.settle_one().await?;
            }
        }
        Ok(())
    }

    /// Writes new rows and remembers retracted keys, in order.
    async fn apply_now(&mut self, changes: &ChangeBatch) -> Result<(), ConnectorError> {
        for (kind, rows) in changes.runs() {
            if kind.is_retraction() {
                self.retract_now(&rows)?;
            } else {
                self.write_now(&rows).await?;
            }
        }
        Ok(())
    }

    /// Remembers the retracted keys; [`KafkaSink::flush_deletes`] turns those not
    /// written again into tombstones (records with the key and no value).
    fn retract_now(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if self.key_columns.is_empty() {
            return Err(ConnectorError::invalid(
                "connector",
                "kafka",
                format!("topic '{}' has no key columns, so a retracted row cannot be deleted; use 'upsert-kafka' with a PRIMARY KEY", self.topic),
            ));
        }
        for key in self.encode(self.options.key_format, batch, &self.key_columns)? {
            let order = self.deletes.len();
            self.deletes.entry(key).or_insert(order);
        }
        Ok(())
    }

    /// Tombstones, then waits for the broker's acknowledgement of every record
    /// (unless the guarantee is `none`).
    async fn settle_all(&mut self) -> Result<(), ConnectorError> {
        self.flush_deletes().await?;
        if !self.options.acknowledged {
            self.in_flight.clear();
            return Ok(());
        }
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Exactly-once: writes `writes` in one transaction, with the marker of
    /// `epoch` when it is a checkpoint's, and commits it.
    async fn write_transaction(&mut self, epoch: Option<u64>, writes: &[ChangeBatch]) -> Result<(), ConnectorError> {
        let Some(transactions) = &self.transactions else { return Ok(()) };
        let id = transactions.id.clone();
        let failed = move |what: &str, e: KafkaError| ConnectorError::kafka(format!("{what} of '{id}' failed"), e);
        let marker = epoch.map(|epoch| {
            let mut offsets = TopicPartitionList::new();
            let mut element = offsets.add_partition(&self.topic, 0);
            element.set_metadata(epochs::marker(transactions.epochs.run(), epoch));
            // Any offset will do; the number is the epoch, for people reading the group.
            let _ = element.set_offset(Offset::Offset(i64::try_from(epoch).unwrap_or(i64::MAX)));
            (offsets, transactions.marker.group_metadata())
        });
        self.producer.begin_transaction().map_err(|e| failed("beginning a transaction", e))?;
        for write in writes {
            self.apply_now(write).await?;
        }
        self.settle_all().await?;
        eddy_engine::failpoint::reach("kafka-transaction-written");
        let producer = self.producer.clone();
        // Both calls block until the coordinator answers.
        let outcome = tokio::task::spawn_blocking(move || {
            if let Some((offsets, group)) = &marker {
                let group = group.as_ref().ok_or(("naming the marker's group", KafkaError::Canceled))?;
                producer.send_offsets_to_transaction(offsets, group, TRANSACTION_TIMEOUT).map_err(|e| ("committing the marker", e))?;
            }
            producer.commit_transaction(TRANSACTION_TIMEOUT).map_err(|e| ("committing the transaction", e))
        })
        .await
        .map_err(|e| ConnectorError::invalid("sink.delivery-guarantee", "exactly-once", format!("the transaction's commit task failed: {e}")))?;
        outcome.map_err(|(what, e)| failed(what, e))?;
        tracing::debug!(topic = %self.topic, epoch, rows = writes.iter().map(ChangeBatch::num_rows).sum::<usize>(), "committed a Kafka transaction");
        Ok(())
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        if changes.num_rows() == 0 {
            return Ok(());
        }
        let conformed = self.conform(changes.rows().clone())?;
        let changes = changes.map_rows(conformed)?;
        match &mut self.transactions {
            Some(transactions) => transactions.epochs.hold(changes),
            None => self.apply_now(&changes).await?,
        }
        Ok(())
    }

    /// Exactly-once: what was prepared, then what was written since, each in a transaction.
    async fn commit(&mut self) -> Result<(), BoxError> {
        let Some(transactions) = &mut self.transactions else {
            return Ok(self.settle_all().await?);
        };
        let (prepared, held) = transactions.epochs.drain_all();
        for (epoch, writes) in prepared {
            self.write_transaction(Some(epoch), &writes).await?;
        }
        if !held.is_empty() {
            self.write_transaction(None, &held).await?;
        }
        Ok(())
    }

    async fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        match &mut self.transactions {
            Some(transactions) => transactions.epochs.prepare(checkpoint),
            None => {
                self.settle_all().await?;
                Ok(Vec::new())
            }
        }
    }

    async fn commit_checkpoint(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        let Some(transactions) = &mut self.transactions else { return Ok(()) };
        for (epoch, writes) in transactions.epochs.saved(checkpoint) {
            self.write_transaction(Some(epoch), &writes).await?;
        }
        Ok(())
    }

    /// Writes the restored epochs whose transaction did not commit before the crash.
    async fn recover(&mut self, prepared: &[u8]) -> Result<(), BoxError> {
        let Some(transactions) = &mut self.transactions else { return Ok(()) };
        let epochs = transactions.epochs.restore(prepared)?;
        if epochs.is_empty() {
            return Ok(());
        }
        let committed = transactions.committed_marker(&self.topic)?;
        let run = transactions.epochs.run().to_string();
        if already_written(committed.as_deref(), &run, epochs::FINAL) {
            tracing::info!(topic = %self.topic, "the run's last transaction committed before the restart; what it replays is not written again");
            transactions.epochs.mark_replayed();
            return Ok(());
        }
        for (epoch, writes) in epochs {
            if already_written(committed.as_deref(), &run, epoch) {
                tracing::info!(topic = %self.topic, epoch, "the transaction of checkpoint {epoch} committed before the restart; not again");
                continue;
            }
            self.write_transaction(Some(epoch), &writes).await?;
        }
        Ok(())
    }
}

/// One row's `headers` map as Kafka record headers, in the map's order; BYTES
/// values as they are, STRING values as their UTF-8.
fn record_headers(entries: &datafusion::arrow::array::StructArray) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(entries.len());
    let keys = entries.column(0).as_string_opt::<i32>();
    let values = entries.column(1);
    for i in 0..entries.len() {
        let Some(key) = keys.filter(|k| k.is_valid(i)).map(|k| k.value(i)) else { continue };
        let value: Option<&[u8]> = match (values.as_binary_opt::<i32>(), values.as_string_opt::<i32>()) {
            (Some(b), _) if b.is_valid(i) => Some(b.value(i)),
            (_, Some(t)) if t.is_valid(i) => Some(t.value(i).as_bytes()),
            _ => None,
        };
        out = out.insert(Header { key, value });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_encode_one_record_each() {
        let batch = crate::testing::two_rows(["id", "name", "ts"], ["a\nb", "c,d"], [1_704_067_200_000, 1_704_067_200_123]);
        let fmt = "%Y-%m-%d %H:%M:%S%.3f";
        let json = encode_rows(TextOrRaw::Text(TextFormat::Json), &batch, fmt).unwrap();
        assert_eq!(json.len(), 2);
        assert_eq!(String::from_utf8_lossy(&json[0]), r#"{"id":1,"name":"a\nb","ts":"2024-01-01 00:00:00.000"}"#);
        assert_eq!(String::from_utf8_lossy(&json[1]), r#"{"id":null,"name":"c,d","ts":"2024-01-01 00:00:00.123"}"#);
        let csv = encode_rows(TextOrRaw::Text(TextFormat::Csv { delimiter: b',', header: false }), &batch, fmt).unwrap();
        assert_eq!(String::from_utf8_lossy(&csv[0]), "1,\"a\nb\",2024-01-01 00:00:00.000");
        assert_eq!(String::from_utf8_lossy(&csv[1]), ",\"c,d\",2024-01-01 00:00:00.123");
        let raw = encode_rows(TextOrRaw::Raw, &batch.project(&[1]).unwrap(), fmt).unwrap();
        assert_eq!(raw[1], b"c,d");
    }
}
