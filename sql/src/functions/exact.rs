//! Flink's `SUM` over DECIMAL and `AVG` over integers and DECIMAL, whose
//! arithmetic DataFusion's do not share:
//!
//! - `SUM(DECIMAL(p, s))` is a `DECIMAL(38, s)`. A sum past 38 digits is NULL,
//!   and (as Flink's `sum = sum IS NULL ? value : sum + value`) the next value
//!   starts the sum again.
//! - `AVG(DECIMAL(p, s))` is a `DECIMAL(38, max(6, s))`, rounded half away from
//!   zero (Java's `HALF_UP`); NULL once the sum or the result is past 38 digits.
//! - `AVG` of an integer type adds in a `BIGINT` that wraps on overflow, as
//!   Java's `long` does, divides by the count toward zero and answers in the
//!   argument's type (wrapping too).
//!
//! Other argument types go to the aggregate this one wraps (see
//! [`super::aggregate`]). The accumulators keep their sum as one nullable value
//! and a count, so a window's slices merge and a checkpoint keeps them as Arrow.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray};
use datafusion::arrow::compute::kernels::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility};

/// The largest precision of a DECIMAL, Flink's and Arrow's.
const MAX_PRECISION: u8 = 38;
/// 10^38: a DECIMAL(38, s) holds unscaled values below it.
const LIMIT: i128 = 10i128.pow(38);

/// Which of Flink's aggregates an [`ExactOr`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Which {
    Sum,
    Avg,
}

/// What an [`ExactAccumulator`] computes, for one argument type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Exact {
    /// `SUM` of a DECIMAL with this scale.
    SumDecimal { scale: i8 },
    /// `AVG` of an integer type, answered in that type.
    AvgInteger { given: DataType },
    /// `AVG` of a DECIMAL of scale `scale`, answered at `result_scale`.
    AvgDecimal { scale: i8, result_scale: i8 },
}

impl Exact {
    /// The exact form of `which` for an argument of type `given`, if it has one.
    fn of(which: Which, given: &DataType) -> Option<Exact> {
        match (which, given) {
            (Which::Sum, DataType::Decimal128(_, scale)) => Some(Exact::SumDecimal { scale: *scale }),
            (Which::Avg, DataType::Decimal128(_, scale)) => Some(Exact::AvgDecimal { scale: *scale, result_scale: (*scale).max(6) }),
            (Which::Avg, t) if t.is_integer() => Some(Exact::AvgInteger { given: t.clone() }),
            _ => None,
        }
    }

    fn return_type(&self) -> DataType {
        match self {
            Exact::SumDecimal { scale } => DataType::Decimal128(MAX_PRECISION, *scale),
            Exact::AvgInteger { given } => given.clone(),
            Exact::AvgDecimal { result_scale, .. } => DataType::Decimal128(MAX_PRECISION, *result_scale),
        }
    }

    /// The type the sum is kept in.
    fn sum_type(&self) -> DataType {
        match self {
            Exact::SumDecimal { scale } | Exact::AvgDecimal { scale, .. } => DataType::Decimal128(MAX_PRECISION, *scale),
            Exact::AvgInteger { .. } => DataType::Int64,
        }
    }

    fn state_fields(&self, name: &str) -> Vec<FieldRef> {
        let sum = Arc::new(Field::new(format!("{name}[sum]"), self.sum_type(), true));
        match self {
            Exact::SumDecimal { .. } => vec![sum],
            _ => vec![sum, Arc::new(Field::new(format!("{name}[count]"), DataType::Int64, true))],
        }
    }
}

/// Flink's `SUM` or `AVG`: [`Exact`]'s arithmetic for the argument types it
/// covers, the wrapped aggregate's for the others.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ExactOr {
    which: Which,
    inner: AggregateUDF,
    signature: Signature,
}

impl ExactOr {
    pub(super) fn new(which: Which, inner: AggregateUDF) -> Self {
        ExactOr { which, inner, signature: Signature::user_defined(Volatility::Immutable) }
    }

    fn exact(&self, fields: &[FieldRef]) -> Option<Exact> {
        fields.first().and_then(|f| Exact::of(self.which, f.data_type()))
    }
}

