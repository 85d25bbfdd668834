//! Materialized views: the current result of a continuous query, kept in memory
//! by the server, read with ad-hoc SQL and followed as a changelog.
//!
//! A view's pipeline writes into a [`ViewSink`]. Rows are staged and applied at
//! each checkpoint barrier, so every read sees the state as of one checkpoint
//! (a consistent snapshot), and the state is saved with that checkpoint (as the
//! sink's prepared bytes) so a restarted pipeline resumes with it. Windowed
//! queries append rows as windows close; a `GROUP BY` without a window is an
//! upsert stream keyed by its group columns, which the view turns into a
//! changelog with retractions (`-U` old row, `+U` new row) for subscribers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use eddy_engine::{BoxError, Sink};
use tokio::sync::broadcast;

use crate::ipc::{IpcCollector, IpcEncoder};

/// How many change batches a slow subscriber may fall behind before it is dropped.
const SUBSCRIBER_BUFFER: usize = 1024;

/// One materialized view's state, shared by its pipeline's sink and its readers.
pub struct MaterializedView {
    pub name: String,
    schema: SchemaRef,
    /// Columns that identify a row (an updating query's group columns); empty: rows are only appended.
    key: Vec<usize>,
    /// Row encoders of the key columns and of whole rows. Rows stored in the state
    /// can only be decoded by the converter that encoded them, so there is one each.
    keys: RowConverter,
    rows: RowConverter,
    state: RwLock<ViewState>,
    changes: broadcast::Sender<RecordBatch>,
}

#[derive(Default)]
struct ViewState {
    /// Append-only views: every row, as written.
    appended: Vec<RecordBatch>,
    /// Keyed views: the current row per key.
    rows: HashMap<OwnedRow, OwnedRow>,
    /// Keyed views: the rows as batches, rebuilt on the first read after a change.
    cached: Option<Vec<RecordBatch>>,
    row_count: u64,
    bytes: u64,
}

impl MaterializedView {
    /// An empty view of `schema`; `key` names the columns an update replaces by.
    pub fn new(name: &str, schema: SchemaRef, key: Vec<usize>) -> Result<Arc<Self>, ArrowError> {
        let (changes, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let converter = |columns: &[usize]| RowConverter::new(columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect());
        let keys = converter(&key)?;
        let rows = converter(&(0..schema.fields().len()).collect::<Vec<_>>())?;
        Ok(Arc::new(MaterializedView { name: name.to_string(), schema, key, keys, rows, state: RwLock::default(), changes }))
    }

    /// The view's columns.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The columns of its changelog: `op` (Flink's row kind) and then the view's.
    pub fn changelog_schema(&self) -> SchemaRef {
        let mut fields = vec![Field::new("op", DataType::Utf8, false)];
        fields.extend(self.schema.fields().iter().map(|f| f.as_ref().clone()));
        Arc::new(Schema::new(fields))
    }

    /// Rows and bytes the view holds, for `GetPipeline` and `EXPLAIN`.
    pub fn size(&self) -> (u64, u64) {
        self.state.read().map(|s| (s.row_count, s.bytes)).unwrap_or((0, 0))
    }

    /// The rows as of the last applied checkpoint: one consistent snapshot.
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>, ArrowError> {
        if self.key.is_empty() {
            return Ok(self.read_state()?.appended.clone());
        }
        if let Some(cached) = &self.read_state()?.cached {
            return Ok(cached.clone());
        }
        let mut state = self.write_state()?;
        if state.cached.is_none() {
            state.cached = Some(self.keyed_rows(&state)?);
        }
        Ok(state.cached.clone().unwrap_or_default())
    }

    /// A keyed view's current rows as batches (none when it is empty).
    fn keyed_rows(&self, state: &ViewState) -> Result<Vec<RecordBatch>, ArrowError> {
        let columns = self.rows.convert_rows(state.rows.values().map(|r| r.row()))?;
        let batch = RecordBatch::try_new(self.schema(), columns)?;
        Ok(if batch.num_rows() == 0 { vec![] } else { vec![batch] })
    }

    /// Follows the view: its current rows as inserts (when `with_snapshot`), then
    /// every change as it is applied, with no gap and no overlap between the two
    /// (changes are sent under the state lock this takes).
    pub fn subscribe(&self, with_snapshot: bool) -> Result<(Option<RecordBatch>, broadcast::Receiver<RecordBatch>), ArrowError> {
        let state = self.read_state()?;
        let receiver = self.changes.subscribe();
        if !with_snapshot {
            return Ok((None, receiver));
        }
        let batches = if self.key.is_empty() { state.appended.clone() } else { self.keyed_rows(&state)? };
        drop(state);
        let rows = batches.iter().map(|b| self.with_op(b, "+I")).collect::<Result<Vec<_>, _>>()?;
        let initial = datafusion::arrow::compute::concat_batches(&self.changelog_schema(), &rows)?;
        Ok((Some(initial), receiver))
    }

    /// Empties the view, as a pipeline starting over does.
    pub fn clear(&self) -> Result<(), ArrowError> {
        *self.write_state()? = ViewState::default();
        Ok(())
    }

    /// Applies rows written since the last checkpoint and, with `notify`, tells
    /// subscribers (not when a restart restores rows they have already seen).
    fn apply(&self, batches: Vec<RecordBatch>, notify: bool) -> Result<(), ArrowError> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        let mut state = self.write_state()?;
        let mut changes = Vec::new();
        if self.key.is_empty() {
            for batch in batches {
                state.row_count += batch.num_rows() as u64;
                state.bytes += batch.get_array_memory_size() as u64;
                changes.push(self.with_op(&batch, "+I")?);
                state.appended.push(batch);
            }
        } else {
            let (keys, all) = (&self.keys, &self.rows);
            for batch in batches {
                let key_columns: Vec<ArrayRef> = self.key.iter().map(|&i| Arc::clone(batch.column(i))).collect();
                let key_rows = keys.convert_columns(&key_columns)?;
                let full_rows = all.convert_columns(batch.columns())?;
                let (mut ops, mut changed) = (Vec::new(), Vec::new());
                for (key, row) in key_rows.iter().zip(full_rows.iter()) {
                    let row = row.owned();
                    state.bytes += row.as_ref().len() as u64;
                    match state.rows.insert(key.owned(), row.clone()) {
                        Some(old) => {
                            state.bytes = state.bytes.saturating_sub(old.as_ref().len() as u64);
                            if old == row {
                                continue;
                            }
                            ops.push("-U");
                            changed.push(old);
                            ops.push("+U");
                        }
                        None => {
                            state.row_count += 1;
                            ops.push("+I");
                        }
                    }
                    changed.push(row);
                }
                if !changed.is_empty() {
                    let columns = all.convert_rows(changed.iter().map(|r| r.row()))?;
                    let mut with_op = vec![Arc::new(StringArray::from(ops)) as ArrayRef];
                    with_op.extend(columns);
                    changes.push(RecordBatch::try_new(self.changelog_schema(), with_op)?);
                }
            }
            state.cached = None;
        }
        for change in changes.into_iter().filter(|_| notify) {
            // No subscriber is not an error.
            let _ = self.changes.send(change);
        }
        drop(state);
        Ok(())
    }

