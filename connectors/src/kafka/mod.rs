//! Kafka source and sink (`'connector' = 'kafka'`), on librdkafka through `rdkafka`.
//!
//! Options follow Flink's Kafka connector: `'topic'` / `'topic-pattern'`,
//! `'properties.bootstrap.servers'`, `'properties.group.id'`, any other
//! `'properties.*'` passed to librdkafka as is, `'scan.startup.mode'`, `'format'`.
//!
//! The source reads every partition with a reader of its own, so watermarks are
//! per partition (see [`source`]); the sink produces rows as JSON, CSV or raw
//! values with keys from `'key.fields'` (see [`sink`]).

mod avro;
mod batch;
pub mod partials;
mod registry;
pub mod shuffle;
pub mod sink;
pub mod source;
pub mod testing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use eddy_engine::table::TableDef;
use eddy_engine::{
    Boundedness, BoxError, Capabilities, Connector, ConnectorInfo, MetadataColumns, OptionSpec, Resume, Roles, Sink, SinkChanges, Source, TableUse,
};
use rdkafka::ClientConfig;

use crate::error::ConnectorError;
use crate::filesystem::text::TextFormat;
use crate::options::{batch_rows, opt, parse_duration, parse_i64};

pub use sink::KafkaSink;
pub use source::KafkaSource;

/// The `WITH` options of `'connector' = 'kafka'`, documented for `--help` and validation.
pub(crate) const OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional("topic", "the topic to read or write"),
    OptionSpec::optional("topic-pattern", "source: a regular expression; every matching topic is read (instead of 'topic')"),
    OptionSpec::required("properties.bootstrap.servers", "the brokers, e.g. '127.0.0.1:9092'"),
    OptionSpec::optional("properties.group.id", "consumer group: offsets are committed to it, and 'group-offsets' starts from them"),
    OptionSpec::optional("properties.#", "any other librdkafka setting, e.g. 'properties.security.protocol'"),
    OptionSpec::optional("format", "json (default) | csv | avro (schema derived from the columns, as Flink's 'avro') | avro-confluent (Confluent's wire format and schema registry) | raw (one STRING or BYTES column holding the whole value)"),
    OptionSpec::optional("value.format", "same as 'format' (Flink's name when a key format is set)"),
    OptionSpec::optional("avro-confluent.url", "with format 'avro-confluent': the Confluent-compatible schema registry, e.g. 'http://127.0.0.1:8081'"),
    OptionSpec::optional("value.avro-confluent.url", "same as 'avro-confluent.url' (Flink's name with 'value.format')"),
    OptionSpec::optional("avro-confluent.subject", "with format 'avro-confluent', sink: the subject the schema is registered under (default '<topic>-value')"),
    OptionSpec::optional("value.avro-confluent.subject", "same as 'avro-confluent.subject'"),
    OptionSpec::optional("csv.field-delimiter", "one character between CSV fields (default ',')"),
    OptionSpec::optional("scan.startup.mode", "earliest-offset | latest-offset | group-offsets (default; earliest when the group has none) | timestamp | specific-offsets"),
    OptionSpec::optional("scan.startup.timestamp-millis", "with mode 'timestamp': start at the first record at or after this epoch millisecond"),
    OptionSpec::optional("scan.startup.specific-offsets", "with mode 'specific-offsets': 'partition:0,offset:42;partition:1,offset:300'"),
    OptionSpec::optional("scan.bounded.mode", "unbounded (default) | latest-offset: stop at the end offsets seen when the pipeline starts (replays, tests)"),
    OptionSpec::optional("scan.watermark.idle-timeout", "a partition without records for this long stops holding the watermark back, e.g. '30s' (default: never)"),
    OptionSpec::optional("scan.batch-rows", "records per batch, at most (default 8192)"),
    OptionSpec::optional("eddy.cluster.key-group", "set by `eddy run --cluster` on the table it reads through its shuffle topic: the one partition (key group) to read, whose watermarks come from the markers the cluster writes (docs/CLUSTER.md); not for hand-written tables"),
    OptionSpec::optional("eddy.cluster.shuffled", "set by `eddy run --cluster` with eddy.cluster.key-group: rows (the source's records) or partials (partial aggregates its re-partitioners computed); not for hand-written tables"),
    OptionSpec::optional("key.fields", "sink: columns that form the record key, e.g. 'user_id' or 'a;b'"),
    OptionSpec::optional("key.format", "sink: json (default) | csv | avro | raw (one key column)"),
    OptionSpec::optional("sink.partitioner", "sink: default (by key hash, sticky without a key) | round-robin | fixed (partition 0)"),
    OptionSpec::optional("sink.delivery-guarantee", "sink: at-least-once (default: every row is acknowledged by the broker at each commit) | exactly-once (rows are written in a Kafka transaction when their checkpoint is saved; read with isolation.level=read_committed) | none"),
    OptionSpec::optional("sink.transactional-id-prefix", "sink, with exactly-once: the producer's transactional.id (default 'eddy-<table>'); give each pipeline writing one topic its own"),
];

