//! Flink's temporal functions: `DATE_FORMAT` with Java date patterns, the
//! calendar fields (`YEAR` ... `SECOND`, `DAYOFWEEK`), `FROM_UNIXTIME`,
//! `TO_TIMESTAMP`, `TO_DATE` and `UNIX_TIMESTAMP` reading Java patterns, and
//! `TO_TIMESTAMP_LTZ` for event times kept as epoch numbers.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, Date32Array, Int64Array, StringBuilder, TimestampMillisecondArray};
use datafusion::arrow::compute::kernels::cast;
use datafusion::arrow::compute::CastOptions;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimestampMillisecondType};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};

use super::date_pattern::{DatePattern, PastMonthEnd};
use super::flink_fn::{bigint, constant_str, string, Body, FlinkFn, LastCompiled, Param, Prims, Strs, MILLIS};

/// Flink's temporal functions that DataFusion lacks or means differently.
pub(super) fn functions() -> Vec<ScalarUDF> {
    use Param::{Int, Str, Timestamp, TimestampOrStr};
    let mut all = vec![
        // DataFusion's `date_format` is `to_char`, with chrono's %-patterns: it
        // prints a Java pattern back as text. Flink's reads Java patterns.
        FlinkFn::new("DATE_FORMAT", "DATE_FORMAT(timestamp, 'yyyy-MM-dd HH:mm:ss')", &[TimestampOrStr, Str], 2, string, date_format)
            .checking(check_pattern::<1>)
            .udf(),
        FlinkFn::new("FROM_UNIXTIME", "FROM_UNIXTIME(epoch_seconds[, 'yyyy-MM-dd HH:mm:ss'])", &[Int, Str], 1, string, from_unixtime)
            .checking(check_pattern::<1>)
            .udf(),
    ];
    all.extend([
        FlinkFn::new("TO_TIMESTAMP", "TO_TIMESTAMP(text[, 'yyyy-MM-dd HH:mm:ss'])", &[Str, Str], 1, |_| MILLIS, to_timestamp)
            .checking(check_pattern::<1>)
            .udf(),
        FlinkFn::new("TO_DATE", "TO_DATE(text[, 'yyyy-MM-dd'])", &[Str, Str], 1, |_| DataType::Date32, to_date).checking(check_pattern::<1>).udf(),
        FlinkFn::new("UNIX_TIMESTAMP", "UNIX_TIMESTAMP(text[, 'yyyy-MM-dd HH:mm:ss'])", &[Str, Str], 1, bigint, unix_timestamp)
            .checking(check_pattern::<1>)
            .udf(),
    ]);
    let part = |name: &'static str, usage: &'static str, body: Body| FlinkFn::new(name, usage, &[Timestamp], 1, bigint, body).udf();
    all.extend([
        part("YEAR", "YEAR(timestamp)", |a, n| field(a, n, |t| i64::from(t.year()))),
        part("QUARTER", "QUARTER(timestamp)", |a, n| field(a, n, |t| i64::from(t.month0() / 3 + 1))),
        part("MONTH", "MONTH(timestamp)", |a, n| field(a, n, |t| i64::from(t.month()))),
        part("WEEK", "WEEK(timestamp)", |a, n| field(a, n, |t| i64::from(t.iso_week().week()))),
        part("DAYOFYEAR", "DAYOFYEAR(timestamp)", |a, n| field(a, n, |t| i64::from(t.ordinal()))),
        part("DAYOFMONTH", "DAYOFMONTH(timestamp)", |a, n| field(a, n, |t| i64::from(t.day()))),
        // Flink counts from Sunday = 1 to Saturday = 7.
        part("DAYOFWEEK", "DAYOFWEEK(timestamp)", |a, n| field(a, n, |t| i64::from(t.weekday().num_days_from_sunday() + 1))),
        part("HOUR", "HOUR(timestamp)", |a, n| field(a, n, |t| i64::from(t.hour()))),
        part("MINUTE", "MINUTE(timestamp)", |a, n| field(a, n, |t| i64::from(t.minute()))),
        part("SECOND", "SECOND(timestamp)", |a, n| field(a, n, |t| i64::from(t.second()))),
    ]);
    let millis = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None);
    let to_timestamp_ltz = create_udf("TO_TIMESTAMP_LTZ", vec![DataType::Int64, DataType::Int64], millis, Volatility::Immutable, Arc::new(to_timestamp_ltz));
    all.push(to_timestamp_ltz.with_aliases(["to_timestamp_ltz"]));
    // The processing-time attribute of a computed column (`proc_time AS PROCTIME()`):
    // the wall-clock time a row is read, which a lookup join's FOR SYSTEM_TIME AS OF names.
    let proctime = create_udf("PROCTIME", vec![], MILLIS, Volatility::Volatile, Arc::new(proctime));
    all.push(proctime.with_aliases(["proctime"]));
    all
}

