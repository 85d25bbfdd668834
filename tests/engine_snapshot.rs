//! Snapshot, restore and continue: a window aggregate restored from a snapshot taken
//! mid-stream (through Arrow IPC bytes) produces exactly the rows of an uninterrupted run.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use eddy_engine::operator::{Emitter, Operator};
use eddy_engine::operators::filter::FilterOperator;
use eddy_engine::operators::project::ProjectOperator;
use eddy_engine::operators::session_aggregate::{SessionAggregateOperator, SessionMemory};
use eddy_engine::operators::source_prep::SourcePrepOperator;
use eddy_engine::operators::window_aggregate::WindowAggregateOperator;
use eddy_engine::operators::window_assign::WindowAssignOperator;
use eddy_engine::state::{LastingParts, OperatorState};
use eddy_engine::{ChangeBatch, EventTime, Message, PipelineMetrics};
use eddy_sql::{ColumnDef, Location, Planner, StreamNode, TableDef, WatermarkDef, WindowAggregateNode};

fn table() -> TableDef {
    let column = |name: &str, data_type| ColumnDef { name: name.to_string(), data_type, nullable: true, metadata: None };
    TableDef {
        name: "t".to_string(),
        columns: vec![column("k", DataType::Int64), column("v", DataType::Int64), column("ts", DataType::Timestamp(TimeUnit::Millisecond, None))],
        computed: vec![],
        watermark: Some(WatermarkDef { column: "ts".to_string(), expr_sql: "ts - INTERVAL '1' SECOND".to_string() }),
        primary_key: vec![],
        partitioned_by: vec![],
        options: BTreeMap::from([("connector".to_string(), "filesystem".to_string())]),
    }
}

/// The stateless operators below the aggregate, bottom first, and the aggregate node.
fn split(node: &StreamNode, metrics: &Arc<PipelineMetrics>, below: &mut Vec<Box<dyn Operator>>) -> Option<WindowAggregateNode> {
    match node {
        StreamNode::WindowAggregate(a) => {
            split(&a.input, metrics, below);
            Some(a.clone())
        }
        StreamNode::Source(s) => {
            below.push(Box::new(SourcePrepOperator::new(s.clone(), eddy_engine::WatermarkOrigin::Rows, Arc::clone(metrics))));
            None
        }
        StreamNode::WindowAssign { input, window, time_column, slicing, schema, .. } => {
            let found = split(input, metrics, below);
            below.push(Box::new(WindowAssignOperator::new(*window, *time_column, *slicing, Arc::clone(schema))));
            found
        }
        StreamNode::Filter { input, predicate, filtered_out } => {
            let found = split(input, metrics, below);
            below.push(Box::new(FilterOperator::new(Arc::clone(predicate), *filtered_out)));
            found
        }
        StreamNode::Project { input, exprs, schema } => {
            let found = split(input, metrics, below);
            if found.is_none() {
                below.push(Box::new(ProjectOperator::new(exprs.clone(), Arc::clone(schema))));
            }
            found
        }
        StreamNode::Union { .. } | StreamNode::Join(_) | StreamNode::Rank(_) | StreamNode::OverAggregate(_) => None,
    }
}

fn push(operators: &mut [Box<dyn Operator>], message: Message) -> Vec<Message> {
    let mut current = vec![message];
    for operator in operators.iter_mut() {
        let mut next = Vec::new();
        for m in current {
            let mut out = Emitter::default();
            match m {
                Message::Rows(changes) => operator.on_rows(changes, &mut out).expect("batch"),
                Message::Watermark(w) => operator.on_watermark(w, &mut out).expect("watermark"),
                other => out.messages.push(other),
            }
            next.extend(out.drain());
        }
        current = next;
    }
    current
}

