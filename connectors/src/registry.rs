//! The one place that knows every connector: its options (for validation, `--help`
//! and docs) and how to build its sources and sinks from a [`TableDef`].

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use eddy_engine::table::{TableDef, ENGINE_OPTIONS};
use eddy_engine::{Sink, Source};

use crate::blackhole::BlackholeSink;
use crate::datagen::{DatagenOptions, DatagenSource};
use crate::error::ConnectorError;
use crate::filesystem::{self, FsOptions};
use crate::kafka::{KafkaOptions, KafkaSink, KafkaSource};
use crate::nexmark::{self, NexmarkOptions, NexmarkSource};
use crate::options::did_you_mean;
use crate::print::PrintSink;

/// A connector and the `WITH` options it accepts, so they can be validated and listed.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorSpec {
    /// The value of `'connector'`.
    pub name: &'static str,
    /// One line saying what it is for.
    pub description: &'static str,
    /// `(key, doc)`; `#` in a key stands for a column name (e.g. `fields.#.kind`).
    pub options: &'static [(&'static str, &'static str)],
    /// Keys that must be set.
    pub required: &'static [&'static str],
    /// Whether it can be read.
    pub can_source: bool,
    /// Whether it can be written.
    pub can_sink: bool,
}

/// Every connector of this crate, with its options.
pub const CONNECTORS: &[ConnectorSpec] = &[
    ConnectorSpec {
        name: "filesystem",
        description: "JSON-lines, CSV or Parquet files on the local disk",
        options: &[
            ("path", "source: a file, a directory (all visible files below it, sorted) or a glob; sink: a directory or s3://bucket/prefix"),
            ("format", "json (one object per line) | csv | parquet"),
            ("csv.field-delimiter", "one character between CSV fields, '\\t' for tab (default ',')"),
            ("csv.header", "'true' when CSV files have a header line: skipped when reading, written by the sink (default 'false', as Flink)"),
            ("scan.batch-rows", "rows per batch read, at most (default 8192)"),
            ("sink.rolling-policy.file-size", "start a new part file after this size, e.g. '128MB' (default 128MB)"),
            ("sink.rolling-policy.rollover-interval", "start a new part file after it has been open this long, e.g. '15 min' (default: only by size and on commit)"),
            ("s3.access-key", "s3:// sinks: access key id (default: AWS_ACCESS_KEY_ID)"),
            ("s3.secret-key", "s3:// sinks: secret access key (default: AWS_SECRET_ACCESS_KEY)"),
            ("s3.region", "s3:// sinks: region (default: AWS_REGION or us-east-1)"),
            ("s3.endpoint", "s3:// sinks: endpoint of an S3-compatible store, e.g. 'http://127.0.0.1:9000' (default: AWS)"),
            ("s3.allow-http", "s3:// sinks: 'true' allows a plain-HTTP endpoint"),
            ("s3.path-style-access", "s3:// sinks: 'true' for path-style URLs (MinIO)"),
        ],
        required: &["path", "format"],
        can_source: true,
        can_sink: true,
    },
    ConnectorSpec {
        name: "kafka",
        description: "Apache Kafka topics: one reader per partition, JSON/CSV/raw values, METADATA columns (topic, partition, offset, timestamp, timestamp-type, key, headers)",
        options: crate::kafka::OPTIONS,
        required: &["properties.bootstrap.servers"],
        can_source: true,
        can_sink: true,
    },
    ConnectorSpec {
        name: "upsert-kafka",
        description: "a Kafka topic as a changelog: each row is the newest version of its PRIMARY KEY (the record key), for compacted topics and updating queries",
        options: crate::kafka::UPSERT_OPTIONS,
        required: &["topic", "properties.bootstrap.servers"],
        can_source: false,
        can_sink: true,
    },
    ConnectorSpec {
        name: "redis",
        description: "Redis for live dashboards: a hash or string per row under a key template, a sorted set per window (leaderboards), or a stream/list append",
        options: crate::redis::OPTIONS,
        required: &["url"],
        can_source: false,
        can_sink: true,
    },
    ConnectorSpec {
        name: "clickhouse",
        description: "ClickHouse tables over HTTP: batched RowBinary inserts, retried and deduplicated",
        options: crate::clickhouse::OPTIONS,
        required: &["url", "table"],
        can_source: false,
        can_sink: true,
    },
    ConnectorSpec {
        name: "nexmark",
        description: "the Nexmark benchmark's person/auction/bid event generator",
        options: &[
            ("nexmark.table", "bid (default) | auction | person; without declared columns the table gets Flink's Nexmark columns"),
            ("events.num", "events of all kinds to generate (the table gets its share of the 1:3:46 mix); unbounded when unset"),
            ("events.rate", "events per second over all readers, event time following wall time; unlimited when unset (event time then advances 10,000 events/s)"),
            ("nexmark.base-time", "epoch milliseconds of the first event's date_time (default: when the source opens)"),
            ("scan.batch-rows", "rows per batch, at most (default 8192)"),
        ],
        required: &[],
        can_source: true,
        can_sink: false,
    },
    ConnectorSpec {
        name: "datagen",
        description: "random or sequential rows for any declared columns",
        options: &[
            ("rows-per-second", "rows per second over all readers (default 10000; 0 = unlimited)"),
            ("number-of-rows", "total rows to generate; unbounded when unset"),
            ("seed", "makes the rows reproducible (except timestamps, which follow the clock)"),
            ("scan.batch-rows", "rows per batch, at most (default 8192)"),
            ("fields.#.kind", "random (default) | sequence (integer and string columns)"),
            ("fields.#.min", "smallest random number (default: type minimum; 0 for floats/decimals)"),
            ("fields.#.max", "largest random number (default: type maximum; 1 for floats/decimals)"),
            ("fields.#.length", "length of random strings (default 10)"),
            ("fields.#.start", "first value of a sequence (default 0)"),
            ("fields.#.end", "last value of a sequence; the source ends after it"),
            ("fields.#.max-past", "random timestamps/dates lie up to this many milliseconds in the past (default 0 = now)"),
            ("fields.#.null-rate", "share of random values that are null, 0 to 1 (default 0)"),
        ],
        required: &[],
        can_source: true,
        can_sink: false,
    },
    ConnectorSpec {
        name: "print",
        description: "prints every row to stdout like Flink: +I[1, foo, 2024-01-01 00:00:00.000]",
        options: &[("print-identifier", "prefix of every line, as 'identifier> '")],
        required: &[],
        can_source: false,
        can_sink: true,
    },
    ConnectorSpec {
        name: "blackhole",
        description: "discards every row (for benchmarks)",
        options: &[],
        required: &[],
        can_source: false,
        can_sink: true,
    },
];

