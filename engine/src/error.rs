//! The engine's one error enum; every message names what failed and what to do.

use crate::connector::BoxError;
use datafusion::error::DataFusionError;

/// Failures while building or running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The plan asks for something the runtime cannot do; the user should change the query.
    #[error("cannot run this query: {0}")]
    Unsupported(String),
    /// A source failed to open or read.
    #[error("source `{table}` ({partition}) failed: {source}")]
    Source {
        table: String,
        partition: String,
        #[source]
        source: BoxError,
    },
    /// A sink failed to write or commit.
    #[error("sink `{table}` failed: {source}")]
    Sink {
        table: String,
        #[source]
        source: BoxError,
    },
    /// Evaluating an expression or aggregate failed on real data.
    #[error("execution error in {operator}: {source}")]
    Execution {
        operator: String,
        #[source]
        source: DataFusionError,
    },
    /// The pipeline's state outgrew `'pipeline.state.max-memory'`; the user should
    /// raise the limit or change the query so it keeps less.
    #[error("it holds {} of state, over 'pipeline.state.max-memory' = {}. Raise the limit (SET 'pipeline.state.max-memory' = '2 gb'), or make the query keep less: fewer distinct GROUP BY keys, shorter windows, a larger HOP slide or CUMULATE step, or a watermark with a shorter delay", megabytes(*.held_bytes), megabytes(*.limit_bytes))]
    StateLimit { held_bytes: u64, limit_bytes: u64 },
    /// A lookup join's table could not be read, after the retries its options allow.
    #[error("lookup in `{table}` failed: {message}. Check that the store is up and reachable; 'lookup.max-retries' sets how often a failed lookup is retried")]
    Lookup { table: String, message: String },
    /// Another run of the pipeline saved this checkpoint first: a cluster member
    /// took the pipeline over from this one, so this run must commit nothing more.
    #[error("checkpoint {id} in {location} was saved by another run of this pipeline (another cluster member runs it now); this run commits nothing more")]
    CheckpointTaken { id: u64, location: String },
    /// State snapshot or restore failed.
    #[error("state error: {0}")]
    State(String),
    /// A bug in Eddy; please report it with the query that triggered it.
    #[error("internal error: {0}. This is a bug in Eddy; please report it with the SQL that triggered it")]
    Internal(String),
}

/// `1500000` -> `"1.4 MB"` (MiB, as memory is counted).
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// Wraps a DataFusion error raised while `operator` processed data.
    pub fn execution(operator: &str, source: DataFusionError) -> Self {
        EngineError::Execution { operator: operator.to_string(), source }
    }
}
