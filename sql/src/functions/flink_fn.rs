//! One shape for every Flink function Eddy adds: Flink's name, its argument
//! rules (what each argument may be and what it is cast to), its result type and
//! a vectorised body. Keeping that in one type means every function refuses a
//! wrong call the same way, with a message naming the function and its usage,
//! and checks constant arguments (patterns, regexes) once, at planning.

use std::hash::{Hash, Hasher};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, StringArray};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::type_coercion::binary::type_union_resolution;
use datafusion::logical_expr::{ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use crate::types::sql_type_name;

/// What one argument of a Flink function may be, and the Arrow type it is cast to
/// before the body runs (so a body handles exactly one type per argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Param {
    /// CHAR / VARCHAR / STRING, read as Utf8.
    Str,
    /// Any exact integer, read as Int64.
    Int,
    /// Any number, read as Float64.
    Float,
    /// Any integer, kept as it is (the body decides the result type).
    AnyInt,
    /// Any number, kept as it is.
    Number,
    /// TIMESTAMP or DATE, read as milliseconds since the epoch.
    Timestamp,
    /// TIMESTAMP, or a STRING in `yyyy-MM-dd HH:mm:ss[.SSS]` form (not DATE: Flink refuses it).
    TimestampOrStr,
    /// BOOLEAN.
    Bool,
    /// Any type, cast to one type shared by every `Same` argument (`IF`'s two branches).
    Same,
    /// Any type, kept as it is (`JSON_OBJECT`'s values, each of its own type).
    Any,
    /// An integer (read as Int64) or a STRING (read as Utf8): `HEX`'s two forms.
    IntOrStr,
    /// A STRING or BYTES, cast to one type shared by every `SameText` argument (`ELT`'s choices).
    SameText,
}

/// Eddy's timestamps: milliseconds, no zone (Flink's `TIMESTAMP(3)`).
pub(super) const MILLIS: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

impl Param {
    /// The type `given` is cast to, or None when Flink refuses it.
    fn cast_to(self, given: &DataType) -> Option<DataType> {
        use DataType::*;
        let integer = given.is_integer();
        match (self, given) {
            (_, Null) => Some(match self {
                Param::Str => Utf8,
                Param::Int | Param::AnyInt | Param::Number => Int64,
                Param::Float => Float64,
                Param::Timestamp | Param::TimestampOrStr => MILLIS,
                Param::Bool => Boolean,
                Param::Same | Param::Any => Null,
                Param::IntOrStr => Int64,
                Param::SameText => Null,
            }),
            (Param::Str | Param::IntOrStr, Utf8 | LargeUtf8 | Utf8View) => Some(Utf8),
            (Param::Int | Param::IntOrStr, _) if integer => Some(Int64),
            (Param::AnyInt, _) if integer => Some(given.clone()),
            (Param::Number, _) if given.is_numeric() => Some(given.clone()),
            (Param::Float, _) if integer || given.is_floating() || matches!(given, Decimal128(..) | Decimal256(..)) => Some(Float64),
            (Param::Timestamp | Param::TimestampOrStr, Timestamp(..)) | (Param::Timestamp, Date32 | Date64) => Some(MILLIS),
            // Read by the body, so a string that is no timestamp gives NULL, as in Flink.
            (Param::TimestampOrStr, Utf8 | LargeUtf8 | Utf8View) => Some(Utf8),
            (Param::Bool, Boolean) => Some(Boolean),
            (Param::Same | Param::Any, _) => Some(given.clone()),
            (Param::SameText, Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView | FixedSizeBinary(_)) => Some(given.clone()),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Param::Str => "a STRING",
            Param::Int | Param::AnyInt => "an integer",
            Param::Float | Param::Number => "a number",
            Param::Timestamp => "a TIMESTAMP or DATE",
            Param::TimestampOrStr => "a TIMESTAMP or STRING",
            Param::Bool => "a BOOLEAN",
            Param::Same | Param::Any => "any value",
            Param::IntOrStr => "an integer or a STRING",
            Param::SameText => "a STRING or BYTES",
        }
    }
}

/// Checks the arguments that are constants at planning (a pattern, a regex) so a
/// mistake in them is refused before anything runs; the message says what is wrong.
pub(super) type CheckConstants = fn(&[Option<&ScalarValue>]) -> std::result::Result<(), String>;

/// The vectorised body: the arguments, already cast to their [`Param`] types, and
/// how many rows to produce (1 when every argument is a constant).
pub(super) type Body = fn(&[ColumnarValue], usize) -> Result<ArrayRef>;

