//! Flink's JSON query functions: `JSON_VALUE`, `JSON_QUERY`, `JSON_EXISTS`
//! and the `IS JSON` predicate (building JSON is [`super::json_build`]'s), with Flink's defaults for what
//! goes wrong (`NULL ON ERROR`, `FALSE ON ERROR`) or the clauses the call
//! gives (`RETURNING`, the wrapper, `ON ERROR`: read by [`super::json_clauses`]).
//! A constant path is compiled once, at planning, where a malformed one is refused.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, BooleanBuilder, Float64Builder, Int32Builder, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::flink_fn::{boolean, constant_str, string, FlinkFn, LastCompiled, Param, Strs};
use super::json_clauses::{OnError, Wrapper, JSON_EXISTS_WITH, JSON_QUERY_WITH, JSON_VALUE_WITH};
use super::json_path::{json_kind, Json, JsonKind, JsonPath, Selected};

/// The internal name `x IS [NOT] JSON [kind]` is planned as (see [`super::syntax`]).
pub(crate) const IS_JSON: &str = "__eddy_is_json";

/// Flink's JSON functions.
pub(super) fn functions() -> Vec<ScalarUDF> {
    use Param::{Any, Str};
    const VALUE: &str = "JSON_VALUE(json, path [RETURNING type] [{NULL | ERROR | DEFAULT value} ON EMPTY] [{NULL | ERROR | DEFAULT value} ON ERROR])";
    const QUERY: &str =
        "JSON_QUERY(json, path [RETURNING type] [{WITHOUT | WITH [CONDITIONAL | UNCONDITIONAL]} [ARRAY] WRAPPER] [{NULL | EMPTY ARRAY | EMPTY OBJECT | ERROR} ON ERROR])";
    const EXISTS: &str = "JSON_EXISTS(json, path [{TRUE | FALSE | UNKNOWN | ERROR} ON ERROR])";
    vec![
        FlinkFn::new("JSON_VALUE", VALUE, &[Str, Str], 2, string, json_value).checking(check_path).udf(),
        FlinkFn::new("JSON_QUERY", QUERY, &[Str, Str], 2, string, json_query).checking(check_path).udf(),
        FlinkFn::new("JSON_EXISTS", EXISTS, &[Str, Str], 2, boolean, json_exists).checking(check_path).udf(),
        // The same, with the clauses a rewrite turned into constant arguments (see `json_clauses`).
        FlinkFn::new("JSON_VALUE", VALUE, &[Str, Str, Str, Str, Any], 5, string, json_value)
            .looked_up_as(JSON_VALUE_WITH)
            .checking(check_value_clauses)
            .typed_by_constants(|_, constants| returning(constants, "JSON_VALUE").map(|r| r.data_type()).unwrap_or(DataType::Utf8))
            .udf(),
        FlinkFn::new("JSON_QUERY", QUERY, &[Str, Str, Str, Str, Str], 5, string, json_query)
            .looked_up_as(JSON_QUERY_WITH)
            .checking(check_query_clauses)
            .typed_by_constants(|_, constants| returning(constants, "JSON_QUERY").map(|r| r.data_type()).unwrap_or(DataType::Utf8))
            .udf(),
        FlinkFn::new("JSON_EXISTS", EXISTS, &[Str, Str, Str], 3, boolean, json_exists).looked_up_as(JSON_EXISTS_WITH).checking(check_path).udf(),
        FlinkFn::new(IS_JSON, "value IS [NOT] JSON [VALUE | SCALAR | ARRAY | OBJECT]", &[Str, Str], 2, boolean, is_json).udf(),
    ]
}

/// The types Flink 2.3 returns after `RETURNING` (its code generation refuses
/// any other, `BIGINT` and `DATE` among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Returning {
    /// STRING, or VARCHAR(n), which cuts the text to n characters.
    Text(Option<usize>),
    Int,
    Double,
    Boolean,
    /// `JSON_QUERY`'s ARRAY<STRING>: an array's elements as text.
    TextArray,
}

