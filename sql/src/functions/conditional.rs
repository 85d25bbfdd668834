//! Flink's conditional functions that DataFusion lacks: `IF`, and the string
//! tests `IS_DIGIT`, `IS_ALPHA`, `IS_DECIMAL`; and `GREATEST`/`LEAST`, NULL
//! with any NULL argument in Flink.

use std::sync::Arc;

use datafusion::arrow::array::{make_array, new_null_array, Array, ArrayRef, BooleanArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::kernels::cmp;
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::prep_null_mask_filter;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::flink_fn::{boolean, FlinkFn, Param, Strs};

/// Flink's conditional functions that DataFusion lacks.
pub(super) fn functions() -> Vec<ScalarUDF> {
    use Param::{Bool, Same, Str};
    vec![
        FlinkFn::new("IF", "IF(condition, then, else)", &[Bool, Same, Same], 3, |types| types[1].clone(), if_then_else).udf(),
        // DataFusion's skip NULLs (as PostgreSQL); Flink's are NULL when any argument is.
        FlinkFn::new("GREATEST", "GREATEST(a, b, ...)", &[Same], 1, |types| types[0].clone(), |a, n| extreme(a, n, Extreme::Greatest)).variadic().udf(),
        FlinkFn::new("LEAST", "LEAST(a, b, ...)", &[Same], 1, |types| types[0].clone(), |a, n| extreme(a, n, Extreme::Least)).variadic().udf(),
        FlinkFn::new("IS_DIGIT", "IS_DIGIT(text)", &[Str], 1, boolean, |a, n| test(a, n, |s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))).udf(),
        FlinkFn::new("IS_ALPHA", "IS_ALPHA(text)", &[Str], 1, boolean, |a, n| test(a, n, |s| !s.is_empty() && s.chars().all(char::is_alphabetic))).udf(),
        FlinkFn::new("IS_DECIMAL", "IS_DECIMAL(text)", &[Str], 1, boolean, |a, n| test(a, n, is_decimal)).udf(),
    ]
}

/// `IF(condition, then, else)`: `then` where the condition holds, else `else`
/// (a NULL condition does not hold).
fn if_then_else(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let mask = args[0].to_array(rows)?;
    let mask = match mask.as_any().downcast_ref::<BooleanArray>() {
        Some(mask) if mask.null_count() > 0 => prep_null_mask_filter(mask),
        Some(mask) => mask.clone(),
        None => BooleanArray::from(vec![false; rows]),
    };
    let datum = |v: &ColumnarValue| -> Result<Arc<dyn datafusion::arrow::array::Datum>> {
        Ok(match v {
            ColumnarValue::Array(a) => Arc::new(Arc::clone(a)),
            ColumnarValue::Scalar(s) => Arc::new(s.to_scalar()?),
        })
    };
    let (then, otherwise) = (datum(&args[1])?, datum(&args[2])?);
    Ok(zip(&mask, then.as_ref(), otherwise.as_ref())?)
}

/// Which end `extreme` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extreme {
    Greatest,
    Least,
}

/// `GREATEST`/`LEAST` of each row's arguments; NULL when any of them is.
fn extreme(args: &[ColumnarValue], rows: usize, which: Extreme) -> Result<ArrayRef> {
    let arrays = args.iter().map(|a| a.to_array(rows)).collect::<Result<Vec<_>>>()?;
    let Some((first, rest)) = arrays.split_first() else { return Ok(new_null_array(&DataType::Null, rows)) };
    let mut best = Arc::clone(first);
    let mut nulls = best.logical_nulls();
    for next in rest {
        let better = match which {
            Extreme::Greatest => cmp::gt(next, &best)?,
            Extreme::Least => cmp::lt(next, &best)?,
        };
        let better = if better.null_count() > 0 { prep_null_mask_filter(&better) } else { better };
        best = zip(&better, next, &best)?;
        nulls = NullBuffer::union(nulls.as_ref(), next.logical_nulls().as_ref());
    }
    Ok(make_array(best.to_data().into_builder().nulls(nulls).build()?))
}

/// A test of each row's text; NULL text fails it (Flink gives false, not NULL).
fn test(args: &[ColumnarValue], rows: usize, holds: fn(&str) -> bool) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let out: BooleanArray = (0..rows).map(|i| Some(texts.get(i).is_some_and(holds))).collect();
    Ok(Arc::new(out))
}

/// Whether `text` is a decimal number: optionally signed digits with at most one
/// point, and an optional exponent (`1e3`). Flink also accepts Java's hex and
/// type-suffixed forms (`0x1F`, `1L`); Eddy does not.
fn is_decimal(text: &str) -> bool {
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let digits = mantissa.strip_prefix(['-', '+']).unwrap_or(mantissa);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    let mantissa_ok = !(whole.is_empty() && fraction.is_none_or(str::is_empty)) && all_digits(whole) && fraction.is_none_or(all_digits);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}
