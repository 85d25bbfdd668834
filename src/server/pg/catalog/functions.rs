//! The Postgres functions tools call in their metadata queries (`version()`,
//! `current_schema()`, `format_type`, `has_table_privilege`, `to_regtype`...),
//! as DataFusion functions answering for Eddy's one database, schema and role.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility};

use super::tables::{format_type, type_oid, DATABASE, OWNER, SCHEMA, SETTINGS};

/// What one of the functions answers.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Answer {
    /// `version()`.
    Version,
    /// `current_schema()`.
    CurrentSchema,
    /// `current_schemas(include_implicit)`: the search path.
    CurrentSchemas,
    /// `current_database()`.
    CurrentDatabase,
    /// `current_setting(name)`.
    CurrentSetting,
    /// `current_user`, `session_user`, `pg_get_userbyid(oid)`: the one role.
    User,
    /// Privilege and visibility checks: everything is visible to everyone.
    True,
    /// Defaults, comments, expressions: Eddy's relations have none.
    Null,
    /// `format_type(oid, typmod)`.
    FormatType,
    /// `to_regtype(name)`.
    ToRegtype,
    /// `quote_ident(name)`.
    QuoteIdent,
    /// `parse_ident(qualified)`.
    ParseIdent,
    /// `pg_encoding_to_char(encoding)`.
    EncodingToChar,
    /// `pg_backend_pid()`.
    BackendPid,
}

/// The names of [`all`]'s functions (for telling a catalog query from Eddy's own).
pub fn names() -> &'static [String] {
    static NAMES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| all().iter().map(|f| f.name().to_string()).collect());
    &NAMES
}

/// The functions, to register in the catalog's context.
pub fn all() -> Vec<ScalarUDF> {
    let list = || DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    let mut functions = vec![
        Pg::udf("version", Answer::Version, DataType::Utf8),
        Pg::udf("current_schema", Answer::CurrentSchema, DataType::Utf8),
        Pg::udf("current_schemas", Answer::CurrentSchemas, list()),
        Pg::udf("current_database", Answer::CurrentDatabase, DataType::Utf8),
        Pg::udf("current_catalog", Answer::CurrentDatabase, DataType::Utf8),
        Pg::udf("current_setting", Answer::CurrentSetting, DataType::Utf8),
        Pg::udf("current_user", Answer::User, DataType::Utf8),
        Pg::udf("session_user", Answer::User, DataType::Utf8),
        Pg::udf("current_role", Answer::User, DataType::Utf8),
        Pg::udf("pg_get_userbyid", Answer::User, DataType::Utf8),
        Pg::udf("format_type", Answer::FormatType, DataType::Utf8),
        Pg::udf("to_regtype", Answer::ToRegtype, DataType::Int32),
        Pg::udf("quote_ident", Answer::QuoteIdent, DataType::Utf8),
        Pg::udf("parse_ident", Answer::ParseIdent, list()),
        Pg::udf("pg_encoding_to_char", Answer::EncodingToChar, DataType::Utf8),
        Pg::udf("pg_backend_pid", Answer::BackendPid, DataType::Int32),
    ];
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_any_column_privilege",
        "has_type_privilege",
        "has_function_privilege",
        "pg_table_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
    ] {
        functions.push(Pg::udf(name, Answer::True, DataType::Boolean));
    }
    for name in [
        "pg_get_expr",
        "obj_description",
        "col_description",
        "shobj_description",
        "pg_get_viewdef",
        "pg_get_constraintdef",
        "pg_get_indexdef",
        "pg_get_partkeydef",
    ] {
        functions.push(Pg::udf(name, Answer::Null, DataType::Utf8));
    }
    functions
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Pg {
    name: &'static str,
    answer: Answer,
    returns: DataType,
    signature: Signature,
}

impl Pg {
    fn udf(name: &'static str, answer: Answer, returns: DataType) -> ScalarUDF {
        let signature = Signature::one_of(vec![TypeSignature::Nullary, TypeSignature::VariadicAny], Volatility::Stable);
        ScalarUDF::new_from_impl(Pg { name, answer, returns, signature })
    }

