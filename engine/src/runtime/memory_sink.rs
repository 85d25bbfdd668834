//! An in-memory sink, for `SELECT` results and tests.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

use crate::changelog::ChangeBatch;
use crate::connector::{BoxError, Sink};

/// A sink that keeps every batch in memory: for `SELECT` results and tests.
#[derive(Clone, Default)]
pub struct CollectSink {
    batches: Arc<std::sync::Mutex<Vec<RecordBatch>>>,
}

impl CollectSink {
    /// Everything written so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Sink for CollectSink {
    /// Keeps new rows; an updating result cannot be collected as a list of rows.
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        let batch = changes.into_inserts("an in-memory result")?;
        self.batches.lock().map_err(|_| "collect sink lock poisoned")?.push(batch);
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
