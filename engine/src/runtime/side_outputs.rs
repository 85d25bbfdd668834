//! Side outputs: late rows and malformed records of a source table, sent to the
//! tables that receive them, one task per side sink.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::sink_task::sink_failed;
use super::{SideSink, CHANNEL_CAPACITY};
use crate::changelog::ChangeBatch;
use crate::connector::MalformedRecord;
use crate::error::{EngineError, Result};
use crate::operator::SideOutput;
use crate::operators::project::make_batch;

/// Side outputs of a source stage instance, by kind.
#[derive(Clone, Default)]
pub(super) struct SideSenders {
    late: Option<mpsc::Sender<RecordBatch>>,
    pub(super) malformed: Option<mpsc::Sender<RecordBatch>>,
}

impl SideSenders {
    /// Sends each batch to its kind's side sink; kinds without one are dropped.
    pub(super) async fn send(&self, outputs: Vec<(SideOutput, RecordBatch)>) {
        for (kind, batch) in outputs {
            let sender = match kind {
                SideOutput::Late => &self.late,
                SideOutput::Malformed => &self.malformed,
            };
            if let Some(sender) = sender {
                let _ = sender.send(batch).await;
            }
        }
    }
}

/// Starts one task per side sink, fed by every partition of its source table;
/// returns the senders by source table.
pub(super) fn spawn_side_sinks(side: HashMap<(String, SideOutput), SideSink>, tasks: &mut JoinSet<Result<()>>) -> HashMap<String, SideSenders> {
    let mut side_senders: HashMap<String, SideSenders> = HashMap::new();
    for ((source_table, kind), side_sink) in side {
        let (tx, mut rx) = mpsc::channel::<RecordBatch>(CHANNEL_CAPACITY);
        let entry = side_senders.entry(source_table).or_default();
        match kind {
            SideOutput::Late => entry.late = Some(tx),
            SideOutput::Malformed => entry.malformed = Some(tx),
        }
        let SideSink { table, mut sink, schema } = side_sink;
        tasks.spawn(async move {
            while let Some(batch) = rx.recv().await {
                let batch = fit_to(&batch, &schema, &table)?;
                sink.write(ChangeBatch::inserts(batch)).await.map_err(sink_failed(&table))?;
            }
            sink.commit().await.map_err(sink_failed(&table))
        });
    }
    side_senders
}

/// The malformed records of one read as rows of a malformed-records side table.
pub(super) fn malformed_batch(table: &str, records: &[MalformedRecord]) -> Result<RecordBatch> {
    let column = |f: &dyn Fn(&MalformedRecord) -> String| -> ArrayRef { Arc::new(StringArray::from(records.iter().map(f).collect::<Vec<_>>())) };
    RecordBatch::try_from_iter([
        ("source", column(&|_| table.to_string())),
        ("position", column(&|r| r.position.clone())),
        ("error", column(&|r| r.error.clone())),
        ("raw", column(&|r| r.raw.clone())),
    ])
    .map_err(|e| EngineError::execution("malformed records", e.into()))
}

/// Fits a side-output batch to the side table: by name when the names match, else by position.
fn fit_to(batch: &RecordBatch, schema: &SchemaRef, table: &str) -> Result<RecordBatch> {
    let mut columns = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let column = match batch.schema().index_of(field.name()) {
            Ok(index) => Arc::clone(batch.column(index)),
            Err(_) => match batch.columns().get(i) {
                Some(c) => Arc::clone(c),
                None => datafusion::arrow::array::new_null_array(field.data_type(), batch.num_rows()),
            },
        };
        let column = if column.data_type() == field.data_type() {
            column
        } else {
            cast(&column, field.data_type()).map_err(|e| EngineError::Sink { table: table.to_string(), source: Box::new(e) })?
        };
        columns.push(column);
    }
    make_batch(schema, columns, batch.num_rows(), table)
}
