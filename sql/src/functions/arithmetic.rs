//! Flink's arithmetic functions that DataFusion lacks or means differently:
//! `MOD`, `SIGN`, `TRUNCATE`; `LOG`, whose one-argument form is the natural logarithm in Flink
//! (DataFusion's is base 10); `SQRT`, NaN for a negative number (DataFusion's fails).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array};
use datafusion::arrow::compute::kernels::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::flink_fn::{double, FlinkFn, Param, Prims};

/// Flink's arithmetic functions that DataFusion lacks.
pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        FlinkFn::new("MOD", "MOD(integer, integer)", &[Param::AnyInt, Param::AnyInt], 2, second_type, modulo).udf(),
        // DataFusion's fails on a negative number; Flink's is NaN.
        FlinkFn::new("SQRT", "SQRT(x)", &[Param::Float], 1, double, |a, n| unary(a, n, f64::sqrt)).udf(),
        FlinkFn::new("SIGN", "SIGN(x)", &[Param::Number], 1, |types| types[0].clone(), sign).udf(),
        FlinkFn::new("TRUNCATE", "TRUNCATE(x[, places])", &[Param::Float, Param::Int], 1, double, truncate).udf(),
        FlinkFn::new("LOG", "LOG(x) or LOG(base, x)", &[Param::Float, Param::Float], 1, double, log).udf(),
    ]
}

/// `f` of each row's number.
fn unary(args: &[ColumnarValue], rows: usize, f: fn(f64) -> f64) -> Result<ArrayRef> {
    let x = Prims::<Float64Type>::of(&args[0])?;
    let out: Float64Array = (0..rows).map(|i| x.get(i).map(f)).collect();
    Ok(Arc::new(out))
}

/// `SIGN(x)`: -1, 0 or 1, of `x`'s type.
fn sign(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let x = args[0].cast_to(&DataType::Float64, None)?;
    let x = Prims::<Float64Type>::of(&x)?;
    let out: ArrayRef = Arc::new(
        (0..rows)
            .map(|i| {
                x.get(i).map(|v| {
                    if v.is_nan() {
                        v
                    } else if v == 0.0 {
                        0.0
                    } else {
                        v.signum()
                    }
                })
            })
            .collect::<Float64Array>(),
    );
    Ok(cast::cast(&out, &args[0].data_type())?)
}

/// `TRUNCATE(x[, places])`: `x` cut (toward zero) to `places` decimal places (0 by default).
fn truncate(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let x = Prims::<Float64Type>::of(&args[0])?;
    let zero = ColumnarValue::Scalar(datafusion::common::ScalarValue::Int64(Some(0)));
    let places = Prims::<Int64Type>::of(args.get(1).unwrap_or(&zero))?;
    let out: Float64Array = (0..rows)
        .map(|i| {
            let (x, places) = (x.get(i)?, places.get(i)?);
            let scale = 10f64.powi(i32::try_from(places.clamp(-308, 308)).unwrap_or(0));
            Some((x * scale).trunc() / scale)
        })
        .collect();
    Ok(Arc::new(out))
}

/// `LOG(x)`: the natural logarithm; `LOG(base, x)`: the logarithm to `base`.
fn log(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let first = Prims::<Float64Type>::of(&args[0])?;
    let out: Float64Array = match args.get(1) {
        None => (0..rows).map(|i| first.get(i).map(f64::ln)).collect(),
        Some(x) => {
            let x = Prims::<Float64Type>::of(x)?;
            (0..rows).map(|i| Some(x.get(i)?.ln() / first.get(i)?.ln())).collect()
        }
    };
    Ok(Arc::new(out))
}

/// Flink's `MOD` has its divisor's type (`MOD(BIGINT, INT)` is an INT).
fn second_type(types: &[DataType]) -> DataType {
    match types.get(1) {
        Some(DataType::Null) | None => DataType::Int32,
        Some(t) => t.clone(),
    }
}

/// `MOD(a, b)`: the remainder of `a / b`, negative only when `a` is; dividing
/// by zero is an error, as in Flink.
fn modulo(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let wide = |v: &ColumnarValue| v.cast_to(&DataType::Int64, None);
    let (a, b) = (wide(&args[0])?, wide(&args[1])?);
    let (a, b) = (Prims::<Int64Type>::of(&a)?, Prims::<Int64Type>::of(&b)?);
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        out.push(match (a.get(i), b.get(i)) {
            (_, Some(0)) => return Err(DataFusionError::Execution("MOD: division by zero".into())),
            // i64::MIN % -1 overflows in Rust; the remainder is 0.
            (Some(a), Some(b)) => Some(a.checked_rem(b).unwrap_or(0)),
            _ => None,
        });
    }
    let out: ArrayRef = Arc::new(Int64Array::from(out));
    let target = second_type(&[DataType::Null, args[1].data_type()]);
    Ok(cast::cast(&out, &target)?)
}