    /// Replaces the state with one saved by [`ViewSink::prepare`].
    fn restore(&self, bytes: &[u8]) -> Result<(), ArrowError> {
        self.clear()?;
        if bytes.is_empty() {
            return Ok(());
        }
        let mut collector = IpcCollector::default();
        collector.push(bytes);
        let (_, batches) = collector.take()?;
        self.apply(batches, false)
    }

    fn with_op(&self, batch: &RecordBatch, op: &str) -> Result<RecordBatch, ArrowError> {
        let mut columns = vec![Arc::new(StringArray::from(vec![op; batch.num_rows()])) as ArrayRef];
        columns.extend(batch.columns().iter().cloned());
        RecordBatch::try_new(self.changelog_schema(), columns)
    }

    fn read_state(&self) -> Result<std::sync::RwLockReadGuard<'_, ViewState>, ArrowError> {
        self.state.read().map_err(|_| ArrowError::ComputeError(format!("view `{}`: state lock poisoned", self.name)))
    }

    fn write_state(&self) -> Result<std::sync::RwLockWriteGuard<'_, ViewState>, ArrowError> {
        self.state.write().map_err(|_| ArrowError::ComputeError(format!("view `{}`: state lock poisoned", self.name)))
    }
}

/// The sink of a materialized view's pipeline. Rows become visible when the
/// checkpoint they belong to is saved, so a read never shows rows that a crash
/// could take back.
pub struct ViewSink {
    view: Arc<MaterializedView>,
    /// Rows since the last barrier.
    pending: Vec<RecordBatch>,
    /// Rows of barriers whose checkpoint is not saved yet, by checkpoint.
    prepared: Vec<(u64, Vec<RecordBatch>)>,
}

impl ViewSink {
    /// A sink that starts the view over (a restored checkpoint refills it).
    pub fn new(view: Arc<MaterializedView>) -> Result<Self, ArrowError> {
        view.clear()?;
        Ok(ViewSink { view, pending: Vec::new(), prepared: Vec::new() })
    }
}

