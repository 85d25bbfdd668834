//! Eddy's connectors: the external systems tables are read from and written to.
//!
//! Each module holds one connector: a type implementing the engine's
//! [`eddy_engine::Connector`] trait (its name, options, capabilities and
//! constructors) and the [`eddy_engine::Source`] / [`eddy_engine::Sink`] it builds:
//!
//! - [`filesystem`]: JSON lines, CSV and Parquet files (source and sink),
//! - [`kafka`]: Kafka topics, JSON/CSV/raw values with metadata columns (source and sink),
//!   and `upsert-kafka`, a compacted topic written as a changelog by key (sink),
//! - [`nexmark`]: the Nexmark benchmark generator (source),
//! - [`datagen`]: Flink-style random/sequence rows (source),
//! - [`redis`](mod@redis): hashes, counters, leaderboards and streams for dashboards (sink),
//! - [`clickhouse`]: ClickHouse tables over HTTP (sink),
//! - [`print`](mod@print): rows to stdout like Flink (sink), [`blackhole`]: discards rows (sink).
//!
//! The binary and the planner only use the [`registry`]: [`CONNECTORS`] lists
//! every connector once, and [`validate_options`], [`source_schema`], [`is_bounded`],
//! [`can_resume`], [`accepts_updates`], [`create_source`] and [`create_sink`] ask
//! the connector a table names.

#![warn(missing_docs)]
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod blackhole;
pub mod clickhouse;
pub mod datagen;
mod epochs;
pub mod error;
pub mod filesystem;
mod format;
pub mod kafka;
pub mod lookup;
pub mod nexmark;
mod options;
pub mod print;
pub mod redis;
pub mod registry;
pub mod testing;

pub use error::ConnectorError;
pub use lookup::open_lookup;
pub use options::{parse_duration, parse_size, DEFAULT_BATCH_ROWS};
pub use registry::{
    accepts_retractions, accepts_updates, can_resume, connector, create_sink, create_source, create_source_for, create_source_reading, describe_connectors,
    describe_partitions, is_bounded, rescaling, sink_changes, source_schema, validate_options, CONNECTORS,
};
