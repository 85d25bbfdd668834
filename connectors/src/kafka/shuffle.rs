//! The Kafka shuffle of `eddy run --cluster` (docs/CLUSTER.md): how the rows of
//! a source topic reach the member that owns their key.
//!
//! The protocol, between the re-partitioner of each source partition and the
//! pipeline of each key group:
//!
//! 1. The member that owns source partition `p` (the cluster's group says which)
//!    reads it from the offset committed for `p` in the pipeline's offsets group,
//!    and judges each row's lateness and the partition's watermark exactly as a
//!    source task does ([`SourcePrepOperator::judge`]), resuming the watermark
//!    saved with that offset.
//! 2. Each on-time record goes, unchanged (value, key, timestamp, headers), to the
//!    shuffle topic's partition `hash(key columns) % key groups`. Late rows stop
//!    here, counted. Records that do not decode go on to key group 0, where the
//!    pipeline reports them as it does any malformed record.
//!    Where the aggregate allows it ([`PreAggregation`](eddy_engine::operators::pre_aggregate::PreAggregation)), the on-time rows are
//!    instead folded into partial aggregates per slice and key until the next
//!    commit, and those go to their key groups ([`super::partials`]): a record
//!    per key group and commit instead of one per source record.
//! 3. About every [`RepartitionSpec::commit_every`] (by default [`COMMIT_EVERY`]), and when the partition ends, the
//!    re-partitioner writes its partials, then a [`Marker`] of `p`'s watermark (or that `p` is idle
//!    or ended) to every key group, and commits the records, the markers and
//!    `p`'s next offset with its watermark in one Kafka transaction. Its
//!    `transactional.id` is the partition's own, so the next owner of `p`
//!    fences it and aborts whatever it left open: a member presumed dead
//!    commits nothing more.
//! 4. The pipeline of key group `k` reads partition `k` of the shuffle topic
//!    (`read_committed`) as an ordinary Kafka table whose watermark is
//!    [`ShuffleWatermarks::combined`]: the smallest watermark of all source
//!    partitions. A row of `p` is written before any marker of `p` that counts
//!    it, so no row is late there that was on time at its source, and the key
//!    group's windows close exactly when they would in one process.
//!
//! A key group's pipeline keeps its own checkpoints (its shuffle offset with its
//! state), so a key group moves between members as a whole; its sinks' commits
//! are the usual epoch-fenced ones.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::kernels::boolean::not;
use datafusion::arrow::compute::{filter_record_batch, take_record_batch};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
use eddy_engine::operators::pre_aggregate::PreAggregate;
use eddy_engine::operators::source_prep::SourcePrepOperator;
use eddy_engine::plan::{SourceNode, WindowAggregateNode};
use eddy_engine::MalformedRecord;
use eddy_engine::{EventTime, PipelineMetrics, WatermarkOrigin};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::source::{KafkaPartitionReader, KafkaSource, Read};
use super::KafkaOptions;
use crate::error::ConnectorError;

/// How often a re-partitioner commits unless `SET 'cluster.commit-interval'` says
/// otherwise: the shortest time a row waits in the shuffle.
pub const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// How often markers are written even when they say nothing new: a key group
/// restored from a checkpoint forgets what it was told before it, and waits
/// until it has heard from every source partition again (ended ones included).
pub const MARKERS_EVERY: Duration = Duration::from_secs(1);
/// What a marker's key starts with. A marker has no value, so no row is read from it.
const MARKER_PREFIX: &str = "eddy.watermark ";
/// Timeout of the producer's transactional calls.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Where one source partition stands in event time, as its markers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionTime {
    /// Its watermark, in epoch milliseconds.
    At(i64),
    /// No records for longer than the table's `'scan.watermark.idle-timeout'`:
    /// it holds no watermark back until it has rows again.
    Idle,
    /// Read to its end (a bounded source): it holds nothing back ever again.
    Ended,
}

/// A watermark marker: the key of a record without a value in every key group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// The source partition it speaks for.
    pub partition: i32,
    /// How many partitions the source topic has: a key group waits to hear from each.
    pub partitions: i32,
    /// Where the partition stands.
    pub time: PartitionTime,
}

impl Marker {
    /// The record key that carries the marker.
    pub fn encode(&self) -> String {
        let time = match self.time {
            PartitionTime::At(ms) => ms.to_string(),
            PartitionTime::Idle => "idle".to_string(),
            PartitionTime::Ended => "end".to_string(),
        };
        format!("{MARKER_PREFIX}{} {} {time}", self.partition, self.partitions)
    }