/// `'connector' = 'kafka'`: a topic read partition by partition from saved offsets,
/// or appended to (exactly once with transactions).
#[derive(Debug, Clone, Copy)]
pub struct KafkaConnector;

impl Connector for KafkaConnector {
    fn info(&self) -> &'static ConnectorInfo {
        const INFO: ConnectorInfo = ConnectorInfo {
            name: "kafka",
            description: "Apache Kafka topics: one reader per partition, JSON/CSV/raw values, METADATA columns (topic, partition, offset, timestamp, timestamp-type, key, headers)",
            options: OPTIONS,
            capabilities: Capabilities { roles: Roles::SourceAndSink, changes: SinkChanges::Appends, resume: Resume::Always, metadata: MetadataColumns::Supported },
        };
        &INFO
    }

    fn validate(&self, def: &TableDef, table_use: TableUse) -> Result<(), BoxError> {
        KafkaOptions::parse(def)?;
        check_metadata(def, table_use)?;
        Ok(())
    }

    /// Bounded only when told to stop at the end offsets seen at the start.
    fn boundedness(&self, def: &TableDef) -> Boundedness {
        match def.option("scan.bounded.mode") {
            Some(mode) if mode.trim() == "latest-offset" => Boundedness::Bounded,
            _ => Boundedness::Unbounded,
        }
    }

    fn create_source(&self, def: &TableDef, schema: SchemaRef, read: Option<&[usize]>) -> Result<Arc<dyn Source>, BoxError> {
        Ok(Arc::new(KafkaSource::try_new(def, schema)?.reading(read)))
    }

    fn create_sink(&self, def: &TableDef, schema: SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(KafkaSink::try_new(def, schema)?))
    }
}

/// `'connector' = 'upsert-kafka'`: a compacted topic as a changelog keyed by the
/// PRIMARY KEY, written by the Kafka sink (deletes become tombstones).
#[derive(Debug, Clone, Copy)]
pub struct UpsertKafkaConnector;

impl Connector for UpsertKafkaConnector {
    fn info(&self) -> &'static ConnectorInfo {
        const INFO: ConnectorInfo = ConnectorInfo {
            name: "upsert-kafka",
            description:
                "a Kafka topic as a changelog: each row is the newest version of its PRIMARY KEY (the record key), for compacted topics and updating queries",
            options: UPSERT_OPTIONS,
            capabilities: Capabilities { roles: Roles::Sink, changes: SinkChanges::Retractions, resume: Resume::Never, metadata: MetadataColumns::Unsupported },
        };
        &INFO
    }

    fn validate(&self, def: &TableDef, _table_use: TableUse) -> Result<(), BoxError> {
        KafkaOptions::parse(&upsert_as_kafka(def)?)?;
        Ok(())
    }

    fn create_sink(&self, def: &TableDef, schema: SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(KafkaSink::try_new(&upsert_as_kafka(def)?, schema)?))
    }
}

/// Options of `'connector' = 'upsert-kafka'` (Flink's names): a sink of changelogs by primary key.
pub(crate) const UPSERT_OPTIONS: &[OptionSpec] = &[
    OptionSpec::required("topic", "the topic to write"),
    OptionSpec::required("properties.bootstrap.servers", "the brokers, e.g. '127.0.0.1:9092'"),
    OptionSpec::optional("properties.#", "any other librdkafka setting, e.g. 'properties.security.protocol'"),
    OptionSpec::optional("key.format", "json (default) | csv | avro | raw: the PRIMARY KEY columns, which are the record key"),
    OptionSpec::optional("value.format", "json (default) | csv | avro: the whole row"),
    OptionSpec::optional("csv.field-delimiter", "one character between CSV fields (default ',')"),
    OptionSpec::optional("sink.delivery-guarantee", "at-least-once (default: every row is acknowledged by the broker at each commit) | exactly-once (rows are written in a Kafka transaction when their checkpoint is saved) | none"),
    OptionSpec::optional("sink.transactional-id-prefix", "with exactly-once: the producer's transactional.id (default 'eddy-<table>'); give each pipeline writing one topic its own"),
];

