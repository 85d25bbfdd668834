//! ClickHouse sink (`'connector' = 'clickhouse'`): batched inserts over ClickHouse's
//! HTTP interface in the RowBinary format, retried and deduplicated. A table is
//! also the table of a lookup join, read by key (see `lookup.rs`).
//!
//! ```sql
//! CREATE TABLE clicks_per_user (user_id BIGINT, clicks BIGINT, window_end TIMESTAMP(3))
//! WITH ('connector' = 'clickhouse', 'url' = 'http://127.0.0.1:8123',
//!       'database' = 'analytics', 'table' = 'clicks_per_user',
//!       'sink.create-table' = 'true');
//! ```
//!
//! # How rows get there
//!
//! Rows are encoded straight from the Arrow arrays into RowBinary (see
//! `rowbinary.rs`) into one buffer, which becomes one
//! `INSERT INTO db.table (columns...) FORMAT RowBinary` once it holds
//! `'sink.batch-rows'` rows, once its oldest row has waited `'sink.flush-interval'`
//! (checked on every write), and at every commit (checkpoint barrier and end of
//! stream): after a commit every row written before it is in ClickHouse.
//!
//! On the first write (or commit) the sink asks for the server version and the
//! target table's column types (`system.columns`), creating the table first when
//! `'sink.create-table'` is set. Values are encoded to the types the table really
//! has, so a `TIMESTAMP(3)` column can go into a `DateTime` (whole seconds),
//! `DateTime64(3)` or `DateTime64(6)` column, an `INT` into an `Int64`, and a
//! `DECIMAL(10, 2)` into a `Decimal(18, 4)`. A conversion that could lose data is
//! refused before anything is written, naming the column, as is a column the
//! ClickHouse table lacks. A NULL can only go into a `Nullable` column.
//!
//! | Eddy (Arrow) type             | new table's column type (`'sink.create-table'`)      |
//! |-------------------------------|------------------------------------------------------|
//! | TINYINT..BIGINT, UInt8..UInt64 | Int8..Int64, UInt8..UInt64                          |
//! | FLOAT / DOUBLE                | Float32 / Float64                                    |
//! | BOOLEAN                       | UInt8                                                |
//! | STRING, BYTES                 | String (`LowCardinality(String)` when listed in `'sink.low-cardinality'`) |
//! | DATE                          | Date                                                 |
//! | TIMESTAMP(p), TIMESTAMP_LTZ(p) | DateTime64(3); DateTime (seconds) before ClickHouse 20.1 |
//! | DECIMAL(p, s)                 | Decimal(p, s)                                        |
//! | nullable columns              | Nullable(T), except sorting-key and engine columns   |
//!
//! # Failures and retries
//!
//! Connection errors, timeouts and 5xx answers are retried up to
//! `'sink.max-retries'` times, pausing 100 ms, 200 ms, 400 ms... up to 10 s between
//! attempts, each failure logged as a warning. Requests the server rejects as
//! wrong (4xx except 408/429, or an exception code such as unknown table or type
//! mismatch, which old servers send with status 500) fail at once with the
//! server's message.
//!
//! # Exactly once, and upserts
//!
//! Every INSERT carries an `insert_deduplication_token` (ClickHouse 22.2 and later)
//! made of a per-sink random id and the insert's sequence number, and a retried
//! INSERT sends the same token: when an attempt reached the server but its answer
//! was lost, the server drops the second copy. Replicated tables deduplicate by
//! default; plain MergeTree tables only with the table setting
//! `non_replicated_deduplication_window`, which tables made by
//! `'sink.create-table'` get. Older servers have no tokens, and a retry after a
//! lost answer can insert a batch twice.
//!
//! ClickHouse has no updates in place. For a table keyed by a primary key (an
//! aggregate that emits new values for the same key), let a
//! `ReplacingMergeTree(version)` table keep the newest row per sorting key:
//!
//! ```sql
//! CREATE TABLE totals (user_id BIGINT, total BIGINT, version BIGINT,
//!                      PRIMARY KEY (user_id) NOT ENFORCED)
//! WITH ('connector' = 'clickhouse', 'url' = 'http://127.0.0.1:8123', 'table' = 'totals',
//!       'sink.create-table' = 'true', 'sink.table-engine' = 'ReplacingMergeTree(version)');
//! -- The sorting key defaults to the primary key: ORDER BY (user_id).
//! -- Merges keep the highest version per user_id; until a merge, read with FINAL:
//! -- SELECT * FROM totals FINAL
//! ```
//!
//! `version` must grow with every change of a key (an event time, a sequence
//! number); without it the last inserted row wins.

