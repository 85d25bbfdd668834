//! Looking up a filesystem table in a lookup join: the whole table (every file
//! under its path) is read at the first lookup and indexed by the key columns,
//! and then answers from memory (a dimension file is small next to the stream,
//! and does not change under a running query; Flink caches it whole too). With
//! `'lookup.cache' = 'FULL'` the files are read again at each reload.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use eddy_engine::lookup::{Lookup, LookupRows};
use eddy_engine::table::TableDef;
use eddy_engine::{BoxError, Source};
use tokio::sync::OnceCell;

use super::FileSource;
use crate::error::ConnectorError;
use crate::lookup::row_texts;

/// The table's rows, and each key's rows among them.
struct Loaded {
    rows: RecordBatch,
    by_key: HashMap<Vec<Option<String>>, Vec<u32>>,
}

/// A file table read by key; see the module docs.
pub struct FileLookup {
    source: FileSource,
    schema: SchemaRef,
    keys: Vec<usize>,
    loaded: OnceCell<Loaded>,
}

impl FileLookup {
    /// A lookup of `def` (physical columns `schema`) by the columns at `keys`; reads nothing yet.
    pub fn try_new(def: &TableDef, schema: SchemaRef, keys: &[usize]) -> Result<Self, ConnectorError> {
        Ok(FileLookup { source: FileSource::try_new(def, Arc::clone(&schema))?, schema, keys: keys.to_vec(), loaded: OnceCell::new() })
    }

    async fn load(&self) -> Result<Loaded, BoxError> {
        let mut batches = Vec::new();
        for mut reader in self.source.open(1)? {
            while let Some(batch) = reader.next_batch().await? {
                batches.push(batch.rows.into_rows());
            }
        }
        let rows = concat_batches(&self.schema, &batches)?;
        let mut by_key: HashMap<Vec<Option<String>>, Vec<u32>> = HashMap::new();
        for (row, key) in row_texts(&rows.project(&self.keys)?)?.into_iter().enumerate() {
            by_key.entry(key).or_default().push(row as u32);
        }
        Ok(Loaded { rows, by_key })
    }
}

#[async_trait]
impl Lookup for FileLookup {
    async fn lookup(&self, keys: RecordBatch) -> Result<LookupRows, BoxError> {
        let loaded = self.loaded.get_or_try_init(|| self.load()).await?;
        let (mut picked, mut key_of_row) = (Vec::new(), Vec::new());
        for (key, values) in row_texts(&keys)?.iter().enumerate() {
            // A NULL key equals nothing.
            if values.iter().any(Option::is_none) {
                continue;
            }
            for &row in loaded.by_key.get(values).map(Vec::as_slice).unwrap_or_default() {
                picked.push(row);
                key_of_row.push(key as u32);
            }
        }
        Ok(LookupRows { rows: take_record_batch(&loaded.rows, &UInt32Array::from(picked))?, key_of_row })
    }

    /// The files as they are now (read again: a full cache reloads them).
    async fn scan(&self) -> Result<RecordBatch, BoxError> {
        Ok(self.load().await?.rows)
    }
}
