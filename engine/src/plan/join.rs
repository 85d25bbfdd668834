//! Joins, as Flink runs them. In an event-time join rows of two append-only
//! inputs meet when their keys are equal and their times are within a bounded
//! distance, so each row waits in state only until the watermark shows no
//! partner can come: an interval join bounds the distance in its condition
//! (`b.ts BETWEEN a.ts - INTERVAL '5' MINUTE AND a.ts + INTERVAL '10' MINUTE`); a
//! window join joins two window TVFs on `window_start`/`window_end`, which bounds
//! it by the window. A regular join has no such bound: every row may meet any
//! later row of the other side, so rows stay in state (until Flink's
//! `'table.exec.state.ttl'`, or for good), and an outer join takes back a row it
//! emitted padded with NULLs once a partner comes. An event-time temporal join
//! (`JOIN versioned FOR SYSTEM_TIME AS OF o.ts`) meets each row of one side with
//! the version of the other side's row that was current at the row's time.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::joins::utils::JoinFilter;

use super::StreamNode;

/// What a join emits, as SQL's join types: pairs, plus in an outer join the rows
/// without a partner (padded with NULLs); or, for a semi or anti join (`IN`,
/// `EXISTS`, `NOT IN`, `NOT EXISTS` subqueries), only one side's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    Inner,
    Left,
    Right,
    Full,
    /// The rows of this side that meet a partner, each once.
    Semi(JoinSide),
    /// The rows of this side that never meet a partner.
    Anti(JoinSide),
}

impl JoinType {
    /// Whether rows of `side` that found no partner are emitted (with NULLs for the other side's columns, if any).
    pub fn keeps_unmatched(self, side: JoinSide) -> bool {
        match self {
            JoinType::Left | JoinType::Full if side == JoinSide::Left => true,
            JoinType::Right | JoinType::Full if side == JoinSide::Right => true,
            JoinType::Anti(kept) => kept == side,
            _ => false,
        }
    }

    /// Whether each matching pair is emitted (every join but semi and anti joins).
    pub fn emits_pairs(self) -> bool {
        !matches!(self, JoinType::Semi(_) | JoinType::Anti(_))
    }

    /// SQL's name, for EXPLAIN.
    pub fn sql(self) -> &'static str {
        match self {
            JoinType::Inner => "INNER",
            JoinType::Left => "LEFT OUTER",
            JoinType::Right => "RIGHT OUTER",
            JoinType::Full => "FULL OUTER",
            JoinType::Semi(JoinSide::Left) => "LEFT SEMI",
            JoinType::Semi(JoinSide::Right) => "RIGHT SEMI",
            JoinType::Anti(JoinSide::Left) => "LEFT ANTI",
            JoinType::Anti(JoinSide::Right) => "RIGHT ANTI",
        }
    }
}

/// One of a join's two inputs. Its index is the input number the runtime tags the
/// side's rows with ([`crate::Operator::on_input_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinSide {
    Left = 0,
    Right = 1,
}

impl JoinSide {
    /// The side whose rows arrive as input `input` of the join's stage.
    pub fn of_input(input: usize) -> Option<JoinSide> {
        match input {
            0 => Some(JoinSide::Left),
            1 => Some(JoinSide::Right),
            _ => None,
        }
    }

    /// The other side.
    pub fn other(self) -> JoinSide {
        match self {
            JoinSide::Left => JoinSide::Right,
            JoinSide::Right => JoinSide::Left,
        }
    }

    /// The side's name, for EXPLAIN.
    pub fn name(self) -> &'static str {
        match self {
            JoinSide::Left => "left",
            JoinSide::Right => "right",
        }
    }
}

/// How far apart the two sides' times may be: a pair matches when
/// `lower_ms <= right time - left time <= upper_ms` (both inclusive, milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// The left input's event-time column.
    pub left_time: usize,
    /// The right input's event-time column.
    pub right_time: usize,
    pub lower_ms: i64,
    pub upper_ms: i64,
}