mod client;
mod lookup;
pub(crate) mod rowbinary;
mod sink;

use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use eddy_engine::lookup::{Lookup, Lookups};
use eddy_engine::table::TableDef;
use eddy_engine::{BoxError, Capabilities, Connector, ConnectorInfo, MetadataColumns, OptionSpec, Resume, Roles, Sink, SinkChanges, TableUse};
use reqwest::Url;

use crate::error::ConnectorError;
use crate::options::{opt, parse_bool, parse_duration, parse_positive, parse_u64};

pub use sink::ClickHouseSink;

/// The `WITH` options of `'connector' = 'clickhouse'`, documented for `--help` and validation.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::required("url", "the server's HTTP interface, e.g. 'http://127.0.0.1:8123' (https works too; URL parameters are passed on as settings)"),
    OptionSpec::optional("database", "the database of the table (default 'default')"),
    OptionSpec::required("table", "the table rows are inserted into"),
    OptionSpec::optional("username", "user to log in as (sent as X-ClickHouse-User; default: the server's default user)"),
    OptionSpec::optional("password", "that user's password (sent as X-ClickHouse-Key)"),
    OptionSpec::optional("sink.batch-rows", "rows per INSERT, at most (default 100000)"),
    OptionSpec::optional("sink.flush-interval", "longest time a row waits in the buffer before an INSERT, checked on each write (default '1 s')"),
    OptionSpec::optional("sink.max-retries", "attempts after the first for an INSERT or query that failed for a temporary reason (default 10; backoff from 100 ms to 10 s)"),
    OptionSpec::optional("sink.create-table", "'true': create the table from the columns when it does not exist (default 'false')"),
    OptionSpec::optional("sink.table-engine", "with 'sink.create-table': the table engine (default 'MergeTree'), e.g. 'ReplacingMergeTree(version)'"),
    OptionSpec::optional("sink.order-by", "with 'sink.create-table': comma-separated sorting-key columns (default: the PRIMARY KEY columns, else 'tuple()')"),
    OptionSpec::optional("sink.low-cardinality", "with 'sink.create-table': comma-separated STRING columns to declare LowCardinality(String)"),
    OptionSpec::optional("sink.delivery-guarantee", "at-least-once (default: rows are inserted as they come; a replay after a crash inserts rows after the last checkpoint again) | exactly-once (rows are inserted when their checkpoint is saved, each checkpoint's rows in one INSERT tagged in 'sink.epoch-column')"),
    OptionSpec::optional("sink.epoch-column", "with exactly-once: a String column of the ClickHouse table that gets each row's checkpoint tag (default '_eddy_epoch'; 'sink.create-table' adds it)"),
];

/// Default for `'sink.batch-rows'`: large INSERTs are what ClickHouse is fastest
/// with (its documentation recommends at least 1,000 rows per insert).
const DEFAULT_BATCH_ROWS: usize = 100_000;
/// Default for `'sink.flush-interval'`.
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default for `'sink.max-retries'`: with the backoff, about 40 s of outage.
const DEFAULT_MAX_RETRIES: u32 = 10;

/// `'connector' = 'clickhouse'`: batched inserts into a table; a ReplacingMergeTree
/// table keeps each key's newest row, so it takes updating results.
#[derive(Debug, Clone, Copy)]
pub struct ClickHouseConnector;

impl Connector for ClickHouseConnector {
    fn info(&self) -> &'static ConnectorInfo {
        const INFO: ConnectorInfo = ConnectorInfo {
            name: "clickhouse",
            description: "ClickHouse tables over HTTP: batched RowBinary inserts, retried and deduplicated",
            options: OPTIONS,
            capabilities: Capabilities { roles: Roles::Sink, changes: SinkChanges::Updates, resume: Resume::Never, metadata: MetadataColumns::Unsupported },
        };
        &INFO
    }

    fn validate(&self, def: &TableDef, _table_use: TableUse) -> Result<(), BoxError> {
        ClickHouseOptions::parse(def, &def.sink_schema())?;
        Ok(())
    }

    fn create_sink(&self, def: &TableDef, schema: SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(ClickHouseSink::try_new(def, schema)?))
    }

    fn lookups(&self) -> Lookups {
        Lookups::Supported
    }

    fn create_lookup(&self, def: &TableDef, schema: SchemaRef, keys: &[usize]) -> Result<Box<dyn Lookup>, BoxError> {
        Ok(Box::new(lookup::ClickHouseLookup::try_new(def, schema, keys)?))
    }
}