/// The spec of connector `name`, if it exists.
pub fn connector_spec(name: &str) -> Option<&'static ConnectorSpec> {
    CONNECTORS.iter().find(|c| c.name == name)
}

/// A human-readable list of connectors and their options, for `--help` and docs.
pub fn describe_connectors() -> String {
    let mut out = String::new();
    for c in CONNECTORS {
        let roles = match (c.can_source, c.can_sink) {
            (true, true) => "source, sink",
            (true, false) => "source",
            _ => "sink",
        };
        out.push_str(&format!("'connector' = '{}' ({roles}): {}\n", c.name, c.description));
        for (key, doc) in c.options {
            let req = if c.required.contains(key) { " (required)" } else { "" };
            out.push_str(&format!("  '{key}'{req}: {doc}\n"));
        }
    }
    out
}

fn known_connectors() -> String {
    CONNECTORS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

fn spec_for(def: &TableDef) -> Result<&'static ConnectorSpec, ConnectorError> {
    let name = def.connector();
    if name.is_empty() {
        return Err(ConnectorError::MissingConnector { table: def.name.clone(), known: known_connectors() });
    }
    connector_spec(name).ok_or_else(|| ConnectorError::UnknownConnector {
        name: name.to_string(),
        hint: did_you_mean(name, CONNECTORS.iter().map(|c| c.name)),
        known: known_connectors(),
    })
}

/// Whether `key` is option `pattern` (`#` standing for one column name).
fn key_matches(pattern: &str, key: &str) -> bool {
    match pattern.split_once('#') {
        None => pattern == key,
        Some((pre, post)) => key.len() > pre.len() + post.len() && key.starts_with(pre) && key.ends_with(post),
    }
}

