//! Flink's JSON aggregates: `JSON_OBJECTAGG([KEY] k VALUE v [NULL | ABSENT] ON
//! NULL)`, an object of every row's key and value (NULL values kept by
//! default), and `JSON_ARRAYAGG(v [NULL | ABSENT] ON NULL)`, an array of every
//! row's value in arrival order (NULLs left out by default). Values are written
//! as `JSON_OBJECT` writes them (see [`super::json_build`]); an object's keys
//! come out sorted, and a key seen twice fails the query, as in Flink.
//!
//! Both are syntax, planned as calls of [`JSON_OBJECTAGG`] and
//! [`JSON_ARRAYAGG`] whose first two arguments say what to do with NULL and
//! whether the value is JSON already (see [`super::syntax`]). Flink 2.3
//! ignores `JSON_ARRAYAGG`'s `ORDER BY`, and so does Eddy.
//!
//! The state is the JSON text of each value (with its key), as string lists.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;

use super::json_build::{Values, RAW};
use super::json_path::write_string;

/// The internal names the syntax is planned as.
pub(crate) const JSON_OBJECTAGG: &str = "__eddy_json_objectagg";
pub const JSON_ARRAYAGG: &str = "__eddy_json_arrayagg";

/// Flink's `JSON_OBJECTAGG` and `JSON_ARRAYAGG`.
pub(super) fn aggregates() -> Vec<AggregateUDF> {
    [true, false].into_iter().map(|object| AggregateUDF::new_from_impl(JsonAgg { object, signature: Signature::user_defined(Volatility::Immutable) })).collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonAgg {
    /// `JSON_OBJECTAGG` (else `JSON_ARRAYAGG`).
    object: bool,
    signature: Signature,
}

impl JsonAgg {
    fn usage(&self) -> &'static str {
        if self.object {
            "JSON_OBJECTAGG([KEY] key VALUE value [NULL | ABSENT ON NULL])"
        } else {
            "JSON_ARRAYAGG(value [NULL | ABSENT ON NULL])"
        }
    }

    fn label(&self) -> &'static str {
        if self.object {
            "JSON_OBJECTAGG"
        } else {
            "JSON_ARRAYAGG"
        }
    }
}