impl AggregateUDFImpl for ExactOr {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [given] if Exact::of(self.which, given).is_some() => Ok(arg_types.to_vec()),
            _ => self.inner.coerce_types(arg_types),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first().and_then(|t| Exact::of(self.which, t)) {
            Some(exact) => Ok(exact.return_type()),
            None => self.inner.return_type(arg_types),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match self.exact(args.input_fields) {
            Some(_) if args.is_distinct => Ok(vec![Arc::new(Field::new_list(
                format!("{}[distinct]", args.name),
                Field::new_list_field(args.input_fields[0].data_type().clone(), true),
                true,
            ))]),
            Some(exact) => Ok(exact.state_fields(args.name)),
            None => self.inner.inner().state_fields(args),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match self.exact(args.expr_fields) {
            Some(exact) if args.is_distinct => {
                Ok(Box::new(Distinct::new(args.expr_fields[0].data_type().clone(), move || Box::new(ExactAccumulator::new(exact.clone())))))
            }
            Some(exact) => Ok(Box::new(ExactAccumulator::new(exact))),
            None => self.inner.inner().accumulator(args),
        }
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match self.exact(args.expr_fields) {
            Some(_) => self.accumulator(args),
            None => self.inner.inner().create_sliding_accumulator(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.exact(args.expr_fields).is_none() && self.inner.inner().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner.inner().create_groups_accumulator(args)
    }
}

/// A DECIMAL(38) sum: NULL when `a + b` has more than 38 digits.
fn add_decimal(a: i128, b: i128) -> Option<i128> {
    a.checked_add(b).filter(|sum| sum.unsigned_abs() < LIMIT as u128)
}

/// `sum / count` at `shift` more decimal places, rounded half away from zero;
/// None past 38 digits. `count` is positive.
fn divide_half_up(sum: i128, count: i64, shift: u32) -> Option<i128> {
    let count = i128::from(count);
    let scale = 10i128.pow(shift);
    let (whole, rest) = (sum / count, sum % count);
    // |rest| < count < 2^63, so rest * 10^6 fits.
    let fraction = rest * scale;
    let (mut part, remainder) = (fraction / count, fraction % count);
    if 2 * remainder.abs() >= count {
        part += fraction.signum();
    }
    whole.checked_mul(scale)?.checked_add(part).filter(|r| r.unsigned_abs() < LIMIT as u128)
}

/// An integer in `given`'s type, wrapping as Java's narrowing casts do.
fn wrapped(value: Option<i64>, given: &DataType) -> Result<ScalarValue> {
    Ok(match given {
        DataType::Int8 => ScalarValue::Int8(value.map(|v| v as i8)),
        DataType::Int16 => ScalarValue::Int16(value.map(|v| v as i16)),
        DataType::Int32 => ScalarValue::Int32(value.map(|v| v as i32)),
        DataType::Int64 => ScalarValue::Int64(value),
        DataType::UInt8 => ScalarValue::UInt8(value.map(|v| v as u8)),
        DataType::UInt16 => ScalarValue::UInt16(value.map(|v| v as u16)),
        DataType::UInt32 => ScalarValue::UInt32(value.map(|v| v as u32)),
        DataType::UInt64 => ScalarValue::UInt64(value.map(|v| v as u64)),
        other => return Err(DataFusionError::Internal(format!("AVG: no integer type {other}"))),
    })
}

/// The accumulator of an [`Exact`]: a sum (None once it overflowed, or for a
/// `SUM` before its first value) and a count of the values added.
#[derive(Debug)]
struct ExactAccumulator {
    exact: Exact,
    sum: Option<i128>,
    count: i64,
}

impl ExactAccumulator {
    fn new(exact: Exact) -> Self {
        let sum = if matches!(exact, Exact::SumDecimal { .. }) { None } else { Some(0) };
        ExactAccumulator { exact, sum, count: 0 }
    }

    /// Adds one value (or another accumulator's sum, which Flink merges alike).
    fn add(&mut self, value: Option<i128>) {
        self.sum = match (&self.exact, self.sum, value) {
            (Exact::SumDecimal { .. }, None, v) => v,
            (Exact::SumDecimal { .. }, Some(sum), Some(v)) => add_decimal(sum, v),
            (Exact::AvgDecimal { .. }, Some(sum), Some(v)) => add_decimal(sum, v),
            (Exact::AvgInteger { .. }, Some(sum), Some(v)) => Some(i128::from((sum as i64).wrapping_add(v as i64))),
            (_, _, _) => None,
        };
    }

    /// The values of `array` (the argument or a sum state) as i128, NULL as None.
    fn values(&self, array: &ArrayRef) -> Result<Vec<Option<i128>>> {
        Ok(match self.exact {
            Exact::AvgInteger { .. } => cast::cast(array, &DataType::Int64)?.as_primitive::<Int64Type>().iter().map(|v| v.map(i128::from)).collect(),
            _ => cast::cast(array, &self.exact.sum_type())?.as_primitive::<Decimal128Type>().iter().collect(),
        })
    }
}

impl Accumulator for ExactAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for value in self.values(&values[0])?.into_iter().flatten() {
            self.add(Some(value));
            self.count += 1;
        }
        Ok(())
    }

    /// Takes rows back, for an OVER frame that slides: their values leave the
    /// sum (as Flink's retracting SUM and AVG subtract them).
    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for value in self.values(&values[0])?.into_iter().flatten() {
            self.count -= 1;
            self.sum = match (&self.exact, self.sum) {
                (Exact::SumDecimal { .. }, _) if self.count == 0 => None,
                (Exact::AvgInteger { .. }, Some(sum)) => Some(i128::from((sum as i64).wrapping_sub(value as i64))),
                (_, Some(sum)) => add_decimal(sum, -value),
                (_, None) => None,
            };
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let sums = self.values(&states[0])?;
        match states.get(1) {
            // SUM: a NULL state adds nothing.
            None => sums.into_iter().flatten().for_each(|s| self.add(Some(s))),
            Some(counts) => {
                for (sum, count) in sums.into_iter().zip(counts.as_primitive::<Int64Type>().iter()) {
                    self.add(sum);
                    self.count += count.unwrap_or(0);
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(match &self.exact {
            Exact::SumDecimal { scale } => vec![ScalarValue::Decimal128(self.sum, MAX_PRECISION, *scale)],
            Exact::AvgDecimal { scale, .. } => vec![ScalarValue::Decimal128(self.sum, MAX_PRECISION, *scale), ScalarValue::Int64(Some(self.count))],
            Exact::AvgInteger { .. } => vec![ScalarValue::Int64(self.sum.map(|s| s as i64)), ScalarValue::Int64(Some(self.count))],
        })
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let counted = (self.count > 0).then_some(self.count);
        Ok(match &self.exact {
            Exact::SumDecimal { scale } => ScalarValue::Decimal128(self.sum, MAX_PRECISION, *scale),
            Exact::AvgDecimal { scale, result_scale } => {
                let average = self.sum.zip(counted).and_then(|(sum, count)| divide_half_up(sum, count, (result_scale - scale) as u32));
                ScalarValue::Decimal128(average, MAX_PRECISION, *result_scale)
            }
            // Java's long division: toward zero (the count is positive, so no MIN / -1).
            Exact::AvgInteger { given } => wrapped(self.sum.zip(counted).map(|(sum, count)| sum as i64 / count), given)?,
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

/// `AGG(DISTINCT x)` over an accumulator without DISTINCT: the distinct values
/// are kept, and fed to a fresh accumulator when the result is asked for.
pub(super) struct Distinct {
    data_type: DataType,
    values: HashSet<ScalarValue>,
    make: Box<dyn Fn() -> Box<dyn Accumulator> + Send + Sync>,
}

impl std::fmt::Debug for Distinct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distinct").field("values", &self.values.len()).finish()
    }
}

impl Distinct {
    pub(super) fn new(data_type: DataType, make: impl Fn() -> Box<dyn Accumulator> + Send + Sync + 'static) -> Self {
        Distinct { data_type, values: HashSet::new(), make: Box::new(make) }
    }

    fn add(&mut self, array: &ArrayRef) -> Result<()> {
        for i in 0..array.len() {
            if array.is_valid(i) {
                self.values.insert(ScalarValue::try_from_array(array, i)?);
            }
        }
        Ok(())
    }

    fn list(&self) -> Result<ScalarValue> {
        let values: Vec<ScalarValue> = self.values.iter().cloned().collect();
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.data_type)))
    }
}

impl Accumulator for Distinct {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists: &ListArray = states[0].as_list::<i32>();
        for list in lists.iter().flatten() {
            self.add(&list)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.list()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut inner = (self.make)();
        if !self.values.is_empty() {
            inner.update_batch(&[ScalarValue::iter_to_array(self.values.iter().cloned())?])?;
        }
        inner.evaluate()
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.iter().map(ScalarValue::size).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_round_half_away_from_zero() {
        assert_eq!(divide_half_up(2, 3, 4), Some(6667));
        assert_eq!(divide_half_up(-9, 2, 0), Some(-5));
        assert_eq!(divide_half_up(9, 2, 0), Some(5));
        assert_eq!(divide_half_up(-1, 3, 6), Some(-333333));
        assert_eq!(divide_half_up(LIMIT - 1, 1, 1), None);
    }

    #[test]
    fn a_decimal_sum_past_38_digits_is_null_and_restarts() {
        let mut sum = ExactAccumulator::new(Exact::SumDecimal { scale: 0 });
        sum.add(Some(LIMIT - 1));
        sum.add(Some(1));
        assert_eq!(sum.evaluate().unwrap(), ScalarValue::Decimal128(None, 38, 0));
        sum.add(Some(5));
        assert_eq!(sum.evaluate().unwrap(), ScalarValue::Decimal128(Some(5), 38, 0));
    }
}
