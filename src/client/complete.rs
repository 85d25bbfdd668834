//! Tab completion for the interactive client: SQL keywords, backslash
//! commands, and the server's tables, views and their columns.
//!
//! The line editor asks for completions synchronously while it owns the
//! terminal, so the names are fetched from the server beforehand (at the start
//! and after each statement that may change the catalog) and kept in a
//! [`Names`] the editor's helper shares with the shell.

use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

/// Keywords offered wherever a word is typed, as Flink spells them.
const KEYWORDS: &[&str] = &[
    "ALL",
    "AND",
    "AS",
    "ASC",
    "BETWEEN",
    "BIGINT",
    "BOOLEAN",
    "BY",
    "BYTES",
    "CASE",
    "CAST",
    "COUNT",
    "CREATE",
    "CUMULATE",
    "DATE",
    "DECIMAL",
    "DESC",
    "DESCRIBE",
    "DESCRIPTOR",
    "DISTINCT",
    "DOUBLE",
    "DROP",
    "ELSE",
    "END",
    "ENFORCED",
    "EXISTS",
    "EXPLAIN",
    "FALSE",
    "FLOAT",
    "FROM",
    "GROUP",
    "HAVING",
    "HOP",
    "IF",
    "IN",
    "INNER",
    "INSERT",
    "INT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MATERIALIZED",
    "MAX",
    "MIN",
    "NOT",
    "NULL",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "PARALLELISM",
    "PARTITION",
    "PIPELINE",
    "PIPELINES",
    "PRIMARY",
    "RESTART",
    "RIGHT",
    "SAVEPOINT",
    "SECOND",
    "MINUTE",
    "HOUR",
    "DAY",
    "SELECT",
    "SESSION",
    "SET",
    "SHOW",
    "SMALLINT",
    "STOP",
    "STRING",
    "SUM",
    "AVG",
    "TABLE",
    "TABLES",
    "TEMPORARY",
    "THEN",
    "TIMESTAMP",
    "TIMESTAMP_LTZ",
    "TINYINT",
    "TRUE",
    "TUMBLE",
    "UNION",
    "VALUES",
    "VARCHAR",
    "VIEW",
    "VIEWS",
    "WATERMARK",
    "WHEN",
    "WHERE",
    "WITH",
];

/// Backslash commands, completed after a `\`.
const COMMANDS: &[&str] = &[
    "\\?",
    "\\conninfo",
    "\\d",
    "\\dp",
    "\\dt",
    "\\dv",
    "\\e",
    "\\echo",
    "\\g",
    "\\h",
    "\\i",
    "\\o",
    "\\p",
    "\\pset",
    "\\q",
    "\\r",
    "\\set",
    "\\subscribe",
    "\\timing",
    "\\unset",
    "\\watch",
    "\\x",
];

/// The server's object names as last fetched.
#[derive(Debug, Default, Clone)]
pub struct Names {
    /// Tables and views (plain and materialized).
    pub relations: Vec<String>,
    /// Columns of all of them, without repeats.
    pub columns: Vec<String>,
}

/// The line editor's helper: completion only (no hints, colours or validation).
pub struct SqlHelper {
    pub names: Arc<Mutex<Names>>,
}

impl SqlHelper {
    /// What completes `word`, a prefix typed in `line` before it.
    fn candidates(&self, line_before: &str, word: &str) -> Vec<String> {
        if word.starts_with('\\') {
            return COMMANDS.iter().filter(|c| c.starts_with(word)).map(|c| c.to_string()).collect();
        }
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        let previous = line_before.split_whitespace().last().unwrap_or("").to_ascii_uppercase();
        // After FROM, JOIN, INTO, TABLE, DESCRIBE or \d: a relation; elsewhere columns first, then relations and keywords.
        let wants_relation = matches!(previous.as_str(), "FROM" | "JOIN" | "INTO" | "TABLE" | "DESCRIBE" | "\\D" | "\\SUBSCRIBE" | "EXISTS");
        let lower = word.to_lowercase();
        let mut found: Vec<String> = Vec::new();
        let mut offer = |candidates: &mut dyn Iterator<Item = &String>| {
            for name in candidates {
                if name.to_lowercase().starts_with(&lower) && !found.contains(name) {
                    found.push(name.clone());
                }
            }
        };
        if wants_relation {
            offer(&mut names.relations.iter());
            return found;
        }
        offer(&mut names.columns.iter());
        offer(&mut names.relations.iter());
        let upper = word.to_ascii_uppercase();
        // Keywords keep the case the user types in.
        let typed_lower = word.chars().any(|c| c.is_ascii_lowercase());
        for keyword in KEYWORDS.iter().filter(|k| k.starts_with(&upper)) {
            let keyword = if typed_lower { keyword.to_ascii_lowercase() } else { keyword.to_string() };
            if !found.contains(&keyword) {
                found.push(keyword);
            }
        }
        found
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\\')).map(|i| i + 1).unwrap_or(0);
        // A `\` starts a word only at its beginning (`\d`), not in the middle of one.
        let start = match before[start..].rfind('\\') {
            Some(i) if i > 0 => start + i,
            _ => start,
        };
        let word = &before[start..];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        // Columns first, then tables and views, then keywords: the likelier answer comes first.
        let candidates = self.candidates(&before[..start], word);
        let pairs = candidates.into_iter().map(|c| Pair { display: c.clone(), replacement: c }).collect();
        Ok((start, pairs))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {}

impl Validator for SqlHelper {}

impl Helper for SqlHelper {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn helper() -> SqlHelper {
        let names =
            Names { relations: vec!["auctions".into(), "bid_counts".into(), "bids".into()], columns: vec!["auction".into(), "bidder".into(), "price".into()] };
        SqlHelper { names: Arc::new(Mutex::new(names)) }
    }

    fn complete(line: &str) -> (usize, Vec<String>) {
        let history = rustyline::history::DefaultHistory::new();
        let ctx = Context::new(&history);
        let (start, pairs) = helper().complete(line, line.len(), &ctx).unwrap();
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_relations_after_from_and_columns_and_keywords_elsewhere() {
        assert_eq!(complete("SELECT * FROM bi"), (14, vec!["bid_counts".to_string(), "bids".to_string()]));
        assert_eq!(complete("SELECT pri"), (7, vec!["price".to_string(), "primary".to_string()]));
        assert_eq!(complete("sel"), (0, vec!["select".to_string()]));
        assert_eq!(complete("SELECT auction FR"), (15, vec!["FROM".to_string()]));
        assert_eq!(complete("DESCRIBE auc"), (9, vec!["auctions".to_string()]));
        assert_eq!(complete("\\dp"), (0, vec!["\\dp".to_string()]));
        assert_eq!(complete("\\su"), (0, vec!["\\subscribe".to_string()]));
        assert_eq!(complete("SELECT 1 \\g"), (9, vec!["\\g".to_string()]));
        assert_eq!(complete("SELECT "), (7, vec![]));
    }
}