impl Returning {
    /// The type named by `text` (upper case, as `json_clauses` leaves it), if `function` returns it.
    fn parse(function: &str, text: &str) -> std::result::Result<Returning, String> {
        let text_type = |t: &str| match t {
            "STRING" | "VARCHAR" => Some(None),
            _ => t.strip_prefix("VARCHAR(").and_then(|n| n.strip_suffix(')')).and_then(|n| n.parse::<usize>().ok()).map(Some),
        };
        let returning = match (function, text) {
            (_, t) if text_type(t).is_some() => text_type(t).map(Returning::Text),
            ("JSON_VALUE", "INT" | "INTEGER") => Some(Returning::Int),
            ("JSON_VALUE", "DOUBLE") => Some(Returning::Double),
            ("JSON_VALUE", "BOOLEAN") => Some(Returning::Boolean),
            ("JSON_QUERY", t) => t.strip_prefix("ARRAY<").and_then(|e| e.strip_suffix('>')).and_then(text_type).map(|_| Returning::TextArray),
            _ => None,
        };
        returning.ok_or_else(|| {
            let supported = if function == "JSON_VALUE" { "STRING, VARCHAR(n), BOOLEAN, INT or DOUBLE" } else { "STRING, VARCHAR(n) or ARRAY<STRING>" };
            format!("unsupported type '{text}' for RETURNING in {function}(); Flink returns {supported}")
        })
    }

    fn data_type(self) -> DataType {
        match self {
            Returning::Text(_) => DataType::Utf8,
            Returning::Int => DataType::Int32,
            Returning::Double => DataType::Float64,
            Returning::Boolean => DataType::Boolean,
            Returning::TextArray => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Returning::Text(_) => "STRING",
            Returning::Int => "INT",
            Returning::Double => "DOUBLE",
            Returning::Boolean => "BOOLEAN",
            Returning::TextArray => "ARRAY<STRING>",
        }
    }
}

/// The `RETURNING` type among the internal function's constant arguments.
fn returning(constants: &[Option<&ScalarValue>], function: &str) -> std::result::Result<Returning, String> {
    Returning::parse(function, constant_str(constants, 2).unwrap_or("STRING"))
}

/// Refuses a constant path Flink could not read.
fn check_path(constants: &[Option<&ScalarValue>]) -> std::result::Result<(), String> {
    match constant_str(constants, 1) {
        Some(path) => JsonPath::parse(path).map(|_| ()),
        None => Ok(()),
    }
}

/// Refuses a `RETURNING` type Flink refuses, and a constant `DEFAULT` that is NULL or of another type.
fn check_value_clauses(constants: &[Option<&ScalarValue>]) -> std::result::Result<(), String> {
    check_path(constants)?;
    let returning = returning(constants, "JSON_VALUE")?;
    if constant_str(constants, 3) == Some("DEFAULT") {
        match constants.get(4).copied().flatten() {
            Some(value) if value.is_null() => return Err("DEFAULT NULL is not allowed: leave the clause out, NULL ON ERROR is the default".into()),
            Some(value) => {
                Out::new(returning, 1).push_default(value)?;
            }
            None => {}
        }
    }
    Ok(())
}

/// Refuses a `RETURNING` type Flink refuses, and `EMPTY OBJECT ON ERROR` for an array.
fn check_query_clauses(constants: &[Option<&ScalarValue>]) -> std::result::Result<(), String> {
    check_path(constants)?;
    if returning(constants, "JSON_QUERY")? == Returning::TextArray && constant_str(constants, 4) == Some("EMPTY OBJECT") {
        return Err("EMPTY OBJECT ON ERROR cannot be returned as an ARRAY<STRING>; use EMPTY ARRAY or NULL".into());
    }
    Ok(())
}

/// The internal function's constant clause argument `i`, or `default` for the two-argument form.
fn clause<T>(args: &[ColumnarValue], i: usize, default: T, read: impl Fn(&str) -> Option<T>) -> Result<T> {
    let Some(arg) = args.get(i) else { return Ok(default) };
    match arg {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(text))) => read(text).ok_or_else(|| DataFusionError::Internal(format!("no JSON clause is called {text}"))),
        _ => Err(DataFusionError::Internal("a JSON clause argument must be a constant STRING".into())),
    }
}

