//! Flink's arithmetic functions that DataFusion lacks or means differently:
//! `MOD`, `SIGN`, `TRUNCATE`, `HEX`, `BIN`; `LOG`, whose one-argument form is the natural logarithm in Flink
//! (DataFusion's is base 10); `SQRT`, NaN for a negative number (DataFusion's fails);
//! `ABS`, which wraps at the smallest integer as Java does (DataFusion's fails); `CEIL`/`FLOOR`,
//! which keep an integer's type (DataFusion's give a DOUBLE); `ROUND`, which rounds a DOUBLE's
//! shortest decimal form half up as Java's `BigDecimal` does (DataFusion's rounds the binary
//! value: 1.005 to 1.0, Flink's to 1.01); `POWER`, Java's `Math.pow` of two DOUBLEs (DataFusion's
//! raises integers as integers); and `EXP`, `LN`, `LOG10`, `LOG2`, a DOUBLE for a FLOAT too.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, PrimitiveArray, StringBuilder};
use datafusion::arrow::compute::kernels::cast;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, DECIMAL128_MAX_PRECISION,
};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::flink_fn::{double, string, FlinkFn, Param, Prims, Strs};

/// Flink's arithmetic functions that DataFusion lacks.
pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        FlinkFn::new("MOD", "MOD(integer, integer)", &[Param::AnyInt, Param::AnyInt], 2, second_type, modulo).udf(),
        // DataFusion's fails on a negative number; Flink's is NaN.
        FlinkFn::new("SQRT", "SQRT(x)", &[Param::Float], 1, double, |a, n| unary(a, n, f64::sqrt)).udf(),
        FlinkFn::new("SIGN", "SIGN(x)", &[Param::Number], 1, |types| types[0].clone(), sign).udf(),
        FlinkFn::new("TRUNCATE", "TRUNCATE(x[, places])", &[Param::Float, Param::Int], 1, double, truncate).udf(),
        FlinkFn::new("LOG", "LOG(x) or LOG(base, x)", &[Param::Float, Param::Float], 1, double, log).udf(),
        // DataFusion's raises integers as integers (and fails on 0 to a negative power);
        // Flink's is Java's Math.pow of two DOUBLEs.
        FlinkFn::new("POWER", "POWER(base, exponent)", &[Param::Float, Param::Float], 2, double, power).udf(),
        // DataFusion's give a FLOAT for a FLOAT; Flink's are always a DOUBLE.
        FlinkFn::new("EXP", "EXP(x)", &[Param::Float], 1, double, |a, n| unary(a, n, f64::exp)).udf(),
        FlinkFn::new("LN", "LN(x)", &[Param::Float], 1, double, |a, n| unary(a, n, f64::ln)).udf(),
        FlinkFn::new("LOG10", "LOG10(x)", &[Param::Float], 1, double, |a, n| unary(a, n, f64::log10)).udf(),
        FlinkFn::new("LOG2", "LOG2(x)", &[Param::Float], 1, double, |a, n| unary(a, n, f64::log2)).udf(),
        FlinkFn::new("HEX", "HEX(integer or text)", &[Param::IntOrStr], 1, string, hex).udf(),
        FlinkFn::new("BIN", "BIN(integer)", &[Param::Int], 1, string, bin).udf(),
        // DataFusion's fails on the smallest integer of a type; Flink's (Java's) leaves it as it is.
        FlinkFn::new("ABS", "ABS(x)", &[Param::Number], 1, first_type, abs).udf(),
        // DataFusion's give a DOUBLE for an integer; Flink's keep its type.
        FlinkFn::new("CEIL", "CEIL(x)", &[Param::Number], 1, whole_type, |a, n| ceil_floor(a, n, Toward::Up)).udf(),
        FlinkFn::new("CEILING", "CEILING(x)", &[Param::Number], 1, whole_type, |a, n| ceil_floor(a, n, Toward::Up)).udf(),
        FlinkFn::new("FLOOR", "FLOOR(x)", &[Param::Number], 1, whole_type, |a, n| ceil_floor(a, n, Toward::Down)).udf(),
        // DataFusion's rounds a DOUBLE's binary value (1.005 to 1.0); Flink's its decimal form (1.01).
        FlinkFn::new("ROUND", "ROUND(x[, places])", &[Param::Number, Param::Int], 1, first_type, round).typed_by_constants(round_type).udf(),
    ]
}

