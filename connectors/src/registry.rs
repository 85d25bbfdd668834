//! The one list of connectors, and what the binary and the planner ask of it:
//! a table's options checked, its boundedness and resumability, its sources and
//! sinks built. Each connector is one type implementing [`Connector`] (in its own
//! module); adding one is writing that type and listing it in [`CONNECTORS`].

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use eddy_engine::lookup::Lookups;
use eddy_engine::table::{TableDef, ENGINE_OPTIONS};
use eddy_engine::{Boundedness, Connector, MetadataColumns, Presence, Rescaling, Resumption, Sink, SinkChanges, Source, TableUse};

use crate::blackhole::BlackholeConnector;
use crate::clickhouse::ClickHouseConnector;
use crate::datagen::DatagenConnector;
use crate::error::ConnectorError;
use crate::filesystem::FilesystemConnector;
use crate::kafka::{KafkaConnector, UpsertKafkaConnector};
use crate::nexmark::NexmarkConnector;
use crate::options::did_you_mean;
use crate::print::PrintConnector;
use crate::redis::RedisConnector;

/// Every connector of this build, in the order `--help` and error messages list them.
pub static CONNECTORS: &[&dyn Connector] = &[
    &FilesystemConnector,
    &KafkaConnector,
    &UpsertKafkaConnector,
    &RedisConnector,
    &ClickHouseConnector,
    &NexmarkConnector,
    &DatagenConnector,
    &PrintConnector,
    &BlackholeConnector,
];

/// The connector named `name` (the value of `'connector'`), if this build has it.
pub fn connector(name: &str) -> Option<&'static dyn Connector> {
    CONNECTORS.iter().copied().find(|c| c.name() == name)
}

/// A human-readable list of connectors and their options, for `--help` and docs.
pub fn describe_connectors() -> String {
    let mut out = String::new();
    for c in CONNECTORS {
        let roles = c.info().capabilities.roles;
        let roles = match (roles.reads(), roles.writes()) {
            (true, true) => "source, sink",
            (true, false) => "source",
            _ => "sink",
        };
        let lookups = c.lookups() == Lookups::Supported;
        let looked_up = if lookups { ", lookup join table" } else { "" };
        out.push_str(&format!("'connector' = '{}' ({roles}{looked_up}): {}\n", c.name(), c.info().description));
        let lookup_options = if lookups { crate::lookup::LOOKUP_OPTIONS } else { &[] };
        for option in c.info().options.iter().chain(lookup_options) {
            let req = if option.presence == Presence::Required { " (required)" } else { "" };
            out.push_str(&format!("  '{}'{req}: {}\n", option.key, option.doc));
        }
    }
    out
}

fn known_connectors() -> String {
    names(CONNECTORS.iter())
}

fn names<'a>(connectors: impl Iterator<Item = &'a &'static dyn Connector>) -> String {
    connectors.map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

/// The connector of `def`, or the error that says why there is none.
pub(crate) fn connector_of(def: &TableDef) -> Result<&'static dyn Connector, ConnectorError> {
    let name = def.connector();
    if name.is_empty() {
        return Err(ConnectorError::MissingConnector { table: def.name.clone(), known: known_connectors() });
    }
    connector(name).ok_or_else(|| ConnectorError::UnknownConnector {
        name: name.to_string(),
        hint: did_you_mean(name, CONNECTORS.iter().map(|c| c.name())),
        known: known_connectors(),
    })
}

/// Checks `def`'s options: the connector exists, every option is known (connector
/// options and [`ENGINE_OPTIONS`]), required ones are set and values parse.
///
/// [`TableUse::Written`] also checks that the connector can be written. A table
/// only [`TableUse::Declared`] may become an `INSERT INTO` target later, so a
/// sink-only connector such as `print` passes; reading from it fails in [`create_source`].
pub fn validate_options(def: &TableDef, table_use: TableUse) -> Result<(), ConnectorError> {
    let connector = connector_of(def)?;
    let capabilities = connector.info().capabilities;
    if table_use == TableUse::Written && !capabilities.roles.writes() {
        return Err(ConnectorError::UnsupportedRole { connector: connector.name().to_string(), role: "sink" });
    }
    let options = connector.info().options;
    for key in def.options.keys() {
        let lookup_option = connector.lookups() == Lookups::Supported && crate::lookup::is_lookup_option(key);
        if ENGINE_OPTIONS.contains(&key.as_str()) || options.iter().any(|o| o.matches(key)) || lookup_option {
            continue;
        }
        let candidates = options.iter().map(|o| o.key).chain(ENGINE_OPTIONS.iter().copied().filter(|k| *k != "connector"));
        let valid: Vec<&str> = candidates.clone().collect();
        return Err(ConnectorError::UnknownOption {
            option: key.clone(),
            connector: connector.name().to_string(),
            hint: did_you_mean(key, candidates),
            valid: if valid.is_empty() { "none".to_string() } else { valid.join(", ") },
        });
    }
    for required in options.iter().filter(|o| o.presence == Presence::Required) {
        if def.option(required.key).is_none() {
            return Err(ConnectorError::MissingOption {
                option: required.key.to_string(),
                connector: connector.name().to_string(),
                doc: required.doc.to_string(),
            });
        }
    }
    connector.validate(def, table_use)?;
    if capabilities.metadata == MetadataColumns::Unsupported {
        if let Some(column) = def.columns.iter().find(|c| c.metadata.is_some()) {
            let with_metadata = names(CONNECTORS.iter().filter(|c| c.info().capabilities.metadata == MetadataColumns::Supported));
            return Err(ConnectorError::Metadata {
                column: column.name.clone(),
                reason: format!("connector '{}' has no METADATA columns (only {with_metadata} has)", connector.name()),
            });
        }
    }
    Ok(())
}

