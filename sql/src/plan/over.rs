//! `agg(...) OVER (...)`: DataFusion's window operators (`BoundedWindowAggExec`,
//! `WindowAggExec`) become one [`OverAggregateNode`] when their functions are
//! aggregates over a frame Flink runs on event time: `ORDER BY` the input's
//! time attribute (the `WATERMARK FOR` column), ascending, from `n PRECEDING`,
//! `INTERVAL ... PRECEDING` or `UNBOUNDED PRECEDING` to `CURRENT ROW`. Everything
//! else is refused here with what to write instead.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{WindowFrame, WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::window::{PlainAggregateWindowExpr, SlidingAggregateWindowExpr, StandardWindowExpr, WindowExpr};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;
use eddy_engine::plan::{LateAfter, OverAggregateNode, OverFrame, Preceding, StreamNode};

use super::time_attribute::{is_time_attribute, judge_lateness};

/// Why a query with an OVER clause DataFusion planned is refused: the message, and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OverRefusal {
    pub message: String,
    pub hint: Option<String>,
}

impl OverRefusal {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        OverRefusal { message: message.into(), hint: Some(hint.into()) }
    }
}

/// The refusal of `ROW_NUMBER()` beside OVER aggregates in one window operator:
/// alone, it is a deduplication or a Top-N (the rank compiler takes it).
fn row_number_refusal() -> OverRefusal {
    OverRefusal::new(
        "ROW_NUMBER() beside OVER aggregates in one SELECT is not supported",
        "rank in a subquery (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (...) AS rn FROM t) WHERE rn <= N) and aggregate over it, or the other way round",
    )
}

/// A window operator's window functions and input.
pub(super) type WindowParts<'a> = (&'a [Arc<dyn WindowExpr>], &'a Arc<dyn ExecutionPlan>);

/// The window functions and input of a DataFusion window operator; `None` for any other node.
pub(super) fn window_parts(plan: &Arc<dyn ExecutionPlan>) -> Option<WindowParts<'_>> {
    let any = plan.as_ref();
    if let Some(window) = any.downcast_ref::<BoundedWindowAggExec>() {
        return Some((window.window_expr(), window.input()));
    }
    any.downcast_ref::<WindowAggExec>().map(|window| (window.window_expr(), window.input()))
}

/// The input of the window operator's sort: DataFusion sorts the rows by the
/// partition and order before a batch window; a stream arrives in time order per
/// key once the watermark lets it out, so the sort is no operator here (only here).
pub(super) fn below_sort(
    input: &Arc<dyn ExecutionPlan>,
    pass_through: impl Fn(&Arc<dyn ExecutionPlan>) -> Option<&Arc<dyn ExecutionPlan>>,
) -> &Arc<dyn ExecutionPlan> {
    let mut node = input;
    loop {
        if let Some(sort) = node.as_ref().downcast_ref::<SortExec>() {
            node = sort.input();
        } else if let Some(child) = pass_through(node) {
            node = child;
        } else {
            return node;
        }
    }
}

/// What every OVER window of one SELECT shares, and its aggregates.
pub(super) struct OverShape {
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    time_column: usize,
    frame: OverFrame,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
}