impl TimeBounds {
    /// The last watermark at which a row of `side` at `time` may still meet a
    /// partner: later partners arrive above the watermark, so once it passes this
    /// the row is done (and, in an outer join, emitted alone if it never matched).
    pub fn last_chance(&self, side: JoinSide, time: i64) -> i64 {
        match side {
            JoinSide::Left => time.saturating_add(self.upper_ms),
            JoinSide::Right => time.saturating_sub(self.lower_ms),
        }
    }

    /// How far the join holds its output's watermark behind its input's: a row it
    /// emits carries times up to this far below the watermark that let it out
    /// (Flink's interval join delays its watermark by the larger relative bound).
    pub fn watermark_delay_ms(&self) -> i64 {
        self.upper_ms.max(0).max(self.lower_ms.saturating_neg().max(0))
    }
}

/// Which side of an event-time temporal join is versioned, and each side's time
/// column: a probe row meets the version of its key with the latest time at or
/// before its own, once the watermark has passed the probe row's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemporalSides {
    /// The side whose rows look up a version (the left of `FOR SYSTEM_TIME AS OF`).
    pub probe: JoinSide,
    /// The probe side's time attribute, named by `AS OF`.
    pub probe_time: usize,
    /// The versioned side's time attribute: when each version starts to hold.
    pub version_time: usize,
}

impl TemporalSides {
    /// The side holding the versions.
    pub fn versioned(&self) -> JoinSide {
        self.probe.other()
    }

    /// The time column of `side`.
    pub fn time_column(&self, side: JoinSide) -> usize {
        if side == self.probe {
            self.probe_time
        } else {
            self.version_time
        }
    }
}

/// What bounds a join's state in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinBound {
    /// Time bounds in the `ON` condition.
    Interval(TimeBounds),
    /// The same window on both sides, its bounds among the join keys: rows meet
    /// only within one window, so a row waits until its window has passed, as if
    /// bounded by `bounds` (the window's size either way).
    Window { window: crate::plan::WindowKind, bounds: TimeBounds },
    /// Nothing in time: a regular join. A row stays until `state_ttl_ms` after it
    /// was last written (Flink's `'table.exec.state.ttl'`, processing time), or
    /// for as long as the pipeline runs when that is `None`.
    Unbounded { state_ttl_ms: Option<i64> },
    /// An event-time temporal join: probe rows wait for the watermark, and each
    /// key keeps the versions the waiting rows and later ones may still need.
    Temporal(TemporalSides),
    /// A lookup join (processing time): each row of the `probe` side is joined,
    /// as it comes, with the rows the other side's table holds for its key then.
    /// The other side is a table read by key, not a stream; it has no state.
    Lookup { probe: JoinSide },
}

/// Joins two inputs on equal keys. Bounded in time ([`JoinBound::Interval`],
/// [`JoinBound::Window`]) the inputs and output are append-only: a pair is emitted
/// once, when its second row arrives; in an outer join, a row that never met a
/// partner once its time is past. A regular join ([`JoinBound::Unbounded`]) emits
/// a changelog when a row it emitted can be taken back ([`JoinNode::retracts`]).
#[derive(Debug, Clone)]
pub struct JoinNode {
    pub left: Box<StreamNode>,
    pub right: Box<StreamNode>,
    pub join_type: JoinType,
    /// The equality keys, evaluated on each side's rows; the exchange hashes on them.
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Every other condition of the `ON` clause, time bounds included, over columns
    /// of both sides; `None` when the keys are the whole condition.
    pub filter: Option<JoinFilter>,
    pub bounded_by: JoinBound,
    /// The output columns, as indices into the left columns followed by the right ones.
    pub projection: Vec<usize>,
    pub schema: SchemaRef,
}

impl JoinNode {
    /// The keys of `side`'s rows.
    pub fn keys(&self, side: JoinSide) -> &[Arc<dyn PhysicalExpr>] {
        match side {
            JoinSide::Left => &self.left_keys,
            JoinSide::Right => &self.right_keys,
        }
    }

