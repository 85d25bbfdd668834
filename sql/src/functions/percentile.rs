//! Flink's `PERCENTILE(value, percentage [, frequency])`: the exact percentile
//! of the values read as DOUBLEs, interpolated between the two nearest ones;
//! `percentage` may be an ARRAY of them, which answers an ARRAY. A value counts
//! `frequency` times (left out when the frequency is NULL or below 1).
//!
//! As Flink's, the accumulator keeps each distinct value with its count, and
//! the percentages of the first row it sees (they are meant to be constant):
//! rows can be taken back, and the state is three lists that merge by adding
//! counts.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use datafusion::arrow::compute::kernels::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

const USAGE: &str =
    "PERCENTILE(value, percentage [, frequency]), where value is a number, percentage a number or an ARRAY of numbers between 0 and 1 and frequency an integer";

/// Flink's `PERCENTILE`.
pub(super) fn percentile() -> AggregateUDF {
    AggregateUDF::new_from_impl(Percentile { signature: Signature::user_defined(Volatility::Immutable) })
}

fn refuse(why: &str) -> DataFusionError {
    DataFusionError::Plan(format!("PERCENTILE: {why}; usage: {USAGE}"))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Percentile {
    signature: Signature,
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric() || *t == DataType::Null
}

fn doubles() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

impl AggregateUDFImpl for Percentile {
    fn name(&self) -> &str {
        "percentile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let (value, percentage, frequency) = match arg_types {
            [v, p] => (v, p, None),
            [v, p, f] => (v, p, Some(f)),
            _ => return Err(refuse("takes two or three arguments")),
        };
        if !is_number(value) {
            return Err(refuse(&format!("the value is a {}, not a number", crate::types::sql_type_name(value))));
        }
        let percentage = match percentage {
            t if is_number(t) => DataType::Float64,
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) if is_number(f.data_type()) => doubles(),
            other => return Err(refuse(&format!("the percentage is a {}, not a number or an ARRAY of numbers", crate::types::sql_type_name(other)))),
        };
        let mut coerced = vec![value.clone(), percentage];
        match frequency {
            Some(t) if t.is_integer() || *t == DataType::Null => coerced.push(DataType::Int64),
            Some(other) => return Err(refuse(&format!("the frequency is a {}, not an integer", crate::types::sql_type_name(other)))),
            None => {}
        }
        Ok(coerced)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match arg_types.get(1) {
            Some(DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)) => doubles(),
            _ => DataType::Float64,
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |name: &str, t: DataType| Arc::new(Field::new_list(format!("{}[{name}]", args.name), Field::new_list_field(t, true), true));
        Ok(vec![list("values", DataType::Float64), list("counts", DataType::Int64), list("percentages", DataType::Float64)])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return Err(refuse("DISTINCT is not supported"));
        }
        let multiple = matches!(args.expr_fields.get(1).map(|f| f.data_type()), Some(DataType::List(_)));
        Ok(Box::new(PercentileAccumulator { multiple, percentages: None, counts: HashMap::new() }))
    }
}

/// A list value holding `values`.
fn one_list(values: ArrayRef) -> ScalarValue {
    ScalarValue::List(Arc::new(SingleRowListArrayBuilder::new(values).build_list_array()))
}

/// A value as a map key: its bits, with every NaN as one (Java's `Double.equals`).
fn key(value: f64) -> u64 {
    if value.is_nan() {
        f64::NAN.to_bits()
    } else {
        value.to_bits()
    }
}

#[derive(Debug)]
struct PercentileAccumulator {
    /// Whether the percentage is an ARRAY, so the result is one.
    multiple: bool,
    /// The percentages of the first row seen, checked to lie in [0, 1].
    percentages: Option<Vec<f64>>,
    /// Each value (by [`key`]) and how many times it was added.
    counts: HashMap<u64, i64>,
}

impl PercentileAccumulator {
    /// Adds `by` to `value`'s count, dropping the value at 0.
    fn count(&mut self, value: f64, by: i64) {
        let count = self.counts.entry(key(value)).or_insert(0);
        *count += by;
        if *count == 0 {
            self.counts.remove(&key(value));
        }
    }