/// What a row's path selects from its document: None for a NULL argument;
/// `Selected::Error` for a document that is no JSON or a path that is malformed.
fn each_row(args: &[ColumnarValue], rows: usize, mut f: impl FnMut(usize, Option<Selected>) -> Result<()>) -> Result<()> {
    let docs = Strs::of(&args[0])?;
    let paths = Strs::of(&args[1])?;
    // A malformed path gives NULL (or FALSE), as in Flink.
    let mut compiled = LastCompiled::new(|path| JsonPath::parse(path).ok());
    for i in 0..rows {
        let (Some(doc), Some(path)) = (docs.get(i), paths.get(i)) else {
            f(i, None)?;
            continue;
        };
        match compiled.get(path) {
            Some(path) => f(i, Some(path.select(doc)))?,
            None => f(i, Some(Selected::Error))?,
        }
    }
    Ok(())
}

/// The error a row fails the query with under `ERROR ON ERROR`.
fn failed(function: &str, why: &str) -> DataFusionError {
    DataFusionError::Execution(format!("{function} failed on a row (ERROR ON ERROR): {why}"))
}

/// Why a selection is no value `JSON_VALUE` returns.
fn why_no_scalar(selected: &Selected) -> &'static str {
    match selected {
        Selected::One(Json::Null) => "the path selects JSON null",
        Selected::One(_) => "the path selects an array or object, not a scalar",
        Selected::Many(_) => "the path has a wildcard, which selects a list, not a scalar",
        Selected::Nothing => "the path selects nothing",
        Selected::Error => "the document is no JSON, or a strict path does not fit it",
    }
}

/// `JSON_VALUE(json, path [RETURNING type] [... ON ERROR])`: the scalar at
/// `path` as the RETURNING type (STRING by default). Anything else there (JSON
/// null, an array or object, nothing, a malformed document) takes the `ON
/// ERROR` behaviour: NULL by default. A scalar of another type than RETURNING's
/// fails the query whatever ON ERROR says, as in Flink.
fn json_value(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let returning = clause(args, 2, Returning::Text(None), |t| Returning::parse("JSON_VALUE", t).ok())?;
    let on_error = clause(args, 3, OnError::Null, OnError::named)?;
    let mut out = Out::new(returning, rows);
    each_row(args, rows, |i, selected| {
        match selected {
            None => out.push_null(),
            Some(Selected::One(value)) if !value.is_container() && value != Json::Null => out.push_json(&value).map_err(DataFusionError::Execution)?,
            Some(other) => match on_error {
                OnError::Fail => return Err(failed("JSON_VALUE", why_no_scalar(&other))),
                OnError::Default => {
                    let default = match &args[4] {
                        ColumnarValue::Scalar(value) => value.clone(),
                        ColumnarValue::Array(values) => ScalarValue::try_from_array(values, i)?,
                    };
                    out.push_default(&default).map_err(DataFusionError::Execution)?
                }
                _ => out.push_null(),
            },
        }
        Ok(())
    })?;
    Ok(out.finish())
}

/// `JSON_QUERY(json, path [RETURNING type] [wrapper] [... ON ERROR])`: the
/// array or object at `path` as JSON text (a path with a wildcard gives the
/// array of what it selects), wrapped in an array as the wrapper clause says.
/// Anything else (a scalar left unwrapped, JSON null, nothing, a malformed
/// document) takes the `ON ERROR` behaviour: NULL by default.
fn json_query(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let returning = clause(args, 2, Returning::Text(None), |t| Returning::parse("JSON_QUERY", t).ok())?;
    let wrapper = clause(args, 3, Wrapper::Without, Wrapper::named)?;
    let on_error = clause(args, 4, OnError::Null, OnError::named)?;
    let mut out = Out::new(returning, rows);
    each_row(args, rows, |_, selected| {
        let Some(selected) = selected else {
            out.push_null();
            return Ok(());
        };
        let value = match (selected, wrapper) {
            (Selected::One(Json::Null) | Selected::Nothing | Selected::Error, _) => None,
            (Selected::One(value), Wrapper::Without) => Some(value).filter(Json::is_container),
            (Selected::One(array @ Json::Array(_)), Wrapper::Conditional) => Some(array),
            (Selected::One(value), _) => Some(Json::Array(vec![value])),
            (Selected::Many(values), Wrapper::Unconditional) => Some(Json::Array(vec![Json::Array(values)])),
            (Selected::Many(values), _) => Some(Json::Array(values)),
        };
        // An object is no array of strings: that is an error too.
        let value = value.filter(|v| returning != Returning::TextArray || matches!(v, Json::Array(_)));
        match (value, on_error) {
            (Some(value), _) => out.push_json(&value).map_err(DataFusionError::Execution)?,
            (None, OnError::Fail) => return Err(failed("JSON_QUERY", "the path selects no array or object (or the document is no JSON)")),
            (None, OnError::EmptyArray) => out.push_json(&Json::Array(Vec::new())).map_err(DataFusionError::Execution)?,
            (None, OnError::EmptyObject) => out.push_json(&Json::Object(Vec::new())).map_err(DataFusionError::Execution)?,
            (None, _) => out.push_null(),
        }
        Ok(())
    })?;
    Ok(out.finish())
}