#[async_trait]
impl Sink for ViewSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        self.pending.push(batch);
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        for (_, batches) in std::mem::take(&mut self.prepared) {
            self.view.apply(batches, true)?;
        }
        self.view.apply(std::mem::take(&mut self.pending), true)?;
        Ok(())
    }

    /// Saves the visible rows and every staged one (in order, so replaying them
    /// upserts the same way) with the checkpoint.
    async fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        let batches = std::mem::take(&mut self.pending);
        self.prepared.push((checkpoint, batches));
        let (mut encoder, mut bytes) = IpcEncoder::new(&self.view.schema)?;
        for batch in self.view.snapshot()?.iter().chain(self.prepared.iter().flat_map(|(_, b)| b.iter())) {
            bytes.extend(encoder.encode(batch)?);
        }
        Ok(bytes)
    }

    async fn commit_checkpoint(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        while self.prepared.first().is_some_and(|(id, _)| *id <= checkpoint) {
            let (_, batches) = self.prepared.remove(0);
            self.view.apply(batches, true)?;
        }
        Ok(())
    }

    async fn recover(&mut self, prepared: &[u8]) -> Result<(), BoxError> {
        self.view.restore(prepared)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false), Field::new("n", DataType::Int64, false)]))
    }

    fn batch(rows: &[(&str, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    fn sorted_rows(batches: &[RecordBatch]) -> Vec<(String, i64)> {
        let mut rows = Vec::new();
        for b in batches {
            let k = b.column(b.num_columns() - 2).as_any().downcast_ref::<StringArray>().unwrap();
            let n = b.column(b.num_columns() - 1).as_any().downcast_ref::<Int64Array>().unwrap();
            rows.extend((0..b.num_rows()).map(|i| (k.value(i).to_string(), n.value(i))));
        }
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn keyed_view_upserts_and_emits_retractions() {
        let view = MaterializedView::new("v", schema(), vec![0]).unwrap();
        let mut sink = ViewSink::new(Arc::clone(&view)).unwrap();
        let (_, mut changes) = view.subscribe(false).unwrap();
        sink.write(batch(&[("a", 1), ("b", 1)])).await.unwrap();
        assert!(view.snapshot().unwrap().is_empty(), "rows are visible only after the barrier");
        sink.commit().await.unwrap();
        sink.write(batch(&[("a", 2), ("b", 1)])).await.unwrap();
        sink.commit().await.unwrap();
        assert_eq!(sorted_rows(&view.snapshot().unwrap()), vec![("a".into(), 2), ("b".into(), 1)]);
        assert_eq!(view.size().0, 2);
        let first = changes.recv().await.unwrap();
        let second = changes.recv().await.unwrap();
        let ops = |b: &RecordBatch| b.column(0).as_any().downcast_ref::<StringArray>().unwrap().iter().map(|o| o.unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(ops(&first), vec!["+I", "+I"]);
        // b did not change, so only a's retraction and new row.
        assert_eq!(ops(&second), vec!["-U", "+U"]);
        assert_eq!(sorted_rows(&[second]), vec![("a".into(), 1), ("a".into(), 2)]);
    }

    #[tokio::test]
    async fn checkpointed_state_restores_into_a_fresh_sink() {
        let view = MaterializedView::new("v", schema(), vec![0]).unwrap();
        let mut sink = ViewSink::new(Arc::clone(&view)).unwrap();
        sink.write(batch(&[("a", 1), ("b", 5)])).await.unwrap();
        sink.prepare(1).await.unwrap();
        sink.commit_checkpoint(1).await.unwrap();
        sink.write(batch(&[("a", 3)])).await.unwrap();
        let saved = sink.prepare(2).await.unwrap();
        assert_eq!(sorted_rows(&view.snapshot().unwrap()), vec![("a".into(), 1), ("b".into(), 5)], "checkpoint 2 is not saved yet");
        sink.write(batch(&[("c", 9)])).await.unwrap();
        let mut restarted = ViewSink::new(Arc::clone(&view)).unwrap();
        assert!(view.snapshot().unwrap().is_empty());
        restarted.recover(&saved).await.unwrap();
        assert_eq!(sorted_rows(&view.snapshot().unwrap()), vec![("a".into(), 3), ("b".into(), 5)]);
    }

    #[tokio::test]
    async fn append_view_keeps_every_row_and_snapshot_subscribers_start_with_it() {
        let view = MaterializedView::new("v", schema(), vec![]).unwrap();
        let mut sink = ViewSink::new(Arc::clone(&view)).unwrap();
        sink.write(batch(&[("a", 1), ("a", 1)])).await.unwrap();
        sink.commit().await.unwrap();
        let (initial, mut changes) = view.subscribe(true).unwrap();
        assert_eq!(initial.unwrap().num_rows(), 2);
        sink.write(batch(&[("b", 2)])).await.unwrap();
        sink.commit().await.unwrap();
        assert_eq!(sorted_rows(&[changes.recv().await.unwrap()]), vec![("b".into(), 2)]);
        assert_eq!(view.size().0, 3);
    }
}
