//! OVER aggregates on event time, as Flink runs them (its
//! `RowTimeRowsBoundedPrecedingFunction` and `RowTimeRangeBoundedPrecedingFunction`):
//! `agg(...) OVER (PARTITION BY k ORDER BY ts ROWS|RANGE BETWEEN ... PRECEDING AND CURRENT ROW)`.
//!
//! Every input row leaves once, with one more column per aggregate, when the
//! watermark passes its time: only then are all rows of its frame known. Rows
//! with equal times are peers: in a RANGE frame they all see each other (and get
//! the same result); in a ROWS frame they are ordered by arrival.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::PhysicalExpr;

use super::StreamNode;

/// How far back a row's frame reaches (it always ends at the current row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverFrame {
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW`: the row and the `preceding` rows
    /// before it in (time, arrival) order.
    Rows { preceding: Preceding },
    /// `RANGE BETWEEN INTERVAL ... PRECEDING AND CURRENT ROW`: every row whose time
    /// is in `[time - preceding, time]`, peers (equal times) included.
    Range { preceding: Preceding },
}

/// The start of a frame: a bound (rows, or milliseconds for RANGE), or the partition's first row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preceding {
    /// `n PRECEDING` (ROWS: rows; RANGE: milliseconds).
    Bounded(u64),
    /// `UNBOUNDED PRECEDING`: every earlier row of the partition.
    Unbounded,
}

impl OverFrame {
    /// The frame in SQL, for `EXPLAIN`.
    pub fn sql(&self) -> String {
        match self {
            OverFrame::Rows { preceding: Preceding::Bounded(n) } => format!("ROWS BETWEEN {n} PRECEDING AND CURRENT ROW"),
            OverFrame::Rows { preceding: Preceding::Unbounded } => "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".to_string(),
            OverFrame::Range { preceding: Preceding::Bounded(ms) } => format!("RANGE BETWEEN {ms} ms PRECEDING AND CURRENT ROW"),
            OverFrame::Range { preceding: Preceding::Unbounded } => "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".to_string(),
        }
    }

    /// The frame's start.
    pub fn preceding(&self) -> Preceding {
        match *self {
            OverFrame::Rows { preceding } | OverFrame::Range { preceding } => preceding,
        }
    }
}

/// One OVER aggregate stage: all the OVER windows of a SELECT, which share their
/// partition, order and frame (as Flink requires).
#[derive(Debug, Clone)]
pub struct OverAggregateNode {
    pub input: Box<StreamNode>,
    /// `PARTITION BY` expressions over the input; empty for one partition.
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// The input's event-time column the rows are ordered by (ascending).
    pub time_column: usize,
    pub frame: OverFrame,
    /// One output column per aggregate, after the input's columns.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// The input's columns, then one per aggregate.
    pub schema: SchemaRef,
}

impl OverAggregateNode {
    /// How many tasks run it: `parallelism` behind a hash exchange on the
    /// partition keys; without `PARTITION BY` every row is in one partition, so one task.
    pub fn tasks(&self, parallelism: usize) -> usize {
        if self.partition_by.is_empty() {
            1
        } else {
            parallelism.max(1)
        }
    }
}
