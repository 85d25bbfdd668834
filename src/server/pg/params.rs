//! Parameters of prepared statements: `$1`, `$2`... in a statement's text are
//! replaced by SQL literals of the values a client binds, and the statement then
//! runs through the server's one dispatcher like any other text.
//!
//! Binding by text keeps a single path for every statement (gRPC, simple and
//! extended Postgres queries). It is safe because each value becomes exactly one
//! literal token: a numeric value must parse as a number, a string is quoted
//! and checked to read back as the same single string token.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use pgwire::api::Type;

use crate::error::EddyError;

/// The `$N` placeholders of `sql`: for each, its byte range and its number.
fn placeholders(sql: &str) -> Result<Vec<(std::ops::Range<usize>, usize)>, EddyError> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| EddyError::Sql(eddy_sql::SqlError::syntax(eddy_sql::Location { line: e.location.line, column: e.location.column }, e.message)))?;
    let line_starts: Vec<usize> = std::iter::once(0).chain(sql.match_indices('\n').map(|(i, _)| i + 1)).collect();
    let offset = |line: u64, column: u64| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let rest = &sql[start..];
        let column = usize::try_from(column).ok()?.checked_sub(1)?;
        Some(start + rest.char_indices().nth(column).map_or(rest.len(), |(i, _)| i))
    };
    let mut found = Vec::new();
    for token in tokens {
        let Token::Placeholder(text) = &token.token else { continue };
        let Some(number) = text.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0) else {
            return Err(EddyError::Unsupported(format!("placeholder `{text}`: parameters are written $1, $2, ...")));
        };
        let start = offset(token.span.start.line, token.span.start.column)
            .ok_or_else(|| EddyError::Internal(format!("placeholder `{text}` is outside the statement's text")))?;
        found.push((start..start + text.len(), number));
    }
    Ok(found)
}

/// How many parameters `sql` takes: its highest `$N`.
pub fn parameter_count(sql: &str) -> Result<usize, EddyError> {
    Ok(placeholders(sql)?.iter().map(|(_, n)| *n).max().unwrap_or(0))
}

/// `sql` with every `$N` replaced by `literals[N - 1]` (SQL text).
pub fn substitute(sql: &str, literals: &[String]) -> Result<String, EddyError> {
    let mut bound = sql.to_string();
    let mut found = placeholders(sql)?;
    found.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    for (range, number) in found {
        let literal = literals
            .get(number - 1)
            .ok_or_else(|| EddyError::Unsupported(format!("the statement uses ${number}, but {} parameter value(s) were given", literals.len())))?;
        bound.replace_range(range, literal);
    }
    Ok(bound)
}

/// A bound value as a SQL literal of Postgres type `ty`: `NULL`, a number, a
/// boolean, a typed date/time literal or a quoted string.
pub fn literal(value: Option<&str>, ty: &Type) -> Result<String, EddyError> {
    let Some(value) = value else { return Ok("NULL".into()) };
    let refuse = |what: &str| EddyError::Unsupported(format!("parameter value `{value}` is not a valid {what}"));
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => value.trim().parse::<i64>().map(|n| n.to_string()).map_err(|_| refuse("integer")),
        Type::FLOAT4 | Type::FLOAT8 => match value.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(format!("{n:?}")),
            Ok(_) => Ok(format!("CAST({} AS DOUBLE)", quoted(value.trim())?)),
            Err(_) => Err(refuse("number")),
        },
        Type::NUMERIC => {
            let digits = value.trim().trim_start_matches(['-', '+']);
            let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
            let valid = !(integer.is_empty() && fraction.is_empty()) && integer.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit());
            if valid {
                Ok(value.trim().to_string())
            } else {
                Err(refuse("numeric value"))
            }
        }
        Type::BOOL => match value.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "y" | "yes" | "on" | "1" => Ok("TRUE".into()),
            "f" | "false" | "n" | "no" | "off" | "0" => Ok("FALSE".into()),
            _ => Err(refuse("boolean")),
        },
        Type::TIMESTAMP | Type::TIMESTAMPTZ => Ok(format!("CAST({} AS TIMESTAMP)", quoted(value)?)),
        Type::DATE => Ok(format!("CAST({} AS DATE)", quoted(value)?)),
        _ => quoted(value),
    }
}

/// A value of type `ty` to bind where only the statement's columns are wanted:
/// not NULL, which the planner folds away (`WHERE price > NULL` reads nothing).
pub fn sample_value(ty: &Type) -> &'static str {
    match *ty {
        Type::BOOL => "false",
        Type::TIMESTAMP | Type::TIMESTAMPTZ => "1970-01-01 00:00:00",
        Type::DATE => "1970-01-01",
        _ => "0",
    }
}

/// `value` as one single-quoted string literal; refused unless it reads back
/// as exactly that one token with exactly that value.
pub fn quoted(value: &str) -> Result<String, EddyError> {
    let dialect = GenericDialect {};
    // Quotes doubled; then, for a dialect that reads backslash escapes, backslashes doubled too.
    let plain = format!("'{}'", value.replace('\'', "''"));
    let escaped = format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"));
    [plain, escaped]
        .into_iter()
        .find(|literal| matches!(Tokenizer::new(&dialect, literal).tokenize().as_deref(), Ok([Token::SingleQuotedString(read)]) if read == value))
        .ok_or_else(|| EddyError::Unsupported(format!("parameter value {value:?} cannot be written as a SQL string literal")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_outside_strings_and_comments_are_replaced() {
        let sql = "SELECT '$1', k -- $2\nFROM v WHERE k = $1 AND name = $2";
        assert_eq!(parameter_count(sql).unwrap(), 2);
        let bound = substitute(sql, &["7".into(), "'x'".into()]).unwrap();
        assert_eq!(bound, "SELECT '$1', k -- $2\nFROM v WHERE k = 7 AND name = 'x'");
    }

    #[test]
    fn placeholders_after_wide_characters_land_in_place() {
        assert_eq!(substitute("SELECT 'é', $1", &["1".into()]).unwrap(), "SELECT 'é', 1");
    }

    #[test]
    fn missing_values_are_refused() {
        let err = substitute("SELECT $2", &["1".into()]).unwrap_err().to_string();
        assert!(err.contains("$2"), "{err}");
    }

    #[test]
    fn values_become_single_literals() {
        assert_eq!(literal(Some("42"), &Type::INT8).unwrap(), "42");
        assert!(literal(Some("1; DROP TABLE t"), &Type::INT8).is_err());
        assert_eq!(literal(Some("it's"), &Type::TEXT).unwrap(), "'it''s'");
        // A backslash cannot end the string early: the literal reads back as the value.
        let sneaky = "a\\'); DROP TABLE t; --";
        let quoted = literal(Some(sneaky), &Type::TEXT).unwrap();
        let tokens = Tokenizer::new(&GenericDialect {}, &quoted).tokenize().unwrap();
        assert_eq!(tokens, vec![Token::SingleQuotedString(sneaky.to_string())]);
        assert_eq!(literal(None, &Type::TEXT).unwrap(), "NULL");
        assert_eq!(literal(Some("t"), &Type::BOOL).unwrap(), "TRUE");
        assert_eq!(literal(Some("-1.50"), &Type::NUMERIC).unwrap(), "-1.50");
        assert!(literal(Some("1e3; x"), &Type::NUMERIC).is_err());
        assert_eq!(literal(Some("2024-01-02 03:04:05"), &Type::TIMESTAMP).unwrap(), "CAST('2024-01-02 03:04:05' AS TIMESTAMP)");
    }
}
