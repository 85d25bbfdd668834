//! Statements about the connection itself, which the Postgres face answers
//! without the dispatcher: psql's `PREPARE name AS ...`, `EXECUTE name(args)`
//! and `DEALLOCATE` (statements kept for the connection); `BEGIN`, `COMMIT` and
//! `ROLLBACK`, which drivers send on their own (psycopg opens a transaction
//! before its first statement) and which Eddy accepts without transactions;
//! the Postgres session `SET`s drivers send on connecting; and `SUBSCRIBE view`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::error::EddyError;

/// A statement about the connection itself, which the Postgres face answers
/// without the dispatcher.
#[derive(Debug, PartialEq)]
pub enum Named<'a> {
    /// `PREPARE name [(types)] AS statement`.
    Prepare { name: String, statement: &'a str },
    /// `EXECUTE name [(arguments)]`: the arguments are SQL expressions.
    Execute { name: String, arguments: Vec<String> },
    /// `DEALLOCATE [PREPARE] name` (`None`: `ALL`).
    Deallocate { name: Option<String> },
    /// `BEGIN` / `START TRANSACTION`: accepted, though each statement applies at once.
    Begin,
    /// `COMMIT` / `END` (`committed`), `ROLLBACK` / `ABORT` (not): end the accepted transaction.
    End { committed: bool },
    /// `SET` of a Postgres session parameter drivers send on connecting
    /// (`extra_float_digits`, `application_name`...): accepted, nothing changes.
    SetSession,
    /// `SUBSCRIBE [TO] view`: its rows and changes as a `COPY` stream (see [`super::subscribe`]).
    Subscribe { name: String },
}

/// The Postgres session parameters drivers set (JDBC, psycopg, Grafana); Eddy's
/// own settings are quoted (`SET 'parallelism' = '4'`) and go to the dispatcher.
const SESSION_PARAMETERS: &[&str] = &[
    "extra_float_digits",
    "application_name",
    "datestyle",
    "timezone",
    "time",
    "client_encoding",
    "search_path",
    "statement_timeout",
    "intervalstyle",
    "session",
    "names",
    "standard_conforming_strings",
    "client_min_messages",
    "bytea_output",
];

/// Recognises `PREPARE`, `EXECUTE`, `DEALLOCATE`, transaction control and
/// Postgres session `SET`s (one statement, an optional trailing `;`); `None` for
/// any other text.
pub fn named(sql: &str) -> Result<Option<Named<'_>>, EddyError> {
    let text = sql.trim().trim_end_matches(';').trim_end();
    let (keyword, rest) = split_word(text);
    match keyword.to_ascii_uppercase().as_str() {
        "PREPARE" => {
            let (name, mut rest) = split_name(rest)?;
            if rest.starts_with('(') {
                // Declared parameter types: the values' literals carry their own.
                let close = rest.find(')').ok_or_else(|| EddyError::Unsupported("PREPARE: the parameter type list has no `)`".into()))?;
                rest = rest[close + 1..].trim_start();
            }
            let (as_keyword, statement) = split_word(rest);
            if !as_keyword.eq_ignore_ascii_case("AS") || statement.trim().is_empty() {
                return Err(EddyError::Unsupported("PREPARE is written PREPARE name [(type, ...)] AS statement".into()));
            }
            Ok(Some(Named::Prepare { name, statement: statement.trim() }))
        }
        "EXECUTE" => {
            let (name, rest) = split_name(rest)?;
            let arguments = match rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
                Some(list) if !list.trim().is_empty() => expressions(list)?,
                Some(_) => Vec::new(),
                None if rest.is_empty() => Vec::new(),
                None => return Err(EddyError::Unsupported("EXECUTE is written EXECUTE name [(value, ...)]".into())),
            };
            Ok(Some(Named::Execute { name, arguments }))
        }
        "DEALLOCATE" => {
            let (first, rest) = split_word(rest);
            let name = if first.eq_ignore_ascii_case("PREPARE") { split_word(rest).0 } else { first };
            if name.is_empty() {
                return Err(EddyError::Unsupported("DEALLOCATE is written DEALLOCATE name, or DEALLOCATE ALL".into()));
            }
            Ok(Some(Named::Deallocate { name: (!name.eq_ignore_ascii_case("ALL")).then(|| name.to_string()) }))
        }
        "SUBSCRIBE" => {
            let (first, rest) = split_word(rest);
            let name = if first.eq_ignore_ascii_case("TO") { split_word(rest).0 } else { first };
            if name.is_empty() {
                return Err(EddyError::Unsupported("SUBSCRIBE is written SUBSCRIBE view".into()));
            }
            Ok(Some(Named::Subscribe { name: name.to_string() }))
        }
        "BEGIN" | "START" => Ok(Some(Named::Begin)),
        "COMMIT" | "END" => Ok(Some(Named::End { committed: true })),
        "ROLLBACK" | "ABORT" => Ok(Some(Named::End { committed: false })),
        "SET" => {
            let (first, rest) = split_word(rest);
            let parameter = if first.eq_ignore_ascii_case("SESSION") || first.eq_ignore_ascii_case("LOCAL") { split_word(rest).0 } else { first };
            let parameter = parameter.split('=').next().unwrap_or_default().to_ascii_lowercase();
            Ok(SESSION_PARAMETERS.contains(&parameter.as_str()).then_some(Named::SetSession))
        }
        _ => Ok(None),
    }
}