    /// The marker a record key carries, if it is one.
    pub fn decode(key: &[u8]) -> Option<Marker> {
        let text = std::str::from_utf8(key).ok()?.strip_prefix(MARKER_PREFIX)?;
        let mut parts = text.split(' ');
        let partition = parts.next()?.parse().ok()?;
        let partitions = parts.next()?.parse().ok()?;
        let time = match parts.next()? {
            "idle" => PartitionTime::Idle,
            "end" => PartitionTime::Ended,
            ms => PartitionTime::At(ms.parse().ok()?),
        };
        (parts.next().is_none() && (0..partitions).contains(&partition)).then_some(Marker { partition, partitions, time })
    }
}

/// A key group's watermark, from the markers of every source partition.
#[derive(Debug, Default)]
pub struct ShuffleWatermarks {
    /// Per source partition: `None` until its first marker.
    partitions: Vec<Option<PartitionTime>>,
    /// The highest watermark each partition has reported (it stays when the partition idles).
    highest: Vec<i64>,
}

impl ShuffleWatermarks {
    /// Takes in a marker read from the key group's partition.
    pub fn observe(&mut self, marker: Marker) {
        let n = usize::try_from(marker.partitions).unwrap_or(0);
        if self.partitions.len() < n {
            self.partitions.resize(n, None);
            self.highest.resize(n, i64::MIN);
        }
        let Ok(i) = usize::try_from(marker.partition) else { return };
        let Some(slot) = self.partitions.get_mut(i) else { return };
        if *slot == Some(PartitionTime::Ended) {
            return;
        }
        *slot = Some(match marker.time {
            // A re-partitioner that took the partition over after an aborted
            // transaction may say an older watermark again: never go back.
            PartitionTime::At(ms) => {
                self.highest[i] = self.highest[i].max(ms);
                PartitionTime::At(self.highest[i])
            }
            other => other,
        });
    }

    /// The smallest watermark of the partitions that are neither idle nor ended;
    /// `None` while a partition has not been heard from, or when every partition
    /// still going is idle (the watermark then stays where it was).
    pub fn combined(&self) -> Option<EventTime> {
        if self.partitions.is_empty() {
            return None;
        }
        let mut lowest: Option<i64> = None;
        let mut all_ended = true;
        for time in &self.partitions {
            match time {
                None => return None,
                Some(PartitionTime::At(ms)) => {
                    all_ended = false;
                    lowest = Some(lowest.map_or(*ms, |l| l.min(*ms)));
                }
                Some(PartitionTime::Idle) => all_ended = false,
                Some(PartitionTime::Ended) => {}
            }
        }
        if all_ended {
            return Some(EventTime::MAX);
        }
        lowest.map(EventTime)
    }

    /// True once every source partition has ended: the key group has all its rows.
    pub fn ended(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.iter().all(|t| *t == Some(PartitionTime::Ended))
    }
}

/// FNV-1a of `bytes`: a hash the same on every member and in every version of
/// Eddy, for what members must place alike (key groups, slots).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The key group of a row from its key columns' bytes (Arrow's row format).
pub fn key_group_of(key: &[u8], key_groups: i32) -> i32 {
    (fnv1a(key) % u64::try_from(key_groups.max(1)).unwrap_or(1)) as i32
}

/// What a re-partitioner does when its source partition is no longer its member's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Not yet: go on reading.
    Keep,
    /// The group moves the partition in order: commit what was read, then stop.
    HandOver,
    /// The group gave the partition away while this member was unheard: another
    /// may read it already, so abort what is open and stop.
    Abandon,
}

/// What a pipeline's re-partitioners share: which table they read and how they split it.
pub struct RepartitionSpec {
    /// The source table, as the script declares it (the node's `table`).
    pub node: SourceNode,
    /// The columns (of the table's visible schema) whose values pick a row's key group.
    pub key_columns: Vec<usize>,
    /// The topic whose partitions are the key groups.
    pub shuffle_topic: String,
    /// How many partitions the shuffle topic has.
    pub key_groups: i32,
    /// How many partitions the source topic has.
    pub source_partitions: i32,
    /// `transactional.id` of partition `p`'s producer: `PREFIX.p`.
    pub transactional_prefix: String,
    /// The consumer group the source offsets (and watermarks) are committed to.
    pub offsets_group: String,
    /// The aggregate above the cut, when its rows are pre-aggregated before the
    /// shuffle ([`PreAggregation::Partials`](eddy_engine::operators::pre_aggregate::PreAggregation::Partials)); `None`: the records cross as they are.
    pub pre_aggregate: Option<WindowAggregateNode>,
    /// How often a re-partitioner commits: the least time a row waits in the
    /// shuffle, and how long rows fold into one partial per key.
    pub commit_every: Duration,
    /// What this member's re-partitioners of the pipeline did, for its progress line.
    pub totals: RepartitionTotals,
}