/// An `upsert-kafka` table as the Kafka sink sees it: the PRIMARY KEY columns are
/// the record key (so a compacted topic keeps each key's newest row) and records
/// are partitioned by that key, so every version of a key lands in one partition in order.
pub(crate) fn upsert_as_kafka(def: &TableDef) -> Result<TableDef, ConnectorError> {
    if def.primary_key.is_empty() {
        return Err(ConnectorError::invalid(
            "connector",
            "upsert-kafka",
            "an upsert-kafka table needs PRIMARY KEY (...) NOT ENFORCED: its columns are the record key each update replaces",
        ));
    }
    let mut kafka = def.clone();
    kafka.options.insert("connector".into(), "kafka".into());
    kafka.options.insert("key.fields".into(), def.primary_key.join(";"));
    kafka.options.insert("sink.partitioner".into(), "default".into());
    Ok(kafka)
}

/// Metadata a Kafka source can read, with the type each one is produced as.
pub(crate) const READABLE_METADATA: &[(&str, &str)] = &[
    ("topic", "STRING"),
    ("partition", "INT"),
    ("offset", "BIGINT"),
    ("timestamp", "TIMESTAMP_LTZ(3)"),
    ("timestamp-type", "STRING (NoTimestampType | CreateTime | LogAppendTime)"),
    ("key", "STRING or BYTES"),
    ("headers", "MAP<STRING, BYTES> (or MAP<STRING, STRING>, or STRING: a JSON object of header name to value)"),
];

/// Metadata a Kafka sink writes: the record timestamp and headers.
pub(crate) const WRITABLE_METADATA: &[&str] = &["timestamp", "headers"];

/// Where a source partition starts reading.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StartupMode {
    Earliest,
    Latest,
    GroupOffsets,
    Timestamp(i64),
    /// Offsets by partition; partitions not listed start from the group's offsets.
    Specific(BTreeMap<i32, i64>),
}

/// Everything the `WITH` clause of a Kafka table says, checked.
#[derive(Debug, Clone)]
pub(crate) struct KafkaOptions {
    pub topic: Option<String>,
    pub topic_pattern: Option<regex::Regex>,
    pub bootstrap: String,
    pub group_id: Option<String>,
    /// `properties.*` without the prefix (bootstrap and group id included).
    pub properties: BTreeMap<String, String>,
    pub format: TextOrRaw,
    pub startup: StartupMode,
    pub bounded_latest: bool,
    pub idle_timeout: Option<Duration>,
    pub batch_rows: usize,
    pub key_fields: Vec<String>,
    pub key_format: TextOrRaw,
    pub partitioner: Partitioner,
    pub acknowledged: bool,
    /// `exactly-once`: the producer's transactional id; rows are written in
    /// transactions when their checkpoint is saved.
    pub transactional_id: Option<String>,
    /// With `avro-confluent`: the schema registry's URL and the sink's subject.
    pub registry: Option<(String, String)>,
    /// `eddy run --cluster`: the key group (shuffle topic partition) this table reads.
    pub key_group: Option<i32>,
}

/// A record format: one of the text formats, Avro, or the raw bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TextOrRaw {
    Text(TextFormat),
    /// Avro with the schema derived from the columns (Flink's `avro`).
    Avro,
    /// Avro in Confluent's wire format, schemas in a registry (Flink's `avro-confluent`).
    AvroConfluent,
    Raw,
    /// Partial aggregates in a cluster's shuffle topic ([`partials`]), set by
    /// `eddy run --cluster` on the table a key group reads.
    Partials,
}

/// How the sink picks a record's partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Partitioner {
    /// librdkafka's default: hash of the key, sticky batches without one.
    Default,
    RoundRobin,
    Fixed,
}

