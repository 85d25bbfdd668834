//! `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)` under a filter on the
//! row number, compiled to a [`RankNode`]: deduplication or Top-N, as Flink's
//! planner decides between them (see [`eddy_engine::plan::rank`]).
//!
//! DataFusion plans the query as a window operator (`BoundedWindowAggExec`) over
//! a sort, under projections and the filter. The filter is seen first: it
//! records the bound it puts on the row number ([`rank_limit`]), and the window
//! operator below becomes the rank, which keeps only that many rows per
//! partition; the filter itself stays above it (it also holds any other condition).

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal, TryCastExpr};
use datafusion::physical_expr::utils::split_conjunction;
use datafusion::physical_expr::window::StandardWindowExpr;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::windows::{WindowExpr, WindowUDFExpr};
use datafusion::physical_plan::ExecutionPlan;
use eddy_engine::plan::{LateAfter, RankKind, RankNode, StreamNode, Ties, UpdateOutput, WindowKind};

use super::{address, pass_through_child, window_of, Compiler, Lineage, WindowColumn};
use crate::error::Result;
use crate::plan::over::window_parts;
use crate::plan::time_attribute::{is_proctime_attribute, is_time_attribute, judge_lateness};

/// Whether `expr` is `ROW_NUMBER()`.
fn is_row_number(expr: &Arc<dyn WindowExpr>) -> bool {
    expr.as_any()
        .downcast_ref::<StandardWindowExpr>()
        .and_then(|standard| standard.get_standard_func_expr().as_any().downcast_ref::<WindowUDFExpr>())
        .is_some_and(|udf| udf.fun().name() == "row_number")
}

/// Whether `plan` is a window operator computing `ROW_NUMBER()` alone.
pub(super) fn is_row_number_window(plan: &Arc<dyn ExecutionPlan>) -> bool {
    matches!(window_parts(plan), Some(([only], _)) if is_row_number(only))
}

/// The `ROW_NUMBER()` window operator under `plan` (through projections that
/// only pick columns) and the index of its row number in `plan`'s output.
fn row_number_column(plan: &Arc<dyn ExecutionPlan>) -> Option<(&Arc<dyn ExecutionPlan>, usize)> {
    if is_row_number_window(plan) {
        let (_, input) = window_parts(plan)?;
        return Some((plan, input.schema().fields().len()));
    }
    if let Some(child) = pass_through_child(plan) {
        return row_number_column(child);
    }
    let projection = plan.as_ref().downcast_ref::<ProjectionExec>()?;
    let (window, index) = row_number_column(projection.input())?;
    let position = projection.expr().iter().position(|p| p.expr.downcast_ref::<Column>().is_some_and(|c| c.index() == index))?;
    Some((window, position))
}

/// The column `expr` reads, seen through casts.
fn column_index(expr: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        return column_index(cast.expr());
    }
    if let Some(cast) = expr.downcast_ref::<TryCastExpr>() {
        return column_index(cast.expr());
    }
    expr.downcast_ref::<Column>().map(Column::index)
}

fn integer(expr: &Arc<dyn PhysicalExpr>) -> Option<i64> {
    let literal = expr.downcast_ref::<Literal>()?;
    match literal.value().cast_to(&datafusion::arrow::datatypes::DataType::Int64).ok()? {
        ScalarValue::Int64(Some(n)) => Some(n),
        _ => None,
    }
}

/// The `ROW_NUMBER()` window operator under `filter`, and the most rows per
/// partition the filter lets through (`rn = k` and `rn <= k` keep k, `rn < k`
/// keeps k - 1): what the rank keeps. `None` when the filter reads no row
/// number or does not bound it from above.
pub(super) fn rank_limit(filter: &FilterExec) -> Option<(&Arc<dyn ExecutionPlan>, usize)> {
    let (window, number) = row_number_column(filter.input())?;
    let mut limit: Option<i64> = None;
    for conjunct in split_conjunction(filter.predicate()) {
        let Some(binary) = conjunct.downcast_ref::<BinaryExpr>() else { continue };
        let (op, value) = match (column_index(binary.left()), integer(binary.right()), integer(binary.left()), column_index(binary.right())) {
            (Some(c), Some(value), _, _) if c == number => (*binary.op(), value),
            (_, _, Some(value), Some(c)) if c == number => match binary.op().swap() {
                Some(op) => (op, value),
                None => continue,
            },
            _ => continue,
        };
        let bound = match op {
            Operator::Eq | Operator::LtEq => value,
            Operator::Lt => value - 1,
            _ => continue,
        };
        limit = Some(limit.map_or(bound, |l| l.min(bound)));
    }
    Some((window, limit?.max(0) as usize))
}