/// A result type that depends on constant arguments as well as on the types
/// (`ROUND(DECIMAL(p, s), places)`'s scale is `places` when it is a constant).
pub(super) type ReturnsFromConstants = fn(&[DataType], &[Option<&ScalarValue>]) -> DataType;

/// A Flink built-in function as a DataFusion scalar UDF.
#[derive(Debug)]
pub(super) struct FlinkFn {
    /// Flink's name, upper case as its documentation writes it.
    name: &'static str,
    /// The lower-case name DataFusion looks calls up by.
    lookup: String,
    /// How to call it, for errors: `DATE_FORMAT(timestamp, pattern)`.
    usage: &'static str,
    params: &'static [Param],
    /// How many of `params` must be given; the rest are optional.
    required: usize,
    returns: fn(&[DataType]) -> DataType,
    /// Replaces `returns` at planning, when the constants decide the result type.
    returns_from_constants: Option<ReturnsFromConstants>,
    check: Option<CheckConstants>,
    /// Whether the last parameter repeats (`CONCAT(a, b, ...)`).
    variadic: bool,
    body: Body,
    signature: Signature,
}

impl FlinkFn {
    /// A function taking `params` (the first `required` of them mandatory).
    pub(super) fn new(
        name: &'static str,
        usage: &'static str,
        params: &'static [Param],
        required: usize,
        returns: fn(&[DataType]) -> DataType,
        body: Body,
    ) -> Self {
        FlinkFn {
            name,
            lookup: name.to_ascii_lowercase(),
            usage,
            params,
            required,
            returns,
            returns_from_constants: None,
            check: None,
            variadic: false,
            body,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// Adds a planning-time check of the constant arguments.
    pub(super) fn checking(mut self, check: CheckConstants) -> Self {
        self.check = Some(check);
        self
    }

    /// Lets the constant arguments decide the result type (the body must produce it too).
    pub(super) fn typed_by_constants(mut self, returns: ReturnsFromConstants) -> Self {
        self.returns_from_constants = Some(returns);
        self
    }

    /// Looks the function up by an internal name that a rewrite of Flink's
    /// syntax calls (`__eddy_json_value`), while errors still name Flink's function.
    pub(super) fn looked_up_as(mut self, internal: &str) -> Self {
        self.lookup = internal.to_string();
        self
    }

    /// Lets the last parameter repeat any number of times.
    pub(super) fn variadic(mut self) -> Self {
        self.variadic = true;
        self
    }

    /// The function, ready to register.
    pub(super) fn udf(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self)
    }

    fn usage_error(&self, message: String) -> DataFusionError {
        DataFusionError::Plan(format!("{}: {message}; usage: {}", self.name, self.usage))
    }
}

impl PartialEq for FlinkFn {
    fn eq(&self, other: &Self) -> bool {
        // Lookup names are unique: one FlinkFn per function DataFusion calls.
        self.lookup == other.lookup
    }
}

impl Eq for FlinkFn {}

impl Hash for FlinkFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.lookup.hash(state);
    }
}

