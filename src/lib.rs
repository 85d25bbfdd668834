//! Eddy: a streaming SQL engine. This crate wires the SQL layer, the engine and
//! the connectors together into sessions that run scripts of Flink-dialect SQL;
//! `server` serves them over gRPC and `client` is the psql-like `eddy sql`; the
//! `eddy` binary (`run`, `demo`, `server`, `sql`) is a thin command line over it.
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod allocator;
pub mod client;
pub mod console;
pub mod demo;
pub mod error;
pub mod http;
pub mod ipc;
pub mod run_cluster;
pub mod savepoint;
pub mod server;
pub mod session;

pub use error::EddyError;
pub use session::{PipelineSpec, RunSummary, Session};
