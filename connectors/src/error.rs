//! The one error type of this crate, worded so a user can fix the table definition
//! or the input without reading the source.

use std::path::PathBuf;

use datafusion::arrow::error::ArrowError;
use datafusion::parquet::errors::ParquetError;

/// Everything that can go wrong while configuring, reading or writing a connector.
///
/// It converts into [`eddy_engine::BoxError`] through `?` (via `Box<dyn Error>`).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The `print` connector's reader closed stdout (`eddy run x.sql | head -3`):
    /// nobody reads what it would print, so the binary stops quietly (see
    /// `is_stdout_closed` in the binary's console) instead of failing the pipeline.
    #[error("stdout was closed by its reader")]
    StdoutClosed,

    /// A checkpoint's saved read position cannot be applied to the source as it is now.
    #[error("cannot resume partition '{partition}' from the checkpoint: {reason}")]
    Resume {
        /// The partition as the checkpoint names it.
        partition: String,
        /// Why, and what to do.
        reason: String,
    },

    /// The table has no `'connector'` option.
    #[error("table '{table}' has no 'connector' option; add WITH ('connector' = '...'), known connectors: {known}")]
    MissingConnector {
        /// The table name.
        table: String,
        /// Comma-separated known connector names.
        known: String,
    },

    /// The `'connector'` option names no connector this build knows.
    #[error("unknown connector '{name}'{hint}; known connectors: {known}")]
    UnknownConnector {
        /// The name as written.
        name: String,
        /// ` (did you mean 'x'?)` or empty.
        hint: String,
        /// Comma-separated known connector names.
        known: String,
    },

    /// A connector used in a role it does not support (e.g. `nexmark` as a sink).
    #[error("connector '{connector}' cannot be used as a {role}")]
    UnsupportedRole {
        /// The connector name.
        connector: String,
        /// `source` or `sink`.
        role: &'static str,
    },

    /// A `WITH` option the connector does not know (typos are the usual cause).
    #[error("unknown option '{option}' for connector '{connector}'{hint}; valid options: {valid}")]
    UnknownOption {
        /// The option key as written.
        option: String,
        /// The connector name.
        connector: String,
        /// ` (did you mean 'x'?)` or empty.
        hint: String,
        /// Comma-separated valid option keys.
        valid: String,
    },

    /// A required `WITH` option is missing.
    #[error("connector '{connector}' needs option '{option}': {doc}")]
    MissingOption {
        /// The missing key.
        option: String,
        /// The connector name.
        connector: String,
        /// What the option means and looks like.
        doc: String,
    },

    /// An option has a value that cannot be used.
    #[error("invalid value '{value}' for option '{option}': {reason}")]
    InvalidOption {
        /// The option key.
        option: String,
        /// The value as written.
        value: String,
        /// What is expected instead.
        reason: String,
    },

    /// A column named (in options or in the table) that the connector does not have.
    #[error("unknown column '{column}' for {context}; valid columns: {valid}")]
    UnknownColumn {
        /// The column name as written.
        column: String,
        /// Where it was looked up, e.g. `nexmark table 'bid'`.
        context: String,
        /// Comma-separated valid column names.
        valid: String,
    },

    /// A declared column is missing from a file that must contain it.
    #[error("column '{column}' is declared but missing in '{path}'; the file has: {available}")]
    MissingColumn {
        /// The declared column.
        column: String,
        /// The file.
        path: String,
        /// Comma-separated column names the file has.
        available: String,
    },

    /// A declared column type the connector cannot produce or convert to.
    #[error("column '{column}' is declared as {declared} but {context} provides {actual}, which cannot be converted")]
    IncompatibleType {
        /// The column name.
        column: String,
        /// The declared type.
        declared: String,
        /// The type the connector has.
        actual: String,
        /// Where the actual type comes from, e.g. a file name.
        context: String,
    },

    /// A column type the connector has no support for at all.
    #[error("connector '{connector}' does not support column '{column}' of type {data_type}")]
    UnsupportedType {
        /// The connector name.
        connector: String,
        /// The column name.
        column: String,
        /// The declared type.
        data_type: String,
    },

    /// A path with a URL scheme that cannot be used in this role.
    #[error("path '{path}': {reason}")]
    UnsupportedPath {
        /// The path as written.
        path: String,
        /// What is supported instead.
        reason: String,
    },

    /// A source path that does not exist.
    #[error("path '{0}' does not exist")]
    PathNotFound(String),

    /// A glob or directory that names no readable file.
    #[error("no files match '{0}'")]
    NoFiles(String),

    /// A source directory with nothing to read in it.
    #[error("directory '{0}' has no visible files to read (names starting with '.' or '_' are skipped)")]
    EmptyDirectory(String),

    /// A file system operation failed.
    #[error("cannot {action} '{path}': {source}")]
    Io {
        /// What was being done, e.g. `read`, `create`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Arrow failed while converting data.
    #[error("{context}: {source}")]
    Arrow {
        /// What was being done and where.
        context: String,
        /// The underlying error.
        #[source]
        source: ArrowError,
    },

    /// Kafka (librdkafka) refused a request or could not be reached.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done, with the topic and brokers.
        context: String,
        /// The underlying error.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// A metadata column the connector cannot fill (or, in a sink, cannot write).
    #[error("column '{column}': {reason}")]
    Metadata {
        /// The column name.
        column: String,
        /// What is wrong and which keys exist.
        reason: String,
    },

    /// Parquet failed while reading or writing a file.
    #[error("{context}: {source}")]
    Parquet {
        /// What was being done and where.
        context: String,
        /// The underlying error.
        #[source]
        source: ParquetError,
    },

    /// Redis refused a command or could not be reached (after the retries).
    #[error("{context}: {source}")]
    Redis {
        /// What was being done, with the server address and key.
        context: String,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// ClickHouse refused a request or could not be reached (after the retries).
    #[error("{context}: {reason}")]
    ClickHouse {
        /// What was being done, with the server URL and table.
        context: String,
        /// The server's own message (its exception text) or the transport error.
        reason: String,
    },

    /// An error a [`eddy_engine::Connector`] returned that is none of the above
    /// (the trait speaks the engine's boxed errors); shown as it is.
    #[error("{0}")]
    Other(eddy_engine::BoxError),
}

impl From<eddy_engine::BoxError> for ConnectorError {
    /// Unwraps this crate's own errors, which the [`eddy_engine::Connector`]
    /// methods return boxed, so callers keep matching on their variants.
    fn from(error: eddy_engine::BoxError) -> Self {
        match error.downcast::<ConnectorError>() {
            Ok(error) => *error,
            Err(other) => ConnectorError::Other(other),
        }
    }
}

impl ConnectorError {
    /// An [`ConnectorError::Io`] for `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ConnectorError::Io { action, path: path.into(), source }
    }

    /// An [`ConnectorError::InvalidOption`].
    pub(crate) fn invalid(option: &str, value: &str, reason: impl Into<String>) -> Self {
        ConnectorError::InvalidOption { option: option.to_string(), value: value.to_string(), reason: reason.into() }
    }

    /// An [`ConnectorError::Arrow`] with context.
    pub(crate) fn arrow(context: impl Into<String>, source: ArrowError) -> Self {
        ConnectorError::Arrow { context: context.into(), source }
    }

    /// A [`ConnectorError::Kafka`] with context.
    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        ConnectorError::Kafka { context: context.into(), source }
    }

    /// A [`ConnectorError::Redis`] with context.
    pub(crate) fn redis(context: impl Into<String>, source: redis::RedisError) -> Self {
        ConnectorError::Redis { context: context.into(), source }
    }

    /// A [`ConnectorError::ClickHouse`] with context.
    pub(crate) fn clickhouse(context: impl Into<String>, reason: impl Into<String>) -> Self {
        ConnectorError::ClickHouse { context: context.into(), reason: reason.into() }
    }

    /// A [`ConnectorError::Parquet`] with context.
    pub(crate) fn parquet(context: impl Into<String>, source: ParquetError) -> Self {
        ConnectorError::Parquet { context: context.into(), source }
    }
}