    /// Whether this is a regular join: no time bounds its state.
    pub fn is_regular(&self) -> bool {
        matches!(self.bounded_by, JoinBound::Unbounded { .. })
    }

    /// The time bounds of an interval or window join; `None` for a regular or temporal join.
    pub fn time_bounds(&self) -> Option<TimeBounds> {
        match self.bounded_by {
            JoinBound::Interval(bounds) | JoinBound::Window { bounds, .. } => Some(bounds),
            JoinBound::Unbounded { .. } | JoinBound::Temporal(_) | JoinBound::Lookup { .. } => None,
        }
    }

    /// Whether the join's output takes back rows it emitted: a regular outer join
    /// retracts a row padded with NULLs when its first partner comes, and an anti
    /// join a row that then has one. Interval and window joins wait instead.
    pub fn retracts(&self) -> bool {
        self.is_regular() && matches!(self.join_type, JoinType::Left | JoinType::Right | JoinType::Full | JoinType::Anti(_))
    }

    /// The operator that runs it, for `EXPLAIN`, logs and messages.
    pub fn operator_name(&self) -> &'static str {
        match self.bounded_by {
            JoinBound::Interval(_) => "IntervalJoin",
            JoinBound::Window { .. } => "WindowJoin",
            JoinBound::Unbounded { .. } => "RegularJoin",
            JoinBound::Temporal(_) => "TemporalJoin",
            JoinBound::Lookup { .. } => "LookupJoin",
        }
    }

    /// The side of a lookup join that is a looked-up table; `None` for other joins.
    pub fn looked_up(&self) -> Option<JoinSide> {
        match self.bounded_by {
            JoinBound::Lookup { probe } => Some(probe.other()),
            _ => None,
        }
    }

    /// The looked-up side of a lookup join, from the join down: its filters and
    /// projections (which apply to the rows the table returns), then the table.
    /// `None` for other joins, or when the side is anything else.
    pub fn lookup_side(&self) -> Option<(Vec<&StreamNode>, &super::SourceNode)> {
        let mut node = match self.looked_up()? {
            JoinSide::Left => &self.left,
            JoinSide::Right => &self.right,
        };
        let mut steps = Vec::new();
        loop {
            match node.as_ref() {
                StreamNode::Source(source) => return Some((steps, source)),
                StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } => {
                    steps.push(node.as_ref());
                    node = input;
                }
                _ => return None,
            }
        }
    }

    /// The table a lookup join looks up (see [`JoinNode::lookup_side`]).
    pub fn lookup_table(&self) -> Option<&super::SourceNode> {
        self.lookup_side().map(|(_, table)| table)
    }

    /// The looked-up table's physical columns its keys are, in key order: a
    /// lookup asks the store by stored columns, through the filters and
    /// projections over it. An error names a key that is no such column.
    pub fn lookup_key_columns(&self) -> Result<Vec<usize>, String> {
        let side = self.looked_up().ok_or("not a lookup join")?;
        let (steps, table) = self.lookup_side().ok_or("the looked-up side is not a table")?;
        let physical = table.physical_schema.fields().len();
        self.keys(side)
            .iter()
            .map(|key| {
                let not_a_column = || format!("the lookup key `{key}` is not a column of `{}` as stored", table.table.name);
                let mut index = key.downcast_ref::<Column>().ok_or_else(not_a_column)?.index();
                for step in &steps {
                    if let StreamNode::Project { exprs, .. } = step {
                        index = exprs.get(index).and_then(|e| e.downcast_ref::<Column>()).ok_or_else(not_a_column)?.index();
                    }
                }
                if index < physical {
                    Ok(index)
                } else {
                    Err(not_a_column())
                }
            })
            .collect()
    }

    /// How many tasks run the join: `parallelism` behind a hash exchange on the keys,
    /// or one when there are none (every row may meet every other).
    pub fn tasks(&self, parallelism: usize) -> usize {
        if self.left_keys.is_empty() {
            1
        } else {
            parallelism.max(1)
        }
    }
}