/// Everything the `WITH` clause of a ClickHouse table says, checked, so that a bad
/// option fails `CREATE TABLE` rather than the running pipeline.
#[derive(Debug, Clone)]
pub struct ClickHouseOptions {
    /// The HTTP endpoint.
    pub(crate) url: Url,
    pub(crate) database: String,
    pub(crate) table: String,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) batch_rows: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) max_retries: u32,
    pub(crate) create_table: bool,
    /// `Name` or `Name(args)`, as written.
    pub(crate) table_engine: String,
    /// Sorting-key columns; empty for `tuple()`.
    pub(crate) order_by: Vec<String>,
    pub(crate) low_cardinality: Vec<String>,
    /// `exactly-once`: the ClickHouse column that tags each row with its checkpoint.
    pub(crate) epoch_column: Option<String>,
}

impl ClickHouseOptions {
    /// Parses and checks the options of `def`, whose rows have `schema`; never
    /// touches the network.
    pub fn parse(def: &TableDef, schema: &SchemaRef) -> Result<ClickHouseOptions, ConnectorError> {
        let required = |key: &str, doc: &str| {
            def.option(key).ok_or_else(|| ConnectorError::MissingOption { option: key.to_string(), connector: "clickhouse".to_string(), doc: doc.to_string() })
        };
        let url = parse_url(required("url", "the server's HTTP interface, e.g. 'http://127.0.0.1:8123'")?)?;
        let table = non_empty("table", required("table", "the ClickHouse table to insert into")?)?;
        let database = non_empty("database", def.option("database").unwrap_or("default"))?;
        for field in schema.fields() {
            if rowbinary::default_type(field.data_type(), true).is_none() {
                return Err(ConnectorError::UnsupportedType {
                    connector: "clickhouse".to_string(),
                    column: field.name().clone(),
                    data_type: field.data_type().to_string(),
                });
            }
        }
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let check_column = |option: &str, column: &str| {
            if columns.contains(&column) {
                Ok(())
            } else {
                Err(ConnectorError::UnknownColumn { column: column.to_string(), context: format!("'{option}'"), valid: columns.join(", ") })
            }
        };
        let table_engine = def.option("sink.table-engine").unwrap_or("MergeTree").trim().to_string();
        for column in engine_columns(&table_engine)? {
            check_column("sink.table-engine", &column)?;
        }
        let order_by = match def.option("sink.order-by") {
            Some(value) => {
                let order_by = column_list(value);
                if value.trim() != "tuple()" && order_by.is_empty() {
                    return Err(ConnectorError::invalid("sink.order-by", value, "expected comma-separated columns, or 'tuple()' for no sorting key"));
                }
                if !order_by.is_empty() && !is_merge_tree(&table_engine) {
                    return Err(ConnectorError::invalid(
                        "sink.order-by",
                        value,
                        format!("only MergeTree-family engines have a sorting key, not '{table_engine}'"),
                    ));
                }
                order_by
            }
            None => def.primary_key.clone(),
        };
        for column in &order_by {
            check_column(if def.option("sink.order-by").is_some() { "sink.order-by" } else { "PRIMARY KEY" }, column)?;
        }
        let low_cardinality = def.option("sink.low-cardinality").map(column_list).unwrap_or_default();
        for column in &low_cardinality {
            check_column("sink.low-cardinality", column)?;
            let data_type = schema.field_with_name(column).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
            if !matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
                return Err(ConnectorError::invalid(
                    "sink.low-cardinality",
                    def.option("sink.low-cardinality").unwrap_or_default(),
                    format!("column '{column}' is {data_type}; only STRING columns can be LowCardinality(String)"),
                ));
            }
        }
        let epoch_column = match def.option("sink.delivery-guarantee").unwrap_or("at-least-once").trim() {
            "at-least-once" => None,
            "exactly-once" => {
                let column = non_empty("sink.epoch-column", def.option("sink.epoch-column").unwrap_or("_eddy_epoch"))?;
                if columns.contains(&column.as_str()) {
                    return Err(ConnectorError::invalid(
                        "sink.epoch-column",
                        &column,
                        "the epoch column is filled by the sink, so it cannot be one of the table's declared columns",
                    ));
                }
                Some(column)
            }
            other => return Err(ConnectorError::invalid("sink.delivery-guarantee", other, "expected exactly-once or at-least-once")),
        };
        let max_retries = opt(def, "sink.max-retries", parse_u64)?.map_or(Ok(DEFAULT_MAX_RETRIES), |n| {
            u32::try_from(n).map_err(|_| ConnectorError::invalid("sink.max-retries", &n.to_string(), "expected at most 4294967295"))
        })?;
        Ok(ClickHouseOptions {
            url,
            database,
            table,
            username: def.option("username").map(str::to_string),
            password: def.option("password").map(str::to_string),
            batch_rows: opt(def, "sink.batch-rows", parse_positive)?.unwrap_or(DEFAULT_BATCH_ROWS),
            flush_interval: opt(def, "sink.flush-interval", parse_duration)?.unwrap_or(DEFAULT_FLUSH_INTERVAL),
            max_retries,
            create_table: opt(def, "sink.create-table", parse_bool)?.unwrap_or(false),
            table_engine,
            order_by,
            low_cardinality,
            epoch_column,
        })
    }
}

