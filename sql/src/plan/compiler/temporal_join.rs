//! Event-time temporal joins: a join whose filter calls the marker that
//! `FOR SYSTEM_TIME AS OF` became (see [`crate::system_time`]). The marker says
//! which side probes and by which column; it is taken out of the filter, and the
//! two sides are checked the way Flink checks them: the probe side is
//! append-only and `AS OF` names its event-time attribute; the versioned side has
//! a primary key and an event-time attribute (a table declaring both, or a view
//! keeping the last row per key, `ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts
//! DESC) = 1`), and the join is INNER or LEFT. When `AS OF` names a
//! processing-time attribute (`PROCTIME()`) instead, the join is a lookup join:
//! the other side is a table read by key as rows come.

use std::sync::Arc;

use datafusion::common::JoinSide as FilterSide;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::{conjunction_opt, split_conjunction};
use datafusion::physical_plan::joins::utils::JoinFilter;
use eddy_engine::plan::{FilteredOut, JoinNode, JoinSide, JoinType, RankKind, StreamNode, TemporalSides};

use super::Compiler;
use crate::error::Result;
use crate::plan::time_attribute::is_time_attribute;
use crate::system_time::marker_arguments;

/// What the marker in a join's filter says: the probe side and its `AS OF` column.
pub(super) struct AsOf {
    pub probe: JoinSide,
    pub probe_time: usize,
    /// The rest of the filter; `None` when the marker was all of it.
    pub filter: Option<JoinFilter>,
}

const VERSIONED_VIEW: &str = "declare the versioned table with a PRIMARY KEY and a WATERMARK, or as a view keeping the last row per key: \
     CREATE VIEW v AS SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC) AS rn FROM t) WHERE rn = 1";

