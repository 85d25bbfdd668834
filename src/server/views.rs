//! Materialized views: the current result of a continuous query, kept in memory
//! by the server, read with ad-hoc SQL and followed as a changelog.
//!
//! A view's pipeline writes into a [`ViewSink`]. Rows are staged and applied
//! together, so a read sees the view as of one moment, never half of a change: at
//! each refresh ([`VIEW_REFRESH_INTERVAL`], where updating aggregates emit what
//! changed) and at each checkpoint. The state is saved with each checkpoint (as
//! the sink's prepared bytes), so a restarted pipeline resumes with it. Windowed
//! queries append rows as windows close; a `GROUP BY` without a window is an
//! upsert stream keyed by its group columns, which the view turns into a
//! changelog with retractions (`-U` old row, `+U` new row, `-D` deleted row)
//! for subscribers. Another pipeline can read a view as a stream
//! ([`ViewSource`]): its rows, then its changes, with each update a retraction
//! of the old row followed by the new one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use eddy_engine::changelog::changelog_schema;
use eddy_engine::{BoxError, ChangeBatch, EngineError, RowKind, Sink, Source, SourceBatch, SourceReader};
use tokio::sync::broadcast;

use super::view_index::ColumnIndex;
use crate::ipc::{IpcCollector, IpcEncoder};

/// How many change batches a slow subscriber may fall behind before it is dropped.
const SUBSCRIBER_BUFFER: usize = 1024;

/// How often a view's pipeline publishes (see [`eddy_engine::Message::Refresh`]),
/// independently of checkpoints (10 s by default): reads lag the input by about
/// this much. A refresh saves nothing, so it costs little; exactly-once stays
/// with the checkpoints, whose saved state is the view's rows at their barrier.
/// The price: after a crash the view goes back to its last checkpoint until the
/// replay of what came after (at most one checkpoint interval) brings the rows back.
pub const VIEW_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// An engine error (a malformed changelog) where the view speaks Arrow's.
fn engine(e: EngineError) -> ArrowError {
    ArrowError::ExternalError(Box::new(e))
}