fn parse_format(def: &TableDef, key: &str, value: &str) -> Result<TextOrRaw, ConnectorError> {
    let delimiter = match def.option("csv.field-delimiter") {
        Some("\\t") => b'\t',
        Some(d) if d.len() == 1 => d.as_bytes()[0],
        Some(d) => return Err(ConnectorError::invalid("csv.field-delimiter", d, "expected one character")),
        None => b',',
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(TextOrRaw::Text(TextFormat::Json)),
        "csv" => Ok(TextOrRaw::Text(TextFormat::Csv { delimiter, header: false })),
        "raw" => Ok(TextOrRaw::Raw),
        "avro" => Ok(TextOrRaw::Avro),
        "avro-confluent" if key == "key.format" => {
            Err(ConnectorError::invalid(key, value, "keys in the registry's format are not supported; use json, csv, avro or raw keys"))
        }
        "avro-confluent" => Ok(TextOrRaw::AvroConfluent),
        _ => Err(ConnectorError::invalid(key, value, "expected json, csv, avro, avro-confluent or raw")),
    }
}

fn parse_specific_offsets(key: &str, value: &str) -> Result<BTreeMap<i32, i64>, ConnectorError> {
    let bad = || ConnectorError::invalid(key, value, "expected 'partition:0,offset:42;partition:1,offset:300'");
    let mut offsets = BTreeMap::new();
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (p, o) = part.split_once(',').ok_or_else(bad)?;
        let p = p.trim().strip_prefix("partition:").ok_or_else(bad)?.trim().parse::<i32>().map_err(|_| bad())?;
        let o = o.trim().strip_prefix("offset:").ok_or_else(bad)?.trim().parse::<i64>().map_err(|_| bad())?;
        offsets.insert(p, o);
    }
    if offsets.is_empty() {
        return Err(bad());
    }
    Ok(offsets)
}

