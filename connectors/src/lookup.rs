//! What every lookup table shares: the `WITH` options of a table a lookup join
//! reads (Flink's names), and opening one through the connector its table names.
//! The stores' own lookups are in their modules ([`crate::redis`]'s hash keys,
//! [`crate::clickhouse`]'s `WHERE key IN`).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use eddy_engine::lookup::{CacheMode, LookupOptions, LookupTable, Lookups, MissingKeys};
use eddy_engine::table::TableDef;
use eddy_engine::OptionSpec;

use crate::error::ConnectorError;
use crate::options::{opt, parse_duration, parse_positive, parse_u64};

/// The options of a table a lookup join reads, accepted by every connector that can be looked up.
pub const LOOKUP_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "lookup.cache",
        "NONE (default: every row asks the store) | PARTIAL: keep answers per key in each task, as the next options say | FULL: read the whole table at the start and again every reload interval",
    ),
    OptionSpec::optional("lookup.partial-cache.max-rows", "with PARTIAL: keys kept at most per task; the oldest written leaves first (default 10000)"),
    OptionSpec::optional("lookup.partial-cache.expire-after-write", "with PARTIAL: how long an answer is kept, e.g. '10 min' (default: until evicted)"),
    OptionSpec::optional("lookup.partial-cache.cache-missing-key", "with PARTIAL: whether a key the store lacks is kept as absent (default true)"),
    OptionSpec::optional(
        "lookup.max-retries",
        "retries of a failed lookup, with exponential backoff up to 5 s, before the pipeline fails with the store's error (default 3)",
    ),
    OptionSpec::optional("lookup.batch-keys", "keys per request to the store (default 1000)"),
    OptionSpec::optional("lookup.async.capacity", "requests in flight at once per task (default 16)"),
    OptionSpec::optional("lookup.full-cache.reload-strategy", "with FULL: PERIODIC (the default and the only one; Flink's TIMED is not supported)"),
    OptionSpec::optional("lookup.full-cache.periodic-reload.interval", "with FULL: how long after a load the table is read again, e.g. '10 min' (default 1 h)"),
];

/// Whether `key` is one of [`LOOKUP_OPTIONS`].
pub fn is_lookup_option(key: &str) -> bool {
    LOOKUP_OPTIONS.iter().any(|o| o.matches(key))
}

/// The lookup options of `def`, checked.
pub fn lookup_options(def: &TableDef) -> Result<LookupOptions, ConnectorError> {
    let cache = match def.option("lookup.cache").map(|c| c.trim().to_ascii_uppercase()) {
        None => CacheMode::None,
        Some(c) if c == "NONE" => CacheMode::None,
        Some(c) if c == "PARTIAL" => CacheMode::Partial,
        Some(c) if c == "FULL" => CacheMode::Full,
        Some(other) => return Err(ConnectorError::invalid("lookup.cache", &other, "expected NONE, PARTIAL or FULL")),
    };
    if let Some(strategy) = def.option("lookup.full-cache.reload-strategy").map(|s| s.trim().to_ascii_uppercase()) {
        if strategy != "PERIODIC" {
            return Err(ConnectorError::invalid(
                "lookup.full-cache.reload-strategy",
                &strategy,
                "only PERIODIC is supported: set 'lookup.full-cache.periodic-reload.interval' (TIMED reloads at a time of day are not)",
            ));
        }
    }
    let missing_keys = match def.option("lookup.partial-cache.cache-missing-key").map(|v| v.trim().to_ascii_lowercase()) {
        None => MissingKeys::Cached,
        Some(v) if v == "true" => MissingKeys::Cached,
        Some(v) if v == "false" => MissingKeys::AskedAgain,
        Some(other) => return Err(ConnectorError::invalid("lookup.partial-cache.cache-missing-key", &other, "expected true or false")),
    };
    Ok(LookupOptions {
        cache,
        max_rows: opt(def, "lookup.partial-cache.max-rows", parse_positive)?.unwrap_or(10_000),
        expire_after_write: opt(def, "lookup.partial-cache.expire-after-write", parse_duration)?,
        missing_keys,
        max_retries: opt(def, "lookup.max-retries", parse_u64)?.map_or(3, |n| n.min(u32::MAX as u64) as u32),
        batch_keys: opt(def, "lookup.batch-keys", parse_positive)?.unwrap_or(1000),
        in_flight: opt(def, "lookup.async.capacity", parse_positive)?.unwrap_or(16),
        reload_interval: opt(def, "lookup.full-cache.periodic-reload.interval", parse_duration)?.unwrap_or(Duration::from_secs(3600)),
    })
}