    /// Row `row`'s percentages, if none were taken yet.
    fn take_percentages(&mut self, percentages: &ArrayRef, row: usize) -> Result<()> {
        if self.percentages.is_some() {
            return Ok(());
        }
        let given: Vec<Option<f64>> = if self.multiple {
            let lists = percentages.as_list::<i32>();
            if lists.is_null(row) {
                return Err(refuse("the percentages are NULL"));
            }
            lists.value(row).as_primitive::<Float64Type>().iter().collect()
        } else {
            vec![percentages.as_primitive::<Float64Type>().iter().nth(row).flatten()]
        };
        let mut checked = Vec::with_capacity(given.len());
        for p in given {
            match p {
                Some(p) if (0.0..=1.0).contains(&p) => checked.push(p),
                Some(p) => return Err(DataFusionError::Execution(format!("Percentage of PERCENTILE should be between [0.0, 1.0], but was '{p}'"))),
                None => return Err(refuse("a percentage is NULL")),
            }
        }
        self.percentages = Some(checked);
        Ok(())
    }

    /// Adds (`sign` 1) or takes back (-1) rows of the arguments.
    fn apply(&mut self, args: &[ArrayRef], sign: i64) -> Result<()> {
        let values = cast::cast(&args[0], &DataType::Float64)?;
        let values = values.as_primitive::<Float64Type>();
        let frequencies = args.get(2).map(|f| f.as_primitive::<Int64Type>());
        for row in 0..values.len() {
            if sign > 0 {
                self.take_percentages(&args[1], row)?;
            }
            let times = match frequencies {
                Some(f) if f.is_null(row) || f.value(row) <= 0 => continue,
                Some(f) => f.value(row),
                None => 1,
            };
            if values.is_valid(row) {
                self.count(values.value(row), sign * times);
            }
        }
        Ok(())
    }

    /// Flink's `PercentileAccumulator.getValue`: each percentage's position
    /// `p * (n - 1) + 1` among the sorted values, interpolated linearly.
    fn percentiles(&self, percentages: &[f64]) -> Option<Vec<f64>> {
        let mut sorted: Vec<(f64, i64)> = self.counts.iter().map(|(&k, &c)| (f64::from_bits(k), c)).collect();
        let total: i64 = sorted.iter().map(|(_, c)| c).sum();
        if total <= 0 {
            return None;
        }
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut positions: Vec<(f64, usize)> = percentages.iter().enumerate().map(|(i, p)| (p * (total - 1) as f64 + 1.0, i)).collect();
        positions.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut result = vec![0.0; percentages.len()];
        let (mut j, mut seen) = (0, sorted[0].1);
        for (position, index) in positions {
            let (lower, higher) = (position.floor() as i64, position.ceil() as i64);
            while seen < lower && j + 1 < sorted.len() {
                j += 1;
                seen += sorted[j].1;
            }
            result[index] = if seen >= higher || j + 1 >= sorted.len() {
                sorted[j].0
            } else {
                (higher as f64 - position) * sorted[j].0 + (position - lower as f64) * sorted[j + 1].0
            };
        }
        Some(result)
    }
}

impl Accumulator for PercentileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.apply(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.apply(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (values, counts, percentages) = (states[0].as_list::<i32>(), states[1].as_list::<i32>(), states[2].as_list::<i32>());
        for row in 0..values.len() {
            if self.percentages.is_none() && percentages.is_valid(row) {
                self.percentages = Some(percentages.value(row).as_primitive::<Float64Type>().iter().map(|p| p.unwrap_or(0.0)).collect());
            }
            if values.is_null(row) || counts.is_null(row) {
                continue;
            }
            let (v, c) = (values.value(row), counts.value(row));
            for (v, c) in v.as_primitive::<Float64Type>().iter().zip(c.as_primitive::<Int64Type>().iter()) {
                if let (Some(v), Some(c)) = (v, c) {
                    self.count(v, c);
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Float64Array = self.counts.keys().map(|&k| Some(f64::from_bits(k))).collect();
        let counts: Int64Array = self.counts.values().map(|&c| Some(c)).collect();
        let percentages = match &self.percentages {
            Some(p) => one_list(Arc::new(Float64Array::from(p.clone()))),
            None => ScalarValue::try_from(&doubles())?,
        };
        Ok(vec![one_list(Arc::new(values)), one_list(Arc::new(counts)), percentages])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let result = self.percentages.as_deref().filter(|p| !p.is_empty()).and_then(|p| self.percentiles(p));
        Ok(match (self.multiple, result) {
            (false, result) => ScalarValue::Float64(result.map(|r| r[0])),
            (true, Some(result)) => one_list(Arc::new(Float64Array::from(result))),
            (true, None) => ScalarValue::try_from(&doubles())?,
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.capacity() * 16 + self.percentages.as_ref().map_or(0, |p| p.len() * 8)
    }
}
