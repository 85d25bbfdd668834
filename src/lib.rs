//! Eddy: a streaming SQL engine. This crate wires the SQL layer, the engine and
//! the connectors together into sessions that run scripts of Flink-dialect SQL;
//! the `eddy` binary (`run`, `demo`) is a thin command line over it.

pub mod console;
pub mod demo;
pub mod error;
pub mod session;

pub use error::EddyError;
pub use session::{PipelineSpec, RunSummary, Session};