/// Counts of all re-partitioners of a pipeline in one member.
#[derive(Debug, Default)]
pub struct RepartitionTotals {
    /// On-time rows (the metrics' `rows_in` counts late ones too).
    rows: AtomicU64,
    /// The rest as a pipeline's figures, for the progress line and a member's
    /// /metrics: rows in, rows out (records or partials sent), late and malformed
    /// rows, and each source partition's reader status (lag, problem).
    pub metrics: Arc<PipelineMetrics>,
}

impl RepartitionTotals {
    fn add(&self, batch: &Repartitioned) {
        self.rows.fetch_add(batch.rows, Ordering::Relaxed);
        let m = &self.metrics;
        m.rows_in.fetch_add(batch.rows + batch.late, Ordering::Relaxed);
        m.rows_out.fetch_add(batch.sent, Ordering::Relaxed);
        m.late_rows.fetch_add(batch.late, Ordering::Relaxed);
        m.malformed_rows.fetch_add(batch.malformed, Ordering::Relaxed);
    }

    /// The counts so far (transactions are not counted here).
    pub fn snapshot(&self) -> Repartitioned {
        let m = &self.metrics;
        Repartitioned {
            rows: self.rows.load(Ordering::Relaxed),
            sent: m.rows_out.load(Ordering::Relaxed),
            late: m.late_rows.load(Ordering::Relaxed),
            malformed: m.malformed_rows.load(Ordering::Relaxed),
            transactions: 0,
        }
    }
}

impl RepartitionSpec {
    /// The key of source partition `partition`'s reader status in the totals' metrics.
    fn reader_key(&self, partition: i32) -> String {
        format!("{} {partition}", self.node.table.name)
    }

    /// Forgets the status of source partition `partition`'s reader, once this
    /// member no longer reads it.
    pub fn forget_reader(&self, partition: i32) {
        self.totals.metrics.forget_reader_status(&self.reader_key(partition));
    }

    /// What the reader of source partition `partition` is retrying through, if anything.
    pub fn reader_problem(&self, partition: i32) -> Option<String> {
        self.totals.metrics.reader_statuses().remove(&self.reader_key(partition)).and_then(|status| status.problem)
    }
}

/// What a re-partitioner did, for its member's log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Repartitioned {
    /// On-time rows sent to their key groups (or folded into partials).
    pub rows: u64,
    /// Rows the shuffle got: the on-time records, or the partial aggregates.
    pub sent: u64,
    /// Rows the partition's watermark had passed, dropped here.
    pub late: u64,
    /// Records that did not decode, sent to key group 0 to be reported there.
    pub malformed: u64,
    /// Transactions committed.
    pub transactions: u64,
}

impl Repartitioned {
    fn add(&mut self, batch: &Repartitioned) {
        self.rows += batch.rows;
        self.sent += batch.sent;
        self.late += batch.late;
        self.malformed += batch.malformed;
    }
}