fn proctime(_args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let now = chrono::Utc::now().timestamp_millis();
    Ok(ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(Some(now), None)))
}

/// Refuses a constant pattern (argument `I`) Eddy cannot format, naming the letter.
fn check_pattern<const I: usize>(constants: &[Option<&ScalarValue>]) -> std::result::Result<(), String> {
    match constant_str(constants, I) {
        Some(pattern) => DatePattern::parse(pattern).map(|_| ()),
        None => Ok(()),
    }
}

/// A TIMESTAMP argument as epoch milliseconds; a STRING one is read as Flink
/// reads it (`yyyy-MM-dd HH:mm:ss[.SSS]`), NULL when it is not a timestamp.
fn millis(value: &ColumnarValue) -> Result<ColumnarValue> {
    let safe = CastOptions { safe: true, ..Default::default() };
    Ok(match value {
        ColumnarValue::Array(a) if a.data_type() != &MILLIS => ColumnarValue::Array(cast::cast_with_options(a, &MILLIS, &safe)?),
        ColumnarValue::Scalar(s) if s.data_type() != MILLIS => {
            let array = cast::cast_with_options(&s.to_array()?, &MILLIS, &safe)?;
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        }
        other => other.clone(),
    })
}

fn datetime(millis: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_millis(millis).map(|t| t.naive_utc())
}

/// Formats each row's timestamp with its pattern, compiling a pattern only when it changes.
fn format_rows(rows: usize, stamp: impl Fn(usize) -> Option<NaiveDateTime>, patterns: &Strs) -> Result<ArrayRef> {
    let mut out = StringBuilder::with_capacity(rows, rows * 20);
    let mut compiled = LastCompiled::new(DatePattern::parse);
    for i in 0..rows {
        let (Some(at), Some(text)) = (stamp(i), patterns.get(i)) else {
            out.append_null();
            continue;
        };
        let pattern = compiled.get(text).as_ref().map_err(|e| DataFusionError::Execution(e.clone()))?;
        pattern.format(&at, &mut out).map_err(|e| DataFusionError::Execution(e.to_string()))?;
        out.append_value("");
    }
    Ok(Arc::new(out.finish()))
}

fn date_format(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let stamps = millis(&args[0])?;
    let stamps = Prims::<TimestampMillisecondType>::of(&stamps)?;
    format_rows(rows, |i| stamps.get(i).and_then(datetime), &Strs::of(&args[1])?)
}

/// `FROM_UNIXTIME(seconds[, pattern])`: the time as text, `yyyy-MM-dd HH:mm:ss` by default.
fn from_unixtime(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let seconds = Prims::<Int64Type>::of(&args[0])?;
    let default = ColumnarValue::Scalar(ScalarValue::Utf8(Some("yyyy-MM-dd HH:mm:ss".into())));
    let patterns = Strs::of(args.get(1).unwrap_or(&default))?;
    format_rows(rows, |i| seconds.get(i).and_then(|s| s.checked_mul(1000)).and_then(datetime), &patterns)
}

