//! Flink's aggregates where DataFusion's differ: result types over integers,
//! `LISTAGG`'s default separator, `FIRST_VALUE`/`LAST_VALUE` skipping NULLs.
//!
//! Flink's result types for aggregates over integers. Flink's `AVG`, `SUM`,
//! `STDDEV_*` and `VAR_*` keep an integer argument's type (`AVG` of a `BIGINT`
//! is a `BIGINT`, truncated toward zero; `SUM` of an `INT` is an `INT`), where
//! DataFusion's return a `DOUBLE` or widen to `BIGINT`. Each is DataFusion's own
//! aggregate run over a wider type and cast back to the argument's type, so the
//! accumulators (grouped, sliding, retracting, distinct) stay DataFusion's;
//! `SUM` and `AVG` over integers and DECIMALs are Flink's arithmetic, in
//! [`super::exact`].

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::compute::kernels::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::functions_aggregate::{average, first_last, stddev, string_agg, sum, variance};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::PhysicalExpr;

use super::exact::{ExactOr, Which};

/// Every aggregate whose result type Eddy gives as Flink does.
pub(super) fn aggregates() -> Vec<AggregateUDF> {
    // SUM and AVG of integers and DECIMALs are Flink's own arithmetic (see
    // `exact`); of FLOATs and DOUBLEs DataFusion's, in Flink's result types.
    let sum = AggregateUDF::new_from_impl(Flink::new(sum::sum_udaf(), DataType::Int64));
    let avg = AggregateUDF::new_from_impl(Flink::new(average::avg_udaf(), DataType::Float64));
    [AggregateUDF::new_from_impl(ExactOr::new(Which::Sum, sum)), AggregateUDF::new_from_impl(ExactOr::new(Which::Avg, avg))]
        .into_iter()
        .chain(
            vec![
                Flink::new(stddev::stddev_pop_udaf(), DataType::Float64),
                Flink::new(stddev::stddev_udaf(), DataType::Float64),
                Flink::new(variance::var_pop_udaf(), DataType::Float64),
                Flink::new(variance::var_samp_udaf(), DataType::Float64),
            ]
            .into_iter()
            .map(AggregateUDF::new_from_impl)
            .chain([
                AggregateUDF::new_from_impl(Listagg { inner: string_agg::string_agg_udaf(), signature: Signature::user_defined(Volatility::Immutable) }),
                AggregateUDF::new_from_impl(IgnoringNulls { inner: first_last::first_value_udaf() }),
                AggregateUDF::new_from_impl(IgnoringNulls { inner: first_last::last_value_udaf() }),
                super::percentile::percentile(),
                super::collect::collect(),
            ]),
        )
        .chain(super::json_agg::aggregates())
        .collect()
}

/// Whether Flink's aggregate returns its argument's own type for `given`.
fn keeps_type(given: &DataType) -> bool {
    given.is_integer() || *given == DataType::Float32
}

/// DataFusion's aggregate `inner`, returning its argument's type for the types
/// [`keeps_type`] names: it runs over `wide` and its result is cast back.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Flink {
    inner: Arc<AggregateUDF>,
    wide: DataType,
    signature: Signature,
}

impl Flink {
    fn new(inner: Arc<AggregateUDF>, wide: DataType) -> Self {
        Flink { inner, wide, signature: Signature::user_defined(Volatility::Immutable) }
    }

    /// For an argument whose type Flink keeps: `inner`'s arguments with the wide type.
    fn widened(&self, fields: &[FieldRef]) -> Option<(Types, Vec<FieldRef>, FieldRef)> {
        let given = fields.first()?.data_type().clone();
        if !keeps_type(&given) {
            return None;
        }
        // A FLOAT runs as a DOUBLE whatever the integers run as.
        let wide = if given.is_floating() { DataType::Float64 } else { self.wide.clone() };
        let mut wide_fields = fields.to_vec();
        wide_fields[0] = Arc::new(fields[0].as_ref().clone().with_data_type(wide.clone()));
        let wide_types: Vec<DataType> = wide_fields.iter().map(|f| f.data_type().clone()).collect();
        let inner_return = self.inner.return_type(&wide_types).ok()?;
        Some((Types { wide, given }, wide_fields, Arc::new(Field::new(self.inner.name(), inner_return, true))))
    }
}

