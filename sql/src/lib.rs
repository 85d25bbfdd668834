//! Flink-dialect streaming SQL: parsing (statements, `CREATE TABLE` with watermarks
//! and `WITH` options, window table functions) and planning into a [`StreamPlan`]
//! of DataFusion physical expressions that the engine runs incrementally.
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod error;
pub mod functions;
pub mod limits;
pub mod parse;
pub mod plan;
pub mod secrets;
pub mod system_time;
pub mod types;
pub mod window;

pub use eddy_engine::plan::{
    AggregateKind, GroupColumn, KeyLost, LatenessRule, OutputKey, SliceColumn, SourceNode, StreamNode, StreamPlan, UpdateOutput, WindowAggregateNode,
    WindowKind,
};
pub use eddy_engine::table::{ColumnDef, ComputedColumn, MetadataColumn, TableDef, WatermarkDef};
pub use error::{Location, SqlError};
pub use parse::{parse_script, referenced_tables, DropWhat, ParsedStatement, ShowWhat, Statement};
pub use plan::Planner;
pub use types::sql_type_name;
