//! An in-memory sink, for `SELECT` results and tests.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

use crate::changelog::ChangeBatch;
use crate::connector::{BoxError, Sink};

/// What a [`CollectSink`] takes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Accepts {
    /// New rows only: a result read as a list of rows.
    #[default]
    Inserts,
    /// Any change: a changelog, kept as written.
    Changes,
}

/// A sink that keeps every batch in memory: for `SELECT` results and tests.
#[derive(Clone, Default)]
pub struct CollectSink {
    accepts: Accepts,
    changes: Arc<std::sync::Mutex<Vec<ChangeBatch>>>,
}

impl CollectSink {
    /// A sink that keeps a changelog (row kinds and all), for tests of updating queries.
    pub fn changelog() -> Self {
        CollectSink { accepts: Accepts::Changes, changes: Arc::default() }
    }

    /// Everything written so far (new rows: see [`CollectSink::changes`] for a changelog).
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.changes().into_iter().map(ChangeBatch::into_rows).collect()
    }

    /// Every change written so far, in order.
    pub fn changes(&self) -> Vec<ChangeBatch> {
        self.changes.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Sink for CollectSink {
    /// Keeps the changes; unless made for a changelog, only new rows (an
    /// updating result cannot be collected as a list of rows).
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        let changes = match self.accepts {
            Accepts::Inserts => ChangeBatch::inserts(changes.into_inserts("an in-memory result")?),
            Accepts::Changes => changes,
        };
        self.changes.lock().map_err(|_| "collect sink lock poisoned")?.push(changes);
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
