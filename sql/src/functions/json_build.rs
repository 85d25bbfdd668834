//! Flink's functions that build JSON text from SQL values: `JSON_STRING`,
//! `JSON_OBJECT` and `JSON_ARRAY`. A value is written by its SQL type (a
//! string quoted, a number or boolean as Java prints it); a value made by
//! another `JSON_OBJECT` or `JSON_ARRAY` call is inserted as JSON, not as a
//! string, so objects nest as in Flink.
//!
//! `JSON_OBJECT(KEY k VALUE v, ... [NULL | ABSENT] ON NULL)` and `JSON_ARRAY(v,
//! ... [NULL | ABSENT] ON NULL)` are syntax, planned as calls of
//! [`JSON_OBJECT`] and [`JSON_ARRAY`] whose first two arguments say what to do
//! with NULL and which values are JSON already (see [`super::syntax`]).

use std::fmt::Write;
use std::sync::Arc;

use chrono::Timelike;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, TimeUnit, TimestampNanosecondType};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::conversion::java_double;
use super::flink_fn::{string, FlinkFn, Param, Strs};
use super::json_path::write_string;

/// The internal names the syntax is planned as.
pub(crate) const JSON_OBJECT: &str = "__eddy_json_object";
pub(crate) const JSON_ARRAY: &str = "__eddy_json_array";

/// In the shape argument: the value at this place is JSON already.
pub(crate) const RAW: char = 'r';
/// In the shape argument: the value at this place is written by its type.
pub(crate) const TYPED: char = 't';

/// Flink's JSON constructors.
pub(super) fn functions() -> Vec<ScalarUDF> {
    use Param::{Any, Str};
    vec![
        FlinkFn::new("JSON_STRING", "JSON_STRING(value)", &[Any], 1, string, json_string).udf(),
        FlinkFn::new(JSON_OBJECT, "JSON_OBJECT([KEY] key VALUE value, ... [NULL | ABSENT ON NULL])", &[Str, Str, Any], 2, string, |a, n| {
            build(a, n, Shape::Object)
        })
        .variadic()
        .udf(),
        FlinkFn::new(JSON_ARRAY, "JSON_ARRAY(value, ... [NULL | ABSENT ON NULL])", &[Str, Str, Any], 2, string, |a, n| build(a, n, Shape::Array))
            .variadic()
            .udf(),
    ]
}

/// One argument's values, ready to be written as JSON.
pub(super) enum Values {
    Null,
    Text(ArrayRef),
    Raw(ArrayRef),
    Bool(ArrayRef),
    Int(ArrayRef),
    Double(ArrayRef),
    /// A DECIMAL, written with its scale's digits as Jackson writes a BigDecimal (`1.50`).
    Decimal(ArrayRef),
    /// A TIMESTAMP (as nanoseconds), written as a string the way Java's `LocalDateTime` prints it.
    Timestamp(ArrayRef),
}

impl Values {
    /// `array` written by its type (`raw`: its strings are JSON already); `usage`
    /// names the function in the error for a type JSON cannot take yet.
    pub(super) fn of(array: ArrayRef, raw: bool, usage: &str) -> Result<Values> {
        Ok(match array.data_type() {
            DataType::Null => Values::Null,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let text = cast(&array, &DataType::Utf8)?;
                if raw {
                    Values::Raw(text)
                } else {
                    Values::Text(text)
                }
            }
            DataType::Boolean => Values::Bool(array),
            t if t.is_integer() => Values::Int(cast(&array, &DataType::Int64)?),
            DataType::Float32 | DataType::Float64 => Values::Double(cast(&array, &DataType::Float64)?),
            DataType::Decimal128(..) => Values::Decimal(array),
            DataType::Timestamp(_, None) => Values::Timestamp(cast(&array, &DataType::Timestamp(TimeUnit::Nanosecond, None))?),
            other => {
                return Err(DataFusionError::Plan(format!("{usage}: a value of type {} cannot be written as JSON yet", crate::types::sql_type_name(other))))
            }
        })
    }

    pub(super) fn is_null(&self, i: usize) -> bool {
        match self {
            Values::Null => true,
            Values::Text(a) | Values::Raw(a) | Values::Bool(a) | Values::Int(a) | Values::Double(a) | Values::Decimal(a) | Values::Timestamp(a) => a.is_null(i),
        }
    }

    /// Row `i`'s value as JSON (`null` for NULL).
    pub(super) fn write(&self, i: usize, out: &mut String) {
        if self.is_null(i) {
            out.push_str("null");
            return;
        }
        match self {
            Values::Null => out.push_str("null"),
            Values::Text(a) => write_string(a.as_string::<i32>().value(i), out),
            Values::Raw(a) => out.push_str(a.as_string::<i32>().value(i)),
            Values::Bool(a) => out.push_str(if a.as_boolean().value(i) { "true" } else { "false" }),
            Values::Int(a) => {
                let _ = write!(out, "{}", a.as_primitive::<Int64Type>().value(i));
            }
            Values::Double(a) => {
                // Flink writes a DOUBLE through a BigDecimal of Java's text: `1.0E20` becomes `1.0E+20`.
                let start = out.len();
                java_double(a.as_primitive::<Float64Type>().value(i), out);
                if let Some(e) = out[start..].find('E').map(|e| start + e + 1).filter(|&e| !out[e..].starts_with('-')) {
                    out.insert(e, '+');
                }
            }
            Values::Decimal(a) => out.push_str(&a.as_primitive::<Decimal128Type>().value_as_string(i)),
            Values::Timestamp(a) => {
                let nanos = a.as_primitive::<TimestampNanosecondType>().value(i);
                out.push('"');
                local_date_time(nanos, out);
                out.push('"');
            }
        }
    }
}

