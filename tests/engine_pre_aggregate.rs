#![allow(clippy::unwrap_used)] // tests: a panic is a failure with a backtrace
//! Pre-aggregation before a cluster's shuffle (`eddy_engine::operators::pre_aggregate`):
//! for generated rows split over source partitions, read in batches of any size and
//! drained at any points, the partials merged by the key group's aggregate give
//! the same rows as the query's own aggregate over all the rows.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use eddy_engine::operators::pre_aggregate::{merging_node, PreAggregate, PreAggregation};
use eddy_engine::operators::window_aggregate::WindowAggregateOperator;
use eddy_engine::testing::changes_text;
use eddy_engine::{ChangeBatch, Emitter, EventTime, Message, Operator, PipelineMetrics};
use eddy_sql::{Location, Planner, SourceNode, StreamNode, WindowAggregateNode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const T: &str = "CREATE TABLE t (k BIGINT, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
    WITH ('connector' = 'kafka', 'topic' = 't', 'properties.bootstrap.servers' = 'x', 'format' = 'json')";

/// The aggregate and the source of `sql`'s plan over `t` (bounded or not).
async fn plan(sql: &str, bounded: bool) -> (WindowAggregateNode, SourceNode) {
    let location = Location { line: 1, column: 1 };
    let mut planner = Planner::new();
    let eddy_sql::Statement::CreateTable(def) = eddy_sql::parse_script(T).unwrap().remove(0).statement else { panic!("CREATE TABLE") };
    planner.register_table(def, bounded, location).unwrap();
    let eddy_sql::Statement::Select { query } = eddy_sql::parse_script(sql).unwrap().remove(0).statement else { panic!("a SELECT") };
    let plan = planner.plan_query(&query, location).await.unwrap();
    fn find<T>(node: &StreamNode, pick: &impl Fn(&StreamNode) -> Option<T>) -> Option<T> {
        pick(node).or_else(|| node.inputs().into_iter().find_map(|input| find(input, pick)))
    }
    let aggregate = find(&plan.root, &|n| match n {
        StreamNode::WindowAggregate(a) => Some(a.clone()),
        _ => None,
    })
    .unwrap();
    let source = find(&plan.root, &|n| match n {
        StreamNode::Source(s) => Some(s.clone()),
        _ => None,
    })
    .unwrap();
    (aggregate, source)
}

/// `rows` of (k, v, ts) in `t`'s schema.
fn batch(source: &SourceNode, rows: &[(i64, Option<i64>, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::clone(&source.schema),
        vec![
            Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(TimestampMillisecondArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

/// Everything `operator` emits for `batches` then the end of input, one sorted line per row.
fn run(mut operator: Box<dyn Operator>, batches: Vec<RecordBatch>) -> Vec<String> {
    let mut out = Emitter::default();
    for b in batches {
        operator.on_rows(ChangeBatch::inserts(b), &mut out).unwrap();
    }
    operator.on_watermark(EventTime::MAX, &mut out).unwrap();
    operator.on_end(&mut out).unwrap();
    let mut lines: Vec<String> = out
        .drain()
        .into_iter()
        .filter_map(|m| match m {
            Message::Rows(changes) => Some(changes_text(&changes)),
            _ => None,
        })
        .flatten()
        .collect();
    lines.sort();
    lines
}

/// The query's rows over `rows`: its own aggregate (with the operators below it
/// applied by a pre-aggregator's chain, so only the aggregation differs), and the
/// partials of `partitions` re-partitioners merged.
async fn both_ways(sql: &str, bounded: bool, rows: &[(i64, Option<i64>, i64)], partitions: usize, rng: &mut StdRng) -> (Vec<String>, Vec<String>, usize) {
    let (node, source) = plan(sql, bounded).await;
    assert_eq!(PreAggregation::of(&node), PreAggregation::Partials, "{sql}");
    // Each re-partitioner reads its share in batches of random sizes and drains at random points.
    let mut shares: Vec<Vec<(i64, Option<i64>, i64)>> = vec![Vec::new(); partitions];
    for row in rows {
        shares[rng.gen_range(0..partitions)].push(*row);
    }
    let mut partials = Vec::new();
    for share in shares {
        let mut pre = PreAggregate::new(&node).unwrap().unwrap();
        let mut at = 0;
        while at < share.len() {
            let size = rng.gen_range(1..=share.len() - at);
            pre.add(batch(&source, &share[at..at + size])).unwrap();
            at += size;
            if rng.gen_bool(0.5) {
                partials.extend(pre.drain().unwrap());
            }
        }
        partials.extend(pre.drain().unwrap());
    }
    // Partials of different partitions interleave in a key group's shuffle partition.
    for i in (1..partials.len()).rev() {
        partials.swap(i, rng.gen_range(0..=i));
    }
    let merged_rows: usize = partials.iter().map(RecordBatch::num_rows).sum();
    let metrics = Arc::new(PipelineMetrics::default());
    let merging = merging_node(&node, &source).unwrap();
    let merged = run(Box::new(WindowAggregateOperator::new(merging, Arc::clone(&metrics)).unwrap()), partials);
    // The aggregate's own input: the rows through the same stateless operators.
    let mut below = PreAggregate::new(&node).unwrap().unwrap();
    let direct_input = below.rows_below(batch(&source, rows)).unwrap();
    let direct = run(Box::new(WindowAggregateOperator::new(node, metrics).unwrap()), direct_input);
    (direct, merged, merged_rows)
}

fn generated(rng: &mut StdRng, rows: usize, keys: i64) -> Vec<(i64, Option<i64>, i64)> {
    (0..rows).map(|_| (rng.gen_range(0..keys), rng.gen_bool(0.9).then(|| rng.gen_range(-50..1000)), rng.gen_range(0..60_000))).collect()
}

const QUERIES: &[(&str, bool)] = &[
    (
        "SELECT window_start, window_end, k, COUNT(*) AS n, SUM(v) AS total, AVG(v) AS mean, MIN(v) AS lo, MAX(v) AS hi,
                COUNT(DISTINCT v) AS distinct_v, COUNT(*) FILTER (WHERE v > 500) AS big
         FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, k",
        false,
    ),
    (
        "SELECT window_start, window_end, k, COUNT(*) AS n, SUM(v) AS total
         FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '15' SECOND)) WHERE v IS NOT NULL AND v % 3 <> 0
         GROUP BY window_start, window_end, k",
        false,
    ),
    (
        "SELECT window_start, window_end, k, MAX(v) AS hi, STDDEV_POP(v) AS sd
         FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '4' SECOND, INTERVAL '20' SECOND)) GROUP BY window_start, window_end, k",
        false,
    ),
    ("SELECT window_start, COUNT(*) AS n, SUM(v) AS total FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '7' SECOND)) GROUP BY window_start", false),
    ("SELECT k, COUNT(*) AS n, SUM(v) + 1 AS total, BOOL_AND(v > 0) AS positive FROM t GROUP BY k", true),
    ("SELECT k, COUNT(*) AS n, MAX(v) AS hi FROM t GROUP BY k", false),
];

#[tokio::test]
async fn merged_partials_give_the_rows_of_the_aggregate_over_every_row() {
    let mut rng = StdRng::seed_from_u64(7);
    for (sql, bounded) in QUERIES {
        for (rows, keys, partitions) in [(1, 3, 1), (500, 3, 1), (3000, 40, 4), (3000, 1000, 8)] {
            let rows = generated(&mut rng, rows, keys);
            let (direct, merged, _) = both_ways(sql, *bounded, &rows, partitions, &mut rng).await;
            assert!(direct.len() >= usize::from(rows.len() > 1), "{sql}: the query gives rows");
            assert_eq!(merged, direct, "{sql}\nover {} rows, {keys} keys, {partitions} partitions", rows.len());
        }
    }
}

#[tokio::test]
async fn partials_are_one_row_per_slice_and_key_between_drains() {
    let mut rng = StdRng::seed_from_u64(11);
    let (node, source) = plan(QUERIES[0].0, false).await;
    let mut pre = PreAggregate::new(&node).unwrap().unwrap();
    // 10,000 rows of 5 keys over 60 s: 6 TUMBLE windows of 10 s, so at most 30 partials.
    let rows = generated(&mut rng, 10_000, 5);
    for chunk in rows.chunks(777) {
        pre.add(batch(&source, chunk)).unwrap();
    }
    let partials = pre.drain().unwrap().unwrap();
    assert_eq!(partials.num_rows(), 30);
    assert_eq!(partials.schema(), *pre.schema());
    assert!(pre.drain().unwrap().is_none(), "a drain empties the pre-aggregator");
}

#[tokio::test]
async fn sessions_are_not_pre_aggregated() {
    let sql = "SELECT window_start, window_end, k, COUNT(*) AS n
               FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, k";
    let (node, _) = plan(sql, false).await;
    assert!(matches!(PreAggregation::of(&node), PreAggregation::Rows(_)));
    assert!(PreAggregate::new(&node).unwrap().is_none());
}