    /// The answer for one row's arguments.
    fn answer(&self, args: &[ScalarValue]) -> ScalarValue {
        let text = |i: usize| args.get(i).and_then(string);
        let utf8 = |value: Option<String>| ScalarValue::Utf8(value);
        match self.answer {
            Answer::Version => utf8(Some(format!("PostgreSQL 16.6 (Eddy {}), compatible with the Postgres protocol", env!("CARGO_PKG_VERSION")))),
            Answer::CurrentSchema => utf8(Some(SCHEMA.into())),
            Answer::CurrentSchemas => {
                let schemas: Vec<ScalarValue> = ["pg_catalog", SCHEMA].iter().map(|s| ScalarValue::Utf8(Some(s.to_string()))).collect();
                ScalarValue::List(ScalarValue::new_list_nullable(&schemas, &DataType::Utf8))
            }
            Answer::CurrentDatabase => utf8(Some(DATABASE.into())),
            Answer::CurrentSetting => {
                utf8(text(0).and_then(|name| SETTINGS.iter().find(|(setting, _)| setting.eq_ignore_ascii_case(&name)).map(|(_, value)| value.to_string())))
            }
            Answer::User => utf8(Some(OWNER.into())),
            Answer::True => ScalarValue::Boolean(Some(true)),
            Answer::Null => utf8(None),
            Answer::FormatType => {
                let oid = args.first().and_then(integer).and_then(|oid| u32::try_from(oid).ok());
                let typmod = args.get(1).and_then(integer).and_then(|m| i32::try_from(m).ok()).unwrap_or(-1);
                utf8(oid.map(|oid| format_type(oid, typmod).unwrap_or_else(|| "???".into())))
            }
            Answer::ToRegtype => ScalarValue::Int32(text(0).and_then(|name| type_oid(&name)).and_then(|oid| i32::try_from(oid).ok())),
            Answer::QuoteIdent => utf8(text(0).map(|name| quote_ident(&name))),
            Answer::ParseIdent => match text(0) {
                Some(name) => {
                    let parts: Vec<ScalarValue> = parse_ident(&name).into_iter().map(|p| ScalarValue::Utf8(Some(p))).collect();
                    ScalarValue::List(ScalarValue::new_list_nullable(&parts, &DataType::Utf8))
                }
                None => ScalarValue::try_from(&self.returns).unwrap_or(ScalarValue::Null),
            },
            Answer::EncodingToChar => utf8(Some("UTF8".into())),
            Answer::BackendPid => ScalarValue::Int32(Some(i32::try_from(std::process::id()).unwrap_or(0))),
        }
    }
}

impl ScalarUDFImpl for Pg {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            let scalars: Vec<ScalarValue> = args.args.iter().filter_map(|a| if let ColumnarValue::Scalar(s) = a { Some(s.clone()) } else { None }).collect();
            return Ok(ColumnarValue::Scalar(self.answer(&scalars).cast_to(&self.returns)?));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = (0..args.number_rows)
            .map(|row| {
                let values = arrays.iter().map(|a| ScalarValue::try_from_array(a, row)).collect::<Result<Vec<_>>>()?;
                self.answer(&values).cast_to(&self.returns)
            })
            .collect::<Result<Vec<_>>>()?;
        if rows.is_empty() {
            return Ok(ColumnarValue::Array(datafusion::arrow::array::new_empty_array(&self.returns)));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(rows)?))
    }
}

/// A text argument's value (`None` for NULL or a value that is not text).
fn string(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        _ => None,
    }
}

/// An integer argument's value.
fn integer(value: &ScalarValue) -> Option<i64> {
    match value.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(n) => n,
        _ => None,
    }
}

/// `quote_ident`: the name as written in SQL, in double quotes unless it is a
/// plain lower-case identifier.
pub fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `parse_ident`: the parts of a qualified name, unquoted (`"My".t` is `My`, `t`).
fn parse_ident(name: &str) -> Vec<String> {
    let (mut parts, mut part, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut part)),
            c if quoted => part.push(c),
            c => part.extend(c.to_lowercase()),
        }
    }
    parts.push(part);
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_parsed_as_postgres_does() {
        assert_eq!(quote_ident("bids"), "bids");
        assert_eq!(quote_ident("Bids"), "\"Bids\"");
        assert_eq!(quote_ident("a b"), "\"a b\"");
        assert_eq!(parse_ident("public.bids"), vec!["public", "bids"]);
        assert_eq!(parse_ident("\"My.Schema\".Bids"), vec!["My.Schema", "bids"]);
    }
}