fn rows(messages: &[Message]) -> Vec<String> {
    let mut rows = Vec::new();
    for m in messages {
        if let Message::Rows(changes) = m {
            assert!(changes.is_inserts_only(), "a window aggregate only inserts");
            let b = changes.rows();
            let formatters: Vec<_> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).expect("fmt")).collect();
            for i in 0..b.num_rows() {
                rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect::<Vec<_>>().join(" "));
            }
        }
    }
    rows.sort();
    rows
}

fn input(batches: usize) -> Vec<RecordBatch> {
    (0..batches)
        .map(|b| {
            let n = 50;
            let keys: Vec<i64> = (0..n).map(|i| (i * 7 + b as i64) % 5).collect();
            let values: Vec<i64> = (0..n).map(|i| i * 3 - b as i64).collect();
            let times: Vec<i64> = (0..n).map(|i| b as i64 * 2_000 + i * 40 - (i % 3) * 300).collect();
            RecordBatch::try_from_iter([
                ("k", Arc::new(Int64Array::from(keys)) as _),
                ("v", Arc::new(Int64Array::from(values)) as _),
                ("ts", Arc::new(TimestampMillisecondArray::from(times)) as _),
            ])
            .expect("batch")
        })
        .collect()
}

/// How the operator under test keeps a session's rows.
#[derive(Clone, Copy)]
enum Sessions {
    /// Until the session closes (the default: few rows per session here).
    Buffered,
    /// Folded into accumulators every this many rows, and arrival batches
    /// compacted as soon as they hold four times the rows still needed.
    FoldedEvery(usize),
}

async fn check(window_sql: &str) {
    check_with(window_sql, Sessions::Buffered).await
}

/// The rows of an uninterrupted run of a default operator, against those of an
/// operator that keeps sessions as `sessions` says and is snapshotted and restored
/// half-way.
async fn check_with(window_sql: &str, sessions: Sessions) {
    check_aggregates(window_sql, "COUNT(*), SUM(v), MAX(v), COUNT(DISTINCT v % 4)", sessions).await
}

/// [`check_with`] for the aggregates `aggregates_sql`.
async fn check_aggregates(window_sql: &str, aggregates_sql: &str, sessions: Sessions) {
    let mut planner = Planner::new();
    planner.register_table(table(), true, Location { line: 1, column: 1 }).expect("table");
    let sql = format!("SELECT window_start, window_end, k, {aggregates_sql} FROM TABLE({window_sql}) GROUP BY window_start, window_end, k");
    let parsed = eddy_sql::parse_script(&sql).expect("parse").remove(0);
    let eddy_sql::Statement::Select { query } = parsed.statement else { panic!("not a select") };
    let plan = planner.plan_query(&query, parsed.location).await.expect("plan");
    let metrics = Arc::new(PipelineMetrics::default());
    let new_aggregate_with = |node: &WindowAggregateNode, sessions: Sessions| -> Box<dyn Operator> {
        let metrics = Arc::new(PipelineMetrics::default());
        if matches!(node.kind, eddy_sql::AggregateKind::Session { .. }) {
            let operator = SessionAggregateOperator::new(node.clone(), metrics).expect("aggregate");
            match sessions {
                Sessions::Buffered => Box::new(operator),
                Sessions::FoldedEvery(fold_rows) => Box::new(operator.with_memory(SessionMemory { fold_rows, compact_min_bytes: 0 })),
            }
        } else {
            Box::new(WindowAggregateOperator::new(node.clone(), metrics).expect("aggregate"))
        }
    };
    let new_aggregate = |node: &WindowAggregateNode| new_aggregate_with(node, sessions);
    let batches = input(12);

    // Uninterrupted run.
    let mut below = Vec::new();
    let node = split(&plan.root, &metrics, &mut below).expect("aggregate in plan");
    below.push(new_aggregate_with(&node, Sessions::Buffered));
    let mut expected = Vec::new();
    for b in &batches {
        expected.extend(push(&mut below, Message::Rows(ChangeBatch::inserts(b.clone()))));
    }
    expected.extend(push(&mut below, Message::Watermark(EventTime::MAX)));

    // A snapshot (a barrier) after every batch of the first half, which the operator
    // carries on from; the last one is restored into a fresh operator from bytes,
    // with every lasting part the snapshots handed out (a store keeps them all).
    let mut below = Vec::new();
    split(&plan.root, &metrics, &mut below);
    below.push(new_aggregate(&node));
    let mut actual = Vec::new();
    let last = below.len() - 1;
    let mut bytes = Vec::new();
    let mut lasting = LastingParts::new();
    for b in &batches[..6] {
        actual.extend(push(&mut below, Message::Rows(ChangeBatch::inserts(b.clone()))));
        // Every lasting part stored apart, as large state's are.
        let (encoded, parts) = below[last].snapshot().expect("snapshot").expect("stateful").encode(0).expect("encode");
        bytes = encoded;
        lasting.extend(parts.into_iter().map(|part| (part.id, part.batch)));
    }
    let mut restored = new_aggregate(&node);
    restored.restore(OperatorState::decode(&bytes, &lasting).expect("decode")).expect("restore");
    below[last] = restored;
    for b in &batches[6..] {
        actual.extend(push(&mut below, Message::Rows(ChangeBatch::inserts(b.clone()))));
    }
    actual.extend(push(&mut below, Message::Watermark(EventTime::MAX)));

    let expected = rows(&expected);
    assert!(expected.len() >= 15, "too few windows to be a meaningful check: {}", expected.len());
    assert_eq!(rows(&actual), expected, "{window_sql}");
    // A truncated snapshot is refused rather than half-restored.
    assert!(OperatorState::decode(&bytes[..bytes.len() / 2], &lasting).is_err());
}