/// Reads source partition `partition` and writes its records to the key groups,
/// until the partition ends or `release` says otherwise (see the module docs).
pub async fn repartition(spec: Arc<RepartitionSpec>, partition: i32, mut release: watch::Receiver<Release>) -> Result<Repartitioned, ConnectorError> {
    let table = &spec.node.table;
    let options = KafkaOptions::parse(table)?;
    let source_topic = options.topic.clone().ok_or_else(|| ConnectorError::invalid("topic-pattern", &options.topic_label(), "a cluster reads one topic"))?;
    let transactional_id = format!("{}.{partition}", spec.transactional_prefix);
    let producer: FutureProducer = options
        .client_config()
        .set("transactional.id", &transactional_id)
        .create()
        .map_err(|e| ConnectorError::kafka(format!("cannot create the shuffle producer '{transactional_id}'"), e))?;
    let offsets: BaseConsumer = options
        .client_config()
        .set("group.id", &spec.offsets_group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| ConnectorError::kafka(format!("cannot create the offsets consumer of '{}'", spec.offsets_group), e))?;
    // Fences the partition's previous producer and aborts what it left open, then
    // reads where it committed: both block, so off the runtime.
    let (producer, offsets, committed) = {
        let (producer, topic, id) = (producer.clone(), source_topic.clone(), transactional_id.clone());
        tokio::task::spawn_blocking(move || -> Result<_, ConnectorError> {
            producer.init_transactions(TRANSACTION_TIMEOUT).map_err(|e| ConnectorError::kafka(format!("cannot start transactions as '{id}'"), e))?;
            let mut list = TopicPartitionList::new();
            list.add_partition(&topic, partition);
            let committed = offsets
                .committed_offsets(list, TRANSACTION_TIMEOUT)
                .map_err(|e| ConnectorError::kafka(format!("cannot read the committed offset of {topic}/{partition}"), e))?;
            let at = committed.elements().first().and_then(|e| match e.offset() {
                Offset::Offset(o) => Some((o, e.metadata().parse::<i64>().ok())),
                _ => None,
            });
            Ok((producer, offsets, at))
        })
        .await
        .map_err(|e| ConnectorError::invalid("eddy.cluster", &transactional_id, format!("the start task failed: {e}")))??
    };
    let pre = match &spec.pre_aggregate {
        Some(node) => PreAggregate::new(node).map_err(|e| ConnectorError::invalid("eddy.cluster", "pre-aggregation", e.to_string()))?,
        None => None,
    };
    // Rows judged late here go to the key group whole, for the table's late sink.
    let late_sink = table.option("late.sink").is_some();
    let read = match (&pre, &spec.node.read_columns) {
        (None, _) if late_sink => None,
        (None, _) => Some(judged_columns(&spec)),
        // The operators below the aggregate run here: they read what the pipeline reads.
        (Some(_), Some(columns)) => Some(columns.iter().copied().chain(judged_columns(&spec)).collect::<BTreeSet<_>>().into_iter().collect()),
        (Some(_), None) => None,
    };
    let source = KafkaSource::try_new(table, Arc::clone(&spec.node.physical_schema))?.reading(read.as_deref());
    let mut reader = source.open_partition(partition, committed.map(|(offset, _)| offset))?;
    let mut prep = SourcePrepOperator::new(spec.node.clone(), WatermarkOrigin::Rows, Arc::new(PipelineMetrics::default()));
    if let Some(watermark) = committed.and_then(|(_, w)| w) {
        prep.resume_at(EventTime(watermark));
    }
    let mut writer = ShuffleWriter {
        spec: Arc::clone(&spec),
        producer,
        offsets,
        source_topic,
        partition,
        transactional_id,
        keys: RowConverter::new(key_fields(&spec, pre.as_ref())).map_err(|e| ConnectorError::arrow("hashing the key columns", e))?,
        pre,
        late_sink,
        told: None,
        done: Repartitioned::default(),
        last_commit: Instant::now(),
        last_markers: Instant::now(),
        pending: false,
    };
    writer.begin().await?;
    let status_key = spec.reader_key(partition);
    tracing::info!(partition = %reader_name(&writer), offset = committed.map(|c| c.0), "cluster: re-partitioning");
    loop {
        let read = tokio::select! {
            biased;
            _ = release.wait_for(|r| *r != Release::Keep) => None,
            read = reader.read() => Some(read),
        };
        let Some(read) = read else { break };
        let read = read.map_err(|e| ConnectorError::invalid("topic", &writer.source_topic, format!("cannot read partition {partition}: {e}")))?;
        spec.totals.metrics.set_reader_status(&status_key, eddy_engine::SourceReader::status(&reader));
        match read {
            Some(read) => {
                writer.forward(read, &mut prep).await?;
                let time = if reader_idle(&reader) { PartitionTime::Idle } else { PartitionTime::At(prep.watermark().0) };
                let due = writer.last_commit.elapsed() >= spec.commit_every && (writer.pending || writer.told != Some(time));
                if due || writer.last_markers.elapsed() >= MARKERS_EVERY {
                    writer.commit(time, position(&reader)).await?;
                }
            }
            None => {
                writer.commit(PartitionTime::Ended, position(&reader)).await?;
                tracing::info!(partition = %reader_name(&writer), "cluster: source partition read to its end: {:?}", writer.done);
                // Stay until told, so the partition is not handed to anyone else
                // meanwhile, saying it has ended to key groups that start again.
                loop {
                    let told = tokio::select! {
                        _ = release.wait_for(|r| *r != Release::Keep) => true,
                        _ = tokio::time::sleep(MARKERS_EVERY) => false,
                    };
                    if told {
                        return Ok(writer.done);
                    }
                    writer.commit(PartitionTime::Ended, position(&reader)).await?;
                }
            }
        }
    }
    let how = *release.borrow();
    match how {
        Release::HandOver => {
            let time = writer.told.unwrap_or(PartitionTime::At(prep.watermark().0));
            writer.commit(time, position(&reader)).await?;
        }
        Release::Abandon | Release::Keep => writer.abort().await,
    }
    Ok(writer.done)
}

