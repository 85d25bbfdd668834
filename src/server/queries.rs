//! The ad-hoc `SELECT`s a server runs for its clients over bounded tables.
//! A query whose plan takes rows back answers with the rows its changelog
//! leaves ([`FinalRows`]), once its tables end.
//!
//! Each runs as a pipeline of its own until its sources end, or until its client
//! goes away (Ctrl-C in `eddy sql` drops the stream): then it is stopped, so a
//! cancelled query does not go on reading. `SHOW PIPELINES` lists those running,
//! as psql users look for theirs in `pg_stat_activity`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use eddy_engine::{BoxError, ChangeBatch, PipelineMetrics};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::EddyError;

/// The queries running now, by number.
#[derive(Default)]
pub struct Queries {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, Running>>,
}

/// What `SHOW PIPELINES` shows of a running query.
struct Running {
    name: String,
    sql: String,
    metrics: Arc<PipelineMetrics>,
}

impl Queries {
    /// Lists a query until the returned entry is dropped (when its run ends).
    pub fn register(self: &Arc<Self>, name: &str, sql: &str, metrics: Arc<PipelineMetrics>) -> Listed {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(id, Running { name: name.to_string(), sql: sql.to_string(), metrics });
        Listed { id, queries: Arc::clone(self) }
    }

    /// `SHOW PIPELINES` rows of the running queries: id (`q1`), name, status,
    /// rows in, rows out, view lag (none), SQL, error (none).
    pub fn rows(&self) -> Vec<Vec<String>> {
        self.lock()
            .iter()
            .map(|(id, q)| {
                let m = q.metrics.snapshot();
                vec![
                    format!("q{id}"),
                    q.name.clone(),
                    "RUNNING".into(),
                    m.rows_in.to_string(),
                    m.rows_out.to_string(),
                    String::new(),
                    q.sql.clone(),
                    String::new(),
                ]
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Running>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A query's place in the list; dropping it takes the query off.
pub struct Listed {
    id: u64,
    queries: Arc<Queries>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.queries.lock().remove(&self.id);
    }
}

/// A running query's task. Dropping it (the statement that streams the rows
/// stopped, most often because its client went away) stops the query.
pub struct QueryRun {
    task: JoinHandle<Result<(), EddyError>>,
    stop: watch::Sender<bool>,
}

impl QueryRun {
    /// Wraps the task of a query that stops when `stop` turns true.
    pub fn new(task: JoinHandle<Result<(), EddyError>>, stop: watch::Sender<bool>) -> Self {
        QueryRun { task, stop }
    }

    /// Waits for the query to end (its rows all sent), with its error if it failed.
    pub async fn finished(&mut self) -> Result<(), EddyError> {
        (&mut self.task).await.map_err(|e| EddyError::Unsupported(format!("the query stopped: {e}")))?
    }
}

impl Drop for QueryRun {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The rows a changelog leaves once applied in order: what an ad-hoc query whose
/// plan takes rows back (an outer join, a Top-N, a deduplication keeping the
/// last row) answers with once its bounded tables end. A client's SELECT expects
/// rows, not the changes that led to them.
pub struct FinalRows {
    schema: SchemaRef,
    converter: RowConverter,
    /// How many of each distinct row are held.
    counts: HashMap<OwnedRow, usize>,
    /// The distinct rows, in the order they first came.
    order: Vec<OwnedRow>,
}

impl FinalRows {
    /// Nothing held yet, for rows of `schema`.
    pub fn new(schema: SchemaRef) -> Result<Self, ArrowError> {
        let converter = RowConverter::new(schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())?;
        Ok(FinalRows { schema, converter, counts: HashMap::new(), order: Vec::new() })
    }

    /// `+I`/`+U` add a row; `-U`/`-D` take an equal one back.
    pub fn apply(&mut self, changes: &ChangeBatch) -> Result<(), BoxError> {
        let rows = self.converter.convert_columns(changes.rows().columns())?;
        for (i, row) in rows.iter().enumerate() {
            if changes.kind(i).is_retraction() {
                match self.counts.get_mut(&row.owned()) {
                    Some(count) if *count > 0 => *count -= 1,
                    _ => return Err("the query took back a row it had not sent (an engine fault; please report it with the query)".into()),
                }
            } else {
                let count = self.counts.entry(row.owned()).or_insert_with_key(|row| {
                    self.order.push(row.clone());
                    0
                });
                *count += 1;
            }
        }
        Ok(())
    }

    /// The rows held, each as many times as it is held; none are held after.
    pub fn take_batch(&mut self) -> Result<RecordBatch, ArrowError> {
        let (counts, order) = (std::mem::take(&mut self.counts), std::mem::take(&mut self.order));
        let held = order.iter().flat_map(|row| std::iter::repeat_n(row.row(), counts.get(row).copied().unwrap_or(0)));
        let columns = self.converter.convert_rows(held)?;
        let options = RecordBatchOptions::new().with_row_count(Some(counts.values().sum()));
        RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)
    }
}

/// The sink of an ad-hoc query whose plan takes rows back: applies its changes to
/// the [`FinalRows`] the query's task sends once the run has ended.
pub struct FinalRowsSink(pub Arc<Mutex<FinalRows>>);

#[async_trait::async_trait]
impl eddy_engine::Sink for FinalRowsSink {
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).apply(&changes)
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use eddy_engine::changelog::RowKind;

    fn changes(schema: &SchemaRef, rows: &[(RowKind, i64)]) -> ChangeBatch {
        let values = Int64Array::from(rows.iter().map(|(_, v)| *v).collect::<Vec<_>>());
        let batch = RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(values)]).unwrap();
        ChangeBatch::new(batch, rows.iter().map(|(k, _)| *k).collect()).unwrap()
    }

    #[test]
    fn final_rows_hold_what_the_changes_leave_in_first_arrival_order() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let mut rows = FinalRows::new(Arc::clone(&schema)).unwrap();
        use RowKind::*;
        rows.apply(&changes(&schema, &[(Insert, 1), (Insert, 2), (Insert, 1), (UpdateBefore, 2), (UpdateAfter, 3)])).unwrap();
        rows.apply(&changes(&schema, &[(Delete, 1), (Insert, 2)])).unwrap();
        let batch = rows.take_batch().unwrap();
        let values = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(values.values().to_vec(), vec![1, 2, 3], "one 1 left of two, 2 taken back and sent again, 3");
        assert_eq!(rows.take_batch().unwrap().num_rows(), 0, "taken");
        let err = rows.apply(&changes(&schema, &[(Delete, 7)])).unwrap_err();
        assert!(err.to_string().contains("took back a row it had not sent"), "{err}");
    }
}