/// The first whitespace-separated word of `text` and what follows it.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = text.find(|c: char| c.is_whitespace() || c == '(').unwrap_or(text.len());
    (&text[..end], text[end..].trim_start())
}

/// A statement name (letters, digits, `_`) and what follows it.
fn split_name(text: &str) -> Result<(String, &str), EddyError> {
    let text = text.trim_start();
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    if end == 0 {
        return Err(EddyError::Unsupported("a prepared statement needs a name (letters, digits and _)".into()));
    }
    Ok((text[..end].to_string(), text[end..].trim_start()))
}

/// The comma-separated SQL expressions of `list`, each as SQL text.
fn expressions(list: &str) -> Result<Vec<String>, EddyError> {
    let dialect = GenericDialect {};
    let statements = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &format!("SELECT {list}"))
        .map_err(|e| EddyError::Unsupported(format!("EXECUTE's values: {e}")))?;
    match statements.as_slice() {
        [datafusion::sql::sqlparser::ast::Statement::Query(query)] => match &*query.body {
            datafusion::sql::sqlparser::ast::SetExpr::Select(select) => Ok(select.projection.iter().map(|item| item.to_string()).collect()),
            _ => Err(EddyError::Unsupported("EXECUTE's values must be expressions".into())),
        },
        _ => Err(EddyError::Unsupported("EXECUTE's values must be expressions".into())),
    }
}

/// The statements a connection named with `PREPARE`, by name: their text.
#[derive(Default)]
pub struct NamedStatements {
    statements: Mutex<BTreeMap<String, String>>,
}

impl NamedStatements {
    /// Keeps `statement` as `name`; refused when the name is taken, as Postgres does.
    pub fn prepare(&self, name: &str, statement: &str) -> Result<(), EddyError> {
        let mut statements = self.lock();
        if statements.contains_key(name) {
            return Err(EddyError::AlreadyExists(format!("prepared statement \"{name}\" already exists")));
        }
        statements.insert(name.to_string(), statement.to_string());
        Ok(())
    }

    /// The text of statement `name`.
    pub fn get(&self, name: &str) -> Result<String, EddyError> {
        self.lock().get(name).cloned().ok_or_else(|| EddyError::NotFound(format!("prepared statement \"{name}\" does not exist")))
    }

    /// Forgets `name` (every statement for `None`).
    pub fn deallocate(&self, name: Option<&str>) -> Result<(), EddyError> {
        let mut statements = self.lock();
        match name {
            None => statements.clear(),
            Some(name) => {
                statements.remove(name).ok_or_else(|| EddyError::NotFound(format!("prepared statement \"{name}\" does not exist")))?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.statements.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_execute_and_deallocate_are_recognised() {
        assert_eq!(
            named("PREPARE q (bigint) AS SELECT * FROM v WHERE k = $1;").unwrap(),
            Some(Named::Prepare { name: "q".into(), statement: "SELECT * FROM v WHERE k = $1" })
        );
        assert_eq!(named("execute q(3, 'a')").unwrap(), Some(Named::Execute { name: "q".into(), arguments: vec!["3".into(), "'a'".into()] }));
        assert_eq!(named("EXECUTE q").unwrap(), Some(Named::Execute { name: "q".into(), arguments: vec![] }));
        assert_eq!(named("DEALLOCATE ALL").unwrap(), Some(Named::Deallocate { name: None }));
        assert_eq!(named("DEALLOCATE PREPARE q").unwrap(), Some(Named::Deallocate { name: Some("q".into()) }));
        assert_eq!(named("SELECT 1").unwrap(), None);
        assert!(named("PREPARE q SELECT 1").is_err());
    }

    #[test]
    fn transactions_and_session_settings_are_the_connections_own() {
        assert_eq!(named("BEGIN").unwrap(), Some(Named::Begin));
        assert_eq!(named("start transaction isolation level read committed").unwrap(), Some(Named::Begin));
        assert_eq!(named("COMMIT;").unwrap(), Some(Named::End { committed: true }));
        assert_eq!(named("ROLLBACK").unwrap(), Some(Named::End { committed: false }));
        assert_eq!(named("SET extra_float_digits = 3").unwrap(), Some(Named::SetSession));
        assert_eq!(named("SET SESSION TIME ZONE 'UTC'").unwrap(), Some(Named::SetSession));
        assert_eq!(named("SET 'parallelism' = '4'").unwrap(), None);
        assert_eq!(named("SUBSCRIBE TO counts;").unwrap(), Some(Named::Subscribe { name: "counts".into() }));
        assert_eq!(named("subscribe counts").unwrap(), Some(Named::Subscribe { name: "counts".into() }));
    }
}