fn reader_name(writer: &ShuffleWriter) -> String {
    format!("{}/{}", writer.source_topic, writer.partition)
}

/// Where the reader resumes: the offset to commit.
fn position(reader: &KafkaPartitionReader) -> i64 {
    eddy_engine::SourceReader::position(reader).map_or(0, |p| p.offset)
}

fn reader_idle(reader: &KafkaPartitionReader) -> bool {
    eddy_engine::SourceReader::is_idle(reader)
}

/// The physical columns a re-partitioner decodes: those its keys, the watermark,
/// lateness and the computed columns read. It forwards each record's bytes, so the
/// key group decodes the rest.
fn judged_columns(spec: &RepartitionSpec) -> Vec<usize> {
    let node = &spec.node;
    let physical = node.physical_schema.fields().len();
    let mut visible: BTreeSet<usize> = spec.key_columns.iter().copied().collect();
    visible.extend(node.lateness.iter().map(|rule| rule.time_column));
    for expr in node.watermark.iter() {
        visible.extend(collect_columns(expr).iter().map(Column::index));
    }
    let mut read: BTreeSet<usize> = visible.iter().copied().filter(|c| *c < physical).collect();
    if visible.iter().any(|c| *c >= physical) {
        for expr in &node.computed {
            read.extend(collect_columns(expr).iter().map(Column::index));
        }
    }
    read.into_iter().collect()
}

/// The types of the columns a key group is hashed from: the source's key
/// columns, or the partials' key columns.
fn key_fields(spec: &RepartitionSpec, pre: Option<&PreAggregate>) -> Vec<SortField> {
    match pre {
        None => spec.key_columns.iter().map(|c| SortField::new(spec.node.schema.field(*c).data_type().clone())).collect(),
        Some(pre) => pre.key_columns().map(|c| SortField::new(pre.schema().field(c).data_type().clone())).collect(),
    }
}

/// One source partition's transactional writes to the shuffle topic.
struct ShuffleWriter {
    spec: Arc<RepartitionSpec>,
    producer: FutureProducer,
    offsets: BaseConsumer,
    source_topic: String,
    partition: i32,
    /// The producer's `transactional.id`: the source partition's own.
    transactional_id: String,
    keys: RowConverter,
    /// Folds the rows into partials until the next commit, where the aggregate allows it.
    pre: Option<PreAggregate>,
    /// The source table has a `'late.sink'`: late rows are sent on, not only counted.
    late_sink: bool,
    /// The last time the markers said, so an unchanged one is not said again.
    told: Option<PartitionTime>,
    done: Repartitioned,
    last_commit: Instant,
    last_markers: Instant,
    /// Records written since the last commit.
    pending: bool,
}

