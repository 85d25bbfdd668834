//! Ranking, as Flink runs `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)`
//! under a filter on the row number (`WHERE rn = 1`, `rn <= N`, `rn < N`): each
//! partition keeps its first N rows by the order, and what it emits depends on
//! what the order and partition are, as in Flink's planner:
//!
//! - ordered by the input's event time, ascending, keeping one row: Flink's
//!   deduplication keeping the first row, append-only, each row emitted once the
//!   watermark shows no earlier row can come;
//! - ordered by event time descending, keeping one row: deduplication keeping
//!   the last row, a changelog that replaces a partition's row at once;
//! - partitioned by a window's `window_start` and `window_end`: window Top-N (and
//!   window deduplication), each window's ranked rows emitted once, when the
//!   watermark passes the window's end;
//! - any other order: continuous Top-N, a changelog that updates the ranks of a
//!   partition as rows enter its first N.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};

use super::{StreamNode, WindowKind};

/// How a rank keeps and emits its rows; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankKind {
    /// Deduplication keeping the earliest row by event time (input column `time_column`).
    FirstRow { time_column: usize },
    /// Deduplication keeping the latest row by event time (input column `time_column`).
    LastRow { time_column: usize },
    /// Deduplication keeping the first row by processing time (ordered by a
    /// `PROCTIME()` column): the first row of a partition is emitted as it comes,
    /// and later ones are dropped. Append-only.
    FirstArrival,
    /// Deduplication keeping the last row by processing time: each row replaces
    /// its partition's at once. A changelog.
    LastArrival,
    /// Top-N per window: the partition holds the window's bounds, and input
    /// column `end_column` its end (or, with `end_is_start`, its start, the end
    /// being start + the window's size).
    Window { window: WindowKind, end_column: usize, end_is_start: bool, ties: Ties },
    /// Top-N over the whole input, updated as rows come.
    Continuous,
    /// Top-N over updating rows (a `GROUP BY` without a window, a changelog):
    /// Flink's `RetractStrategy`. Every row of a partition is kept, so when a
    /// ranked row is taken back the next one takes its place.
    Retracting,
}

/// Which of two rows equal in the order ranks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ties {
    /// The earlier arrival (a Top-N keeps the rows it has).
    EarlierFirst,
    /// The later arrival: window deduplication keeping the last row by event
    /// time, where Flink's replaces a row by a later one of the same time.
    LaterFirst,
}

impl RankKind {
    /// Its output takes back rows it emitted.
    pub fn retracts(self) -> bool {
        matches!(self, RankKind::LastRow { .. } | RankKind::LastArrival | RankKind::Continuous | RankKind::Retracting)
    }

    /// A Top-N without a window, whose rows are replaced by partition and row number.
    pub fn is_top_n(self) -> bool {
        matches!(self, RankKind::Continuous | RankKind::Retracting)
    }

    /// The operator's name, for EXPLAIN, metrics and errors.
    pub fn operator_name(self) -> &'static str {
        match self {
            RankKind::FirstRow { .. } | RankKind::LastRow { .. } | RankKind::FirstArrival | RankKind::LastArrival => "Deduplicate",
            RankKind::Window { .. } => "WindowRank",
            RankKind::Continuous | RankKind::Retracting => "Rank",
        }
    }
}

/// The first `limit` rows of each partition of the input by `order`, each with
/// its row number (the input's columns, then the row number).
#[derive(Debug, Clone)]
pub struct RankNode {
    pub input: Box<StreamNode>,
    /// `PARTITION BY`: the keys the exchange hashes on, then (for a window rank)
    /// the window's bounds, which do not decide the task.
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    /// How many leading `partition` expressions are hashed keys.
    pub hashed: usize,
    /// `ORDER BY`, over the input.
    pub order: Vec<PhysicalSortExpr>,
    /// Rows kept per partition (`rn <= limit`).
    pub limit: usize,
    pub kind: RankKind,
    /// Flink's `'table.exec.state.ttl'`: a partition's state leaves once it has
    /// not been written for this long (processing time); `None` keeps it for good.
    /// Window ranks are bounded by their windows and ignore it.
    pub state_ttl_ms: Option<i64>,
    pub schema: SchemaRef,
}

impl RankNode {
    /// The expressions the exchange in front of the rank hashes on.
    pub fn key_exprs(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.partition[..self.hashed].to_vec()
    }

    /// How many tasks run the rank: `parallelism` behind a hash exchange on its
    /// keys; without keys every row belongs to one partition, so one task.
    pub fn tasks(&self, parallelism: usize) -> usize {
        if self.hashed == 0 {
            1
        } else {
            parallelism.max(1)
        }
    }

    /// A line for EXPLAIN.
    pub fn explain(&self) -> String {
        let list = |exprs: &mut dyn Iterator<Item = String>| exprs.collect::<Vec<_>>().join(", ");
        let partition = list(&mut self.partition.iter().map(|e| e.to_string()));
        let order = list(&mut self.order.iter().map(|e| e.to_string()));
        let what = match self.kind {
            RankKind::FirstRow { .. } => "keep the first row by event time".to_string(),
            RankKind::LastRow { .. } => "keep the last row by event time (a changelog: replaces a partition's row)".to_string(),
            RankKind::FirstArrival => "keep the first row by processing time (emitted as it comes)".to_string(),
            RankKind::LastArrival => "keep the last row by processing time (a changelog: replaces a partition's row)".to_string(),
            RankKind::Window { window, .. } => format!("top {} per {} window", self.limit, window.name()),
            RankKind::Continuous => format!("top {} (a changelog: updates the ranks as rows come)", self.limit),
            RankKind::Retracting => format!("top {} of updating rows (a changelog: updates the ranks as rows come and go)", self.limit),
        };
        format!("{}: {what}, partition by [{partition}], order by [{order}]", self.kind.operator_name())
    }

    /// When the rank emits, and what it keeps, for EXPLAIN.
    pub fn runtime_traits(&self) -> (&'static str, String) {
        match self.kind {
            RankKind::FirstRow { .. } => (
                "passed through; a partition's row is emitted once the watermark passes its time",
                "per partition: its earliest row until emitted, then a mark that it was".to_string(),
            ),
            RankKind::LastRow { .. } | RankKind::LastArrival => ("passed through (rows are emitted as they come)", "per partition: its latest row".to_string()),
            RankKind::FirstArrival => ("passed through (rows are emitted as they come)", "per partition: a mark that its first row was emitted".to_string()),
            RankKind::Window { .. } => (
                "passed through; a window's rows are emitted once the watermark passes its end",
                format!("per window and partition: its first {} rows, until the window is emitted", self.limit),
            ),
            RankKind::Continuous => ("passed through (rows are emitted as they come)", format!("per partition: its first {} rows, for good", self.limit)),
            RankKind::Retracting => (
                "passed through (rows are emitted as they come)",
                "per partition: every row not taken back, for good (the next takes a retracted row's rank)".to_string(),
            ),
        }
    }
}
