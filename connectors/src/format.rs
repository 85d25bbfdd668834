//! Text rendering of values the way Flink users expect to read them:
//! timestamps as `YYYY-MM-DD HH:MM:SS.fff`, nulls as `null`.

use std::fmt::Write as _;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// The chrono format for a timestamp of `unit`: as many fraction digits as the unit has.
pub(crate) fn timestamp_format(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "%Y-%m-%d %H:%M:%S",
        TimeUnit::Millisecond => "%Y-%m-%d %H:%M:%S%.3f",
        TimeUnit::Microsecond => "%Y-%m-%d %H:%M:%S%.6f",
        TimeUnit::Nanosecond => "%Y-%m-%d %H:%M:%S%.9f",
    }
}

/// One format for every timestamp column: the unit's when they agree, else a variable fraction.
pub(crate) fn common_timestamp_format(schema: &SchemaRef) -> String {
    let mut units = schema.fields().iter().filter_map(|f| match f.data_type() {
        DataType::Timestamp(u, _) => Some(*u),
        _ => None,
    });
    match units.next() {
        None => timestamp_format(TimeUnit::Millisecond).to_string(),
        Some(first) if units.all(|u| u == first) => timestamp_format(first).to_string(),
        Some(_) => "%Y-%m-%d %H:%M:%S%.f".to_string(),
    }
}

/// Display options for one column.
fn options_for(data_type: &DataType) -> FormatOptions<'static> {
    let ts = match data_type {
        DataType::Timestamp(unit, _) => timestamp_format(*unit),
        _ => "%Y-%m-%d %H:%M:%S%.3f",
    };
    FormatOptions::new().with_null("null").with_timestamp_format(Some(ts)).with_timestamp_tz_format(Some(ts))
}

/// One formatter per column of `batch`.
pub(crate) fn formatters(batch: &RecordBatch) -> Result<Vec<ArrayFormatter<'_>>, ArrowError> {
    batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options_for(c.data_type()))).collect()
}

/// One JSON object per row (nulls written out, timestamps in `timestamp_format`),
/// for sinks that store or send rows one by one (Kafka records, Redis lists).
pub(crate) fn json_rows(batch: &RecordBatch, timestamp_format: &str) -> Result<Vec<Vec<u8>>, ArrowError> {
    let mut buf = Vec::new();
    let mut w = datafusion::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_format(timestamp_format.to_string())
        .with_timestamp_tz_format(timestamp_format.to_string())
        .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut buf);
    w.write(batch)?;
    w.finish()?;
    // JSON escapes newlines inside strings: every line is one row.
    Ok(buf.split(|b| *b == b'\n').take(batch.num_rows()).map(<[u8]>::to_vec).collect())
}

/// Appends `[v1, v2, ...]` for row `row` to `out`.
pub(crate) fn write_row(out: &mut String, formatters: &[ArrayFormatter<'_>], row: usize) -> Result<(), std::fmt::Error> {
    out.push('[');
    for (i, f) in formatters.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write!(out, "{}", f.value(row))?;
    }
    out.push(']');
    Ok(())
}

/// `[v1, v2, ...]` for one row, used as the raw text of records that came as columns.
pub(crate) fn row_to_string(batch: &RecordBatch, row: usize) -> String {
    let mut out = String::new();
    match formatters(batch) {
        Ok(f) => {
            if write_row(&mut out, &f, row).is_err() {
                out.clear();
            }
        }
        Err(e) => out = format!("<unprintable row: {e}>"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_render_like_flink() {
        let batch = crate::testing::two_rows(["a", "b", "ts"], ["foo", "bar"], [1_704_067_200_000, 1_704_067_200_123]);
        assert_eq!(row_to_string(&batch, 0), "[1, foo, 2024-01-01 00:00:00.000]");
        assert_eq!(row_to_string(&batch, 1), "[null, bar, 2024-01-01 00:00:00.123]");
    }
}