/// What a sink of `def` can apply besides appended rows (nothing when its connector is unknown).
pub fn sink_changes(def: &TableDef) -> SinkChanges {
    connector(def.connector()).map_or(SinkChanges::Appends, |c| c.info().capabilities.changes)
}

/// Whether a sink of `def` can take an upsert stream (rows that update earlier
/// rows of the same key): it overwrites by key, or only shows or drops rows.
pub fn accepts_updates(def: &TableDef) -> bool {
    sink_changes(def) >= SinkChanges::Updates
}

/// Whether a sink of `def` can take a changelog with retractions (rows deleted
/// again): it deletes by key (`upsert-kafka` writes tombstones), or only shows or drops rows.
pub fn accepts_retractions(def: &TableDef) -> bool {
    sink_changes(def) >= SinkChanges::Retractions
}

/// Whether a source of `def` ends by itself (so windows close and `eddy run` exits),
/// decided from its options before anything is opened.
pub fn is_bounded(def: &TableDef) -> bool {
    connector(def.connector()).is_some_and(|c| c.boundedness(def) == Boundedness::Bounded)
}

/// Whether a source of `def` can resume from a checkpoint (it saves positions),
/// so a pipeline reading it can restore its state instead of starting over.
pub fn can_resume(def: &TableDef) -> bool {
    connector(def.connector()).is_some_and(|c| c.resumption(def) == Resumption::Resumes)
}

/// Which parallelism a checkpoint of a source of `def` can be resumed with (see
/// [`Connector::rescaling`]); any, for an unknown connector.
pub fn rescaling(def: &TableDef) -> Rescaling {
    connector(def.connector()).map_or(Rescaling::AnyParallelism, |c| c.rescaling(def))
}

/// The partitions a source of `def` is read in by `parallelism` tasks, one line
/// each, for `EXPLAIN`; `None` for connectors that only know once they are opened
/// (a topic's partitions, a generator's shares).
pub fn describe_partitions(
    def: &TableDef,
    parallelism: usize,
    partitions: Option<&eddy_engine::PartitionFilter>,
) -> Option<Result<Vec<String>, ConnectorError>> {
    (def.connector() == "filesystem").then(|| crate::filesystem::describe_partitions(def, parallelism, partitions))
}

/// The physical schema a source of `def` produces: the declared columns, or for
/// `nexmark` without declared columns the standard columns of `'nexmark.table'`.
pub fn source_schema(def: &TableDef) -> Result<SchemaRef, ConnectorError> {
    match connector(def.connector()) {
        Some(connector) => Ok(connector.source_schema(def)?),
        None => Ok(def.physical_schema()),
    }
}

/// Builds the source for `def`, producing `schema` (usually [`source_schema`]).
pub fn create_source(def: &TableDef, schema: SchemaRef) -> Result<Arc<dyn Source>, ConnectorError> {
    create_source_reading(def, schema, None)
}

/// [`create_source`] for a pipeline that reads only the columns at positions
/// `read` of `schema` (all when `None`): sources that can skip the work for the
/// others (the generators) leave them NULL.
pub fn create_source_reading(def: &TableDef, schema: SchemaRef, read: Option<&[usize]>) -> Result<Arc<dyn Source>, ConnectorError> {
    create_source_for(def, schema, read, None)
}

/// [`create_source_reading`] that may also skip the partition directories
/// `partitions` rules out (see [`eddy_engine::PartitionFilter`]).
pub fn create_source_for(
    def: &TableDef,
    schema: SchemaRef,
    read: Option<&[usize]>,
    partitions: Option<&eddy_engine::PartitionFilter>,
) -> Result<Arc<dyn Source>, ConnectorError> {
    validate_options(def, TableUse::Declared)?;
    let connector = connector_of(def)?;
    if !connector.info().capabilities.roles.reads() {
        return Err(ConnectorError::UnsupportedRole { connector: connector.name().to_string(), role: "source" });
    }
    Ok(match partitions {
        Some(partitions) => connector.create_pruned_source(def, schema, read, partitions)?,
        None => connector.create_source(def, schema, read)?,
    })
}