/// Checks `def`'s options: the connector exists, every option is known (connector
/// options and [`ENGINE_OPTIONS`]), required ones are set and values parse.
///
/// With `as_sink` it also checks that the connector can be written. Without it the
/// table is only being declared (it may become an `INSERT INTO` target later), so a
/// sink-only connector such as `print` passes; reading from it fails in
/// [`create_source`].
pub fn validate_options(def: &TableDef, as_sink: bool) -> Result<(), ConnectorError> {
    let spec = spec_for(def)?;
    if as_sink && !spec.can_sink {
        return Err(ConnectorError::UnsupportedRole { connector: spec.name.to_string(), role: "sink" });
    }
    for key in def.options.keys() {
        if ENGINE_OPTIONS.contains(&key.as_str()) || spec.options.iter().any(|(p, _)| key_matches(p, key)) {
            continue;
        }
        let candidates = spec.options.iter().map(|(k, _)| *k).chain(ENGINE_OPTIONS.iter().copied().filter(|k| *k != "connector"));
        let valid: Vec<&str> = candidates.clone().collect();
        return Err(ConnectorError::UnknownOption {
            option: key.clone(),
            connector: spec.name.to_string(),
            hint: did_you_mean(key, candidates),
            valid: if valid.is_empty() { "none".to_string() } else { valid.join(", ") },
        });
    }
    for req in spec.required {
        if def.option(req).is_none() {
            let doc = spec.options.iter().find(|(k, _)| k == req).map(|(_, d)| *d).unwrap_or("");
            return Err(ConnectorError::MissingOption { option: req.to_string(), connector: spec.name.to_string(), doc: doc.to_string() });
        }
    }
    match spec.name {
        "filesystem" => {
            FsOptions::parse(def)?;
        }
        "nexmark" => {
            NexmarkOptions::parse(def)?;
            nexmark::check_schema(def, &source_schema(def)?)?;
        }
        "datagen" => {
            DatagenOptions::parse(def, &def.physical_schema())?;
        }
        "kafka" => {
            KafkaOptions::parse(def)?;
            crate::kafka::check_metadata(def, as_sink)?;
        }
        "upsert-kafka" => {
            KafkaOptions::parse(&crate::kafka::upsert_as_kafka(def)?)?;
        }
        "redis" => {
            crate::redis::RedisOptions::parse(def, &def.sink_schema())?;
        }
        "clickhouse" => {
            crate::clickhouse::ClickHouseOptions::parse(def, &def.sink_schema())?;
        }
        _ => {}
    }
    if spec.name != "kafka" {
        if let Some(column) = def.columns.iter().find(|c| c.metadata.is_some()) {
            return Err(ConnectorError::Metadata {
                column: column.name.clone(),
                reason: format!("connector '{}' has no METADATA columns (only kafka has)", spec.name),
            });
        }
    }
    Ok(())
}

/// Whether a sink of `def` can take an upsert stream (rows that update earlier
/// rows of the same key): it overwrites by key, or only shows or drops rows.
pub fn accepts_updates(def: &TableDef) -> bool {
    matches!(def.connector(), "redis" | "clickhouse" | "upsert-kafka" | "print" | "blackhole")
}

/// Whether a sink of `def` can take a changelog with retractions (rows deleted
/// again): it deletes by key (`upsert-kafka` writes tombstones), or only shows or drops rows.
pub fn accepts_retractions(def: &TableDef) -> bool {
    matches!(def.connector(), "upsert-kafka" | "print" | "blackhole")
}

/// Whether a source of `def` ends by itself (so windows close and `eddy run` exits),
/// decided from its options before anything is opened.
pub fn is_bounded(def: &TableDef) -> bool {
    match def.connector() {
        "filesystem" => true,
        "nexmark" => def.option("events.num").is_some(),
        "datagen" => DatagenOptions::parse(def, &def.physical_schema()).is_ok_and(|o| o.total_rows.is_some()),
        "kafka" => def.option("scan.bounded.mode").is_some_and(|m| m.trim() == "latest-offset"),
        _ => false,
    }
}