impl ShuffleWriter {
    /// Sends each on-time row's record to its key group, and each malformed one to key group 0.
    async fn forward(&mut self, read: Read, prep: &mut SourcePrepOperator) -> Result<(), ConnectorError> {
        let Read { batch, records, rows_from } = read;
        let malformed = batch.malformed;
        let rows = batch.rows.into_inserts("re-partitioning").map_err(|e| ConnectorError::invalid("eddy.cluster", "rows", e.to_string()))?;
        let judged = prep.judge(rows).map_err(|e| ConnectorError::invalid("eddy.cluster", "rows", e.to_string()))?;
        self.send_late(&judged).await?;
        if self.pre.is_some() {
            return self.fold(judged, malformed).await;
        }
        let columns: Vec<ArrayRef> = self.spec.key_columns.iter().map(|c| Arc::clone(judged.batch.column(*c))).collect();
        let groups = self.key_groups(&columns, judged.batch.num_rows())?;
        let record_of = |row: usize| rows_from.as_ref().map_or(row, |f| f[row] as usize);
        let mut decoded = vec![false; records.chunk.records.len()];
        let mut batch = Repartitioned::default();
        for (row, group) in groups.iter().enumerate() {
            let record = record_of(row);
            decoded[record] = true;
            if judged.on_time.as_ref().is_some_and(|on_time| !on_time.value(row)) {
                batch.late += 1;
                continue;
            }
            self.send(&records, record, *group).await?;
            batch.rows += 1;
            batch.sent += 1;
        }
        for record in decoded.iter().enumerate().filter(|(_, d)| !**d).map(|(r, _)| r) {
            self.send(&records, record, 0).await?;
            batch.malformed += 1;
        }
        self.done.add(&batch);
        self.spec.totals.add(&batch);
        Ok(())
    }

    /// Folds the on-time rows into the partials; sends the records that did not
    /// decode to key group 0, saying why, to be reported there.
    async fn fold(&mut self, judged: eddy_engine::operators::source_prep::Judged, malformed: Vec<MalformedRecord>) -> Result<(), ConnectorError> {
        let on_time = match &judged.on_time {
            None => judged.batch,
            Some(mask) => filter_record_batch(&judged.batch, mask).map_err(|e| ConnectorError::arrow("selecting the on-time rows", e))?,
        };
        let done = Repartitioned {
            rows: on_time.num_rows() as u64,
            late: (judged.late + judged.null_time) as u64,
            malformed: malformed.len() as u64,
            ..Repartitioned::default()
        };
        if on_time.num_rows() > 0 {
            if let Some(pre) = self.pre.as_mut() {
                pre.add(on_time).map_err(|e| ConnectorError::invalid("eddy.cluster", "pre-aggregation", e.to_string()))?;
            }
            self.pending = true;
        }
        for record in malformed {
            let headers = OwnedHeaders::new()
                .insert(Header { key: super::partials::MALFORMED, value: Some(record.error.as_bytes()) })
                .insert(Header { key: super::partials::POSITION, value: Some(record.position.as_bytes()) });
            let record = FutureRecord::<[u8], [u8]>::to(&self.spec.shuffle_topic).partition(0).payload(record.raw.as_bytes()).headers(headers);
            self.pending = true;
            enqueue(&self.producer, record).await.map_err(|e| ConnectorError::kafka(format!("cannot write to {}", self.spec.shuffle_topic), e))?;
        }
        self.done.add(&done);
        self.spec.totals.add(&done);
        Ok(())
    }

    /// Sends the rows judged late to key group 0, which writes them to the
    /// table's `'late.sink'`, when it has one.
    async fn send_late(&mut self, judged: &eddy_engine::operators::source_prep::Judged) -> Result<(), ConnectorError> {
        let (true, Some(on_time)) = (self.late_sink, &judged.on_time) else { return Ok(()) };
        let late_mask = not(on_time).map_err(|e| ConnectorError::arrow("selecting the late rows", e))?;
        let late = filter_record_batch(&judged.batch, &late_mask).map_err(|e| ConnectorError::arrow("selecting the late rows", e))?;
        if late.num_rows() == 0 {
            return Ok(());
        }
        for value in super::partials::encode_split(&late, super::partials::MAX_VALUE_BYTES)? {
            let record = FutureRecord::<[u8], [u8]>::to(&self.spec.shuffle_topic).partition(0).key(super::partials::LATE_KEY).payload(&value);
            self.pending = true;
            enqueue(&self.producer, record).await.map_err(|e| ConnectorError::kafka(format!("cannot write to {}", self.spec.shuffle_topic), e))?;
        }
        Ok(())
    }