/// One materialized view's state, shared by its pipeline's sink and its readers.
pub struct MaterializedView {
    pub name: String,
    schema: SchemaRef,
    /// Columns that identify a row (an updating query's group columns, none for
    /// its single row without GROUP BY); `None`: rows are only appended.
    key: Option<Vec<usize>>,
    /// Row encoders of the key columns and of whole rows. Rows stored in the state
    /// can only be decoded by the converter that encoded them, so there is one each.
    keys: RowConverter,
    rows: RowConverter,
    state: RwLock<ViewState>,
    changes: broadcast::Sender<RecordBatch>,
    /// False from the moment its pipeline (re)starts until the pipeline's sink has
    /// restored it or written to it: readers wait, so they never start from a view
    /// emptied for a restart.
    ready: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct ViewState {
    /// Append-only views: every row, as written.
    appended: Vec<RecordBatch>,
    /// Keyed views: the current row per key.
    rows: HashMap<OwnedRow, OwnedRow>,
    /// Keyed views: the rows as batches, rebuilt on the first read after a change.
    cached: Option<Vec<RecordBatch>>,
    /// Append-only views: indexes of the columns point lookups have asked for.
    indexes: HashMap<usize, ColumnIndex>,
    row_count: u64,
    bytes: u64,
}

impl MaterializedView {
    /// An empty view of `schema`; `key` names the columns an update replaces by
    /// (`None` for a view that only appends).
    pub fn new(name: &str, schema: SchemaRef, key: Option<Vec<usize>>) -> Result<Arc<Self>, ArrowError> {
        let (changes, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let converter = |columns: &[usize]| RowConverter::new(columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect());
        // A view keyed by no column (one row) encodes a constant as its key.
        let keys = match key.as_deref() {
            Some([]) => RowConverter::new(vec![SortField::new(DataType::Boolean)])?,
            columns => converter(columns.unwrap_or_default())?,
        };
        let rows = converter(&(0..schema.fields().len()).collect::<Vec<_>>())?;
        let ready = tokio::sync::watch::Sender::new(true);
        Ok(Arc::new(MaterializedView { name: name.to_string(), schema, key, keys, rows, state: RwLock::default(), changes, ready }))
    }

    /// True when rows are replaced by key (so readers get a changelog), false when only appended.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// The view's columns.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The columns of its changelog: `op` (Flink's row kind) and then the view's.
    pub fn changelog_schema(&self) -> SchemaRef {
        changelog_schema(&self.schema)
    }

    /// Rows and bytes the view holds (its point-lookup indexes included), for
    /// `GetPipeline` and `EXPLAIN`.
    pub fn size(&self) -> (u64, u64) {
        self.state.read().map(|s| (s.row_count, s.bytes + s.indexes.values().map(ColumnIndex::bytes).sum::<u64>())).unwrap_or((0, 0))
    }

    /// The rows as of the last applied checkpoint: one consistent snapshot.
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>, ArrowError> {
        if self.key.is_none() {
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

    /// The rows whose columns equal the given values (each of its column's type),
    /// found without a scan: by the key in a keyed view whose key columns are
    /// exactly those given, by an index of the first given column in an
    /// append-only view. `None` when neither applies (the caller scans).
    pub fn lookup(&self, equal: &[(usize, ScalarValue)]) -> Result<Option<RecordBatch>, ArrowError> {
        let Some(((first, first_value), rest)) = equal.split_first() else { return Ok(None) };
        let Some(key) = self.key.as_deref() else {
            let stale = {
                let state = self.read_state()?;
                state.indexes.get(first).is_none_or(|index| index.is_behind(&state.appended))
            };
            if stale {
                let mut state = self.write_state()?;
                let ViewState { appended, indexes, .. } = &mut *state;
                indexes.entry(*first).or_default().catch_up(appended, *first)?;
            }
            let state = self.read_state()?;
            let Some(index) = state.indexes.get(first) else { return Ok(None) };
            // Only the batches that hold a match are gathered from (positions come
            // in append order), not all of the view's, which grow with every refresh.
            let (mut batches, mut positions): (Vec<&RecordBatch>, Vec<(usize, usize)>) = (Vec::new(), Vec::new());
            let mut last_batch = None;
            for position in index.find(&state.appended, *first, first_value)? {
                let batch = &state.appended[position.batch as usize];
                if !all_equal(batch, position.row as usize, rest)? {
                    continue;
                }
                if last_batch != Some(position.batch) {
                    batches.push(batch);
                    last_batch = Some(position.batch);
                }
                positions.push((batches.len() - 1, position.row as usize));
            }
            return Ok(Some(if batches.is_empty() { RecordBatch::new_empty(self.schema()) } else { interleave_record_batch(&batches, &positions)? }));
        };
        let mut given: Vec<usize> = equal.iter().map(|(column, _)| *column).collect();
        given.sort_unstable();
        let mut key_sorted = key.to_vec();
        key_sorted.sort_unstable();
        if key.is_empty() || given != key_sorted {
            return Ok(None);
        }
        let mut key_values = Vec::with_capacity(key.len());
        for column in key {
            if let Some((_, value)) = equal.iter().find(|(c, _)| c == column) {
                key_values.push(value.to_array_of_size(1).map_err(|e| ArrowError::ComputeError(e.to_string()))?);
            }
        }
        let wanted = self.keys.convert_columns(&key_values)?;
        let state = self.read_state()?;
        let found = state.rows.get(&wanted.row(0).owned());
        let columns = self.rows.convert_rows(found.iter().map(|row| row.row()))?;
        Ok(Some(RecordBatch::try_new(self.schema(), columns)?))
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
        let batches = if self.key.is_none() { state.appended.clone() } else { self.keyed_rows(&state)? };
        drop(state);
        let rows = batches.into_iter().map(|b| self.changelog(&ChangeBatch::inserts(b))).collect::<Result<Vec<_>, _>>()?;
        let initial = datafusion::arrow::compute::concat_batches(&self.changelog_schema(), &rows)?;
        Ok((Some(initial), receiver))
    }

    /// Empties the view, as a pipeline starting over does. Subscribers of a keyed
    /// view see every row deleted (and, from a restored checkpoint, inserted
    /// again), so what they hold stays equal to the view; an append-only view's
    /// subscribers keep the rows they have, which a restore brings back unannounced.
    pub fn clear(&self) -> Result<(), ArrowError> {
        let mut state = self.write_state()?;
        let rows = if self.key.is_none() { Vec::new() } else { self.keyed_rows(&state)? };
        *state = ViewState::default();
        for batch in rows {
            let _ = self.changes.send(self.changelog(&ChangeBatch::all(RowKind::Delete, batch))?);
        }
        Ok(())
    }

    fn set_ready(&self, ready: bool) {
        self.ready.send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }

    /// Applies changes written since the last checkpoint and, with `notify`, tells subscribers.
    fn apply(&self, changes: Vec<ChangeBatch>, notify: bool) -> Result<(), ArrowError> {
        if changes.iter().all(|c| c.num_rows() == 0) {
            return Ok(());
        }
        let mut state = self.write_state()?;
        let mut notices = Vec::new();
        if self.key.is_none() {
            for change in changes {
                if !change.is_inserts_only() {
                    return Err(ArrowError::InvalidArgumentError(format!("view `{}` only appends rows; it cannot retract them", self.name)));
                }
                notices.push(self.changelog(&change)?);
                let batch = change.into_rows();
                state.row_count += batch.num_rows() as u64;
                state.bytes += batch.get_array_memory_size() as u64;
                state.appended.push(batch);
            }
        } else {
            let (keys, all) = (&self.keys, &self.rows);
            let (mut ops, mut changed) = (Vec::new(), Vec::new());
            // Rows retracted in this step, by key: an update if a row with the key follows, else a delete.
            let mut retracted: HashMap<OwnedRow, OwnedRow> = HashMap::new();
            for (kind, batch) in changes.iter().flat_map(ChangeBatch::runs) {
                let key_rows = keys.convert_columns(&self.key_columns(&batch))?;
                if kind.is_retraction() {
                    for key in key_rows.iter() {
                        let key = key.owned();
                        if let Some(old) = state.rows.remove(&key) {
                            state.row_count = state.row_count.saturating_sub(1);
                            state.bytes = state.bytes.saturating_sub(old.as_ref().len() as u64);
                            retracted.entry(key).or_insert(old);
                        }
                    }
                    continue;
                }
                let full_rows = all.convert_columns(batch.columns())?;
                for (key, row) in key_rows.iter().zip(full_rows.iter()) {
                    let (key, row) = (key.owned(), row.owned());
                    state.bytes += row.as_ref().len() as u64;
                    let old = match state.rows.insert(key.clone(), row.clone()) {
                        Some(old) => {
                            state.bytes = state.bytes.saturating_sub(old.as_ref().len() as u64);
                            Some(old)
                        }
                        None => {
                            state.row_count += 1;
                            retracted.remove(&key)
                        }
                    };
                    match old {
                        Some(old) if old == row => continue,
                        Some(old) => {
                            ops.push(RowKind::UpdateBefore);
                            changed.push(old);
                            ops.push(RowKind::UpdateAfter);
                        }
                        None => ops.push(RowKind::Insert),
                    }
                    changed.push(row);
                }
            }
            for (_, old) in retracted {
                ops.push(RowKind::Delete);
                changed.push(old);
            }
            if !changed.is_empty() {
                let rows = RecordBatch::try_new(self.schema(), all.convert_rows(changed.iter().map(|r| r.row()))?)?;
                notices.push(self.changelog(&ChangeBatch::new(rows, ops).map_err(engine)?)?);
            }
            state.cached = None;
        }
        for notice in notices.into_iter().filter(|_| notify) {
            // No subscriber is not an error.
            let _ = self.changes.send(notice);
        }
        drop(state);
        Ok(())
    }

    /// Replaces the state with one saved by [`ViewSink::prepare`]: changelog
    /// batches (the rows as `+I`, then the staged changes). Also how a restarted
    /// server shows a stopped view's rows without running its pipeline.
    pub fn restore(&self, bytes: &[u8]) -> Result<(), ArrowError> {
        self.clear()?;
        if bytes.is_empty() {
            return Ok(());
        }
        let mut collector = IpcCollector::default();
        collector.push(bytes);
        let (_, batches) = collector.take()?;
        let changes = batches.iter().map(ChangeBatch::from_changelog).collect::<Result<Vec<_>, _>>().map_err(engine)?;
        // Keyed subscribers saw the rows deleted by `clear`; append-only ones kept them.
        self.apply(changes, self.key.is_some())
    }

    /// The columns of `batch` that make its rows' keys.
    fn key_columns(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        match self.key.as_deref() {
            Some([]) | None => vec![Arc::new(datafusion::arrow::array::BooleanArray::from(vec![true; batch.num_rows()]))],
            Some(key) => key.iter().map(|&i| Arc::clone(batch.column(i))).collect(),
        }
    }

    /// Changes as its changelog shows them.
    fn changelog(&self, changes: &ChangeBatch) -> Result<RecordBatch, ArrowError> {
        changes.to_changelog(&self.changelog_schema()).map_err(engine)
    }

    fn read_state(&self) -> Result<std::sync::RwLockReadGuard<'_, ViewState>, ArrowError> {
        self.state.read().map_err(|_| ArrowError::ComputeError(format!("view `{}`: state lock poisoned", self.name)))
    }

    fn write_state(&self) -> Result<std::sync::RwLockWriteGuard<'_, ViewState>, ArrowError> {
        self.state.write().map_err(|_| ArrowError::ComputeError(format!("view `{}`: state lock poisoned", self.name)))
    }
}

/// True when row `row` of `batch` holds each of the values in its column.
fn all_equal(batch: &RecordBatch, row: usize, equal: &[(usize, ScalarValue)]) -> Result<bool, ArrowError> {
    for (column, value) in equal {
        let column = batch.column(*column);
        if column.is_null(row) || &ScalarValue::try_from_array(column, row).map_err(|e| ArrowError::ComputeError(e.to_string()))? != value {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The sink of a materialized view's pipeline. Rows become visible when the
/// checkpoint they belong to is saved, so a read never shows rows that a crash
/// could take back.
pub struct ViewSink {
    view: Arc<MaterializedView>,
    /// Changes since the last barrier.
    pending: Vec<ChangeBatch>,
    /// Changes of barriers whose checkpoint is not saved yet, by checkpoint.
    prepared: Vec<(u64, Vec<ChangeBatch>)>,
}

impl ViewSink {
    /// A sink that starts the view over (a restored checkpoint refills it).
    pub fn new(view: Arc<MaterializedView>) -> Result<Self, ArrowError> {
        view.clear()?;
        view.set_ready(false);
        Ok(ViewSink { view, pending: Vec::new(), prepared: Vec::new() })
    }

    /// The pipeline got past restoring: the view is what readers may start from.
    fn started(&self) {
        self.view.set_ready(true);
    }
}

#[async_trait]
impl Sink for ViewSink {
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        self.started();
        self.pending.push(changes);
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        self.started();
        for (_, changes) in std::mem::take(&mut self.prepared) {
            self.view.apply(changes, true)?;
        }
        self.view.apply(std::mem::take(&mut self.pending), true)?;
        Ok(())
    }

    /// Saves the visible rows and every staged change (in order, so replaying
    /// them upserts and deletes the same way) with the checkpoint.
    async fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        self.started();
        let changes = std::mem::take(&mut self.pending);
        self.prepared.push((checkpoint, changes));
        let (mut encoder, mut bytes) = IpcEncoder::new(&self.view.changelog_schema())?;
        for batch in self.view.snapshot()? {
            bytes.extend(encoder.encode(&self.view.changelog(&ChangeBatch::inserts(batch))?)?);
        }
        for change in self.prepared.iter().flat_map(|(_, c)| c.iter()) {
            bytes.extend(encoder.encode(&self.view.changelog(change)?)?);
        }
        Ok(bytes)
    }

    /// Shows every staged change now, prepared ones first: a read sees what the
    /// pipeline emitted up to the refresh. The next prepare saves the shown rows
    /// with the rest, so the checkpoint still holds exactly the view at its barrier.
    async fn refresh(&mut self) -> Result<(), BoxError> {
        self.commit().await
    }

    async fn commit_checkpoint(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        while self.prepared.first().is_some_and(|(id, _)| *id <= checkpoint) {
            let (_, changes) = self.prepared.remove(0);
            self.view.apply(changes, true)?;
        }
        Ok(())
    }

    async fn recover(&mut self, prepared: &[u8]) -> Result<(), BoxError> {
        self.view.restore(prepared)?;
        self.started();
        Ok(())
    }
}

/// A materialized view read as a stream by another pipeline (`INSERT INTO t
/// SELECT ... FROM v`, or a view over a view): its current rows, then every
/// change as it is applied, updates as retractions of the old rows followed by
/// the new ones. It cannot resume from a position: a pipeline reading it starts
/// over from the view's current rows, which a keyed sink absorbs.
pub struct ViewSource {
    view: Arc<MaterializedView>,
}

impl ViewSource {
    /// A source over `view`, and the table other statements see it as: the view's
    /// columns, with its key as PRIMARY KEY.
    pub fn new(view: Arc<MaterializedView>) -> (Self, eddy_engine::TableDef) {
        let mut def = eddy_engine::TableDef::from_fields(
            &view.name,
            &view.schema.fields().iter().map(|f| f.as_ref().clone()).collect::<Vec<_>>(),
            &[("connector", "materialized-view")],
        );
        def.primary_key = view.key.iter().flatten().map(|&i| view.schema.field(i).name().clone()).collect();
        (ViewSource { view }, def)
    }
}

impl Source for ViewSource {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn open(&self, _parallelism: usize) -> Result<Vec<Box<dyn SourceReader>>, BoxError> {
        Ok(vec![Box::new(ViewReader { view: Arc::clone(&self.view), ready: self.view.ready.subscribe(), queue: VecDeque::new(), changes: None })])
    }
}

struct ViewReader {
    view: Arc<MaterializedView>,
    ready: tokio::sync::watch::Receiver<bool>,
    queue: VecDeque<ChangeBatch>,
    /// Set once the view is ready: its rows were queued and its changes follow here.
    changes: Option<broadcast::Receiver<RecordBatch>>,
}

/// How long a read waits for a change before returning nothing, so the engine can stop it.
const VIEW_POLL: std::time::Duration = std::time::Duration::from_millis(200);

#[async_trait]
impl SourceReader for ViewReader {
    fn describe(&self) -> String {
        format!("materialized view {}", self.view.name)
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, BoxError> {
        if self.changes.is_none() {
            if tokio::time::timeout(VIEW_POLL, self.ready.wait_for(|ready| *ready)).await.is_err() {
                return Ok(Some(self.nothing()));
            }
            let (initial, changes) = self.view.subscribe(true)?;
            if let Some(initial) = initial {
                self.queue.push_back(ChangeBatch::from_changelog(&initial)?);
            }
            self.changes = Some(changes);
        }
        let Some(changes) = self.changes.as_mut() else { return Ok(Some(self.nothing())) };
        if self.queue.is_empty() {
            match tokio::time::timeout(VIEW_POLL, changes.recv()).await {
                Err(_) => {}
                Ok(Ok(batch)) => self.queue.push_back(ChangeBatch::from_changelog(&batch)?),
                Ok(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    return Err(format!(
                        "this pipeline fell {missed} change batches behind materialized view `{}` and lost them; restart it (it starts again from the view's current rows)",
                        self.view.name
                    )
                    .into())
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(format!("materialized view `{}` was dropped", self.view.name).into()),
            }
        }
        Ok(Some(match self.queue.pop_front() {
            Some(rows) => SourceBatch { rows, malformed: Vec::new(), late: Vec::new() },
            None => self.nothing(),
        }))
    }
}

impl ViewReader {
    /// An empty read: nothing new yet, so the engine can check on the pipeline.
    fn nothing(&self) -> SourceBatch {
        SourceBatch::inserts(RecordBatch::new_empty(self.view.schema()), Vec::new())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

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
        let view = MaterializedView::new("v", schema(), Some(vec![0])).unwrap();
        let mut sink = ViewSink::new(Arc::clone(&view)).unwrap();
        let (_, mut changes) = view.subscribe(false).unwrap();
        sink.write(ChangeBatch::inserts(batch(&[("a", 1), ("b", 1)]))).await.unwrap();
        assert!(view.snapshot().unwrap().is_empty(), "rows are visible only after the barrier");
        sink.commit().await.unwrap();
        sink.write(ChangeBatch::inserts(batch(&[("a", 2), ("b", 1)]))).await.unwrap();
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
        let view = MaterializedView::new("v", schema(), Some(vec![0])).unwrap();
        let mut sink = ViewSink::new(Arc::clone(&view)).unwrap();
        sink.write(ChangeBatch::inserts(batch(&[("a", 1), ("b", 5)]))).await.unwrap();
        sink.prepare(1).await.unwrap();
        sink.commit_checkpoint(1).await.unwrap();
        sink.write(ChangeBatch::inserts(batch(&[("a", 3)]))).await.unwrap();
        let saved = sink.prepare(2).await.unwrap();
        assert_eq!(sorted_rows(&view.snapshot().unwrap()), vec![("a".into(), 1), ("b".into(), 5)], "checkpoint 2 is not saved yet");
        sink.write(ChangeBatch::inserts(batch(&[("c", 9)]))).await.unwrap();
        let mut restarted = ViewSink::new(Arc::clone(&view)).unwrap();
        assert!(view.snapshot().unwrap().is_empty());
        restarted.recover(&saved).await.unwrap();
        assert_eq!(sorted_rows(&view.snapshot().unwrap()), vec![("a".into(), 3), ("b".into(), 5)]);
    }

    /// A refresh shows what was staged (prepared or not) at once; the checkpoint
    /// taken after it still saves the whole view, and a commit of an epoch the
    /// refresh already showed changes nothing.
    #[tokio::test]
    async fn a_refresh_shows_staged_rows_and_checkpoints_still_save_all_of_them() {
        let view = MaterializedView::new("v", schema(), Some(vec![0])).unwrap();
        let mut sink = ViewSink::new(Arc::clone(&view)).unwrap();
        let (_, mut changes) = view.subscribe(false).unwrap();
        sink.write(ChangeBatch::inserts(batch(&[("a", 1)]))).await.unwrap();
        sink.prepare(1).await.unwrap();
        sink.write(ChangeBatch::inserts(batch(&[("b", 2)]))).await.unwrap();
        assert!(view.snapshot().unwrap().is_empty());
        sink.refresh().await.unwrap();
        assert_eq!(sorted_rows(&view.snapshot().unwrap()), vec![("a".into(), 1), ("b".into(), 2)], "shown before checkpoint 1 is saved");
        assert_eq!(sorted_rows(&[changes.recv().await.unwrap()]), vec![("a".into(), 1)]);
        assert_eq!(sorted_rows(&[changes.recv().await.unwrap()]), vec![("b".into(), 2)]);
        sink.commit_checkpoint(1).await.unwrap();
        assert!(changes.try_recv().is_err(), "checkpoint 1's rows were already shown");
        sink.write(ChangeBatch::inserts(batch(&[("a", 5)]))).await.unwrap();
        let saved = sink.prepare(2).await.unwrap();
        let mut restarted = ViewSink::new(Arc::clone(&view)).unwrap();
        restarted.recover(&saved).await.unwrap();
        assert_eq!(sorted_rows(&view.snapshot().unwrap()), vec![("a".into(), 5), ("b".into(), 2)], "checkpoint 2 holds every row before its barrier");
    }

    #[tokio::test]
    async fn append_view_keeps_every_row_and_snapshot_subscribers_start_with_it() {
        let view = MaterializedView::new("v", schema(), None).unwrap();
        let mut sink = ViewSink::new(Arc::clone(&view)).unwrap();
        sink.write(ChangeBatch::inserts(batch(&[("a", 1), ("a", 1)]))).await.unwrap();
        sink.commit().await.unwrap();
        let (initial, mut changes) = view.subscribe(true).unwrap();
        assert_eq!(initial.unwrap().num_rows(), 2);
        sink.write(ChangeBatch::inserts(batch(&[("b", 2)]))).await.unwrap();
        sink.commit().await.unwrap();
        assert_eq!(sorted_rows(&[changes.recv().await.unwrap()]), vec![("b".into(), 2)]);
        assert_eq!(view.size().0, 3);
    }

    fn ops(b: &RecordBatch) -> Vec<String> {
        b.column(0).as_any().downcast_ref::<StringArray>().unwrap().iter().map(|o| o.unwrap().to_string()).collect()
    }

    /// A retraction followed by the key's new row is an update (`-U`, `+U`); a
    /// retraction alone deletes (`-D`); staged retractions survive a restore; and
    /// a reader of the view sees updates as a retraction and the new row.
    #[tokio::test]
    async fn retractions_update_or_delete_keys_and_readers_get_them_back() {
        let view = MaterializedView::new("v", schema(), Some(vec![0])).unwrap();
        let mut sink = ViewSink::new(Arc::clone(&view)).unwrap();
        sink.write(ChangeBatch::inserts(batch(&[("a", 1), ("b", 2), ("c", 3)]))).await.unwrap();
        sink.commit().await.unwrap();
        let (source, def) = ViewSource::new(Arc::clone(&view));
        assert_eq!(def.primary_key, vec!["k".to_string()]);
        let mut reader = source.open(1).unwrap().remove(0);
        let first = reader.next_batch().await.unwrap().unwrap();
        assert!(first.rows.is_inserts_only());
        assert_eq!(sorted_rows(&[first.rows.into_rows()]), vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]);
        let (_, mut changes) = view.subscribe(false).unwrap();

        sink.write(ChangeBatch::all(RowKind::Delete, batch(&[("a", 1), ("b", 2)]))).await.unwrap();
        sink.write(ChangeBatch::inserts(batch(&[("a", 10)]))).await.unwrap();
        sink.commit().await.unwrap();
        assert_eq!(sorted_rows(&view.snapshot().unwrap()), vec![("a".into(), 10), ("c".into(), 3)]);
        assert_eq!(view.size().0, 2);
        let change = changes.recv().await.unwrap();
        assert_eq!(ops(&change), vec!["-U", "+U", "-D"]);
        assert_eq!(sorted_rows(&[change]), vec![("a".into(), 1), ("a".into(), 10), ("b".into(), 2)]);

        // The reader: a's old row retracted, its new row, then b deleted.
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let next = reader.next_batch().await.unwrap().unwrap().rows;
            seen.extend((0..next.num_rows()).map(|i| (next.kind(i), sorted_rows(&[next.rows().slice(i, 1)]).remove(0))));
        }
        use RowKind::*;
        assert_eq!(seen, vec![(UpdateBefore, ("a".into(), 1)), (UpdateAfter, ("a".into(), 10)), (Delete, ("b".into(), 2))]);

        // A retraction staged for a checkpoint is saved with it.
        sink.write(ChangeBatch::all(RowKind::Delete, batch(&[("c", 3)]))).await.unwrap();
        let saved = sink.prepare(1).await.unwrap();
        let mut restarted = ViewSink::new(Arc::clone(&view)).unwrap();
        restarted.recover(&saved).await.unwrap();
        assert_eq!(sorted_rows(&view.snapshot().unwrap()), vec![("a".into(), 10)]);
    }
}
