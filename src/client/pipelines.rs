//! `\dp`: the server's pipelines as one table a person reads at a glance:
//! counts and sizes are numbers (so they print right-aligned, as psql prints
//! numbers), times are timestamps, and what is unknown is empty.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use eddy_proto::Pipeline;

/// The `\dp` table of `pipelines`, in the order given.
pub fn pipeline_table(pipelines: &[Pipeline]) -> Result<(SchemaRef, RecordBatch), ArrowError> {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    let count = |name: &str, nullable: bool| Field::new(name, DataType::UInt64, nullable);
    let time = |name: &str| Field::new(name, DataType::Timestamp(TimeUnit::Millisecond, None), true);
    let schema = Arc::new(Schema::new(vec![
        text("id"),
        text("name"),
        text("status"),
        count("rows_in", false),
        count("rows_out", false),
        Field::new("rows_per_s", DataType::Float64, false),
        // Records the sources have not read yet (Kafka consumer lag); empty when a source cannot tell.
        count("lag_rows", true),
        time("watermark"),
        time("last_checkpoint"),
        count("state_bytes", false),
        text("error"),
    ]));
    let strings = |f: fn(&Pipeline) -> &str| Arc::new(StringArray::from_iter_values(pipelines.iter().map(f))) as ArrayRef;
    let counts = |f: fn(&Pipeline) -> u64| Arc::new(UInt64Array::from_iter_values(pipelines.iter().map(f))) as ArrayRef;
    let columns = vec![
        strings(|p| &p.id),
        strings(|p| &p.name),
        strings(|p| &p.status),
        counts(|p| p.rows_in),
        counts(|p| p.rows_out),
        Arc::new(Float64Array::from_iter_values(pipelines.iter().map(|p| (p.rows_in_per_second * 10.0).round() / 10.0))) as ArrayRef,
        Arc::new(UInt64Array::from_iter(pipelines.iter().map(|p| p.lag_rows))) as ArrayRef,
        Arc::new(TimestampMillisecondArray::from_iter(pipelines.iter().map(|p| p.watermark_ms))) as ArrayRef,
        Arc::new(TimestampMillisecondArray::from_iter(pipelines.iter().map(|p| (p.checkpoint_at_ms > 0).then_some(p.checkpoint_at_ms)))) as ArrayRef,
        counts(|p| p.state_bytes),
        strings(|p| &p.error),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok((schema, batch))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::client::format::{render, PrintOptions};

    #[test]
    fn numbers_right_aligned_and_unknowns_empty() {
        let running = Pipeline {
            id: "p1".into(),
            name: "totals".into(),
            status: "RUNNING".into(),
            rows_in: 123456,
            rows_out: 7,
            rows_in_per_second: 1000.04,
            lag_rows: Some(42),
            watermark_ms: Some(1_700_000_000_000),
            checkpoint_at_ms: 1_700_000_005_500,
            state_bytes: 2048,
            ..Pipeline::default()
        };
        let stopped = Pipeline { id: "p2".into(), name: "out".into(), status: "STOPPED".into(), rows_in: 5, ..Pipeline::default() };
        let (schema, batch) = pipeline_table(&[running, stopped]).unwrap();
        let text = render(&schema, &[batch], &PrintOptions::default()).unwrap();
        assert_eq!(
            text,
            " id |  name  | status  | rows_in | rows_out | rows_per_s | lag_rows |      watermark      |     last_checkpoint     | state_bytes | error \n\
             ----+--------+---------+---------+----------+------------+----------+---------------------+-------------------------+-------------+-------\n \
             p1 | totals | RUNNING |  123456 |        7 |     1000.0 |       42 | 2023-11-14 22:13:20 | 2023-11-14 22:13:25.500 |        2048 | \n \
             p2 | out    | STOPPED |       5 |        0 |        0.0 |          |                     |                         |           0 | \n\
             (2 rows)\n\n"
        );
    }
}