/// The text of a literal argument the syntax planned.
fn literal_text(args: &AccumulatorArgs, at: usize) -> Option<String> {
    let literal = args.exprs.get(at)?.downcast_ref::<Literal>()?;
    match literal.value() {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

fn text_list(name: String) -> FieldRef {
    Arc::new(Field::new_list(name, Field::new_list_field(DataType::Utf8, true), true))
}

impl AggregateUDFImpl for JsonAgg {
    fn name(&self) -> &str {
        if self.object {
            JSON_OBJECTAGG
        } else {
            JSON_ARRAYAGG
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let wanted = if self.object { 4 } else { 3 };
        if arg_types.len() != wanted {
            return Err(DataFusionError::Plan(format!("{}: usage: {}", self.label(), self.usage())));
        }
        if let Some(t @ (DataType::Float16 | DataType::Float32 | DataType::Float64)) = arg_types.last() {
            return Err(DataFusionError::Plan(format!(
                "{}: a {} value is not supported yet: Flink's aggregate writes it in its own number text (1.0E+8, 0.00010), which Eddy does not reproduce; CAST it to a DECIMAL or STRING first",
                self.label(),
                crate::types::sql_type_name(t)
            )));
        }
        let mut coerced = arg_types.to_vec();
        coerced[0] = DataType::Utf8;
        coerced[1] = DataType::Utf8;
        if self.object {
            match &arg_types[2] {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => coerced[2] = DataType::Utf8,
                other => return Err(DataFusionError::Plan(format!("JSON_OBJECTAGG: a key must be a STRING, not a {}", crate::types::sql_type_name(other)))),
            }
        }
        Ok(coerced)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let values = text_list(format!("{}[values]", args.name));
        Ok(if self.object { vec![text_list(format!("{}[keys]", args.name)), values] } else { vec![values] })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let planned = || DataFusionError::Internal(format!("{} is planned from its syntax", self.label()));
        let absent = literal_text(&args, 0).ok_or_else(planned)? == "ABSENT";
        let raw = literal_text(&args, 1).ok_or_else(planned)?.starts_with(RAW);
        if args.is_distinct {
            return Err(DataFusionError::Plan(format!("{}: DISTINCT is not supported; usage: {}", self.label(), self.usage())));
        }
        Ok(Box::new(JsonAccumulator { object: self.object, absent, raw, keys: BTreeMap::new(), items: Vec::new() }))
    }
}

#[derive(Debug)]
struct JsonAccumulator {
    object: bool,
    /// `ABSENT ON NULL`: a NULL value is left out.
    absent: bool,
    /// The value is JSON text already (made by a JSON constructor).
    raw: bool,
    /// `JSON_OBJECTAGG`: each key's value, as JSON.
    keys: BTreeMap<String, String>,
    /// `JSON_ARRAYAGG`: each value as JSON, in arrival order.
    items: Vec<String>,
}

impl JsonAccumulator {
    /// Adds a key's value, failing on a key already present (Flink's message).
    fn put(&mut self, key: &str, value: Option<String>) -> Result<()> {
        if self.keys.contains_key(key) {
            return Err(DataFusionError::Execution(format!(
                "JSON_OBJECTAGG: key '{key}' is already present; duplicate keys are not allowed in JSON_OBJECTAGG, please ensure that keys are unique"
            )));
        }
        if let Some(value) = value {
            self.keys.insert(key.to_string(), value);
        }
        Ok(())
    }

    fn text(list: &ArrayRef) -> Vec<Option<String>> {
        let lists = list.as_list::<i32>();
        lists.iter().flatten().flat_map(|l| l.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect::<Vec<_>>()).collect()
    }
}

fn string_list(values: impl IntoIterator<Item = String>) -> ScalarValue {
    let array: StringArray = values.into_iter().map(Some).collect();
    ScalarValue::List(Arc::new(SingleRowListArrayBuilder::new(Arc::new(array)).build_list_array()))
}

impl Accumulator for JsonAccumulator {
    fn update_batch(&mut self, args: &[ArrayRef]) -> Result<()> {
        let label = if self.object { "JSON_OBJECTAGG" } else { "JSON_ARRAYAGG" };
        let value_at = if self.object { 3 } else { 2 };
        let values = Values::of(Arc::clone(&args[value_at]), self.raw, label)?;
        let keys = if self.object { Some(args[2].as_string::<i32>()) } else { None };
        for row in 0..args[value_at].len() {
            let value = if values.is_null(row) && self.absent {
                None
            } else {
                let mut text = String::new();
                values.write(row, &mut text);
                Some(text)
            };
            match keys {
                Some(keys) if keys.is_null(row) => {
                    return Err(DataFusionError::Execution("JSON_OBJECTAGG: a key is NULL; every key must be a STRING that is not NULL".into()))
                }
                Some(keys) => self.put(keys.value(row), value)?,
                None => self.items.extend(value),
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if self.object {
            for (key, value) in Self::text(&states[0]).into_iter().zip(Self::text(&states[1])) {
                self.put(&key.unwrap_or_default(), value)?;
            }
        } else {
            self.items.extend(Self::text(&states[0]).into_iter().flatten());
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(if self.object {
            vec![string_list(self.keys.keys().cloned()), string_list(self.keys.values().cloned())]
        } else {
            vec![string_list(self.items.iter().cloned())]
        })
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut out = String::new();
        if self.object {
            out.push('{');
            for (n, (key, value)) in self.keys.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_string(key, &mut out);
                out.push(':');
                out.push_str(value);
            }
            out.push('}');
        } else {
            out.push('[');
            out.push_str(&self.items.join(","));
            out.push(']');
        }
        Ok(ScalarValue::Utf8(Some(out)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.keys.iter().map(|(k, v)| k.capacity() + v.capacity() + 48).sum::<usize>()
            + self.items.iter().map(|i| i.capacity() + 24).sum::<usize>()
    }
}