impl ScalarUDFImpl for FlinkFn {
    fn name(&self) -> &str {
        &self.lookup
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < self.required || (arg_types.len() > self.params.len() && !self.variadic) {
            let wanted = match (self.variadic, self.required == self.params.len()) {
                (true, _) => format!("at least {}", self.required),
                (false, true) => format!("{}", self.required),
                (false, false) => format!("{} to {}", self.required, self.params.len()),
            };
            return Err(self.usage_error(format!("takes {wanted} arguments, not {}", arg_types.len())));
        }
        let last = self.params.len() - 1;
        let mut types = arg_types
            .iter()
            .enumerate()
            .map(|(i, given)| {
                let param = &self.params[i.min(last)];
                param.cast_to(given).ok_or_else(|| self.usage_error(format!("argument {} must be {}, not {}", i + 1, param.describe(), sql_type_name(given))))
            })
            .collect::<Result<Vec<_>>>()?;
        let same: Vec<usize> = (0..types.len()).filter(|&i| matches!(self.params[i.min(last)], Param::Same | Param::SameText)).collect();
        if !same.is_empty() {
            let given: Vec<DataType> = same.iter().map(|&i| types[i].clone()).collect();
            let shared = type_union_resolution(&given).ok_or_else(|| {
                let names: Vec<String> = given.iter().map(sql_type_name).collect();
                self.usage_error(format!("the arguments {} have no common type", names.join(", ")))
            })?;
            for i in same {
                types[i] = shared.clone();
            }
        }
        Ok(types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok((self.returns)(arg_types))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if let Some(check) = self.check {
            check(args.scalar_arguments).map_err(|message| self.usage_error(message))?;
        }
        let types: Vec<DataType> = args.arg_fields.iter().map(|f| f.data_type().clone()).collect();
        let returns = match self.returns_from_constants {
            Some(returns) => returns(&types, args.scalar_arguments),
            None => (self.returns)(&types),
        };
        Ok(Field::new(self.name, returns, true).into())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let constant = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if constant { 1 } else { args.number_rows };
        let out = (self.body)(&args.args, rows)?;
        if constant {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// A STRING argument: one constant for every row, or a column.
pub(super) enum Strs<'a> {
    One(Option<&'a str>),
    Many(&'a StringArray),
}

impl<'a> Strs<'a> {
    /// Reads an argument cast to [`Param::Str`].
    pub(super) fn of(value: &'a ColumnarValue) -> Result<Self> {
        match value {
            ColumnarValue::Scalar(ScalarValue::Utf8(s)) => Ok(Strs::One(s.as_deref())),
            ColumnarValue::Scalar(ScalarValue::Null) => Ok(Strs::One(None)),
            ColumnarValue::Array(a) => a.as_string_opt::<i32>().map(Strs::Many).ok_or_else(|| internal("a STRING column", a.data_type())),
            ColumnarValue::Scalar(other) => Err(internal("a STRING constant", &other.data_type())),
        }
    }

    /// Row `i`'s value.
    pub(super) fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Strs::One(s) => *s,
            Strs::Many(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// A primitive argument (integer, number, timestamp): one constant, or a column.
pub(super) enum Prims<'a, T: ArrowPrimitiveType> {
    One(Option<T::Native>),
    Many(&'a PrimitiveArray<T>),
}

impl<'a, T: ArrowPrimitiveType> Prims<'a, T> {
    /// Reads an argument already cast to `T`.
    pub(super) fn of(value: &'a ColumnarValue) -> Result<Self> {
        match value {
            ColumnarValue::Array(a) => a.as_primitive_opt::<T>().map(Prims::Many).ok_or_else(|| internal("a column", a.data_type())),
            ColumnarValue::Scalar(s) if s.is_null() => Ok(Prims::One(None)),
            ColumnarValue::Scalar(s) => {
                let array = s.to_array()?;
                let array = array.as_primitive_opt::<T>().ok_or_else(|| internal("a constant", &s.data_type()))?;
                Ok(Prims::One(Some(array.value(0))))
            }
        }
    }

    /// Row `i`'s value.
    pub(super) fn get(&self, i: usize) -> Option<T::Native> {
        match self {
            Prims::One(v) => *v,
            Prims::Many(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

fn internal(wanted: &str, got: &DataType) -> DataFusionError {
    DataFusionError::Internal(format!("a Flink function expected {wanted} after coercion, got {got}"))
}

/// The compiled form (a regex, a JSON path, a date pattern) of the text last
/// seen in a column of them: such a column is usually one value over and over,
/// so a text is compiled again only when it changes.
pub(super) struct LastCompiled<'a, T> {
    compile: fn(&str) -> T,
    last: Option<(&'a str, T)>,
}

impl<'a, T> LastCompiled<'a, T> {
    pub(super) fn new(compile: fn(&str) -> T) -> Self {
        LastCompiled { compile, last: None }
    }

    /// `text` compiled.
    pub(super) fn get(&mut self, text: &'a str) -> &T {
        if self.last.as_ref().is_some_and(|(seen, _)| *seen != text) {
            self.last = None;
        }
        let compile = self.compile;
        &self.last.get_or_insert_with(|| (text, compile(text))).1
    }
}

/// A constant STRING argument's text, when it is one (`None`: not a constant, or NULL).
pub(super) fn constant_str<'a>(constants: &[Option<&'a ScalarValue>], i: usize) -> Option<&'a str> {
    match constants.get(i).copied().flatten() {
        Some(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s))) => Some(s.as_str()),
        _ => None,
    }
}

/// Result-type helpers for [`FlinkFn::new`].
pub(super) fn string(_: &[DataType]) -> DataType {
    DataType::Utf8
}

pub(super) fn bigint(_: &[DataType]) -> DataType {
    DataType::Int64
}

pub(super) fn boolean(_: &[DataType]) -> DataType {
    DataType::Boolean
}

pub(super) fn double(_: &[DataType]) -> DataType {
    DataType::Float64
}
