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

    /// Where the error is.
    pub fn location(&self) -> Location {
        match self {
            SqlError::Syntax { location, .. } | SqlError::Plan { location, .. } => *location,
        }
    }
}

/// Result alias for the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;