/// `JSON_EXISTS(json, path [... ON ERROR])`: whether `path` selects something
/// that is not JSON null. A malformed document, or a strict path that does not
/// fit, takes the `ON ERROR` behaviour: FALSE by default.
fn json_exists(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let on_error = clause(args, 2, OnError::False, OnError::named)?;
    let mut out = BooleanArray::builder(rows);
    each_row(args, rows, |_, selected| {
        match selected {
            None => out.append_null(),
            Some(Selected::One(value)) => out.append_value(value != Json::Null),
            Some(Selected::Many(_)) => out.append_value(true),
            Some(Selected::Nothing) => out.append_value(false),
            Some(Selected::Error) => match on_error {
                OnError::Fail => return Err(failed("JSON_EXISTS", "the document is no JSON, or a strict path does not fit it")),
                OnError::True => out.append_value(true),
                OnError::Unknown => out.append_null(),
                _ => out.append_value(false),
            },
        }
        Ok(())
    })?;
    Ok(Arc::new(out.finish()))
}

/// A JSON function's result column, of its RETURNING type.
enum Out {
    Text(StringBuilder, Option<usize>),
    Int(Int32Builder),
    Double(Float64Builder),
    Boolean(BooleanBuilder),
    TextArray(ListBuilder<StringBuilder>),
}

impl Out {
    fn new(returning: Returning, rows: usize) -> Out {
        match returning {
            Returning::Text(length) => Out::Text(StringBuilder::with_capacity(rows, rows * 8), length),
            Returning::Int => Out::Int(Int32Builder::with_capacity(rows)),
            Returning::Double => Out::Double(Float64Builder::with_capacity(rows)),
            Returning::Boolean => Out::Boolean(BooleanBuilder::with_capacity(rows)),
            Returning::TextArray => Out::TextArray(ListBuilder::with_capacity(StringBuilder::new(), rows)),
        }
    }

    fn push_null(&mut self) {
        match self {
            Out::Text(b, _) => b.append_null(),
            Out::Int(b) => b.append_null(),
            Out::Double(b) => b.append_null(),
            Out::Boolean(b) => b.append_null(),
            Out::TextArray(b) => b.append_null(),
        }
    }