/// The physical schema a source of `def` produces: the declared columns, or for
/// `nexmark` without declared columns the standard columns of `'nexmark.table'`.
pub fn source_schema(def: &TableDef) -> Result<SchemaRef, ConnectorError> {
    if def.connector() == "nexmark" && def.columns.is_empty() {
        return Ok(NexmarkOptions::parse(def)?.table.schema());
    }
    Ok(def.physical_schema())
}

/// Builds the source for `def`, producing `schema` (usually [`source_schema`]).
pub fn create_source(def: &TableDef, schema: SchemaRef) -> Result<Arc<dyn Source>, ConnectorError> {
    create_source_reading(def, schema, None)
}

/// [`create_source`] for a pipeline that reads only the columns at positions
/// `read` of `schema` (all when `None`): sources that can skip the work for the
/// others (the generators) leave them NULL.
pub fn create_source_reading(def: &TableDef, schema: SchemaRef, read: Option<&[usize]>) -> Result<Arc<dyn Source>, ConnectorError> {
    validate_options(def, false)?;
    if connector_spec(def.connector()).is_some_and(|c| !c.can_source) {
        return Err(ConnectorError::UnsupportedRole { connector: def.connector().to_string(), role: "source" });
    }
    Ok(match def.connector() {
        "filesystem" => filesystem::create_source(def, schema)?,
        "nexmark" => Arc::new(NexmarkSource::try_new(def, schema)?.reading(read)),
        "datagen" => Arc::new(DatagenSource::try_new(def, schema)?),
        "kafka" => Arc::new(KafkaSource::try_new(def, schema)?),
        other => return Err(ConnectorError::UnsupportedRole { connector: other.to_string(), role: "source" }),
    })
}

/// Whether a source of `def` can resume from a checkpoint (it saves positions),
/// so a pipeline reading it can restore its state instead of starting over.
pub fn can_resume(def: &TableDef) -> bool {
    match def.connector() {
        "kafka" | "filesystem" | "datagen" => true,
        // Bid readers resume; auction and person readers cannot yet.
        "nexmark" => def.option("nexmark.table").is_none_or(|t| t.trim().eq_ignore_ascii_case("bid")),
        _ => false,
    }
}