/// Builds the sink for `def`, accepting rows in `schema`.
pub fn create_sink(def: &TableDef, schema: SchemaRef) -> Result<Box<dyn Sink>, ConnectorError> {
    validate_options(def, TableUse::Written)?;
    Ok(connector_of(def)?.create_sink(def, schema)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(opts: &[(&str, &str)]) -> TableDef {
        TableDef::from_fields("t", &[datafusion::arrow::datatypes::Field::new("v", datafusion::arrow::datatypes::DataType::Int64, true)], opts)
    }

    fn err(opts: &[(&str, &str)], as_sink: bool) -> String {
        validate_options(&def(opts), if as_sink { TableUse::Written } else { TableUse::Declared }).unwrap_err().to_string()
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
        validate_options(&print, TableUse::Declared).unwrap();
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
        validate_options(&def(&[("connector", "blackhole"), ("late.sink", "dlq"), ("malformed.sink", "dlq")]), TableUse::Written).unwrap();
        validate_options(&def(&[("connector", "datagen"), ("fields.v.min", "1")]), TableUse::Declared).unwrap();
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
        let err = validate_options(&table, TableUse::Written).unwrap_err().to_string();
        assert!(err.contains("PRIMARY KEY"), "{err}");
        table.primary_key = vec!["v".into()];
        validate_options(&table, TableUse::Written).unwrap();
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
            assert!(text.contains(c.name()));
        }
        assert!(text.contains("'path' (required)"));
    }

    #[test]
    fn every_connector_is_listed_once_with_its_options_once() {
        for (i, c) in CONNECTORS.iter().enumerate() {
            assert!(CONNECTORS[..i].iter().all(|o| o.name() != c.name()), "{} listed twice", c.name());
            assert!(std::ptr::addr_eq(connector(c.name()).unwrap(), *c));
            for (j, o) in c.info().options.iter().enumerate() {
                assert!(c.info().options[..j].iter().all(|p| p.key != o.key), "{}: option '{}' listed twice", c.name(), o.key);
            }
        }
        assert!(connector("kafak").is_none());
    }

    /// The capabilities each connector declares are what the planner and the binary decide by.
    #[test]
    fn capabilities_decide_roles_changes_and_resuming() {
        let table = |name: &str| def(&[("connector", name)]);
        let roles: Vec<(&str, bool, bool)> =
            CONNECTORS.iter().map(|c| (c.name(), c.info().capabilities.roles.reads(), c.info().capabilities.roles.writes())).collect();
        assert_eq!(
            roles,
            [
                ("filesystem", true, true),
                ("kafka", true, true),
                ("upsert-kafka", false, true),
                ("redis", false, true),
                ("clickhouse", false, true),
                ("nexmark", true, false),
                ("datagen", true, false),
                ("print", false, true),
                ("blackhole", false, true)
            ]
        );
        let updates: Vec<&str> = CONNECTORS.iter().map(|c| c.name()).filter(|n| accepts_updates(&table(n))).collect();
        assert_eq!(updates, ["upsert-kafka", "redis", "clickhouse", "print", "blackhole"]);
        let retractions: Vec<&str> = CONNECTORS.iter().map(|c| c.name()).filter(|n| accepts_retractions(&table(n))).collect();
        assert_eq!(retractions, ["upsert-kafka", "print", "blackhole"]);
        let looked_up: Vec<&str> = CONNECTORS.iter().filter(|c| c.lookups() == Lookups::Supported).map(|c| c.name()).collect();
        assert_eq!(looked_up, ["filesystem", "redis", "clickhouse"]);
        assert!(describe_connectors().contains("'connector' = 'redis' (sink, lookup join table)"));
        let resumable: Vec<&str> = CONNECTORS.iter().map(|c| c.name()).filter(|n| can_resume(&table(n))).collect();
        assert_eq!(resumable, ["filesystem", "kafka", "nexmark", "datagen"]);
        assert!(!can_resume(&def(&[("connector", "nexmark"), ("nexmark.table", "person")])));
        assert!(can_resume(&def(&[("connector", "nexmark"), ("nexmark.table", " BID ")])));
        assert_eq!(eddy_engine::connector::resumable_connectors(CONNECTORS), "filesystem, kafka, nexmark bids, datagen");
        // Nothing is known of a connector this build does not have.
        let unknown = table("kafak");
        assert!(!accepts_updates(&unknown) && !is_bounded(&unknown) && !can_resume(&unknown));
    }

    #[test]
    fn metadata_columns_only_where_the_connector_has_them() {
        let mut table = def(&[("connector", "blackhole")]);
        table.columns[0].metadata = Some(eddy_engine::MetadataColumn { key: "offset".into(), is_virtual: true });
        let e = validate_options(&table, TableUse::Written).unwrap_err().to_string();
        assert_eq!(e, "column 'v': connector 'blackhole' has no METADATA columns (only kafka has)");
    }
}
