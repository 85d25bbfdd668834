//! Event time through the plan: which output column is still a source's time
//! attribute (its `WATERMARK FOR` column, untouched), and how a stateful
//! operator over it has its source set late rows aside. Shared by the OVER
//! aggregates and the ranks, which both order by a time attribute.

use datafusion::physical_expr::expressions::Column;
use eddy_engine::plan::{JoinBound, JoinSide, LateAfter, LatenessRule, RankKind, StreamNode};

/// Whether column `index` of `node`'s output is a source's `WATERMARK FOR` column,
/// as it is (through filters, projections that pick it, window assignments,
/// OVER aggregates and deduplication, which keep their input's columns first,
/// temporal joins, which keep the probe side's, and interval joins).
pub(super) fn is_time_attribute(node: &StreamNode, index: usize) -> bool {
    match node {
        StreamNode::Source(s) => {
            s.watermark.is_some() && s.table.watermark.as_ref().is_some_and(|w| s.schema.fields().get(index).is_some_and(|f| *f.name() == w.column))
        }
        StreamNode::Filter { input, .. } => is_time_attribute(input, index),
        StreamNode::Project { input, exprs, .. } => {
            exprs.get(index).and_then(|e| e.downcast_ref::<Column>()).is_some_and(|c| is_time_attribute(input, c.index()))
        }
        StreamNode::WindowAssign { input, .. } => index < input.schema().fields().len() && is_time_attribute(input, index),
        StreamNode::OverAggregate(o) => index < o.input.schema().fields().len() && is_time_attribute(&o.input, index),
        // Deduplication keeps its input's columns first, and rows as they were.
        StreamNode::Rank(r) => {
            matches!(r.kind, RankKind::FirstRow { .. } | RankKind::LastRow { .. })
                && index < r.input.schema().fields().len()
                && is_time_attribute(&r.input, index)
        }
        // A temporal join keeps the probe side's time attribute, an interval join
        // both sides' (its output watermark waits for its rows), as Flink's do.
        StreamNode::Join(j) => {
            let Some(&column) = j.projection.get(index) else { return false };
            let left_width = j.left.schema().fields().len();
            let (side, column) = if column < left_width { (JoinSide::Left, column) } else { (JoinSide::Right, column - left_width) };
            let input = if side == JoinSide::Left { &j.left } else { &j.right };
            match j.bounded_by {
                JoinBound::Temporal(sides) => side == sides.probe && column == sides.probe_time && is_time_attribute(input, column),
                JoinBound::Interval(_) => is_time_attribute(input, column),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether column `index` of `node`'s output is a processing-time attribute: a
/// computed column `AS PROCTIME()` of a source, as it is (through filters and
/// projections that pick it).
pub(super) fn is_proctime_attribute(node: &StreamNode, index: usize) -> bool {
    match node {
        StreamNode::Source(s) => {
            let physical = s.physical_schema.fields().len();
            index >= physical
                && s.table.computed.get(index - physical).is_some_and(|c| c.expr_sql.split_whitespace().collect::<String>().eq_ignore_ascii_case("PROCTIME()"))
        }
        StreamNode::Filter { input, .. } => is_proctime_attribute(input, index),
        StreamNode::Project { input, exprs, .. } => {
            exprs.get(index).and_then(|e| e.downcast_ref::<Column>()).is_some_and(|c| is_proctime_attribute(input, c.index()))
        }
        _ => false,
    }
}

/// Has the source that column `time_column` of `node`'s output is read from
/// (through filters, projections and window assignments) judge its rows late by
/// `judged_by`, so they go to its `'late.sink'` before they reach the operator;
/// nothing when the column is computed on the way. A source that already judges
/// lateness (by a window) keeps its rule.
pub(super) fn judge_lateness(node: &mut StreamNode, time_column: usize, judged_by: LateAfter) {
    match node {
        StreamNode::Source(source) if source.lateness.is_none() => source.lateness = Some(LatenessRule { time_column, judged_by }),
        StreamNode::Filter { input, .. } => judge_lateness(input, time_column, judged_by),
        StreamNode::Project { input, exprs, .. } => {
            if let Some(column) = exprs.get(time_column).and_then(|e| e.downcast_ref::<Column>()) {
                judge_lateness(input, column.index(), judged_by);
            }
        }
        StreamNode::WindowAssign { input, .. } if time_column < input.schema().fields().len() => judge_lateness(input, time_column, judged_by),
        _ => {}
    }
}