/// Builds the sink for `def`, accepting rows in `schema`.
pub fn create_sink(def: &TableDef, schema: SchemaRef) -> Result<Box<dyn Sink>, ConnectorError> {
    validate_options(def, true)?;
    Ok(match def.connector() {
        "filesystem" => filesystem::create_sink(def, schema)?,
        "print" => Box::new(PrintSink::try_new(def)?),
        "blackhole" => Box::new(BlackholeSink),
        "kafka" => Box::new(KafkaSink::try_new(def, schema)?),
        "upsert-kafka" => Box::new(KafkaSink::try_new(&crate::kafka::upsert_as_kafka(def)?, schema)?),
        "redis" => Box::new(crate::redis::RedisSink::try_new(def, schema)?),
        "clickhouse" => Box::new(crate::clickhouse::ClickHouseSink::try_new(def, schema)?),
        other => return Err(ConnectorError::UnsupportedRole { connector: other.to_string(), role: "sink" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(opts: &[(&str, &str)]) -> TableDef {
        TableDef::from_fields("t", &[datafusion::arrow::datatypes::Field::new("v", datafusion::arrow::datatypes::DataType::Int64, true)], opts)
    }

    fn err(opts: &[(&str, &str)], as_sink: bool) -> String {
        validate_options(&def(opts), as_sink).unwrap_err().to_string()
    }

    #[test]
    fn unknown_option_names_it_and_lists_valid_ones() {
        let e = err(&[("connector", "filesystem"), ("paht", "x"), ("format", "json")], false);
        assert!(
            e.starts_with("unknown option 'paht' for connector 'filesystem' (did you mean 'path'?); valid options: path, format, csv.field-delimiter"),
            "{e}"
        );
        assert!(e.contains("malformed.sink"), "{e}");
    }

    #[test]
    fn connector_errors() {
        let e = err(&[("connector", "kafak")], false);
        assert!(
            e.contains("unknown connector 'kafak'") && e.contains("filesystem, kafka, upsert-kafka, redis, clickhouse, nexmark, datagen, print, blackhole"),
            "{e}"
        );
        assert!(err(&[], false).contains("has no 'connector' option"));
        assert_eq!(err(&[("connector", "nexmark")], true), "connector 'nexmark' cannot be used as a sink");
        // Declaring a print table is fine; reading from it is not.
        let print = def(&[("connector", "print")]);
        validate_options(&print, false).unwrap();
        let e = create_source(&print, print.physical_schema()).err().unwrap().to_string();
        assert_eq!(e, "connector 'print' cannot be used as a source");
        let e = err(&[("connector", "filesystem"), ("format", "json")], true);
        assert!(e.starts_with("connector 'filesystem' needs option 'path'"), "{e}");
        let e = err(&[("connector", "filesystem"), ("path", "x"), ("format", "xml")], true);
        assert!(e.contains("invalid value 'xml' for option 'format'"), "{e}");
        let e = err(&[("connector", "filesystem"), ("path", "gs://b/k"), ("format", "json")], false);
        assert!(e.contains("gs:// paths are not supported; use a local path or s3://bucket/prefix"), "{e}");
        let e = err(&[("connector", "blackhole"), ("x", "1")], true);
        assert!(e.contains("valid options: late.sink, malformed.sink"), "{e}");
    }

    #[test]
    fn engine_options_and_column_patterns() {
        validate_options(&def(&[("connector", "blackhole"), ("late.sink", "dlq"), ("malformed.sink", "dlq")]), true).unwrap();
        validate_options(&def(&[("connector", "datagen"), ("fields.v.min", "1")]), false).unwrap();
        let e = err(&[("connector", "datagen"), ("fields.w.min", "1")], false);
        assert!(e.contains("unknown column 'w'") && e.contains("valid columns: v"), "{e}");
        let e = err(&[("connector", "datagen"), ("fields.v.minimum", "1")], false);
        assert!(e.contains("unknown option 'fields.v.minimum'"), "{e}");
    }

    #[test]
    fn nexmark_default_schema() {
        let mut d = def(&[("connector", "nexmark"), ("nexmark.table", "person")]);
        d.columns.clear();
        let s = source_schema(&d).unwrap();
        assert_eq!(s.field(0).name(), "id");
        assert_eq!(s.fields().len(), 8);
        create_source(&d, s).unwrap();
        let e = err(&[("connector", "nexmark")], false);
        assert!(e.contains("unknown column 'v' for nexmark table 'bid'; valid columns: auction, bidder"), "{e}");
    }

    #[test]
    fn boundedness_follows_the_options() {
        assert!(is_bounded(&def(&[("connector", "filesystem")])));
        assert!(!is_bounded(&def(&[("connector", "kafka"), ("topic", "t")])));
        assert!(is_bounded(&def(&[("connector", "kafka"), ("scan.bounded.mode", "latest-offset")])));
        assert!(!is_bounded(&def(&[("connector", "datagen")])));
        assert!(is_bounded(&def(&[("connector", "datagen"), ("number-of-rows", "5")])));
        assert!(is_bounded(&def(&[("connector", "datagen"), ("fields.v.kind", "sequence"), ("fields.v.end", "9")])));
        assert!(!is_bounded(&def(&[("connector", "nexmark")])));
    }

    #[test]
    fn upsert_kafka_keys_records_by_the_primary_key() {
        let options = [("connector", "upsert-kafka"), ("topic", "t"), ("properties.bootstrap.servers", "127.0.0.1:9")];
        let mut table = def(&options);
        let err = validate_options(&table, true).unwrap_err().to_string();
        assert!(err.contains("PRIMARY KEY"), "{err}");
        table.primary_key = vec!["v".into()];
        validate_options(&table, true).unwrap();
        let kafka = crate::kafka::upsert_as_kafka(&table).unwrap();
        assert_eq!((kafka.option("key.fields"), kafka.connector()), (Some("v"), "kafka"));
        assert!(accepts_updates(&table));
        let err = create_source(&table, table.physical_schema()).err().expect("not a source").to_string();
        assert!(err.contains("upsert-kafka"), "{err}");
    }

    #[test]
    fn help_lists_everything() {
        let text = describe_connectors();
        for c in CONNECTORS {
            assert!(text.contains(c.name));
        }
        assert!(text.contains("'path' (required)"));
    }
}