impl Compiler<'_> {
    /// The marker of `FOR SYSTEM_TIME AS OF` in `filter`, if any, taken out of it.
    pub(super) fn take_as_of(&self, filter: &JoinFilter) -> Result<Option<AsOf>> {
        let conjuncts = split_conjunction(filter.expression());
        let Some((at, args)) = conjuncts.iter().enumerate().find_map(|(i, c)| marker_arguments(c).map(|args| (i, args))) else {
            return Ok(None);
        };
        let side_of = |expr: &Arc<dyn datafusion::physical_expr::PhysicalExpr>| {
            let column = expr.downcast_ref::<Column>()?;
            let index = filter.column_indices().get(column.index())?;
            match index.side {
                FilterSide::Left => Some((JoinSide::Left, index.index)),
                FilterSide::Right => Some((JoinSide::Right, index.index)),
                FilterSide::None => None,
            }
        };
        let (Some((probe, probe_time)), Some((versioned, _))) = (side_of(&args[0]), side_of(&args[1])) else {
            return Err(self.unsupported("FOR SYSTEM_TIME AS OF takes a column of the table on the left of the join, as it is (not an expression)"));
        };
        if probe == versioned || args[1..].iter().any(|arg| side_of(arg).map(|(side, _)| side) != Some(versioned)) {
            return Err(self
                .unsupported(
                    "FOR SYSTEM_TIME AS OF names a column of the versioned table itself; it takes the time attribute of the table on the left of the join",
                )
                .with_hint("write e.g. `FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON ...`"));
        }
        let rest = conjuncts.iter().enumerate().filter(|(i, _)| *i != at).map(|(_, c)| Arc::clone(c));
        let filter = conjunction_opt(rest).map(|rest| JoinFilter::new(rest, filter.column_indices().to_vec(), Arc::clone(filter.schema())));
        Ok(Some(AsOf { probe, probe_time, filter }))
    }

    /// Refuses what Flink refuses of any join `FOR SYSTEM_TIME AS OF` (`what`):
    /// other than INNER or LEFT (keeping the probe side's rows), or without keys.
    pub(super) fn check_as_of_join(&self, what: &str, join_type: JoinType, probe: JoinSide, keyed: bool) -> Result<()> {
        if !(join_type == JoinType::Inner || join_type.keeps_unmatched(probe) && !join_type.keeps_unmatched(probe.other())) {
            return Err(self
                .unsupported(format!("a {what} (FOR SYSTEM_TIME AS OF) is an INNER or LEFT join, not {}", join_type.sql()))
                .with_hint("Flink supports only these two: each row of the left table meets at most one row of the other"));
        }
        if !keyed {
            return Err(self
                .unsupported(format!("a {what} needs an equality on the other table's key in its ON condition"))
                .with_hint("e.g. ON o.user_id = u.id"));
        }
        Ok(())
    }

    /// Checks that a lookup join's other side is a table, with keys it stores.
    pub(super) fn check_lookup_table(&self, node: &JoinNode) -> Result<()> {
        if node.lookup_table().is_none() {
            return Err(self
                .unsupported(
                    "a lookup join looks up a table: FOR SYSTEM_TIME AS OF a PROCTIME() column takes a table, or a view that only filters and projects one; \
                     a view that aggregates, ranks or joins is a processing-time temporal join, which Flink does not support either",
                )
                .with_hint("name the redis, clickhouse or filesystem table itself, or join the versioned view FOR SYSTEM_TIME AS OF an event-time column"));
        }
        node.lookup_key_columns().map_err(|e| self.unsupported(e).with_hint("join on columns the table stores, e.g. ON o.user_id = u.id"))?;
        Ok(())
    }

    /// Checks a temporal join's type and sides; the sides' time columns.
    pub(super) fn temporal_sides(&self, join_type: JoinType, as_of: &AsOf, left: &StreamNode, right: &StreamNode, keyed: bool) -> Result<TemporalSides> {
        let AsOf { probe, probe_time, .. } = *as_of;
        let node = |side: JoinSide| if side == JoinSide::Left { left } else { right };
        let (probe_node, versioned) = (node(probe), node(probe.other()));
        self.check_as_of_join("temporal join", join_type, probe, keyed)?;
        if probe_node.emits_retractions() || probe_node.is_updating() {
            return Err(self
                .unsupported("the left table of a temporal join must be append-only; here its rows update")
                .with_hint("join the table the update comes from"));
        }
        if !is_time_attribute(probe_node, probe_time) {
            let name = probe_node.schema().field(probe_time).name().clone();
            return Err(self
                .unsupported(format!("FOR SYSTEM_TIME AS OF `{name}`: the column is not an event-time attribute (a WATERMARK FOR column, unchanged)"))
                .with_hint("a temporal join on event time takes the left table's WATERMARK FOR column; a lookup join takes a processing-time column declared `proc_time AS PROCTIME()`"));
        }
        if !is_versioned(versioned) {
            return Err(self
                .unsupported("the table of FOR SYSTEM_TIME AS OF is not a versioned table: it has no primary key (Flink refuses this too)")
                .with_hint(VERSIONED_VIEW));
        }
        let width = versioned.schema().fields().len();
        let Some(version_time) = (0..width).find(|&i| is_time_attribute(versioned, i)) else {
            return Err(self
                .unsupported("the versioned table of a temporal join has no event-time attribute: each version needs the time it holds from")
                .with_hint(VERSIONED_VIEW));
        };
        Ok(TemporalSides { probe, probe_time, version_time })
    }
}

/// Has the filters on the versioned side (a view's own, and conditions of the
/// join or of a `WHERE` that DataFusion pushed down to it) send a failing
/// version on as a deletion, so that it still ends the version before it: a
/// condition on the versioned table applies to the version a row meets.
pub(super) fn filters_end_versions(node: &mut StreamNode) {
    match node {
        StreamNode::Filter { input, filtered_out, .. } => {
            *filtered_out = FilteredOut::Deleted;
            filters_end_versions(input);
        }
        StreamNode::Project { input, .. } => filters_end_versions(input),
        _ => {}
    }
}

/// Whether `node`'s rows are versions of rows with a primary key: a table that
/// declares one, or deduplication keeping the last row per key.
fn is_versioned(node: &StreamNode) -> bool {
    match node {
        StreamNode::Source(s) => !s.table.primary_key.is_empty(),
        StreamNode::Rank(r) => matches!(r.kind, RankKind::LastRow { .. }),
        StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } => is_versioned(input),
        _ => false,
    }
}