/// Has the source under window assignment `assign` judge its rows late by the window's slices.
fn judge_window_lateness(node: &mut StreamNode, assign: usize) {
    match node {
        StreamNode::WindowAssign { input, id, window, time_column, .. } if *id == assign => {
            judge_lateness(input, *time_column, LateAfter::Slice(*window));
        }
        StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } | StreamNode::WindowAssign { input, .. } => judge_window_lateness(input, assign),
        _ => {}
    }
}

impl Compiler<'_> {
    /// A window operator computing `ROW_NUMBER()` under a filter that bounds it:
    /// a deduplication or a Top-N.
    pub(super) fn compile_rank(&mut self, plan: &Arc<dyn ExecutionPlan>) -> Result<(StreamNode, Vec<Lineage>)> {
        let Some(([function], input)) = window_parts(plan) else {
            return Err(self.unsupported("internal error: a rank without its window function"));
        };
        let Some(&limit) = self.rank_limits.get(&address(plan)) else {
            return Err(self
                .unsupported("ROW_NUMBER() is only supported under a filter on the row number in the enclosing query, as in Flink")
                .with_hint("write SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn FROM t) WHERE rn = 1 (deduplication) or WHERE rn <= 10 (Top-N)"));
        };
        if limit == 0 {
            return Err(self.unsupported("the filter on ROW_NUMBER() lets no row through").with_hint("keep rows with rn = 1 or rn <= N, N at least 1"));
        }
        let order: Vec<PhysicalSortExpr> = function.order_by().to_vec();
        if order.is_empty() {
            return Err(self
                .unsupported("ROW_NUMBER() needs an ORDER BY in its OVER clause (which rows come first), as in Flink")
                .with_hint("write ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) for deduplication, or ORDER BY the ranked column DESC for a Top-N"));
        }
        // DataFusion sorts the rows for its batch window operator (under projections
        // of the sorted rows, too); a stream ranks rows as they come.
        let mut below = Some(input);
        while let Some(node) = below {
            let any = node.as_ref();
            if let Some(sort) = any.downcast_ref::<SortExec>().filter(|s| s.fetch().is_none()) {
                self.unordered.insert(address(node));
                below = Some(sort.input());
            } else if let Some(projection) = any.downcast_ref::<ProjectionExec>() {
                below = Some(projection.input());
            } else {
                below = pass_through_child(node);
            }
        }
        let (mut input, lineage) = self.compile(input, UpdateOutput::Retractions)?;
        // Updating rows are ranked keeping every row (Flink's RetractStrategy); that
        // needs each change's previous row, which a retracting input sends.
        let updating = input.is_updating() || input.emits_retractions();
        if updating && !input.emits_retractions() {
            return Err(self
                .unsupported("ROW_NUMBER() over upserts without their previous rows is not supported")
                .with_hint("rank the rows of a table, of an aggregate or of a join"));
        }
        // PARTITION BY window_start, window_end (of a window TVF or of a window
        // aggregate below): a window rank, emitted when the window closes.
        let mut keys = Vec::new();
        let mut bounds = Vec::new();
        let mut window: Option<(WindowKind, usize, WindowColumn)> = None;
        for expr in function.partition_by() {
            let bound = expr.downcast_ref::<Column>().and_then(|c| match lineage.get(c.index())? {
                Lineage::Window { assign, column } => Some((window_of(&input, *assign)?, c.index(), *column)),
                Lineage::Closed { window, column } => Some((*window, c.index(), *column)),
                Lineage::Other => None,
            });
            match bound {
                Some((kind, index, column)) => {
                    if window.is_some_and(|(w, _, _)| w != kind) {
                        return Err(self.unsupported("ROW_NUMBER() is partitioned by the bounds of two different windows"));
                    }
                    // The end decides when the window closes; else its start (plus the size).
                    if column != WindowColumn::Time && window.is_none_or(|(_, _, c)| c != WindowColumn::End) {
                        window = Some((kind, index, column));
                    }
                    bounds.push(Arc::clone(expr));
                }
                None => keys.push(Arc::clone(expr)),
            }
        }
        let kind = match window {
            Some((WindowKind::Session { .. }, _, _)) => {
                return Err(self
                    .unsupported("a Top-N over SESSION windows is not supported (nor is it in Flink)")
                    .with_hint("rank over TUMBLE, HOP or CUMULATE windows"))
            }
            Some((kind, index, column)) => {
                // Window deduplication keeping the last row by event time: a later row of the same time replaces the kept one, as in Flink.
                let last_by_time = matches!(order.as_slice(), [only] if limit == 1 && only.options.descending
                    && only.expr.downcast_ref::<Column>().is_some_and(|c| is_time_attribute(&input, c.index())));
                let ties = if last_by_time { Ties::LaterFirst } else { Ties::EarlierFirst };
                RankKind::Window { window: kind, end_column: index, end_is_start: column == WindowColumn::Start, ties }
            }
            None if !bounds.is_empty() => {
                return Err(self
                    .unsupported("ROW_NUMBER() partitioned by window_time alone is not a window Top-N")
                    .with_hint("PARTITION BY window_start, window_end"))
            }
            None => match order.as_slice() {
                // Flink's deduplication on processing time: rows in the order they come.
                [only] if limit == 1 && only.expr.downcast_ref::<Column>().is_some_and(|c| is_proctime_attribute(&input, c.index())) => {
                    if only.options.descending {
                        RankKind::LastArrival
                    } else {
                        RankKind::FirstArrival
                    }
                }
                [only] if limit == 1 && only.expr.downcast_ref::<Column>().is_some_and(|c| is_time_attribute(&input, c.index())) => {
                    let time_column = only.expr.downcast_ref::<Column>().map_or(0, Column::index);
                    if only.options.descending {
                        RankKind::LastRow { time_column }
                    } else {
                        RankKind::FirstRow { time_column }
                    }
                }
                _ if updating => RankKind::Retracting,
                _ => RankKind::Continuous,
            },
        };
        if updating && kind != RankKind::Retracting {
            return Err(self
                .unsupported(format!("{} over updating rows (a GROUP BY without a window, a changelog) is not supported", kind.operator_name()))
                .with_hint(
                "over updating rows, ROW_NUMBER() runs as a Top-N: ORDER BY a column other than a time attribute, or rank the rows before they are aggregated",
            ));
        }
        // Rows that come after the operator emitted what they would change are late:
        // judged where the rows are read, per row, and set aside as late rows are.
        match (kind, window) {
            (RankKind::FirstRow { time_column }, _) => judge_lateness(&mut input, time_column, LateAfter::RowTimePassed),
            (RankKind::Window { .. }, Some((_, index, _))) => {
                if let Some(Lineage::Window { assign, .. }) = lineage.get(index) {
                    judge_window_lateness(&mut input, *assign);
                }
            }
            _ => {}
        }
        let hashed = keys.len();
        keys.extend(bounds);
        let node = RankNode { input: Box::new(input), partition: keys, hashed, order, limit, kind, state_ttl_ms: None, schema: plan.schema() };
        // A window rank's rows leave as their window closes, like a window aggregate's.
        let mut out_lineage: Vec<Lineage> = match (kind, window) {
            (RankKind::Window { .. }, Some((w, _, _))) => lineage
                .iter()
                .map(|l| match *l {
                    Lineage::Window { column, .. } | Lineage::Closed { column, .. } => Lineage::Closed { window: w, column },
                    Lineage::Other => Lineage::Other,
                })
                .collect(),
            _ => vec![Lineage::Other; lineage.len()],
        };
        out_lineage.push(Lineage::Other);
        Ok((StreamNode::Rank(node), out_lineage))
    }
}