/// An `http://` or `https://` URL with a host.
fn parse_url(value: &str) -> Result<Url, ConnectorError> {
    let url = Url::parse(value.trim()).map_err(|e| ConnectorError::invalid("url", value, format!("not a URL ({e}); expected e.g. 'http://127.0.0.1:8123'")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ConnectorError::invalid("url", value, "expected an http:// or https:// URL with a host, e.g. 'http://127.0.0.1:8123'"));
    }
    Ok(url)
}

/// A name that must not be empty.
fn non_empty(key: &str, value: &str) -> Result<String, ConnectorError> {
    let name = value.trim();
    if name.is_empty() {
        return Err(ConnectorError::invalid(key, value, "expected a name"));
    }
    Ok(name.to_string())
}

/// `a, b ,c` as `[a, b, c]`; `tuple()` as nothing.
fn column_list(value: &str) -> Vec<String> {
    if value.trim() == "tuple()" {
        return Vec::new();
    }
    value.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

/// Whether `engine` is of the MergeTree family, whose tables need a sorting key.
fn is_merge_tree(engine: &str) -> bool {
    engine_name(engine).ends_with("MergeTree")
}

/// Whether `engine` replicates (and so deduplicates inserts by itself).
fn is_replicated(engine: &str) -> bool {
    let name = engine_name(engine);
    name.starts_with("Replicated") || name.starts_with("Shared")
}

/// The engine's name without its arguments.
fn engine_name(engine: &str) -> &str {
    engine.split('(').next().unwrap_or_default().trim()
}

/// Checks the shape `Name` or `Name(arguments)` of `'sink.table-engine'` and
/// returns the arguments that are bare identifiers, which name columns (e.g. the
/// version of `ReplacingMergeTree(version)`, the sign of `CollapsingMergeTree(sign)`).
fn engine_columns(engine: &str) -> Result<Vec<String>, ConnectorError> {
    let bad = |reason: &str| ConnectorError::invalid("sink.table-engine", engine, reason.to_string());
    let name = engine_name(engine);
    let is_identifier =
        |s: &str| s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_identifier(name) {
        return Err(bad("expected an engine such as 'MergeTree' or 'ReplacingMergeTree(version)'"));
    }
    let rest = engine[engine.find(name).map_or(0, |i| i + name.len())..].trim();
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let Some(args) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) else {
        return Err(bad("expected the engine's arguments in one pair of parentheses, e.g. 'ReplacingMergeTree(version)'"));
    };
    // Split at top-level commas, outside quotes and nested parentheses.
    let mut arguments = Vec::new();
    let (mut depth, mut quote, mut escaped, mut start) = (0i32, None::<char>, false, 0);
    for (i, c) in args.char_indices() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                arguments.push(args[start..i].trim());
                start = i + 1;
            }
            (None, ';') => return Err(bad("expected one engine, without ';'")),
            _ => {}
        }
        if depth < 0 {
            return Err(bad("unbalanced parentheses"));
        }
    }
    if quote.is_some() || depth != 0 {
        return Err(bad("unbalanced quotes or parentheses"));
    }
    arguments.push(args[start..].trim());
    Ok(arguments.into_iter().filter(|a| is_identifier(a)).map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn parse(options: &[(&str, &str)]) -> Result<ClickHouseOptions, String> {
        let fields = [Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true), Field::new("version", DataType::Int64, true)];
        let mut all = vec![("connector", "clickhouse"), ("url", "http://127.0.0.1:8123"), ("table", "t")];
        all.extend_from_slice(options);
        let mut def = TableDef::from_fields("t", &fields, &all);
        def.primary_key = vec!["id".to_string()];
        let schema = Arc::new(Schema::new(fields.to_vec()));
        ClickHouseOptions::parse(&def, &schema).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.database, "default");
        assert_eq!(o.batch_rows, 100_000);
        assert_eq!(o.flush_interval, Duration::from_secs(1));
        assert_eq!(o.max_retries, 10);
        assert!(!o.create_table);
        assert_eq!(o.table_engine, "MergeTree");
        assert_eq!(o.order_by, vec!["id"]);
        let o = parse(&[("sink.order-by", "tuple()"), ("sink.flush-interval", "500ms"), ("sink.max-retries", "0")]).unwrap();
        assert!(o.order_by.is_empty());
        assert_eq!(o.flush_interval, Duration::from_millis(500));
        assert_eq!(o.max_retries, 0);
    }

    #[test]
    fn bad_values_are_explained() {
        let e = parse(&[("url", "127.0.0.1:8123")]).unwrap_err();
        assert!(e.starts_with("invalid value '127.0.0.1:8123' for option 'url'"), "{e}");
        assert!(parse(&[("url", "ftp://host/")]).unwrap_err().contains("expected an http:// or https:// URL"));
        assert!(parse(&[("sink.batch-rows", "0")]).unwrap_err().contains("expected a positive integer"));
        assert!(parse(&[("sink.create-table", "yes")]).unwrap_err().contains("expected 'true' or 'false'"));
        assert_eq!(parse(&[("sink.order-by", "id, nme")]).unwrap_err(), "unknown column 'nme' for 'sink.order-by'; valid columns: id, name, version");
        assert_eq!(
            parse(&[("sink.table-engine", "ReplacingMergeTree(ver)")]).unwrap_err(),
            "unknown column 'ver' for 'sink.table-engine'; valid columns: id, name, version"
        );
        assert!(parse(&[("sink.table-engine", "MergeTree; DROP TABLE x")]).is_err());
        assert!(parse(&[("sink.table-engine", "MergeTree(")]).is_err());
        assert!(parse(&[("sink.table-engine", "Memory"), ("sink.order-by", "id")]).unwrap_err().contains("only MergeTree-family"));
        assert!(parse(&[("sink.low-cardinality", "id")]).unwrap_err().contains("column 'id' is Int64; only STRING"));
        assert!(parse(&[("table", " ")]).unwrap_err().contains("expected a name"));
        assert!(parse(&[("sink.delivery-guarantee", "exactly")]).unwrap_err().contains("expected exactly-once or at-least-once"));
        assert!(parse(&[("sink.delivery-guarantee", "exactly-once"), ("sink.epoch-column", "name")]).unwrap_err().contains("filled by the sink"));
    }

    #[test]
    fn exactly_once_tags_rows_in_an_epoch_column() {
        assert_eq!(parse(&[]).unwrap().epoch_column, None);
        assert_eq!(parse(&[("sink.delivery-guarantee", "exactly-once")]).unwrap().epoch_column.as_deref(), Some("_eddy_epoch"));
        let o = parse(&[("sink.delivery-guarantee", "exactly-once"), ("sink.epoch-column", "checkpoint")]).unwrap();
        assert_eq!(o.epoch_column.as_deref(), Some("checkpoint"));
    }

    #[test]
    fn engine_arguments_that_are_identifiers_are_columns() {
        assert_eq!(engine_columns("ReplacingMergeTree(version)").unwrap(), vec!["version"]);
        assert_eq!(engine_columns("ReplicatedReplacingMergeTree('/clickhouse/{shard}/t', '{replica}', version)").unwrap(), vec!["version"]);
        assert!(engine_columns("MergeTree").unwrap().is_empty());
        assert!(engine_columns("MergeTree()").unwrap().is_empty());
        assert!(engine_columns("SummingMergeTree((a, b))").unwrap().is_empty());
        assert!(is_merge_tree("ReplacingMergeTree(v)") && !is_merge_tree("Memory"));
        assert!(is_replicated("ReplicatedMergeTree('/p', 'r')") && !is_replicated("MergeTree"));
    }
}