/// Checks the window functions of one window operator and what they share.
pub(super) fn over_shape(exprs: &[Arc<dyn WindowExpr>]) -> Result<OverShape, OverRefusal> {
    let mut aggregates = Vec::new();
    for expr in exprs {
        let any = expr.as_any();
        let aggregate = if let Some(plain) = any.downcast_ref::<PlainAggregateWindowExpr>() {
            plain.get_aggregate_expr()
        } else if let Some(sliding) = any.downcast_ref::<SlidingAggregateWindowExpr>() {
            sliding.get_aggregate_expr()
        } else {
            let name = match any.downcast_ref::<StandardWindowExpr>() {
                Some(standard) => standard.get_standard_func_expr().name().to_string(),
                None => expr.name().to_string(),
            };
            let function = name.split('(').next().unwrap_or(&name).to_uppercase();
            if function == "ROW_NUMBER" {
                return Err(row_number_refusal());
            }
            if function == "RANK" || function == "DENSE_RANK" {
                // Flink 2.3: "RANK() on streaming table is not supported currently",
                // and "only ROW_NUMBER() is supported" on a Window Top-N.
                return Err(OverRefusal::new(
                    format!("{function}() is not supported on a stream, as in Flink: a Top-N numbers its rows with ROW_NUMBER()"),
                    "write ROW_NUMBER() OVER (PARTITION BY k ORDER BY x DESC) under WHERE rn <= N; rows that tie get distinct numbers, the earlier arrival first",
                ));
            }
            return Err(OverRefusal::new(
                format!("{function}() OVER (...) is not supported: only aggregates (COUNT, SUM, MIN, MAX, AVG, ...) run over an OVER window"),
                "for the previous row's value use an OVER aggregate over `ROWS BETWEEN 1 PRECEDING AND CURRENT ROW`, or join the stream with itself; ROW_NUMBER() ... = 1 keeps the first or last row per key",
            ));
        };
        if aggregate.is_distinct() {
            return Err(OverRefusal::new(
                format!("{}(DISTINCT ...) OVER (...) is not supported yet", aggregate.fun().name().to_uppercase()),
                "drop DISTINCT, or count distinct values per window with TUMBLE/HOP and GROUP BY",
            ));
        }
        aggregates.push(Arc::new(aggregate.clone()));
    }
    let Some(first) = exprs.first() else {
        return Err(OverRefusal { message: "internal error: a window operator without window functions".to_string(), hint: None });
    };
    for other in &exprs[1..] {
        let same_partition = other.partition_by().len() == first.partition_by().len()
            && other.partition_by().iter().zip(first.partition_by()).all(|(a, b)| a.as_ref() == b.as_ref());
        let same_order = other.order_by() == first.order_by();
        if !same_partition || !same_order || other.get_window_frame() != first.get_window_frame() {
            return Err(mixed_windows());
        }
    }
    let order = first.order_by();
    let [sort] = order else {
        return Err(OverRefusal::new(
            if order.is_empty() {
                "an OVER window needs ORDER BY the table's time attribute"
            } else {
                "an OVER window orders by one column, the table's time attribute"
            },
            "write OVER (PARTITION BY k ORDER BY ts ...) where ts is the column of the table's WATERMARK FOR",
        ));
    };
    if sort.options.descending {
        return Err(OverRefusal::new(
            "an OVER aggregate orders by its time attribute ascending only: rows arrive in time order",
            "write ORDER BY ts (ASC); to keep the last row per key use ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC) = 1",
        ));
    }
    let Some(column) = sort.expr.downcast_ref::<Column>() else {
        return Err(not_time_attribute(&sort.expr.to_string()));
    };
    let frame = frame_of(first.get_window_frame())?;
    Ok(OverShape { partition_by: first.partition_by().to_vec(), time_column: column.index(), frame, aggregates })
}

/// Two OVER windows that differ in one SELECT.
pub(super) fn mixed_windows() -> OverRefusal {
    OverRefusal::new(
        "the OVER windows of one SELECT must have the same PARTITION BY, ORDER BY and frame (Flink requires it too), and an OVER aggregate over another's rows is not supported yet",
        "define the window once: SELECT ..., SUM(v) OVER w, COUNT(*) OVER w FROM t WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)",
    )
}

fn not_time_attribute(column: &str) -> OverRefusal {
    OverRefusal::new(
        format!("an OVER window must be ordered by a time attribute (the column of a WATERMARK FOR), not by `{column}`"),
        "order by the table's event-time column, e.g. ORDER BY ts with WATERMARK FOR ts AS ts - INTERVAL '5' SECOND in its CREATE TABLE",
    )
}