    /// Sends the partials folded since the last commit, a record per key group.
    async fn send_partials(&mut self) -> Result<(), ConnectorError> {
        let Some(pre) = self.pre.as_mut() else { return Ok(()) };
        let Some(partials) = pre.drain().map_err(|e| ConnectorError::invalid("eddy.cluster", "pre-aggregation", e.to_string()))? else { return Ok(()) };
        let columns: Vec<ArrayRef> = pre.key_columns().map(|c| Arc::clone(partials.column(c))).collect();
        let mut by_group: std::collections::BTreeMap<i32, Vec<u32>> = std::collections::BTreeMap::new();
        for (row, group) in self.key_groups(&columns, partials.num_rows())?.into_iter().enumerate() {
            by_group.entry(group).or_default().push(row as u32);
        }
        for (group, rows) in by_group {
            let part = take_record_batch(&partials, &UInt32Array::from(rows)).map_err(|e| ConnectorError::arrow("splitting partials by key group", e))?;
            for value in super::partials::encode_split(&part, super::partials::MAX_VALUE_BYTES)? {
                let record = FutureRecord::<[u8], [u8]>::to(&self.spec.shuffle_topic).partition(group).payload(&value);
                enqueue(&self.producer, record).await.map_err(|e| ConnectorError::kafka(format!("cannot write to {}", self.spec.shuffle_topic), e))?;
            }
            let sent = Repartitioned { sent: part.num_rows() as u64, ..Repartitioned::default() };
            self.done.add(&sent);
            self.spec.totals.add(&sent);
        }
        Ok(())
    }

    /// The key group of each of `rows` rows from its key `columns`.
    fn key_groups(&mut self, columns: &[ArrayRef], rows: usize) -> Result<Vec<i32>, ConnectorError> {
        if columns.is_empty() {
            return Ok(vec![0; rows]);
        }
        let keys = self.keys.convert_columns(columns).map_err(|e| ConnectorError::arrow("hashing the key columns", e))?;
        Ok((0..rows).map(|i| key_group_of(keys.row(i).as_ref(), self.spec.key_groups)).collect())
    }

    /// Hands record `i` of `records` to the producer, for key group `group`.
    async fn send(&mut self, records: &super::source::Polled, i: usize, group: i32) -> Result<(), ConnectorError> {
        let bytes = records.chunk.bytes(&records.chunk.records[i]);
        let mut headers = OwnedHeaders::new();
        for (name, value) in records.headers.get(i).map(Vec::as_slice).unwrap_or_default() {
            headers = headers.insert(Header { key: name, value: value.as_deref() });
        }
        let key = records.keys.get(i).and_then(Option::as_deref);
        let timestamp = records.timestamps.get(i).copied().flatten();
        self.pending = true;
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.spec.shuffle_topic).partition(group).payload(bytes).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(ts) = timestamp {
            record = record.timestamp(ts);
        }
        enqueue(&self.producer, record).await.map_err(|e| ConnectorError::kafka(format!("cannot write to {}", self.spec.shuffle_topic), e))
    }

    async fn begin(&mut self) -> Result<(), ConnectorError> {
        self.producer.begin_transaction().map_err(|e| ConnectorError::kafka(format!("cannot begin a transaction on {}", self.spec.shuffle_topic), e))
    }

    /// Writes the markers of `time`, commits them with the records and the partition's
    /// next offset (and watermark), and begins the next transaction.
    async fn commit(&mut self, time: PartitionTime, next: i64) -> Result<(), ConnectorError> {
        // Partials before the markers: a marker passes only rows written before it.
        self.send_partials().await?;
        if self.told != Some(time) || self.last_markers.elapsed() >= MARKERS_EVERY {
            self.last_markers = Instant::now();
            let marker = Marker { partition: self.partition, partitions: self.spec.source_partitions, time }.encode();
            for group in 0..self.spec.key_groups {
                let record = FutureRecord::<[u8], [u8]>::to(&self.spec.shuffle_topic).partition(group).key(marker.as_bytes());
                enqueue(&self.producer, record).await.map_err(|e| ConnectorError::kafka(format!("cannot write a marker to {}", self.spec.shuffle_topic), e))?;
            }
        }
        let watermark = match time {
            PartitionTime::At(ms) => Some(ms),
            _ => self.told.and_then(|t| match t {
                PartitionTime::At(ms) => Some(ms),
                _ => None,
            }),
        };
        let mut list = TopicPartitionList::new();
        {
            let mut element = list.add_partition(&self.source_topic, self.partition);
            element.set_offset(Offset::Offset(next)).map_err(|e| ConnectorError::kafka("cannot build the offsets to commit", e))?;
            element.set_metadata(watermark.map(|w| w.to_string()).unwrap_or_default());
        }
        let group = self.offsets.group_metadata().ok_or_else(|| ConnectorError::invalid("eddy.cluster", &self.spec.offsets_group, "no group metadata"))?;
        let producer = self.producer.clone();
        let id = self.transactional_id.clone();
        tokio::task::spawn_blocking(move || -> Result<(), ConnectorError> {
            let failed =
                |what: &str, e: KafkaError| ConnectorError::kafka(format!("{what} of '{id}' failed (another member may have taken the partition over)"), e);
            producer.send_offsets_to_transaction(&list, &group, TRANSACTION_TIMEOUT).map_err(|e| failed("committing the source offset", e))?;
            producer.commit_transaction(TRANSACTION_TIMEOUT).map_err(|e| failed("committing the transaction", e))?;
            producer.begin_transaction().map_err(|e| failed("beginning a transaction", e))
        })
        .await
        .map_err(|e| ConnectorError::invalid("eddy.cluster", &self.source_topic, format!("the commit task failed: {e}")))??;
        self.told = Some(time);
        self.pending = false;
        self.last_commit = Instant::now();
        self.done.transactions += 1;
        Ok(())
    }

    async fn abort(&mut self) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.abort_transaction(TRANSACTION_TIMEOUT)).await;
    }
}