impl KafkaOptions {
    /// Parses and checks the options of `def`.
    pub fn parse(def: &TableDef) -> Result<Self, ConnectorError> {
        let topic = def.option("topic").map(str::to_string);
        let topic_pattern = opt(def, "topic-pattern", |k, v| {
            regex::Regex::new(&format!("^(?:{v})$")).map_err(|e| ConnectorError::invalid(k, v, format!("not a regular expression: {e}")))
        })?;
        if topic.is_some() == topic_pattern.is_some() {
            return Err(ConnectorError::invalid("topic", topic.as_deref().unwrap_or(""), "set exactly one of 'topic' and 'topic-pattern'"));
        }
        let bootstrap = def.option("properties.bootstrap.servers").unwrap_or_default().to_string();
        let properties: BTreeMap<String, String> =
            def.options.iter().filter_map(|(k, v)| k.strip_prefix("properties.").map(|k| (k.to_string(), v.clone()))).collect();
        let format_key = if def.option("value.format").is_some() { "value.format" } else { "format" };
        let format = match def.option("eddy.cluster.shuffled") {
            None | Some("rows") => parse_format(def, format_key, def.option(format_key).unwrap_or("json"))?,
            Some("partials") => TextOrRaw::Partials,
            Some(other) => return Err(ConnectorError::invalid("eddy.cluster.shuffled", other, "expected rows or partials")),
        };
        let startup = match def.option("scan.startup.mode").unwrap_or("group-offsets").trim() {
            "earliest-offset" => StartupMode::Earliest,
            "latest-offset" => StartupMode::Latest,
            "group-offsets" => StartupMode::GroupOffsets,
            "timestamp" => {
                let key = "scan.startup.timestamp-millis";
                StartupMode::Timestamp(opt(def, key, parse_i64)?.ok_or_else(|| ConnectorError::MissingOption {
                    option: key.to_string(),
                    connector: "kafka".to_string(),
                    doc: "scan.startup.mode 'timestamp' needs the epoch millisecond to start at".to_string(),
                })?)
            }
            "specific-offsets" => {
                let key = "scan.startup.specific-offsets";
                StartupMode::Specific(opt(def, key, parse_specific_offsets)?.ok_or_else(|| ConnectorError::MissingOption {
                    option: key.to_string(),
                    connector: "kafka".to_string(),
                    doc: "scan.startup.mode 'specific-offsets' needs the offsets, e.g. 'partition:0,offset:42'".to_string(),
                })?)
            }
            other => {
                return Err(ConnectorError::invalid(
                    "scan.startup.mode",
                    other,
                    "expected earliest-offset, latest-offset, group-offsets, timestamp or specific-offsets",
                ))
            }
        };
        let bounded_latest = match def.option("scan.bounded.mode").unwrap_or("unbounded").trim() {
            "unbounded" => false,
            "latest-offset" => true,
            other => return Err(ConnectorError::invalid("scan.bounded.mode", other, "expected unbounded or latest-offset")),
        };
        let key_fields: Vec<String> =
            def.option("key.fields").map(|v| v.split(';').map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect()).unwrap_or_default();
        for field in &key_fields {
            if !def.columns.iter().any(|c| &c.name == field) {
                return Err(ConnectorError::UnknownColumn {
                    column: field.clone(),
                    context: "'key.fields'".to_string(),
                    valid: def.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                });
            }
        }
        let key_format = parse_format(def, "key.format", def.option("key.format").unwrap_or("json"))?;
        if matches!(key_format, TextOrRaw::Raw) && key_fields.len() > 1 {
            return Err(ConnectorError::invalid("key.format", "raw", "a raw key holds exactly one column; list one column in 'key.fields'"));
        }
        let partitioner = match def.option("sink.partitioner").unwrap_or("default").trim() {
            "default" => Partitioner::Default,
            "round-robin" => Partitioner::RoundRobin,
            "fixed" => Partitioner::Fixed,
            other => return Err(ConnectorError::invalid("sink.partitioner", other, "expected default, round-robin or fixed")),
        };
        let (acknowledged, transactional_id) = match def.option("sink.delivery-guarantee").unwrap_or("at-least-once").trim() {
            "at-least-once" => (true, None),
            "none" => (false, None),
            "exactly-once" => {
                let id = def.option("sink.transactional-id-prefix").map_or_else(|| format!("eddy-{}", def.name), str::to_string);
                (true, Some(id))
            }
            other => return Err(ConnectorError::invalid("sink.delivery-guarantee", other, "expected exactly-once, at-least-once or none")),
        };
        let either = |name: &str| def.option(&format!("value.{name}")).or_else(|| def.option(name)).map(str::to_string);
        let registry = match format {
            TextOrRaw::AvroConfluent => {
                let url = either("avro-confluent.url").ok_or_else(|| ConnectorError::MissingOption {
                    option: "avro-confluent.url".to_string(),
                    connector: "kafka".to_string(),
                    doc: "format 'avro-confluent' needs the schema registry, e.g. 'http://127.0.0.1:8081'".to_string(),
                })?;
                let subject = either("avro-confluent.subject").unwrap_or_else(|| format!("{}-value", topic.as_deref().unwrap_or("records")));
                Some((url, subject))
            }
            _ => None,
        };
        let key_group = opt(def, "eddy.cluster.key-group", |k, v| {
            v.trim().parse::<i32>().ok().filter(|g| *g >= 0).ok_or_else(|| ConnectorError::invalid(k, v, "expected a partition number"))
        })?;
        Ok(KafkaOptions {
            key_group,
            registry,
            topic,
            topic_pattern,
            group_id: properties.get("group.id").cloned(),
            bootstrap,
            properties,
            format,
            startup,
            bounded_latest,
            idle_timeout: opt(def, "scan.watermark.idle-timeout", parse_duration)?.filter(|d| !d.is_zero()),
            batch_rows: batch_rows(def)?,
            key_fields,
            key_format,
            partitioner,
            acknowledged,
            transactional_id,
        })
    }

    /// A librdkafka configuration with every `properties.*` option applied.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// Names the topic(s) in messages.
    pub fn topic_label(&self) -> String {
        match (&self.topic, &self.topic_pattern) {
            (Some(t), _) => format!("topic '{t}'"),
            (None, Some(p)) => format!("topics matching '{}'", p.as_str()),
            (None, None) => "no topic".to_string(),
        }
    }
}

/// Whether `data_type` is a headers map: STRING keys to BYTES (Flink's) or STRING values.
pub(crate) fn is_headers_map(data_type: &DataType) -> bool {
    match data_type {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(f) => f.len() == 2 && f[0].data_type() == &DataType::Utf8 && matches!(f[1].data_type(), DataType::Binary | DataType::Utf8),
            _ => false,
        },
        _ => false,
    }
}

