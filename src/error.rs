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
    Pipeline {
        pipeline: String,
        #[source]
        source: eddy_engine::EngineError,
    },
    /// Reading a script or writing output failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
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
    /// Sources were read to their end and every record of theirs was malformed:
    /// the run did nothing useful, so it must not look like a success.
    #[error("nothing valid was read from {tables}: every record was malformed (see the warnings above, or the table's 'malformed.sink'); check the table's 'format', delimiter and column types against the input")]
    NothingValid { tables: String },
    /// A materialized view's pipeline (or that of a view it reads) failed, so its
    /// rows stopped at the failure: reading it would answer as if they were complete.
    #[error("materialized view `{view}` cannot be read: {reason}; its rows stopped at the failure and are not complete. SHOW PIPELINES shows the failure: fix the query or its input, then drop the failed view and create it again")]
    ViewFailed { view: String, reason: String },
    /// Another process (another `eddy server`) holds the data directory's lock.
    #[error("the data directory {dir} is in use by {holder}; stop that server first, or give this one another --data-dir")]
    DataDirInUse { dir: String, holder: String },
    /// Whoever read stdout closed it (`eddy run x.sql | head -3`): nobody reads
    /// what Eddy would print, so the binary stops quietly instead of reporting it.
    #[error("stdout was closed by its reader")]
    StdoutClosed,
    /// An ad-hoc query's answer outgrew what the server sends back (a join whose
    /// rows multiply, a SELECT over a huge table): the query was stopped.
    #[error("the answer has more than {limit} rows, more than an ad-hoc query may return, so the query was stopped; narrow it (WHERE, GROUP BY), or keep its rows with CREATE MATERIALIZED VIEW or INSERT INTO a table")]
    ResultTooLarge { limit: u64 },
    /// A bug in Eddy (a panic while running a statement), reported to the client that sent it.
    #[error("internal error: {0}. This is a bug in Eddy; please report it with the statement that caused it")]
    Internal(String),
    /// The cluster's command log (its Kafka brokers) cannot be reached or written.
    #[error("{0}")]
    Cluster(String),
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

    /// Whether the error is, or was caused by, stdout's reader going away: then
    /// nobody wants the output, and the binary exits without a message.
    pub fn is_stdout_closed(&self) -> bool {
        crate::console::is_stdout_closed(self)
    }
}