/// Each row's values as text (NULL as `None`): how a lookup matches the rows a
/// store returns to the keys it was asked, compared as the same types' text.
pub(crate) fn row_texts(batch: &datafusion::arrow::record_batch::RecordBatch) -> Result<Vec<Vec<Option<String>>>, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::array::Array;
    let values = crate::format::formatters(batch)?;
    Ok((0..batch.num_rows()).map(|row| batch.columns().iter().zip(&values).map(|(c, f)| c.is_valid(row).then(|| f.value(row).to_string())).collect()).collect())
}

/// Opens `def` (physical columns `schema`) for a lookup join by the columns at `keys`.
pub fn open_lookup(def: &TableDef, schema: SchemaRef, keys: &[usize]) -> Result<LookupTable, ConnectorError> {
    let connector = crate::registry::connector_of(def)?;
    if connector.lookups() == Lookups::Unsupported {
        return Err(ConnectorError::invalid(
            "connector",
            connector.name(),
            format!("table `{}` cannot be looked up: a lookup join reads redis, clickhouse and filesystem tables", def.name),
        ));
    }
    let options = lookup_options(def)?;
    // Fail now on what the connector can check without connecting.
    drop(connector.create_lookup(def, Arc::clone(&schema), keys).map_err(|e| ConnectorError::invalid("connector", connector.name(), e.to_string()))?);
    let (def, keys) = (def.clone(), keys.to_vec());
    Ok(LookupTable { options, open: Arc::new(move || connector.create_lookup(&def, Arc::clone(&schema), &keys)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(options: &[(&str, &str)]) -> TableDef {
        TableDef::from_fields("dim", &[], options)
    }

    #[test]
    fn options_have_flinks_names_and_defaults() {
        let defaults = lookup_options(&def(&[])).unwrap();
        assert_eq!((defaults.cache, defaults.max_rows, defaults.expire_after_write, defaults.max_retries), (CacheMode::None, 10_000, None, 3));
        let set = lookup_options(&def(&[
            ("lookup.cache", "partial"),
            ("lookup.partial-cache.max-rows", "5"),
            ("lookup.partial-cache.expire-after-write", "10 s"),
            ("lookup.partial-cache.cache-missing-key", "false"),
        ]))
        .unwrap();
        assert_eq!(
            (set.cache, set.max_rows, set.expire_after_write, set.missing_keys),
            (CacheMode::Partial, 5, Some(Duration::from_secs(10)), MissingKeys::AskedAgain)
        );
        let full = lookup_options(&def(&[("lookup.cache", "FULL"), ("lookup.full-cache.periodic-reload.interval", "5 min")])).unwrap();
        assert_eq!((full.cache, full.reload_interval), (CacheMode::Full, Duration::from_secs(300)));
        assert_eq!(lookup_options(&def(&[("lookup.cache", "full")])).unwrap().reload_interval, Duration::from_secs(3600), "Flink's default");
        let e = lookup_options(&def(&[("lookup.cache", "FULL"), ("lookup.full-cache.reload-strategy", "TIMED")])).unwrap_err().to_string();
        assert!(e.contains("only PERIODIC is supported"), "{e}");
        let e = lookup_options(&def(&[("lookup.cache", "ALL")])).unwrap_err().to_string();
        assert!(e.contains("expected NONE, PARTIAL or FULL"), "{e}");
    }
}