/// The frame, if it ends at the current row and starts at a preceding bound.
fn frame_of(frame: &WindowFrame) -> Result<OverFrame, OverRefusal> {
    const HINT: &str = "write ROWS BETWEEN n PRECEDING AND CURRENT ROW, RANGE BETWEEN INTERVAL '...' PRECEDING AND CURRENT ROW, or UNBOUNDED PRECEDING";
    if !matches!(frame.end_bound, WindowFrameBound::CurrentRow) {
        return Err(OverRefusal::new(
            "an OVER window must end at CURRENT ROW: a frame with FOLLOWING rows would wait for rows that have not come yet (Flink refuses it too)",
            HINT,
        ));
    }
    let preceding = match &frame.start_bound {
        WindowFrameBound::CurrentRow => Some(0),
        WindowFrameBound::Preceding(value) if value.is_null() => None,
        WindowFrameBound::Preceding(value) => Some(match frame.units {
            WindowFrameUnits::Range => interval_ms(value).ok_or_else(|| {
                OverRefusal::new(
                    format!("a RANGE frame on event time takes an interval, not `{value}`"),
                    "write RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW",
                )
            })?,
            _ => match value {
                ScalarValue::UInt64(Some(n)) => *n,
                other => return Err(OverRefusal::new(format!("a ROWS frame takes a number of rows, not `{other}`"), HINT)),
            },
        }),
        WindowFrameBound::Following(_) => {
            return Err(OverRefusal::new("an OVER window must start before the current row, not FOLLOWING it", HINT));
        }
    };
    let preceding = match preceding {
        Some(n) => Preceding::Bounded(n),
        None => Preceding::Unbounded,
    };
    match frame.units {
        WindowFrameUnits::Rows => Ok(OverFrame::Rows { preceding }),
        WindowFrameUnits::Range => Ok(OverFrame::Range { preceding }),
        WindowFrameUnits::Groups => Err(OverRefusal::new("GROUPS frames are not supported (nor are they in Flink)", HINT)),
    }
}

/// An interval's length in milliseconds; `None` for months (of no fixed length), negatives or non-intervals.
fn interval_ms(value: &ScalarValue) -> Option<u64> {
    let ms = match value {
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds),
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000,
        ScalarValue::DurationMillisecond(Some(v)) => *v,
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1000)?,
        _ => return None,
    };
    u64::try_from(ms).ok()
}

/// The OVER aggregate node over the compiled `input`, once its order column is known to be a time attribute.
pub(super) fn over_node(mut input: StreamNode, shape: OverShape, schema: SchemaRef) -> Result<StreamNode, OverRefusal> {
    if input.is_updating() || input.emits_retractions() {
        return Err(OverRefusal::new(
            "an OVER aggregate over updating rows (a GROUP BY without a window, a join without time bounds, or a materialized view's changes) is not supported: it needs append-only rows with event time",
            "run the OVER aggregate on the table the updates come from",
        ));
    }
    if over_below(&input) {
        return Err(mixed_windows());
    }
    if !is_time_attribute(&input, shape.time_column) {
        return Err(not_time_attribute(input.schema().field(shape.time_column).name()));
    }
    judge_lateness(&mut input, shape.time_column, LateAfter::RowTimeReached);
    Ok(StreamNode::OverAggregate(OverAggregateNode {
        input: Box::new(input),
        partition_by: shape.partition_by,
        time_column: shape.time_column,
        frame: shape.frame,
        aggregates: shape.aggregates,
        schema,
    }))
}

/// Whether another OVER aggregate is under `node`, through filters and projections:
/// DataFusion stacks one window operator per distinct OVER window of a SELECT.
fn over_below(node: &StreamNode) -> bool {
    match node {
        StreamNode::OverAggregate(_) => true,
        StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } => over_below(input),
        _ => false,
    }
}