/// The first argument's type (`ABS`, and `ROUND` of a number that is no DECIMAL).
fn first_type(types: &[DataType]) -> DataType {
    match types.first() {
        Some(DataType::Null) | None => DataType::Int64,
        Some(t) => t.clone(),
    }
}

/// `CEIL`/`FLOOR`'s type: the argument's, a DECIMAL without its fraction.
fn whole_type(types: &[DataType]) -> DataType {
    match first_type(types) {
        DataType::Decimal128(precision, _) => DataType::Decimal128(precision, 0),
        other => other,
    }
}

/// An error for a number type a function cannot take after all (Decimal256, unsigned).
fn unsupported(function: &str, data_type: &DataType) -> DataFusionError {
    DataFusionError::Plan(format!("{function}: a value of type {} is not supported", crate::types::sql_type_name(data_type)))
}

/// `HEX(x)`: an integer's two's complement as 64 bits (as Java's `Long.toHexString`), or a
/// text's UTF-8 bytes, in upper-case hex.
fn hex(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    let failed = |e: std::fmt::Error| DataFusionError::Execution(format!("HEX: {e}"));
    if args[0].data_type() == DataType::Utf8 {
        let texts = Strs::of(&args[0])?;
        for i in 0..rows {
            let Some(text) = texts.get(i) else {
                out.append_null();
                continue;
            };
            for byte in text.bytes() {
                out.write_char(char::from(DIGITS[usize::from(byte >> 4)])).map_err(failed)?;
                out.write_char(char::from(DIGITS[usize::from(byte & 15)])).map_err(failed)?;
            }
            out.append_value("");
        }
    } else {
        let x = Prims::<Int64Type>::of(&args[0])?;
        for i in 0..rows {
            match x.get(i) {
                Some(v) => {
                    write!(out, "{:X}", v as u64).map_err(failed)?;
                    out.append_value("");
                }
                None => out.append_null(),
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `BIN(x)`: an integer's two's complement as 64 bits in binary, without leading
/// zeros (Java's `Long.toBinaryString`).
fn bin(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let x = Prims::<Int64Type>::of(&args[0])?;
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    for i in 0..rows {
        match x.get(i) {
            Some(v) => {
                write!(out, "{:b}", v as u64).map_err(|e| DataFusionError::Execution(format!("BIN: {e}")))?;
                out.append_value("");
            }
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `f` over every value of a primitive array, keeping its type (and a DECIMAL's precision and scale).
fn map<T: ArrowPrimitiveType>(x: &ArrayRef, f: impl Fn(T::Native) -> T::Native) -> ArrayRef {
    let out: PrimitiveArray<T> = x.as_primitive::<T>().unary(f);
    Arc::new(out.with_data_type(x.data_type().clone()))
}

/// `ABS(x)`, of `x`'s type. The smallest integer of a type stays itself, as in
/// Java (Flink's `ABS` of the smallest INT is that INT).
fn abs(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let x = args[0].to_array(rows)?;
    Ok(match x.data_type() {
        DataType::Int8 => map::<Int8Type>(&x, i8::wrapping_abs),
        DataType::Int16 => map::<Int16Type>(&x, i16::wrapping_abs),
        DataType::Int32 => map::<Int32Type>(&x, i32::wrapping_abs),
        DataType::Int64 => map::<Int64Type>(&x, i64::wrapping_abs),
        DataType::Float32 => map::<Float32Type>(&x, f32::abs),
        DataType::Float64 => map::<Float64Type>(&x, f64::abs),
        DataType::Decimal128(..) => map::<Decimal128Type>(&x, i128::wrapping_abs),
        other => return Err(unsupported("ABS", other)),
    })
}

/// Which way `CEIL`/`FLOOR` go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Toward {
    Up,
    Down,
}

/// `CEIL(x)` / `FLOOR(x)`: an integer as it is, a DOUBLE or FLOAT to a whole
/// number of its type, a DECIMAL(p, s) to a DECIMAL(p, 0).
fn ceil_floor(args: &[ColumnarValue], rows: usize, toward: Toward) -> Result<ArrayRef> {
    let x = args[0].to_array(rows)?;
    let up = toward == Toward::Up;
    Ok(match x.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => x,
        DataType::Float32 => map::<Float32Type>(&x, if up { f32::ceil } else { f32::floor }),
        DataType::Float64 => map::<Float64Type>(&x, if up { f64::ceil } else { f64::floor }),
        // A negative scale holds whole numbers already.
        DataType::Decimal128(precision, scale) if *scale <= 0 => cast::cast(&x, &DataType::Decimal128(*precision, 0))?,
        DataType::Decimal128(precision, scale) => {
            let unit = pow10(i64::from(*scale)).unwrap_or(i128::MAX);
            let whole: PrimitiveArray<Decimal128Type> = x.as_primitive::<Decimal128Type>().unary(|v| {
                let (quotient, remainder) = (v / unit, v % unit);
                match (up, remainder) {
                    (true, r) if r > 0 => quotient + 1,
                    (false, r) if r < 0 => quotient - 1,
                    _ => quotient,
                }
            });
            Arc::new(whole.with_precision_and_scale(*precision, 0)?)
        }
        other => return Err(unsupported(if up { "CEIL" } else { "FLOOR" }, other)),
    })
}

/// 10 to the power `n`, when an i128 holds it.
fn pow10(n: i64) -> Option<i128> {
    u32::try_from(n).ok().and_then(|n| 10i128.checked_pow(n))
}

/// `ROUND`'s places when they are a constant: 0 when not given; None when they are
/// a column (or NULL).
fn constant_places(types: &[DataType], constants: &[Option<&ScalarValue>]) -> Option<i64> {
    if types.len() < 2 {
        return Some(0);
    }
    match constants.get(1).copied().flatten()? {
        ScalarValue::Int8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int64(Some(v)) => Some(*v),
        _ => None,
    }
}

/// Flink's type of `ROUND(DECIMAL(p, s), r)`: as it is when `r >= s`; DECIMAL(1 + p - s + r, r)
/// when `0 <= r < s` (one more digit, for the carry); DECIMAL(1 + p - s, 0) when `r < 0`.
/// Any other number keeps its type.
fn round_type(types: &[DataType], constants: &[Option<&ScalarValue>]) -> DataType {
    match (first_type(types), constant_places(types, constants)) {
        (DataType::Decimal128(p, s), Some(r)) => rounded_decimal(p, s, r),
        (other, _) => other,
    }
}

/// The DECIMAL a DECIMAL(p, s) rounded to `r` places is.
fn rounded_decimal(p: u8, s: i8, r: i64) -> DataType {
    let (precision, scale) = (i64::from(p), i64::from(s));
    if r >= scale {
        return DataType::Decimal128(p, s);
    }
    let whole = 1 + precision - scale;
    let (precision, scale) = if r < 0 { (whole, 0) } else { (whole + r, r) };
    let precision = precision.clamp(1, i64::from(DECIMAL128_MAX_PRECISION));
    DataType::Decimal128(u8::try_from(precision).unwrap_or(DECIMAL128_MAX_PRECISION), i8::try_from(scale).unwrap_or(0))
}

/// `ROUND(x[, places])`, half away from zero, as Flink (Java's `RoundingMode.HALF_UP`):
/// an integer to a multiple of 10^-places, wrapping on overflow as Java's casts do;
/// a DOUBLE or FLOAT through its shortest decimal form (`BigDecimal.valueOf`), so
/// 1.005 is 1.01; a DECIMAL exactly. NaN and infinities fail, as in Flink.
fn round(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let x = args[0].to_array(rows)?;
    let zero = ColumnarValue::Scalar(ScalarValue::Int64(Some(0)));
    let places_arg = args.get(1).unwrap_or(&zero);
    let places = Prims::<Int64Type>::of(places_arg)?;
    // Flink's places are an INT; beyond a thousand every number rounds the same.
    let places = |i: usize| places.get(i).map(|r| r.clamp(-1000, 1000));
    // The places decide a DECIMAL's result type only when they are a constant.
    let constant = match places_arg {
        ColumnarValue::Scalar(_) => Some(places(0)),
        ColumnarValue::Array(_) => None,
    };
    macro_rules! integers {
        ($t:ty, $native:ty) => {{
            let x = x.as_primitive::<$t>();
            let out: PrimitiveArray<$t> = (0..x.len())
                .map(|i| {
                    let (v, r) = (x.is_valid(i).then(|| x.value(i))?, places(i)?);
                    // Java: BigDecimal rounding, then longValue() and the cast to the type, both wrapping.
                    Some(round_integer(i128::from(v), r) as i64 as $native)
                })
                .collect();
            Arc::new(out) as ArrayRef
        }};
    }
    Ok(match x.data_type() {
        DataType::Int8 => integers!(Int8Type, i8),
        DataType::Int16 => integers!(Int16Type, i16),
        DataType::Int32 => integers!(Int32Type, i32),
        DataType::Int64 => integers!(Int64Type, i64),
        DataType::Float64 | DataType::Float32 => {
            let wide = cast::cast(&x, &DataType::Float64)?;
            let wide = wide.as_primitive::<Float64Type>();
            let mut digits = String::with_capacity(32);
            let mut out = Vec::with_capacity(wide.len());
            for i in 0..wide.len() {
                out.push(match (wide.is_valid(i).then(|| wide.value(i)), places(i)) {
                    (Some(v), Some(r)) => Some(round_double(v, r, &mut digits)?),
                    _ => None,
                });
            }
            let out: ArrayRef = Arc::new(Float64Array::from(out));
            cast::cast(&out, x.data_type())?
        }
        DataType::Decimal128(p, s) => {
            // Flink keeps the input's type for places that are no constant and reads the
            // rounded digits at its scale (ROUND(1.45, x) of a DECIMAL(5, 2) gives 0.15
            // for x = 1): refused rather than answered otherwise.
            let target = match constant {
                Some(Some(r)) => rounded_decimal(*p, *s, r),
                Some(None) => DataType::Decimal128(*p, *s),
                None => return Err(DataFusionError::Execution("ROUND: the places of a DECIMAL must be a constant".into())),
            };
            let DataType::Decimal128(_, target_scale) = target else { return Err(unsupported("ROUND", &target)) };
            let x = x.as_primitive::<Decimal128Type>();
            let out: PrimitiveArray<Decimal128Type> =
                (0..x.len()).map(|i| Some(round_decimal(x.is_valid(i).then(|| x.value(i))?, i64::from(*s), places(i)?, i64::from(target_scale)))).collect();
            let DataType::Decimal128(precision, scale) = target else { return Err(unsupported("ROUND", &target)) };
            Arc::new(out.with_precision_and_scale(precision, scale)?)
        }
        other => return Err(unsupported("ROUND", other)),
    })
}

/// `v` divided by `unit`, rounded half away from zero.
fn divide_half_up(v: i128, unit: i128) -> i128 {
    let (quotient, remainder) = (v / unit, v % unit);
    if remainder.unsigned_abs() * 2 >= unit.unsigned_abs() {
        quotient + v.signum()
    } else {
        quotient
    }
}

/// An integer rounded to `places` (only negative places change it).
fn round_integer(v: i128, places: i64) -> i128 {
    if places >= 0 {
        return v;
    }
    // |v| < 10^20 < unit / 2 from 10^21 on: the result is 0.
    if places < -20 {
        return 0;
    }
    pow10(-places).map_or(0, |unit| divide_half_up(v, unit) * unit)
}

/// A DECIMAL's unscaled `v` at `scale`, rounded to `places` and given at `target` scale.
fn round_decimal(v: i128, scale: i64, places: i64, target: i64) -> i128 {
    if places >= scale {
        return rescale(v, scale, target);
    }
    let Some(unit) = pow10(scale - places).filter(|_| scale - places <= 38) else { return 0 };
    let rounded = divide_half_up(v, unit);
    // `rounded` counts units of 10^-places.
    rescale(rounded, places, target)
}

/// The unscaled value `v` at `from` scale, at `to` scale (only ever widened here, or exact).
fn rescale(v: i128, from: i64, to: i64) -> i128 {
    match to - from {
        0 => v,
        up if up > 0 => pow10(up).map_or(0, |unit| v.saturating_mul(unit)),
        down => pow10(-down).map_or(0, |unit| v / unit),
    }
}

/// A DOUBLE rounded half up at `places` of its shortest decimal form (Java's
/// `BigDecimal.valueOf(v).setScale(places, HALF_UP).doubleValue()`); `digits` is
/// a buffer reused across rows.
fn round_double(v: f64, places: i64, digits: &mut String) -> Result<f64> {
    if !v.is_finite() {
        return Err(DataFusionError::Execution(format!("ROUND: {v} has no decimal form to round (as in Flink, where it fails)")));
    }
    if v == 0.0 {
        return Ok(0.0);
    }
    // Shortest round-trip digits: d.ddddde<exponent>, as Java's Double.toString has them.
    digits.clear();
    write!(digits, "{:e}", v.abs()).map_err(|e| DataFusionError::Execution(format!("ROUND: {e}")))?;
    let (mantissa, exponent) = digits.split_once('e').unwrap_or((digits.as_str(), "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let mut kept = [0u8; 24];
    let mut count = 0;
    for b in mantissa.bytes().filter(u8::is_ascii_digit) {
        if count < kept.len() {
            kept[count] = b - b'0';
            count += 1;
        }
    }
    // The value is 0.d1d2...dn * 10^(exponent + 1); keep the digits before `places`.
    let keep = exponent + 1 + places;
    if keep >= count as i64 {
        return Ok(v);
    }
    if keep < 0 {
        return Ok(0.0);
    }
    let keep = keep as usize;
    let mut whole: u128 = kept[..keep].iter().fold(0, |acc, d| acc * 10 + u128::from(*d));
    if kept[keep] >= 5 {
        whole += 1;
    }
    if whole == 0 {
        return Ok(0.0);
    }
    // whole * 10^-places, parsed as Rust parses decimals: the nearest DOUBLE, as BigDecimal.doubleValue().
    digits.clear();
    write!(digits, "{whole}e{}", -places).map_err(|e| DataFusionError::Execution(format!("ROUND: {e}")))?;
    let rounded: f64 = digits.parse().map_err(|e| DataFusionError::Execution(format!("ROUND: {e}")))?;
    Ok(if v < 0.0 { -rounded } else { rounded })
}

/// `f` of each row's number.
fn unary(args: &[ColumnarValue], rows: usize, f: fn(f64) -> f64) -> Result<ArrayRef> {
    let x = Prims::<Float64Type>::of(&args[0])?;
    let out: Float64Array = (0..rows).map(|i| x.get(i).map(f)).collect();
    Ok(Arc::new(out))
}

/// `POWER(base, exponent)` as Java's `Math.pow`: C's `pow`, except that a NaN
/// exponent, and 1 or -1 to an infinite one, give NaN (C gives 1 for `pow(1, NaN)`).
fn power(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let (base, exponent) = (Prims::<Float64Type>::of(&args[0])?, Prims::<Float64Type>::of(&args[1])?);
    let out: Float64Array = (0..rows)
        .map(|i| {
            let (x, y) = (base.get(i)?, exponent.get(i)?);
            Some(if y.is_nan() || (x.abs() == 1.0 && y.is_infinite()) { f64::NAN } else { x.powf(y) })
        })
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Java's `BigDecimal.valueOf(v).setScale(places, HALF_UP).doubleValue()`, as Flink 2.3 answers.
    #[test]
    fn doubles_round_their_decimal_form_half_up() {
        let mut digits = String::new();
        let mut round = |v: f64, places: i64| round_double(v, places, &mut digits).ok();
        assert_eq!(round(1.005, 2), Some(1.01));
        assert_eq!(round(2.675, 2), Some(2.68));
        assert_eq!(round(-1234.5678, 1), Some(-1234.6));
        assert_eq!(round(1234.5678, -2), Some(1200.0));
        assert_eq!(round(0.1, 20), Some(0.1));
        assert_eq!(round(-0.5, 0), Some(-1.0));
        assert!(round(-0.4, 0).is_some_and(|r| r == 0.0 && r.is_sign_positive()));
        assert_eq!(round(1e308, -400), Some(0.0));
        assert_eq!(round(f64::NAN, 2), None);
    }

    #[test]
    fn integers_and_decimals_round_half_away_from_zero() {
        assert_eq!(round_integer(1250, -2), 1300);
        assert_eq!(round_integer(-1250, -2), -1300);
        assert_eq!(round_integer(1249, -2), 1200);
        assert_eq!(round_integer(1234, 2), 1234);
        assert_eq!(round_integer(i128::from(i64::MAX), -1) as i64, -9_223_372_036_854_775_806);
        // 2.345 at scale 3: to 2 places at scale 2, to tens at scale 0.
        assert_eq!(round_decimal(2345, 3, 2, 2), 235);
        assert_eq!(round_decimal(-2345, 3, 2, 2), -235);
        assert_eq!(round_decimal(2345, 3, -1, 0), 0);
        assert_eq!(round_decimal(9995, 2, 1, 1), 1000);
        assert_eq!(round_decimal(2345, 3, 5, 3), 2345);
    }
}