impl AggregateUDFImpl for Flink {
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
        match arg_types.first() {
            Some(given) if keeps_type(given) => Ok(arg_types.to_vec()),
            _ => {
                let fields: Vec<FieldRef> = arg_types.iter().map(|t| Arc::new(Field::new("", t.clone(), true))).collect();
                Ok(fields_with_udf(&fields, self.inner.as_ref())?.iter().map(|f| f.data_type().clone()).collect())
            }
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(given) if keeps_type(given) => Ok(given.clone()),
            _ => self.inner.return_type(arg_types),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match self.widened(args.input_fields) {
            Some((_, input_fields, return_field)) => self.inner.state_fields(StateFieldsArgs { input_fields: &input_fields, return_field, ..args }),
            None => self.inner.state_fields(args),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.over_wide(args, |a| self.inner.accumulator(a), |inner, types| Box::new(Narrowed { inner, types }))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.over_wide(args, |a| self.inner.create_sliding_accumulator(a), |inner, types| Box::new(Narrowed { inner, types }))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.over_wide(args, |a| Ok(self.inner.groups_accumulator_supported(a)), |supported, _| supported).unwrap_or(false)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        self.over_wide(args, |a| self.inner.create_groups_accumulator(a), |inner, types| Box::new(Narrowed { inner, types }))
    }
}

impl Flink {
    /// `make`'s answer for `args`: for an argument whose type Flink keeps, made
    /// over the wide type and passed through `narrow`; otherwise `inner`'s own.
    fn over_wide<T>(&self, args: AccumulatorArgs, make: impl Fn(AccumulatorArgs) -> Result<T>, narrow: impl FnOnce(T, Types) -> T) -> Result<T> {
        match self.widened(args.expr_fields) {
            Some((types, expr_fields, return_field)) => Ok(narrow(make(AccumulatorArgs { expr_fields: &expr_fields, return_field, ..args })?, types)),
            None => make(args),
        }
    }
}

/// Flink's `LISTAGG(text[, separator])`: DataFusion's `string_agg`, whose
/// separator is mandatory, with Flink's default `,`, answering a STRING.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Listagg {
    inner: Arc<AggregateUDF>,
    signature: Signature,
}

impl Listagg {
    /// `make` over `string_agg`'s arguments: the separator added when not given.
    fn with_separator<T>(&self, args: AccumulatorArgs, make: impl Fn(AccumulatorArgs) -> Result<T>, narrow: impl FnOnce(T, Types) -> T) -> Result<T> {
        let comma: Arc<dyn PhysicalExpr> = Arc::new(Literal::new(ScalarValue::Utf8(Some(",".into()))));
        let mut exprs = args.exprs.to_vec();
        let mut fields = args.expr_fields.to_vec();
        if exprs.len() == 1 {
            exprs.push(comma);
            fields.push(Arc::new(Field::new("separator", DataType::Utf8, false)));
        }
        let return_field = Arc::new(Field::new("listagg", DataType::LargeUtf8, true));
        let made = make(AccumulatorArgs { exprs: &exprs, expr_fields: &fields, return_field, ..args })?;
        Ok(narrow(made, Types { wide: DataType::Utf8, given: DataType::Utf8 }))
    }
}

impl AggregateUDFImpl for Listagg {
    fn name(&self) -> &str {
        "listagg"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null);
        if !(1..=2).contains(&arg_types.len()) || !arg_types.iter().all(text) {
            return Err(DataFusionError::Plan("LISTAGG: takes a STRING and an optional separator, a STRING literal; usage: LISTAGG(text[, separator])".into()));
        }
        Ok(vec![DataType::Utf8; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.with_separator(args, |a| self.inner.accumulator(a), |inner, types| Box::new(Narrowed { inner, types }))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.with_separator(args, |a| Ok(self.inner.groups_accumulator_supported(a)), |supported, _| supported).unwrap_or(false)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        self.with_separator(args, |a| self.inner.create_groups_accumulator(a), |inner, types| Box::new(Narrowed { inner, types }))
    }
}

/// Flink's `FIRST_VALUE` and `LAST_VALUE`: the first and last value that is not
/// NULL, in arrival order; DataFusion's of the same name keep NULLs unless told.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IgnoringNulls {
    inner: Arc<AggregateUDF>,
}

