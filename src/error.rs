//! The binary crate's one error enum: wraps the layers' errors with what the user ran.

use eddy_sql::{Location, ParsedStatement, SqlError};

/// Why a script could not run.
#[derive(Debug, thiserror::Error)]
pub enum EddyError {
    /// The SQL is wrong; the message names the line and column.
    #[error("{0}")]
    Sql(#[from] SqlError),
    /// A table's connector or options are wrong.
    #[error("table `{table}` (declared at {location}): {message}")]
    Connector { table: String, location: Location, message: String },
    /// The pipeline failed while running.
    #[error("pipeline `{pipeline}` failed: {source}")]
    Pipeline { pipeline: String, #[source] source: eddy_engine::EngineError },
    /// Reading a script or writing output failed.
    #[error("{context}: {source}")]
    Io { context: String, #[source] source: std::io::Error },
    /// A statement names a table, view or pipeline that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The statement is valid but cannot run here or now (e.g. it needs a server).
    #[error("{0}")]
    Unsupported(String),
    /// A statement would create something under a name already taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The statement conflicts with what is running (e.g. dropping a table a pipeline reads).
    #[error("{0}")]
    Conflict(String),
    /// A setting has a value Eddy cannot use.
    #[error("setting '{key}' = '{value}': {message}")]
    Setting { key: String, value: String, message: String },
}

impl EddyError {
    /// A planning error of `statement`, pointed at the name it complains about
    /// (see [`SqlError::pointing_into`]), so the client's caret is under it.
    pub fn pointing_into(self, statement: &ParsedStatement) -> Self {
        match self {
            EddyError::Sql(e) => EddyError::Sql(e.pointing_into(&statement.text, statement.location)),
            other => other,
        }
    }
}
