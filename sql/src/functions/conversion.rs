//! Flink's `CAST(x AS STRING)` where DataFusion's text differs: a timestamp as
//! `2024-01-01 00:00:01.000` (Arrow writes `2024-01-01T00:00:01`), a boolean as
//! `TRUE`, a DOUBLE or FLOAT as Java prints it (`1.0E7`, `1.0E-4`). Every other
//! type is cast by DataFusion. `CAST(x AS STRING)` (and `VARCHAR`, `TRY_CAST`)
//! is planned as a call of [`CAST_STRING`] (see [`super::syntax`]).

use std::fmt::{Display, LowerExp, Write};
use std::sync::Arc;

use chrono::DateTime;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, TimestampMillisecondType};
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::flink_fn::{string, FlinkFn, Param, MILLIS};

/// The internal name `CAST(x AS STRING)` is planned as.
pub(crate) const CAST_STRING: &str = "__eddy_cast_string";

/// Flink's casts to STRING.
pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![FlinkFn::new(CAST_STRING, "CAST(value AS STRING)", &[Param::Any], 1, string, cast_string).udf()]
}

/// `CAST(x AS STRING)`, as Flink writes each type.
fn cast_string(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let values = args[0].to_array(rows)?;
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    let mut text = String::new();
    let each = |out: &mut StringBuilder, text: &mut String, write: &dyn Fn(usize, &mut String)| {
        for i in 0..rows {
            if values.is_null(i) {
                out.append_null();
                continue;
            }
            text.clear();
            write(i, text);
            out.append_value(&*text);
        }
    };
    match values.data_type() {
        DataType::Timestamp(_, None) => {
            let millis = cast(&values, &MILLIS)?;
            let millis = millis.as_primitive::<TimestampMillisecondType>();
            each(&mut out, &mut text, &|i, text| {
                if let Some(t) = DateTime::from_timestamp_millis(millis.value(i)) {
                    let _ = write!(text, "{}", t.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f"));
                }
            });
        }
        DataType::Boolean => {
            let flags = values.as_boolean();
            each(&mut out, &mut text, &|i, text| text.push_str(if flags.value(i) { "TRUE" } else { "FALSE" }));
        }
        DataType::Float64 => {
            let numbers = values.as_primitive::<Float64Type>();
            each(&mut out, &mut text, &|i, text| java_double(numbers.value(i), text));
        }
        DataType::Float32 => {
            let numbers = values.as_primitive::<Float32Type>();
            each(&mut out, &mut text, &|i, text| java_float(numbers.value(i), text));
        }
        _ => return Ok(cast(&values, &DataType::Utf8)?),
    }
    Ok(Arc::new(out.finish()))
}

/// `d` as Java's `Double.toString` prints it: `1.0`, `0.001`, `1.0E7`, `1.5E-7`.
pub(super) fn java_double(d: f64, out: &mut String) {
    java_floating(d, d.is_nan(), d.is_infinite(), d.abs(), d.fract() == 0.0, d > 0.0, out);
}

/// `f` as Java's `Float.toString` prints it, from the shortest digits of the FLOAT itself.
fn java_float(f: f32, out: &mut String) {
    java_floating(f, f.is_nan(), f.is_infinite(), f64::from(f.abs()), f.fract() == 0.0, f > 0.0, out);
}

/// Java's rule: plain between 10^-3 and 10^7 (a whole number with `.0`), else
/// `d.dddE±n`; the digits are the shortest that read back as the number.
fn java_floating<T: Display + LowerExp>(x: T, nan: bool, infinite: bool, magnitude: f64, whole: bool, positive: bool, out: &mut String) {
    if nan {
        out.push_str("NaN");
        return;
    }
    if infinite {
        out.push_str(if positive { "Infinity" } else { "-Infinity" });
        return;
    }
    if magnitude == 0.0 || (1e-3..1e7).contains(&magnitude) {
        let _ = write!(out, "{x}");
        if whole {
            out.push_str(".0");
        }
        return;
    }
    let text = format!("{x:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    out.push_str(mantissa);
    if !mantissa.contains('.') {
        out.push_str(".0");
    }
    out.push('E');
    out.push_str(exponent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_java_prints_them() {
        let java = |d: f64| {
            let mut out = String::new();
            java_double(d, &mut out);
            out
        };
        assert_eq!(java(1.0), "1.0");
        assert_eq!(java(1.5), "1.5");
        assert_eq!(java(100.0), "100.0");
        assert_eq!(java(0.001), "0.001");
        assert_eq!(java(1e7), "1.0E7");
        assert_eq!(java(1.5e-7), "1.5E-7");
        assert_eq!(java(-2.5e10), "-2.5E10");
        assert_eq!(java(0.0), "0.0");
    }

    #[test]
    fn floats_print_their_own_digits() {
        let java = |f: f32| {
            let mut out = String::new();
            java_float(f, &mut out);
            out
        };
        assert_eq!(java(0.1), "0.1", "not 0.10000000149");
        assert_eq!(java(1e7), "1.0E7");
    }
}