impl AggregateUDFImpl for IgnoringNulls {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn order_sensitivity(&self) -> datafusion::logical_expr::utils::AggregateOrderSensitivity {
        self.inner.inner().order_sensitivity()
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.accumulator(AccumulatorArgs { ignore_nulls: true, ..args })
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.create_sliding_accumulator(AccumulatorArgs { ignore_nulls: true, ..args })
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(AccumulatorArgs { ignore_nulls: true, ..args })
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner.create_groups_accumulator(AccumulatorArgs { ignore_nulls: true, ..args })
    }
}

/// `values` in the integer type `to`, each keeping its low bits (Java's narrowing).
fn wrap_integers(values: &Int64Array, to: &DataType) -> Result<ArrayRef> {
    Ok(match to {
        DataType::Int8 => Arc::new(values.unary::<_, Int8Type>(|v| v as i8)),
        DataType::Int16 => Arc::new(values.unary::<_, Int16Type>(|v| v as i16)),
        DataType::Int32 => Arc::new(values.unary::<_, Int32Type>(|v| v as i32)),
        DataType::UInt8 => Arc::new(values.unary::<_, UInt8Type>(|v| v as u8)),
        DataType::UInt16 => Arc::new(values.unary::<_, UInt16Type>(|v| v as u16)),
        DataType::UInt32 => Arc::new(values.unary::<_, UInt32Type>(|v| v as u32)),
        DataType::UInt64 => Arc::new(values.unary::<_, UInt64Type>(|v| v as u64)),
        _ => Arc::new(values.clone()),
    })
}

/// The type an aggregate's argument is widened to, and the argument's own.
#[derive(Debug)]
struct Types {
    wide: DataType,
    given: DataType,
}

/// An accumulator of `inner` over widened values, answering in the argument's type.
#[derive(Debug)]
struct Narrowed<A: ?Sized> {
    inner: Box<A>,
    types: Types,
}

impl<A: ?Sized> Narrowed<A> {
    fn widen(&self, values: &[ArrayRef]) -> Result<Vec<ArrayRef>> {
        let mut values = values.to_vec();
        if let Some(first) = values.first_mut() {
            *first = cast::cast(first, &self.types.wide)?;
        }
        Ok(values)
    }

    /// The result in the argument's type: a fraction is cut toward zero, as
    /// Java's casts do, and an integer past the type wraps around, as Java's
    /// `int` arithmetic does (Flink's `SUM` of an `INT` is an `INT` that wraps).
    fn narrow(&self, result: &ArrayRef) -> Result<ArrayRef> {
        if result.data_type() == &DataType::Int64 && self.types.given.is_integer() {
            return wrap_integers(result.as_primitive::<Int64Type>(), &self.types.given);
        }
        Ok(cast::cast(result, &self.types.given)?)
    }
}

impl Accumulator for Narrowed<dyn Accumulator> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = self.widen(values)?;
        self.inner.update_batch(&values)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = self.widen(values)?;
        self.inner.retract_batch(&values)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let result = self.inner.evaluate()?.to_array()?;
        ScalarValue::try_from_array(&self.narrow(&result)?, 0)
    }

    fn size(&self) -> usize {
        self.inner.size() + std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }
}

impl GroupsAccumulator for Narrowed<dyn GroupsAccumulator> {
    fn update_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], opt_filter: Option<&BooleanArray>, total_num_groups: usize) -> Result<()> {
        let values = self.widen(values)?;
        self.inner.update_batch(&values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let result = self.inner.evaluate(emit_to)?;
        self.narrow(&result)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.inner.state(emit_to)
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.inner.merge_batch(values, group_indices, total_num_groups)
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let values = self.widen(values)?;
        self.inner.convert_to_state(&values, opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}