/// Checks the table's metadata columns: known keys, and writable ones in a sink.
pub(crate) fn check_metadata(def: &TableDef, table_use: TableUse) -> Result<(), ConnectorError> {
    for column in &def.columns {
        let Some(meta) = &column.metadata else { continue };
        if !READABLE_METADATA.iter().any(|(k, _)| *k == meta.key) {
            return Err(ConnectorError::Metadata {
                column: column.name.clone(),
                reason: format!(
                    "kafka has no metadata '{}'; available: {}",
                    meta.key,
                    READABLE_METADATA.iter().map(|(k, t)| format!("{k} {t}")).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if table_use == TableUse::Written && !meta.is_virtual && !WRITABLE_METADATA.contains(&meta.key.as_str()) {
            return Err(ConnectorError::Metadata {
                column: column.name.clone(),
                reason: format!("metadata '{}' is read-only; declare the column VIRTUAL to write to this table", meta.key),
            });
        }
        let type_ok = match meta.key.as_str() {
            "topic" | "timestamp-type" => matches!(column.data_type, DataType::Utf8 | DataType::LargeUtf8),
            // Written headers are a MAP only: a sink does not parse JSON text into headers.
            "headers" if table_use == TableUse::Written && !meta.is_virtual => is_headers_map(&column.data_type),
            "headers" => matches!(column.data_type, DataType::Utf8 | DataType::LargeUtf8) || is_headers_map(&column.data_type),
            "key" => matches!(column.data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary),
            "partition" | "offset" => column.data_type.is_integer(),
            "timestamp" => matches!(column.data_type, DataType::Timestamp(_, _) | DataType::Int64),
            _ => true,
        };
        if !type_ok {
            let expected = READABLE_METADATA.iter().find(|(k, _)| *k == meta.key).map_or("", |(_, t)| *t);
            return Err(ConnectorError::Metadata {
                column: column.name.clone(),
                reason: format!("metadata '{}' is {expected}, but the column is declared {}", meta.key, column.data_type),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;

    fn def(opts: &[(&str, &str)]) -> TableDef {
        TableDef::from_fields("t", &[Field::new("v", DataType::Utf8, true)], opts)
    }

    #[test]
    fn options_parse_like_flink() {
        let o = KafkaOptions::parse(&def(&[
            ("topic", "orders"),
            ("properties.bootstrap.servers", "b:9092"),
            ("properties.group.id", "g"),
            ("properties.fetch.min.bytes", "1"),
            ("scan.startup.mode", "specific-offsets"),
            ("scan.startup.specific-offsets", "partition:0,offset:42; partition:1,offset:300"),
            ("scan.watermark.idle-timeout", "30 s"),
            ("key.fields", "v"),
        ]))
        .unwrap();
        assert_eq!(o.startup, StartupMode::Specific(BTreeMap::from([(0, 42), (1, 300)])));
        assert_eq!(o.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(o.group_id.as_deref(), Some("g"));
        assert_eq!(o.client_config().get("fetch.min.bytes"), Some("1"));
        assert_eq!(o.key_fields, vec!["v"]);
    }

    #[test]
    fn bad_options_say_what_to_do() {
        let err = |opts: &[(&str, &str)]| KafkaOptions::parse(&def(opts)).unwrap_err().to_string();
        assert!(err(&[]).contains("set exactly one of 'topic' and 'topic-pattern'"));
        assert!(err(&[("topic", "t"), ("scan.startup.mode", "earliest")]).contains("expected earliest-offset"));
        assert!(err(&[("topic", "t"), ("scan.startup.mode", "timestamp")]).contains("needs option 'scan.startup.timestamp-millis'"));
        assert!(err(&[("topic", "t"), ("format", "avro-confluent")]).contains("'avro-confluent.url'"));
        assert!(err(&[("topic", "t"), ("key.format", "avro-confluent")]).contains("keys in the registry's format are not supported"));
        assert!(err(&[("topic", "t"), ("key.fields", "nope")]).contains("unknown column 'nope'"));
        assert!(err(&[("topic", "t"), ("sink.delivery-guarantee", "exactly")]).contains("expected exactly-once, at-least-once or none"));
        let transactional = |opts: &[(&str, &str)]| KafkaOptions::parse(&def(opts)).unwrap().transactional_id;
        assert_eq!(transactional(&[("topic", "t"), ("sink.delivery-guarantee", "exactly-once")]).as_deref(), Some("eddy-t"));
        assert_eq!(
            transactional(&[("topic", "t"), ("sink.delivery-guarantee", "exactly-once"), ("sink.transactional-id-prefix", "p1")]).as_deref(),
            Some("p1")
        );
        assert_eq!(transactional(&[("topic", "t")]), None);
        assert!(err(&[("topic", "t"), ("scan.startup.mode", "specific-offsets"), ("scan.startup.specific-offsets", "0:1")])
            .contains("expected 'partition:0,offset:42"));
    }
}
