//! Looking up a Redis table (`'mode' = 'hash'`) in a lookup join: each key is
//! rendered through the table's `'key'` template, as the sink writes it, and read
//! with `HGETALL`, a pipeline of them per request. A hash's fields are the
//! table's columns by name, their text read as the columns' types; an empty
//! hash (no key) is no row. A full cache (`'lookup.cache' = 'FULL'`) reads every
//! key the template matches with `SCAN`, and a key column the hash lacks from its key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use eddy_engine::lookup::{Lookup, LookupRows};
use eddy_engine::table::TableDef;
use eddy_engine::BoxError;
use tokio::sync::OnceCell;

use super::{column_names, Piece, RedisMode, RedisOptions, Template};
use crate::error::ConnectorError;
use crate::format::formatters;

/// A Redis hash table read by key; see the module docs.
pub struct RedisLookup {
    client: ::redis::Client,
    connection: OnceCell<ConnectionManager>,
    /// The key template over the key columns' positions among the keys asked.
    key: Template,
    /// The key template over the table's columns, to read keys back in a full scan.
    table_key: Template,
    schema: SchemaRef,
    display_url: String,
}

impl RedisLookup {
    /// Checks that `def` is a hash table whose key template is made of the
    /// columns at `keys` (no connection is made yet).
    pub fn try_new(def: &TableDef, schema: SchemaRef, keys: &[usize]) -> Result<Self, ConnectorError> {
        let options = RedisOptions::parse(def, &schema)?;
        if options.mode != RedisMode::Hash {
            return Err(ConnectorError::invalid(
                "mode",
                &format!("{:?}", options.mode).to_ascii_lowercase(),
                "a lookup join reads Redis hashes: 'mode' = 'hash'",
            ));
        }
        let mut in_template: Vec<usize> = options.key.columns().collect();
        in_template.sort_unstable();
        in_template.dedup();
        let mut asked = keys.to_vec();
        asked.sort_unstable();
        if in_template != asked {
            let names = |columns: &[usize]| columns.iter().map(|&c| schema.field(c).name().as_str()).collect::<Vec<_>>().join(", ");
            return Err(ConnectorError::invalid(
                "key",
                def.option("key").unwrap_or(&def.name),
                format!(
                    "a lookup join finds a Redis hash by its key, so its ON condition must equal exactly the key template's columns ({}), not {} (columns: {})",
                    names(&in_template),
                    names(&asked),
                    column_names(&schema)
                ),
            ));
        }
        let table_key = options.key.clone();
        let position = |column: usize| keys.iter().position(|&k| k == column).unwrap_or(0);
        let key = Template(
            options
                .key
                .0
                .iter()
                .map(|piece| match piece {
                    Piece::Text(text) => Piece::Text(text.clone()),
                    Piece::Column(column) => Piece::Column(position(*column)),
                })
                .collect(),
        );
        let client = ::redis::Client::open(options.url.as_str()).map_err(|e| ConnectorError::redis(format!("Redis URL for table '{}'", def.name), e))?;
        Ok(RedisLookup { client, connection: OnceCell::new(), key, table_key, schema, display_url: options.display_url })
    }

    async fn connection(&self) -> Result<ConnectionManager, ::redis::RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        self.connection.get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config)).await.cloned()
    }
}

#[async_trait]
impl Lookup for RedisLookup {
    async fn lookup(&self, keys: RecordBatch) -> Result<LookupRows, BoxError> {
        // The formatters are not `Send`: done with before the first await.
        let pipe = {
            let values = formatters(&keys)?;
            let mut pipe = ::redis::pipe();
            let mut key = String::new();
            for row in 0..keys.num_rows() {
                self.key.render(&values, row, &mut key);
                pipe.cmd("HGETALL").arg(&key);
            }
            pipe
        };
        let reading = |e: ::redis::RedisError| format!("reading {} keys from Redis at {}: {e}", keys.num_rows(), self.display_url);
        let mut connection = self.connection().await.map_err(reading)?;
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut connection).await.map_err(reading)?;
        let found: Vec<(u32, HashMap<String, String>)> = hashes.into_iter().enumerate().filter(|(_, h)| !h.is_empty()).map(|(i, h)| (i as u32, h)).collect();
        let rows = self.rows(found.iter().map(|(_, h)| h))?;
        Ok(LookupRows { rows, key_of_row: found.into_iter().map(|(i, _)| i).collect() })
    }

    /// Every hash whose key the table's template renders (`SCAN ... MATCH`, then
    /// `HGETALL`s); a key column missing from a hash is read from its key.
    async fn scan(&self) -> Result<RecordBatch, BoxError> {
        let pattern = self.table_key.pattern();
        let reading = |e: ::redis::RedisError| format!("reading the keys matching '{pattern}' from Redis at {}: {e}", self.display_url);
        let mut connection = self.connection().await.map_err(reading)?;
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) =
                ::redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(&mut connection).await.map_err(reading)?;
            keys.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key twice.
        keys.sort_unstable();
        keys.dedup();
        let mut hashes: Vec<HashMap<String, String>> = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let mut pipe = ::redis::pipe();
            for key in chunk {
                pipe.cmd("HGETALL").arg(key);
            }
            let page: Vec<HashMap<String, String>> = pipe.query_async(&mut connection).await.map_err(reading)?;
            hashes.extend(page);
        }
        for (key, hash) in keys.iter().zip(hashes.iter_mut()) {
            for (column, value) in self.table_key.values_in(key).unwrap_or_default() {
                hash.entry(self.schema.field(column).name().clone()).or_insert(value);
            }
        }
        self.rows(hashes.iter().filter(|h| !h.is_empty()))
    }
}

impl RedisLookup {
    /// The rows of `hashes`: fields as columns by name, their text read as the columns' types.
    fn rows<'a>(&self, hashes: impl Iterator<Item = &'a HashMap<String, String>> + Clone) -> Result<RecordBatch, BoxError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let text = StringArray::from(hashes.clone().map(|h| h.get(field.name()).map(String::as_str)).collect::<Vec<_>>());
            let column = cast(&text, field.data_type()).map_err(|e| format!("Redis field `{}` is not a {}: {e}", field.name(), field.data_type()))?;
            columns.push(column);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(hashes.count()));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?)
    }
}
