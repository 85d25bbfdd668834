//! The SQL layer's one error enum. Every message says where (line, column) and,
//! for the mistakes people make with streaming SQL, what to do instead.

use std::fmt;

/// A position in the submitted SQL text, 1-based as editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a statement could not be parsed or planned.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The text is not valid SQL in Eddy's dialect.
    #[error("syntax error at {location}: {message}{}", hint_suffix(.hint))]
    Syntax { location: Location, message: String, hint: Option<String> },
    /// Valid SQL that cannot be turned into a pipeline (unknown names, type errors, unsupported shapes).
    #[error("cannot plan the statement at {location}: {message}{}", hint_suffix(.hint))]
    Plan { location: Location, message: String, hint: Option<String> },
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("\n  hint: {h}"),
        None => String::new(),
    }
}

impl SqlError {
    /// A syntax error at `location`.
    pub fn syntax(location: Location, message: impl Into<String>) -> Self {
        SqlError::Syntax { location, message: message.into(), hint: None }
    }

    /// A planning error at `location`.
    pub fn plan(location: Location, message: impl Into<String>) -> Self {
        SqlError::Plan { location, message: message.into(), hint: None }
    }

    /// Adds advice on what to do instead.
    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        match &mut self {
            SqlError::Syntax { hint, .. } | SqlError::Plan { hint, .. } => *hint = Some(text.into()),
        }
        self
    }

    /// Moves a planning error that only knows where its statement starts to the
    /// name it complains about (a table, function or column quoted in the
    /// message), found in `text`, the statement's text starting at `start`; so the
    /// caret lands under the offending token instead of the statement's first
    /// column. An error that already points elsewhere, or names nothing found in
    /// the text, stays as it is.
    pub fn pointing_into(self, text: &str, start: Location) -> Self {
        let SqlError::Plan { location, message, hint } = self else { return self };
        if location != start {
            return SqlError::Plan { location, message, hint };
        }
        let location =
            quoted_names(&message).iter().find_map(|name| find_word(text, name)).map(|offset| location_after(text, offset, start)).unwrap_or(location);
        SqlError::Plan { location, message, hint }
    }

    /// Where the error is.
    pub fn location(&self) -> Location {
        match self {
            SqlError::Syntax { location, .. } | SqlError::Plan { location, .. } => *location,
        }
    }
}

/// The names an error message quotes, in order: `a`, 'a', "a" (DataFusion quotes
/// unknown tables and functions), and a qualified name's last part too.
fn quoted_names(message: &str) -> Vec<String> {
    let mut names = Vec::new();
    for quote in ['`', '\'', '"'] {
        let mut parts = message.split(quote);
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            let inside = inside.trim();
            if inside.is_empty() || inside.len() > 1024 || inside.contains(char::is_whitespace) {
                continue;
            }
            names.push(inside.to_string());
            if let Some((_, last)) = inside.rsplit_once('.') {
                names.push(last.to_string());
            }
        }
    }
    if let Some(rest) = message.split("No field named ").nth(1) {
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.').collect();
        let name = name.trim_end_matches('.');
        if let Some((_, last)) = name.rsplit_once('.') {
            names.push(last.to_string());
        }
        names.push(name.to_string());
    }
    names
}

/// The byte offset of `word` in `text` as a whole word (not inside a longer
/// identifier), preferring an exact match, then one that differs only in case.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let whole = |haystack: &str, needle: &str| {
        haystack.match_indices(needle).map(|(i, _)| i).find(|&i| {
            let before = haystack[..i].chars().next_back();
            let after = haystack[i + needle.len()..].chars().next();
            !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
        })
    };
    whole(text, word).or_else(|| {
        // Lower-casing can change byte lengths outside ASCII; only then is the offset unsafe.
        (text.is_ascii() && word.is_ascii()).then(|| whole(&text.to_ascii_lowercase(), &word.to_ascii_lowercase())).flatten()
    })
}

/// The location of byte `offset` of `text`, which starts at `start`.
fn location_after(text: &str, offset: usize, start: Location) -> Location {
    let before = &text[..offset];
    match before.rfind('\n') {
        None => Location { line: start.line, column: start.column + before.chars().count() as u64 },
        Some(newline) => Location { line: start.line + before.matches('\n').count() as u64, column: 1 + before[newline + 1..].chars().count() as u64 },
    }
}

/// Result alias for the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64, column: u64) -> Location {
        Location { line, column }
    }

    #[test]
    fn a_planning_error_points_at_the_name_it_quotes() {
        let text = "SELECT price\nFROM nosuch";
        let error = SqlError::plan(at(3, 5), "table 'nosuch' not found").pointing_into(text, at(3, 5));
        assert_eq!(error.location(), at(4, 6));
        let text = "SELECT pricey FROM bids";
        let error = SqlError::plan(at(1, 1), "No field named pricey. Valid fields are bids.price.").pointing_into(text, at(1, 1));
        assert_eq!(error.location(), at(1, 8));
    }

    #[test]
    fn whole_words_only_and_case_as_a_fallback() {
        let text = "SELECT nosuch_fn(x), NOSUCH(x) FROM t";
        let error = SqlError::plan(at(2, 3), "Invalid function 'nosuch'").pointing_into(text, at(2, 3));
        assert_eq!(error.location(), at(2, 3 + 21));
    }

    #[test]
    fn errors_that_point_elsewhere_or_name_nothing_stay() {
        let text = "SELECT a FROM t";
        let elsewhere = SqlError::plan(at(1, 8), "table 't' not found").pointing_into(text, at(1, 1));
        assert_eq!(elsewhere.location(), at(1, 8));
        let nothing = SqlError::plan(at(1, 1), "a window needs a watermark").pointing_into(text, at(1, 1));
        assert_eq!(nothing.location(), at(1, 1));
        let syntax = SqlError::syntax(at(1, 1), "expected 't'").pointing_into(text, at(1, 1));
        assert_eq!(syntax.location(), at(1, 1));
    }
}