/// Hands `record` to `producer`, waiting while its queue is full (the
/// producer's own thread drains it; the runtime's thread does other work
/// meanwhile). Delivery is checked by the transaction's commit.
async fn enqueue(producer: &FutureProducer, mut record: FutureRecord<'_, [u8], [u8]>) -> Result<(), KafkaError> {
    loop {
        match producer.send_result(record) {
            Ok(_) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                record = returned;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(partition: i32, time: PartitionTime) -> Marker {
        Marker { partition, partitions: 3, time }
    }

    #[test]
    fn markers_round_trip_and_other_keys_are_not_markers() {
        for time in [PartitionTime::At(-5), PartitionTime::At(1_700_000_000_123), PartitionTime::Idle, PartitionTime::Ended] {
            let m = marker(2, time);
            assert_eq!(Marker::decode(m.encode().as_bytes()), Some(m));
        }
        assert_eq!(Marker::decode(b"user-42"), None);
        assert_eq!(Marker::decode(b"eddy.watermark 3 3 5"), None, "partition out of range");
        assert_eq!(Marker::decode(b"eddy.watermark 1 3 5 6"), None);
    }

    #[test]
    fn the_combined_watermark_waits_for_every_partition_and_takes_the_lowest() {
        let mut w = ShuffleWatermarks::default();
        assert_eq!(w.combined(), None);
        w.observe(marker(0, PartitionTime::At(100)));
        w.observe(marker(1, PartitionTime::At(50)));
        assert_eq!(w.combined(), None, "partition 2 not heard from yet");
        w.observe(marker(2, PartitionTime::At(70)));
        assert_eq!(w.combined(), Some(EventTime(50)));
        // An older watermark said again (after a taken-over transaction) does not go back.
        w.observe(marker(1, PartitionTime::At(20)));
        assert_eq!(w.combined(), Some(EventTime(50)));
        w.observe(marker(1, PartitionTime::Idle));
        assert_eq!(w.combined(), Some(EventTime(70)), "an idle partition holds nothing back");
        w.observe(marker(1, PartitionTime::At(80)));
        assert_eq!(w.combined(), Some(EventTime(70)));
        w.observe(marker(0, PartitionTime::Ended));
        w.observe(marker(2, PartitionTime::Ended));
        assert_eq!(w.combined(), Some(EventTime(80)));
        assert!(!w.ended());
        w.observe(marker(1, PartitionTime::Ended));
        w.observe(marker(1, PartitionTime::At(90)));
        assert!(w.ended(), "an ended partition stays ended");
        assert_eq!(w.combined(), Some(EventTime::MAX));
    }

    #[test]
    fn only_idle_partitions_hold_the_watermark_where_it_was() {
        let mut w = ShuffleWatermarks::default();
        for p in 0..3 {
            w.observe(marker(p, PartitionTime::Idle));
        }
        assert_eq!(w.combined(), None);
    }

    #[test]
    fn key_groups_are_stable_and_spread() {
        assert_eq!(key_group_of(b"user-1", 64), key_group_of(b"user-1", 64));
        let used: BTreeSet<i32> = (0..1000).map(|i| key_group_of(format!("user-{i}").as_bytes(), 8)).collect();
        assert_eq!(used.len(), 8);
        assert!(used.iter().all(|g| (0..8).contains(g)));
    }
}