    /// Appends a selected value; the error says why it is not of the RETURNING type.
    fn push_json(&mut self, value: &Json) -> std::result::Result<(), String> {
        let mismatch = |wanted: Returning| {
            let mut text = String::new();
            value.write(&mut text);
            format!("JSON_VALUE's value {text} is no {} (a value of another type than RETURNING's fails the query, as in Flink)", wanted.name())
        };
        match (self, value) {
            (Out::Text(b, length), value) => {
                let mut text = String::new();
                if value.is_container() {
                    value.write(&mut text);
                } else {
                    value.scalar_text(&mut text);
                }
                b.append_value(cut(&text, *length));
            }
            // Jackson reads an integer that fits an INT as an Integer, the only value Flink returns as an INT.
            (Out::Int(b), Json::Number(n)) if n.bytes().all(|c| c.is_ascii_digit() || c == b'-') => {
                b.append_value(n.parse::<i32>().map_err(|_| mismatch(Returning::Int))?);
            }
            (Out::Double(b), Json::Number(n)) => b.append_value(n.parse::<f64>().map_err(|_| mismatch(Returning::Double))?),
            (Out::Boolean(b), Json::Bool(v)) => b.append_value(*v),
            (Out::TextArray(b), Json::Array(items)) => {
                let mut text = String::new();
                for item in items {
                    text.clear();
                    match item {
                        Json::Null => b.values().append_null(),
                        item if item.is_container() => {
                            item.write(&mut text);
                            b.values().append_value(&text);
                        }
                        item => {
                            item.scalar_text(&mut text);
                            b.values().append_value(&text);
                        }
                    }
                }
                b.append(true);
            }
            (Out::Int(_), _) => return Err(mismatch(Returning::Int)),
            (Out::Double(_), _) => return Err(mismatch(Returning::Double)),
            (Out::Boolean(_), _) => return Err(mismatch(Returning::Boolean)),
            (Out::TextArray(_), _) => return Err(mismatch(Returning::TextArray)),
        }
        Ok(())
    }

    /// Appends `JSON_VALUE`'s `DEFAULT` value; the error says why it is not of the RETURNING type.
    fn push_default(&mut self, value: &ScalarValue) -> std::result::Result<(), String> {
        let mismatch = |wanted: &str| format!("the DEFAULT value {value} is no {wanted}, the RETURNING type");
        if value.is_null() {
            self.push_null();
            return Ok(());
        }
        match self {
            Out::Text(b, length) => {
                let text = match value {
                    ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => s.clone(),
                    other if other.data_type().is_numeric() || matches!(other, ScalarValue::Boolean(_)) => other.to_string(),
                    _ => return Err(mismatch("STRING")),
                };
                b.append_value(cut(&text, *length));
            }
            Out::Int(b) => {
                let v = match value.data_type().is_integer() {
                    true => value.cast_to(&DataType::Int64).ok().and_then(|v| if let ScalarValue::Int64(Some(v)) = v { i32::try_from(v).ok() } else { None }),
                    false => None,
                };
                b.append_value(v.ok_or_else(|| mismatch("INT"))?);
            }
            Out::Double(b) => match value.data_type().is_numeric().then(|| value.cast_to(&DataType::Float64).ok()).flatten() {
                Some(ScalarValue::Float64(Some(v))) => b.append_value(v),
                _ => return Err(mismatch("DOUBLE")),
            },
            Out::Boolean(b) => match value {
                ScalarValue::Boolean(Some(v)) => b.append_value(*v),
                _ => return Err(mismatch("BOOLEAN")),
            },
            Out::TextArray(_) => return Err(mismatch("ARRAY<STRING>")),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Out::Text(mut b, _) => Arc::new(b.finish()),
            Out::Int(mut b) => Arc::new(b.finish()),
            Out::Double(mut b) => Arc::new(b.finish()),
            Out::Boolean(mut b) => Arc::new(b.finish()),
            Out::TextArray(mut b) => Arc::new(b.finish()),
        }
    }
}

/// `text` cut to `length` characters (VARCHAR(n)), or whole.
fn cut(text: &str, length: Option<usize>) -> &str {
    match length.and_then(|n| text.char_indices().nth(n)) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `value IS JSON [kind]`: whether the text is a JSON document of that kind
/// (`VALUE`: any; `SCALAR`, `ARRAY`, `OBJECT`); FALSE for NULL, as in Flink.
fn is_json(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let kinds = Strs::of(&args[1])?;
    let out: BooleanArray = (0..rows)
        .map(|i| {
            let (Some(text), Some(kind)) = (texts.get(i), kinds.get(i)) else {
                return Some(false);
            };
            let Some(found) = json_kind(text) else {
                return Some(false);
            };
            Some(match kind {
                "ARRAY" => found == JsonKind::Array,
                "OBJECT" => found == JsonKind::Object,
                "SCALAR" => found == JsonKind::Scalar,
                _ => true,
            })
        })
        .collect();
    Ok(Arc::new(out))
}
