//! The Eddy streaming runtime.
//!
//! Everything that flows between operators is one [`Message`]. A pipeline is a
//! graph of stages (see [`graph`]); each stage instance is one tokio task that runs
//! a chain of [`Operator`]s and sends its output over bounded channels, which gives
//! backpressure for free. Connectors plug in through the [`Source`] and [`Sink`]
//! traits; this crate knows nothing about any external system. It owns the
//! contract it executes: the [`plan`] the SQL compiler produces and the [`table`]
//! definitions connectors are created from, so neither it nor the connectors
//! depend on the SQL layer.
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod changelog;
pub mod checkpoint;
pub mod connector;
pub mod error;
pub mod failpoint;
pub mod graph;
pub mod lookup;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod plan;
pub mod runtime;
pub mod state;
pub mod table;
pub mod testing;

pub use changelog::{ChangeBatch, RowKind};
pub use connector::{
    Boundedness, BoxError, Capabilities, Connector, ConnectorInfo, MalformedRecord, MetadataColumns, OptionSpec, Presence, ReaderStatus, Rescaling, Resume,
    Resumption, Roles, Sink, SinkChanges, Source, SourceBatch, SourcePosition, SourceReader, TableUse, WatermarkOrigin,
};
pub use error::{EngineError, Result};
pub use message::{CheckpointId, EventTime, Message};
pub use metrics::PipelineMetrics;
pub use operator::{Emitter, Operator};
pub use plan::{
    AggregateKind, GroupColumn, KeyLost, LateAfter, LatenessRule, OutputKey, PartitionFilter, SliceColumn, SourceNode, StreamNode, StreamPlan, UpdateOutput,
    WindowAggregateNode, WindowKind,
};
pub use table::{ColumnDef, ComputedColumn, MetadataColumn, TableDef, WatermarkDef};
