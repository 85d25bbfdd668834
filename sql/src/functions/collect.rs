//! Flink's `COLLECT(x)`: the MULTISET of the values that are not NULL. Arrow
//! has no multiset; Flink's is a map of each value to its count (a `MapData`,
//! which its sinks write as such, e.g. a JSON object of counts), so Eddy
//! answers a `MAP<T, INT>` of the same entries, ordered by value (a multiset
//! has no order). With no values it is an empty map, never NULL, as in Flink.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{new_empty_array, Array, ArrayRef, AsArray, Int32Array, MapArray, StructArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int32Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

/// Flink's `COLLECT`.
pub(super) fn collect() -> AggregateUDF {
    AggregateUDF::new_from_impl(Collect { signature: Signature::any(1, Volatility::Immutable) })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Collect {
    signature: Signature,
}

/// The entries of a multiset of `element`: each value and its count.
fn entries(element: &DataType) -> Fields {
    Fields::from(vec![Field::new("key", element.clone(), false), Field::new("value", DataType::Int32, false)])
}

fn map_field(element: &DataType) -> FieldRef {
    Arc::new(Field::new("entries", DataType::Struct(entries(element)), false))
}

fn map_type(element: &DataType) -> DataType {
    DataType::Map(map_field(element), false)
}

impl AggregateUDFImpl for Collect {
    fn name(&self) -> &str {
        "collect"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(map_type(&arg_types[0]))
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let element = args.input_fields[0].data_type().clone();
        let list = |name: &str, t: DataType| Arc::new(Field::new_list(format!("{}[{name}]", args.name), Field::new_list_field(t, true), true));
        Ok(vec![list("values", element), list("counts", DataType::Int32)])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return Err(DataFusionError::Plan("COLLECT: DISTINCT is not supported; usage: COLLECT(value)".into()));
        }
        Ok(Box::new(CollectAccumulator { element: args.expr_fields[0].data_type().clone(), counts: HashMap::new() }))
    }
}

#[derive(Debug)]
struct CollectAccumulator {
    element: DataType,
    counts: HashMap<ScalarValue, i32>,
}

impl CollectAccumulator {
    /// Adds `by` to the count of each value of `values` that is not NULL.
    fn count(&mut self, values: &ArrayRef, by: &dyn Fn(usize) -> i32) -> Result<()> {
        for row in 0..values.len() {
            if values.is_null(row) {
                continue;
            }
            let value = ScalarValue::try_from_array(values, row)?;
            let count = self.counts.entry(value.clone()).or_insert(0);
            *count = count.wrapping_add(by(row));
            if *count == 0 {
                self.counts.remove(&value);
            }
        }
        Ok(())
    }

    /// The values and their counts, ordered by value.
    fn sorted(&self) -> Result<(ArrayRef, Int32Array)> {
        let mut entries: Vec<(&ScalarValue, i32)> = self.counts.iter().map(|(v, &c)| (v, c)).collect();
        entries.sort_by(|a, b| a.0.partial_cmp(b.0).unwrap_or(std::cmp::Ordering::Equal));
        let values = if entries.is_empty() { new_empty_array(&self.element) } else { ScalarValue::iter_to_array(entries.iter().map(|(v, _)| (*v).clone()))? };
        Ok((values, entries.iter().map(|(_, c)| Some(*c)).collect()))
    }
}

impl Accumulator for CollectAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.count(&values[0], &|_| 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.count(&values[0], &|_| -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (values, counts) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for row in 0..values.len() {
            if values.is_null(row) || counts.is_null(row) {
                continue;
            }
            let counts = counts.value(row);
            let counts = counts.as_primitive::<Int32Type>();
            self.count(&values.value(row), &|i| counts.value(i))?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (values, counts) = self.sorted()?;
        let list = |a: ArrayRef| ScalarValue::List(Arc::new(SingleRowListArrayBuilder::new(a).build_list_array()));
        Ok(vec![list(values), list(Arc::new(counts))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let (values, counts) = self.sorted()?;
        let length = values.len() as i32;
        let entries = StructArray::try_new(entries(&self.element), vec![values, Arc::new(counts)], None)?;
        Ok(ScalarValue::Map(Arc::new(MapArray::try_new(map_field(&self.element), OffsetBuffer::new(vec![0, length].into()), entries, None, false)?)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.keys().map(|v| v.size() + 4).sum::<usize>()
    }
}