/// `nanos` since the epoch as Java's `LocalDateTime.toString`: `2024-02-29T10:00`,
/// seconds only when not zero, and the fraction in groups of three digits.
fn local_date_time(nanos: i64, out: &mut String) {
    let time = chrono::DateTime::from_timestamp_nanos(nanos).naive_utc();
    let _ = write!(out, "{}", time.format("%Y-%m-%dT%H:%M"));
    let (seconds, fraction) = (time.second(), time.nanosecond());
    if seconds > 0 || fraction > 0 {
        let _ = write!(out, ":{seconds:02}");
    }
    if fraction > 0 {
        let _ = match fraction {
            f if f % 1_000_000 == 0 => write!(out, ".{:03}", f / 1_000_000),
            f if f % 1_000 == 0 => write!(out, ".{:06}", f / 1_000),
            f => write!(out, ".{f:09}"),
        };
    }
}

/// `JSON_STRING(value)`: the value as JSON text; NULL for NULL.
fn json_string(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let values = Values::of(args[0].to_array(rows)?, false, "JSON_STRING")?;
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    let mut text = String::new();
    for i in 0..rows {
        if values.is_null(i) {
            out.append_null();
            continue;
        }
        text.clear();
        values.write(i, &mut text);
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

/// Which constructor [`build`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Object,
    Array,
}

/// `JSON_OBJECT` / `JSON_ARRAY`: arguments 0 and 1 are `'NULL'` or `'ABSENT'`
/// and the shape (one [`RAW`] or [`TYPED`] per value); then the keys and values
/// (an object) or the values (an array).
fn build(args: &[ColumnarValue], rows: usize, shape: Shape) -> Result<ArrayRef> {
    let usage = if shape == Shape::Object { "JSON_OBJECT" } else { "JSON_ARRAY" };
    let (Strs::One(Some(on_null)), Strs::One(Some(raw))) = (Strs::of(&args[0])?, Strs::of(&args[1])?) else {
        return Err(DataFusionError::Internal(format!("{usage} is planned from its syntax")));
    };
    let absent = on_null == "ABSENT";
    let per_value = if shape == Shape::Object { 2 } else { 1 };
    let rest = &args[2..];
    if !rest.len().is_multiple_of(per_value) || rest.len() / per_value != raw.len() {
        return Err(DataFusionError::Internal(format!("{usage} is planned from its syntax")));
    }
    let mut keys = Vec::new();
    let mut values = Vec::new();
    for (n, flag) in raw.chars().enumerate() {
        if shape == Shape::Object {
            keys.push(Values::of(rest[2 * n].to_array(rows)?, false, usage)?);
        }
        values.push(Values::of(rest[per_value * n + per_value - 1].to_array(rows)?, flag == RAW, usage)?);
    }
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    let mut text = String::new();
    // The values of one row, in the order written: an object's sorted by key.
    let mut order: Vec<(&str, usize)> = Vec::with_capacity(values.len());
    for i in 0..rows {
        order.clear();
        for (n, value) in values.iter().enumerate() {
            if absent && value.is_null(i) {
                continue;
            }
            let key = match keys.get(n) {
                None => "",
                Some(Values::Text(k)) if !k.is_null(i) => k.as_string::<i32>().value(i),
                Some(_) => return Err(DataFusionError::Execution(format!("{usage}: a key must be a STRING that is not NULL"))),
            };
            order.push((key, n));
        }
        if shape == Shape::Object {
            // As Flink writes an object: keys sorted, a repeated key's last value kept.
            order.sort_by_key(|&(key, _)| key);
            order.dedup_by(|later, earlier| {
                let repeated = later.0 == earlier.0;
                if repeated {
                    earlier.1 = later.1;
                }
                repeated
            });
        }
        text.clear();
        text.push(if shape == Shape::Object { '{' } else { '[' });
        for (place, &(key, n)) in order.iter().enumerate() {
            if place > 0 {
                text.push(',');
            }
            if shape == Shape::Object {
                write_string(key, &mut text);
                text.push(':');
            }
            values[n].write(i, &mut text);
        }
        text.push(if shape == Shape::Object { '}' } else { ']' });
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::local_date_time;

    #[test]
    fn timestamps_print_as_java_local_date_times() {
        let text = |nanos: i64| {
            let mut out = String::new();
            local_date_time(nanos, &mut out);
            out
        };
        // 2024-02-29 10:00:00 UTC is 1_709_200_800 s since the epoch.
        let at = 1_709_200_800_000_000_000i64;
        assert_eq!(text(at), "2024-02-29T10:00", "no seconds when they are zero");
        assert_eq!(text(at + 5_000_000_000), "2024-02-29T10:00:05");
        assert_eq!(text(at + 120_000_000), "2024-02-29T10:00:00.120", "milliseconds in three digits");
        assert_eq!(text(at + 1_000), "2024-02-29T10:00:00.000001");
        assert_eq!(text(at + 1_500), "2024-02-29T10:00:00.000001500");
        assert_eq!(text(-1_000_000), "1969-12-31T23:59:59.999");
    }
}
