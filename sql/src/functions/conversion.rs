//! Flink's `CAST(x AS STRING)` where DataFusion's text differs: a timestamp as
//! `2024-01-01 00:00:01.000` (Arrow writes `2024-01-01T00:00:01`), a boolean as
//! `TRUE`, a DOUBLE or FLOAT as Java prints it (`1.0E7`, `1.0E-4`), an ARRAY as
//! `[1, NULL]`, a MAP as `{a=1}`, a ROW as `(1, x)` (their elements written the
//! same way). Every other type is cast by DataFusion. `CAST(x AS STRING)` (and `VARCHAR`, `TRY_CAST`)
//! is planned as a call of [`CAST_STRING`] (see [`super::syntax`]).

use std::fmt::{Display, LowerExp, Write};
use std::sync::Arc;

use chrono::DateTime;
use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, ListArray, StringArray, StringBuilder};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{cast, cast_with_options, concat, CastOptions};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, TimestampMillisecondType};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::flink_fn::{string, FlinkFn, Param, MILLIS};

/// The internal name `CAST(x AS STRING)` is planned as.
pub(crate) const CAST_STRING: &str = "__eddy_cast_string";

/// The internal name `CAST(x AS ARRAY<...>)` (and `TRY_CAST`) is planned as:
/// `__eddy_cast_collection(x, CAST(NULL AS ARRAY<...>), 'CAST' | 'TRY_CAST')`.
pub(crate) const CAST_COLLECTION: &str = "__eddy_cast_collection";

/// Flink's casts to STRING and to ARRAY types.
pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        FlinkFn::new(CAST_STRING, "CAST(value AS STRING)", &[Param::Any], 1, string, cast_string).udf(),
        FlinkFn::new(CAST_COLLECTION, "CAST(value AS ARRAY<type>)", &[Param::Any, Param::Any, Param::Str], 3, |t| t[1].clone(), cast_collection).udf(),
    ]
}

/// `CAST(x AS ARRAY<...>)`: each element cast as Flink casts it (to STRING as
/// [`cast_string`] writes it, `TRUE` rather than Arrow's `true`); failing on an
/// element that cannot be cast. `TRY_CAST` makes a row NULL when any of its
/// elements cannot be cast, as Flink does, rather than only that element.
fn cast_collection(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let values = args[0].to_array(rows)?;
    let to = args[1].data_type();
    let try_cast = matches!(&args[2], ColumnarValue::Scalar(ScalarValue::Utf8(Some(mode))) if mode == "TRY_CAST");
    match flink_cast(&values, &to) {
        Ok(cast) => Ok(cast),
        Err(_) if try_cast => {
            // Some row fails: cast row by row, NULL for each that fails.
            let pieces =
                (0..values.len()).map(|row| flink_cast(&values.slice(row, 1), &to).or_else(|_| Ok(new_null_array(&to, 1)))).collect::<Result<Vec<_>>>()?;
            let pieces: Vec<&dyn Array> = pieces.iter().map(|p| p.as_ref()).collect();
            Ok(concat(&pieces)?)
        }
        Err(e) => Err(e),
    }
}

/// `values` cast to `to` as Flink casts: into ARRAYs element by element, to
/// STRING as Flink writes values, anything else by Arrow's (failing) cast.
fn flink_cast(values: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    let strict = CastOptions { safe: false, ..Default::default() };
    match (values.data_type(), to) {
        (DataType::List(from) | DataType::LargeList(from) | DataType::FixedSizeList(from, _), DataType::List(field)) => {
            let values = cast(values, &DataType::List(Arc::clone(from)))?;
            let lists = values.as_list::<i32>();
            // Only the elements of these rows (a slice's list keeps all of its values).
            let offsets = lists.value_offsets();
            let (first, last) = (offsets[0], offsets[offsets.len() - 1]);
            let elements = flink_cast(&lists.values().slice(first as usize, (last - first) as usize), field.data_type())?;
            let offsets = OffsetBuffer::new(offsets.iter().map(|o| o - first).collect::<Vec<_>>().into());
            Ok(Arc::new(ListArray::try_new(Arc::clone(field), offsets, elements, lists.nulls().cloned())?))
        }
        (from, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) if !matches!(from, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
            Ok(cast(&texts(values)?, to)?)
        }
        _ => Ok(cast_with_options(values, to, &strict)?),
    }
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
        DataType::List(field) | DataType::LargeList(field) | DataType::FixedSizeList(field, _) => {
            let field = Arc::clone(field);
            let values = cast(&values, &DataType::List(field))?;
            let lists = values.as_list::<i32>();
            let elements = texts(lists.values())?;
            let elements = elements.as_string::<i32>();
            each(&mut out, &mut text, &|i, text| {
                let offsets = lists.value_offsets();
                write_all(text, ('[', ']'), (offsets[i] as usize..offsets[i + 1] as usize).map(|j| nullable(elements, j)));
            });
        }
        DataType::Map(..) => {
            let maps = values.as_map();
            let (keys, items) = (texts(maps.keys())?, texts(maps.values())?);
            let (keys, items) = (keys.as_string::<i32>(), items.as_string::<i32>());
            each(&mut out, &mut text, &|i, text| {
                let offsets = maps.value_offsets();
                text.push('{');
                for (n, j) in (offsets[i] as usize..offsets[i + 1] as usize).enumerate() {
                    if n > 0 {
                        text.push_str(", ");
                    }
                    let _ = write!(text, "{}={}", nullable(keys, j), nullable(items, j));
                }
                text.push('}');
            });
        }
        DataType::Struct(_) => {
            let rows = values.as_struct();
            let fields = rows.columns().iter().map(texts).collect::<Result<Vec<_>>>()?;
            each(&mut out, &mut text, &|i, text| write_all(text, ('(', ')'), fields.iter().map(|f| nullable(f.as_string::<i32>(), i))));
        }
        _ => return Ok(cast(&values, &DataType::Utf8)?),
    }
    Ok(Arc::new(out.finish()))
}

/// Every value of `values` as Flink's CAST to STRING writes it (NULL stays NULL).
fn texts(values: &ArrayRef) -> Result<ArrayRef> {
    cast_string(&[ColumnarValue::Array(Arc::clone(values))], values.len())
}

/// Element `i` of `texts`, or `NULL`, as Flink writes an element of a collection.
fn nullable(texts: &StringArray, i: usize) -> &str {
    if texts.is_null(i) {
        "NULL"
    } else {
        texts.value(i)
    }
}

/// `items` between `open` and `close`, each after a `, `: `[1, NULL]`, `(1, x)`.
fn write_all<'a>(text: &mut String, (open, close): (char, char), items: impl Iterator<Item = &'a str>) {
    text.push(open);
    for (n, item) in items.enumerate() {
        if n > 0 {
            text.push_str(", ");
        }
        text.push_str(item);
    }
    text.push(close);
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