#[tokio::test]
async fn tumble_snapshot_restore_continue() {
    check("TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '3' SECOND)").await;
}

/// Flink's aggregates Eddy implements itself keep their state through slices
/// merged into windows and through a snapshot.
#[tokio::test]
async fn flink_aggregates_snapshot_restore_continue() {
    let aggregates = "SUM(CAST(v AS DECIMAL(10, 2))) AS s, AVG(CAST(v AS DECIMAL(10, 2))) AS a, AVG(v + 1) AS i, AVG(DISTINCT v % 7) AS d, \
        PERCENTILE(v, 0.5) AS p, PERCENTILE(v, ARRAY[0.25, 0.75], k + 1) AS q, COLLECT(v % 3) AS c, JSON_ARRAYAGG(v) AS j";
    for window in [
        "HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '4' SECOND)",
        "SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '150' MILLISECOND)",
    ] {
        check_aggregates(window, aggregates, Sessions::Buffered).await;
    }
    check_aggregates("SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '150' MILLISECOND)", aggregates, Sessions::FoldedEvery(7)).await;
}

/// A window open across more barriers than it keeps saved parts for: its parts
/// are merged at a barrier, and the merged part is what is restored.
#[tokio::test]
async fn long_tumble_window_merges_its_saved_parts() {
    check("TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '11' SECOND)").await;
}

#[tokio::test]
async fn hop_snapshot_restore_continue() {
    check("HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '4' SECOND)").await;
}

#[tokio::test]
async fn cumulate_snapshot_restore_continue() {
    check("CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND)").await;
}

#[tokio::test]
async fn session_snapshot_restore_continue() {
    check("SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '150' MILLISECOND)").await;
}

/// A session that folds its rows into accumulators gives the rows of one that keeps
/// them, through sessions merging (folded or not), arrival batches compacted under
/// the sessions' rows, and a restore from a snapshot that holds both folded
/// accumulators and rows not folded yet.
#[tokio::test]
async fn session_folding_rows_into_accumulators_gives_the_same_rows() {
    // Rows of a key are about 200 ms apart and up to 600 ms out of order: with a
    // 350 ms gap, sessions run to tens of rows and late rows bridge them.
    for rows in [1, 2, 7] {
        check_with("SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '350' MILLISECOND)", Sessions::FoldedEvery(rows)).await;
    }
}
