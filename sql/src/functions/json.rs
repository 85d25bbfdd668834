//! Flink's JSON query functions: `JSON_VALUE`, `JSON_QUERY`, `JSON_EXISTS`
//! and the `IS JSON` predicate (building JSON is [`super::json_build`]'s), with Flink's defaults for what
//! goes wrong (`NULL ON EMPTY`, `NULL ON ERROR`, `FALSE ON ERROR`). A constant
//! path is compiled once, at planning, where a malformed one is refused.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, StringBuilder};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::flink_fn::{boolean, constant_str, string, FlinkFn, LastCompiled, Param, Strs};
use super::json_path::{json_kind, Json, JsonKind, JsonPath, Selected};

/// The internal name `x IS [NOT] JSON [kind]` is planned as (see [`super::syntax`]).
pub(crate) const IS_JSON: &str = "__eddy_is_json";

/// Flink's JSON functions.
pub(super) fn functions() -> Vec<ScalarUDF> {
    use Param::Str;
    vec![
        FlinkFn::new("JSON_VALUE", "JSON_VALUE(json, path)", &[Str, Str], 2, string, json_value).checking(check_path).udf(),
        FlinkFn::new("JSON_QUERY", "JSON_QUERY(json, path)", &[Str, Str], 2, string, json_query).checking(check_path).udf(),
        FlinkFn::new("JSON_EXISTS", "JSON_EXISTS(json, path)", &[Str, Str], 2, boolean, json_exists).checking(check_path).udf(),
        FlinkFn::new(IS_JSON, "value IS [NOT] JSON [VALUE | SCALAR | ARRAY | OBJECT]", &[Str, Str], 2, boolean, is_json).udf(),
    ]
}

/// Refuses a constant path Flink could not read.
fn check_path(constants: &[Option<&ScalarValue>]) -> std::result::Result<(), String> {
    match constant_str(constants, 1) {
        Some(path) => JsonPath::parse(path).map(|_| ()),
        None => Ok(()),
    }
}

/// What a row's path selects from its document: None for a NULL argument;
/// `Selected::Error` for a document that is no JSON or a path that is malformed.
fn each_row(args: &[ColumnarValue], rows: usize, mut f: impl FnMut(Option<Selected>)) -> Result<()> {
    let docs = Strs::of(&args[0])?;
    let paths = Strs::of(&args[1])?;
    // A malformed path gives NULL (or FALSE), as in Flink.
    let mut compiled = LastCompiled::new(|path| JsonPath::parse(path).ok());
    for i in 0..rows {
        let (Some(doc), Some(path)) = (docs.get(i), paths.get(i)) else {
            f(None);
            continue;
        };
        match compiled.get(path) {
            Some(path) => f(Some(path.select(doc))),
            None => f(Some(Selected::Error)),
        }
    }
    Ok(())
}

/// `JSON_VALUE(json, path)`: the scalar at `path` as a STRING; NULL when there
/// is nothing there, it is JSON null, an array or object, or anything fails.
fn json_value(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    let mut text = String::new();
    each_row(args, rows, |selected| {
        text.clear();
        match selected {
            Some(Selected::One(value)) if value.scalar_text(&mut text).is_some() => out.append_value(&text),
            _ => out.append_null(),
        }
    })?;
    Ok(Arc::new(out.finish()))
}

/// `JSON_QUERY(json, path)`: the array or object at `path` as JSON text (a
/// path with a wildcard gives the array of what it selects); NULL for a
/// scalar, nothing, or a failure.
fn json_query(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    let mut text = String::new();
    each_row(args, rows, |selected| {
        text.clear();
        match selected {
            Some(Selected::One(value)) if value.is_container() => {
                value.write(&mut text);
                out.append_value(&text);
            }
            Some(Selected::Many(values)) => {
                Json::Array(values).write(&mut text);
                out.append_value(&text);
            }
            _ => out.append_null(),
        }
    })?;
    Ok(Arc::new(out.finish()))
}

/// `JSON_EXISTS(json, path)`: whether `path` selects something that is not JSON
/// null; FALSE when anything fails.
fn json_exists(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let mut out = BooleanArray::builder(rows);
    each_row(args, rows, |selected| match selected {
        None => out.append_null(),
        Some(Selected::One(value)) => out.append_value(value != Json::Null),
        Some(Selected::Many(_)) => out.append_value(true),
        Some(Selected::Nothing | Selected::Error) => out.append_value(false),
    })?;
    Ok(Arc::new(out.finish()))
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