/// Reads each row's text with its pattern (`default` when none is given),
/// compiling a pattern only when it changes; NULL where the text does not fit.
fn parse_rows<T>(args: &[ColumnarValue], rows: usize, default: &str, days: PastMonthEnd, mut each: impl FnMut(Option<NaiveDateTime>) -> T) -> Result<Vec<T>> {
    let texts = Strs::of(&args[0])?;
    let default = ColumnarValue::Scalar(ScalarValue::Utf8(Some(default.to_string())));
    let patterns = Strs::of(args.get(1).unwrap_or(&default))?;
    let mut compiled = LastCompiled::new(DatePattern::parse);
    // Without a pattern Flink also reads a date alone, or fractions of a second.
    let also: Vec<DatePattern> = if args.len() == 1 { DEFAULT_ALSO.iter().filter_map(|p| DatePattern::parse(p).ok()).collect() } else { Vec::new() };
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        let (Some(text), Some(pattern_text)) = (texts.get(i), patterns.get(i)) else {
            out.push(each(None));
            continue;
        };
        let pattern = compiled.get(pattern_text).as_ref().map_err(|e| DataFusionError::Execution(e.clone()))?;
        let parsed = pattern.parse_text(text, days).or_else(|| also.iter().find_map(|p| p.parse_text(text, days)));
        out.push(each(parsed));
    }
    Ok(out)
}

/// What else text read without a pattern may look like.
const DEFAULT_ALSO: [&str; 2] = ["yyyy-MM-dd HH:mm:ss.S", "yyyy-MM-dd"];

/// `TO_TIMESTAMP(text[, pattern])`: the timestamp `text` writes, NULL when it is none.
fn to_timestamp(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let out = parse_rows(args, rows, "yyyy-MM-dd HH:mm:ss", PastMonthEnd::LastDay, |t| t.map(|t| t.and_utc().timestamp_millis()))?;
    Ok(Arc::new(TimestampMillisecondArray::from(out)))
}

/// `TO_DATE(text[, pattern])`: the date `text` writes, NULL when it is none.
fn to_date(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let epoch = chrono::NaiveDate::default();
    let out = parse_rows(args, rows, "yyyy-MM-dd", PastMonthEnd::NoDate, |t| t.and_then(|t| i32::try_from((t.date() - epoch).num_days()).ok()))?;
    Ok(Arc::new(Date32Array::from(out)))
}

/// `UNIX_TIMESTAMP(text[, pattern])`: the epoch seconds of the time `text`
/// writes; for text that is no time, Flink's answer: the smallest BIGINT.
fn unix_timestamp(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let mut row = 0;
    let out = parse_rows(args, rows, "yyyy-MM-dd HH:mm:ss", PastMonthEnd::LastDay, |t| {
        let text = texts.get(row);
        row += 1;
        text.map(|_| t.map_or(i64::MIN, |t| t.and_utc().timestamp()))
    })?;
    Ok(Arc::new(Int64Array::from(out)))
}

/// One calendar field of each row's timestamp, as BIGINT (Flink's result type).
fn field(args: &[ColumnarValue], rows: usize, of: fn(&NaiveDateTime) -> i64) -> Result<ArrayRef> {
    let stamps = millis(&args[0])?;
    let stamps = Prims::<TimestampMillisecondType>::of(&stamps)?;
    let out: Int64Array = (0..rows).map(|i| stamps.get(i).and_then(datetime).map(|t| of(&t))).collect();
    Ok(Arc::new(out))
}

/// `TO_TIMESTAMP_LTZ(n, 0)` reads epoch seconds, `TO_TIMESTAMP_LTZ(n, 3)` epoch milliseconds.
fn to_timestamp_ltz(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let precision = match &args[1] {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(p))) => *p,
        _ => return Err(DataFusionError::Plan("TO_TIMESTAMP_LTZ: the precision must be the literal 0 or 3".to_string())),
    };
    let factor = match precision {
        0 => 1000,
        3 => 1,
        other => return Err(DataFusionError::Plan(format!("TO_TIMESTAMP_LTZ: precision {other} is not supported; use 0 (seconds) or 3 (milliseconds)"))),
    };
    let convert = |array: &ArrayRef| -> Result<ArrayRef> {
        let array = cast::cast(array, &DataType::Int64)?;
        let ints = array.as_any().downcast_ref::<Int64Array>().ok_or_else(|| DataFusionError::Internal("expected Int64".into()))?;
        let out: TimestampMillisecondArray = ints.iter().map(|v| v.and_then(|v| v.checked_mul(factor))).collect();
        Ok(Arc::new(out))
    };
    match &args[0] {
        ColumnarValue::Array(array) => Ok(ColumnarValue::Array(convert(array)?)),
        ColumnarValue::Scalar(scalar) => {
            let array = convert(&scalar.to_array()?)?;
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?))
        }
    }
}
