#![allow(clippy::unwrap_used)] // tests: a panic is a failure with a backtrace
//! Each operator kind driven from text tables (see `eddy_engine::testing`): rows,
//! retractions, watermarks, barriers and restarts in, what it emits out, both as
//! text a reader can check by hand. Covered: the source's watermark and late rows,
//! filter, project, window assignment, each aggregate kind, the joins and the ranks.
//! The operators are the ones the planner makes for a query over `t (k BIGINT, v
//! BIGINT, ts TIMESTAMP(3))` (and `u`, its twin, for joins), whose watermark is
//! `ts - 1 s`; times are ms since the epoch.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use eddy_engine::operators::filter::FilterOperator;
use eddy_engine::operators::interval_join::IntervalJoinOperator;
use eddy_engine::operators::over_aggregate::OverAggregateOperator;
use eddy_engine::operators::project::ProjectOperator;
use eddy_engine::operators::rank::RankOperator;
use eddy_engine::operators::regular_join::RegularJoinOperator;
use eddy_engine::operators::retract_aggregate::RetractAggregateOperator;
use eddy_engine::operators::session_aggregate::SessionAggregateOperator;
use eddy_engine::operators::source_prep::SourcePrepOperator;
use eddy_engine::operators::window_aggregate::WindowAggregateOperator;
use eddy_engine::operators::window_assign::WindowAssignOperator;
use eddy_engine::plan::{AggregateKind, FilteredOut, JoinBound, UpdateOutput};
use eddy_engine::testing::OperatorHarness;
use eddy_engine::{Operator, PipelineMetrics};
use eddy_sql::{Location, Planner, StreamNode, StreamPlan, WindowAggregateNode};

const T: &str = "CREATE TABLE t (k BIGINT, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
    WITH ('connector' = 'filesystem', 'path' = 'x.json', 'format' = 'json')";

/// How `t` is read: a bounded file, an endless stream, or a changelog keyed by `v`.
#[derive(Clone, Copy)]
enum Input {
    Bounded,
    Unbounded,
    Changelog,
}

async fn plan(input: Input, sql: &str) -> StreamPlan {
    try_plan(input, sql).await.unwrap()
}

/// `sql`'s plan over `t` read as `input`, or the planner's refusal.
async fn try_plan(input: Input, sql: &str) -> Result<StreamPlan, eddy_sql::SqlError> {
    let location = Location { line: 1, column: 1 };
    let mut planner = Planner::new();
    let eddy_sql::Statement::CreateTable(mut def) = eddy_sql::parse_script(T).unwrap().remove(0).statement else { panic!("CREATE TABLE") };
    let mut twin = def.clone();
    twin.name = "u".to_string();
    planner.register_table(twin, false, location).unwrap();
    match input {
        Input::Bounded => planner.register_table(def, true, location).unwrap(),
        Input::Unbounded => planner.register_table(def, false, location).unwrap(),
        Input::Changelog => {
            def.primary_key = vec!["v".to_string()];
            planner.register_changelog(def, location).unwrap();
        }
    }
    let eddy_sql::Statement::Select { query } = eddy_sql::parse_script(sql).unwrap().remove(0).statement else { panic!("a SELECT") };
    planner.plan_query(&query, location).await
}

/// The first node from the root down that `pick` accepts.
fn find<T>(node: &StreamNode, pick: &impl Fn(&StreamNode) -> Option<T>) -> Option<T> {
    pick(node).or_else(|| node.inputs().into_iter().find_map(|input| find(input, pick)))
}

/// The operator the engine runs for the first filter of `sql`'s plan, and its input.
async fn filter(sql: &str) -> OperatorHarness {
    let plan = plan(Input::Bounded, sql).await;
    let (predicate, input) = find(&plan.root, &|n| match n {
        StreamNode::Filter { input, predicate, .. } => Some((Arc::clone(predicate), input.schema())),
        _ => None,
    })
    .expect("a filter");
    OperatorHarness::new(Box::new(FilterOperator::new(predicate, FilteredOut::Dropped)), input)
}

/// The operator for the topmost projection of `sql`'s plan.
async fn project(sql: &str) -> OperatorHarness {
    let plan = plan(Input::Bounded, sql).await;
    let (exprs, schema, input) = find(&plan.root, &|n| match n {
        StreamNode::Project { input, exprs, schema } => Some((exprs.clone(), Arc::clone(schema), input.schema())),
        _ => None,
    })
    .expect("a projection");
    OperatorHarness::new(Box::new(ProjectOperator::new(exprs, schema)), input)
}

/// The operator for the window assignment of `sql`'s plan.
async fn window_assign(sql: &str) -> OperatorHarness {
    let plan = plan(Input::Bounded, sql).await;
    let (window, time_column, slicing, schema, input) = find(&plan.root, &|n| match n {
        StreamNode::WindowAssign { input, window, time_column, slicing, schema, .. } => {
            Some((*window, *time_column, *slicing, Arc::clone(schema), input.schema()))
        }
        _ => None,
    })
    .expect("a window assignment");
    OperatorHarness::new(Box::new(WindowAssignOperator::new(window, time_column, slicing, schema)), input)
}

/// The aggregate node of `sql`'s plan.
async fn aggregate_node(input: Input, sql: &str) -> WindowAggregateNode {
    let plan = plan(input, sql).await;
    find(&plan.root, &|n| match n {
        StreamNode::WindowAggregate(a) => Some(a.clone()),
        _ => None,
    })
    .expect("an aggregate")
}

/// The operator the engine runs for `node` (as the dataflow graph picks it).
fn aggregate_operator(node: &WindowAggregateNode) -> Box<dyn Operator> {
    let metrics = Arc::new(PipelineMetrics::default());
    match node.kind {
        AggregateKind::Retracting => Box::new(RetractAggregateOperator::new(node.clone()).unwrap()),
        AggregateKind::Session { .. } => Box::new(SessionAggregateOperator::new(node.clone(), metrics).unwrap()),
        AggregateKind::Windowed(_) | AggregateKind::WholeInput | AggregateKind::Updating { .. } => {
            Box::new(WindowAggregateOperator::new(node.clone(), metrics).unwrap())
        }
    }
}

async fn aggregate(input: Input, sql: &str) -> (OperatorHarness, WindowAggregateNode) {
    let node = aggregate_node(input, sql).await;
    (OperatorHarness::new(aggregate_operator(&node), node.input.schema()), node)
}

#[tokio::test]
async fn a_source_sets_rows_behind_its_watermark_aside_as_late() {
    let plan = plan(
        Input::Bounded,
        "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
    )
    .await;
    let node = plan.sources()[0].clone();
    let input = Arc::clone(&node.physical_schema);
    let mut source =
        OperatorHarness::new(Box::new(SourcePrepOperator::new(node, eddy_engine::WatermarkOrigin::Rows, Arc::new(PipelineMetrics::default()))), input);
    // The watermark is the largest ts - 1 s so far. The row at 9.5 s comes after it
    // reached 11 s, so its window [0, 10 s) is closed: late. A row without a time
    // can be in no window and is set aside too.
    source
        .push(
            " I I    TS
            +I 1 1  1000
            +I 2 1 12000
            +I 3 1  9500
            +I 4 1     .
            +I 5 1 10500",
        )
        .expect(
            "+I 1 1  1000
             +I 2 1 12000
             +I 5 1 10500
             watermark 11000
             late: +I 3 1 9500
             late: +I 4 1 .",
        );
}

#[tokio::test]
async fn a_filter_keeps_the_rows_that_pass_and_forwards_the_watermark() {
    // The planner reads k and v below the filter (ts only feeds the watermark).
    let mut filter = filter("SELECT k, v FROM t WHERE v > 10 AND k <> 3").await;
    filter
        .push(
            " I  I
            +I 1 10
            +I 1 11
            +I 3 50
            +I 2  .
            +I 2 99",
        )
        .expect(
            "+I 1 11
             +I 2 99",
        )
        .watermark(4000)
        .expect("watermark 4000");
}

#[tokio::test]
async fn a_filter_over_a_changelog_filters_retractions_alike() {
    let mut filter = filter("SELECT k, v FROM t WHERE v > 10").await;
    filter
        .push(
            " I  I
            +I 1 20
            -U 1  5
            +U 1 12
            -D 1 20",
        )
        .expect(
            "+I 1 20
             +U 1 12
             -D 1 20",
        );
}

#[tokio::test]
async fn a_projection_computes_each_output_column_per_row() {
    let mut project = project("SELECT v * 2 AS doubled, k, v - k AS diff FROM t").await;
    project
        .push(
            " I  I  TS
            +I 1 10 1000
            +I 2  . 2000
            -D 1 10 1000",
        )
        .expect(
            "+I 20 1 9
             +I .  2 .
             -D 20 1 9",
        )
        .barrier(1)
        .expect("");
}

#[tokio::test]
async fn a_tumble_without_an_aggregate_gives_each_row_its_window() {
    let mut assign = window_assign("SELECT k, window_start, window_end, window_time FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))").await;
    // Columns: k, v, ts, then window_start, window_end, window_time.
    assign
        .push(
            " I  I     TS
            +I 1 10      0
            +I 2 20   9999
            +I 3 30  10000
            +I 4 40  -1",
        )
        .expect(
            "+I 1 10     0      0 10000  9999
             +I 2 20  9999      0 10000  9999
             +I 3 30 10000  10000 20000 19999
             +I 4 40    -1 -10000     0    -1",
        );
}

#[tokio::test]
async fn a_hop_without_an_aggregate_repeats_a_row_in_each_of_its_windows() {
    let mut assign =
        window_assign("SELECT k, window_start, window_end FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND))").await;
    // 10 s windows every 5 s: a row at 7 s is in [0, 10) and [5, 15).
    assign
        .push(
            " I  I    TS
            +I 1 10 7000",
        )
        .expect(
            "+I 1 10 7000    0 10000  9999
             +I 1 10 7000 5000 15000 14999",
        );
}

#[tokio::test]
async fn a_hop_under_an_aggregate_gives_each_row_its_one_slice() {
    let mut assign = window_assign(
        "SELECT window_start, window_end, COUNT(*) FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
    )
    .await;
    // Slices of 5 s (the gcd of size and slide); the aggregate combines them into windows.
    assign
        .push(
            " I  I    TS
            +I 1 10 7000",
        )
        .expect("+I 1 10 7000 5000 10000 9999");
}

#[tokio::test]
async fn a_tumble_aggregate_emits_each_window_once_when_the_watermark_passes_its_end() {
    let sql = "SELECT window_start, window_end, k, COUNT(*) AS n, SUM(v) AS total, MAX(v) AS top
               FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, k";
    let (mut agg, node) = aggregate(Input::Bounded, sql).await;
    // The aggregate's input: the rows' keys and values with their window (slice) bounds.
    agg.push(
        " I  I  TS     TS
        +I 1 10   0  10000
        +I 2 20   0  10000
        +I 1 30   0  10000
        +I 1  5 10000 20000",
    )
    .expect("")
    .watermark(9999)
    .expect("watermark 9999")
    // Window [0, 10 s) ends at 10 s: emitted, then the watermark goes on.
    .watermark(10000)
    .expect(
        "+I 0 10000 1 2 40 30
         +I 0 10000 2 1 20 20
         watermark 10000",
    )
    // The open window survives a restart from a snapshot.
    .restart_as(aggregate_operator(&node))
    .push(
        " I  I  TS     TS
        +I 1  7 10000 20000",
    )
    .watermark(i64::MAX)
    .expect(
        "+I 10000 20000 1 2 12 7
         watermark +inf",
    );
}

#[tokio::test]
async fn a_hop_aggregate_combines_slices_into_overlapping_windows() {
    let sql = "SELECT window_start, window_end, COUNT(*) AS n, SUM(v) AS total
               FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) GROUP BY window_start, window_end";
    let (mut agg, _) = aggregate(Input::Bounded, sql).await;
    // Slices [0, 5 s) and [5 s, 10 s); windows [-5 s, 5 s), [0, 10 s), [5 s, 15 s).
    agg.push(
        " I   TS    TS
        +I 1     0  5000
        +I 2  5000 10000
        +I 4  5000 10000",
    )
    .watermark(5000)
    .expect(
        "+I -5000 5000 1 1
         watermark 5000",
    )
    .watermark(15000)
    .expect(
        "+I 0 10000 3 7
         +I 5000 15000 2 6
         watermark 15000",
    );
}

#[tokio::test]
async fn a_session_aggregate_merges_rows_closer_than_the_gap_and_emits_when_the_session_ends() {
    let sql = "SELECT window_start, window_end, k, COUNT(*) AS n, SUM(v) AS total
               FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, k";
    let (mut agg, node) = aggregate(Input::Bounded, sql).await;
    // Each row comes as its own interval [ts, ts + gap).
    agg.push(
        " I  I   TS    TS
        +I 1 10    0  5000
        +I 1 20 3000  8000
        +I 2  1 1000  6000",
    )
    // Key 2's session [1 s, 6 s) has ended; key 1's [0, 8 s) has not.
    .watermark(7000)
    .expect(
        "+I 1000 6000 2 1 1
         watermark 7000",
    )
    .restart_as(aggregate_operator(&node))
    // A row at 7.5 s extends key 1's session to 12.5 s.
    .push(
        " I  I   TS     TS
        +I 1 30 7500  12500",
    )
    .watermark(9000)
    .expect("watermark 9000")
    .watermark(20000)
    .expect(
        "+I 0 12500 1 3 60
         watermark 20000",
    );
}

#[tokio::test]
async fn an_updating_aggregate_emits_the_groups_that_changed_at_each_barrier() {
    let (mut agg, node) = aggregate(Input::Unbounded, "SELECT k, COUNT(*) AS n, MAX(v) AS top FROM t GROUP BY k").await;
    assert_eq!(node.kind, AggregateKind::Updating { output: UpdateOutput::Upserts }, "no window over an unbounded input updates");
    agg.push(
        " I  I
        +I 1 10
        +I 2 20
        +I 1 30",
    )
    .watermark(60000)
    .expect("watermark 60000")
    .barrier(1)
    .expect(
        "+I 1 2 30
         +I 2 1 20",
    )
    // Only key 2 changes before the next barrier: only its new row is emitted.
    .push(
        " I  I
        +I 2 5",
    )
    .barrier(2)
    .expect("+I 2 2 20")
    .restart_as(aggregate_operator(&node))
    .push(
        " I  I
        +I 1 40",
    )
    .barrier(3)
    .expect("+I 1 3 40");
}

#[tokio::test]
async fn an_updating_aggregate_also_emits_at_a_refresh_and_then_only_what_changed_since() {
    let (mut agg, _) = aggregate(Input::Unbounded, "SELECT k, SUM(v) AS total FROM t GROUP BY k").await;
    agg.push(
        " I  I
        +I 1 10
        +I 2 20",
    )
    .refresh()
    .expect(
        "+I 1 10
         +I 2 20",
    )
    .push(
        " I  I
        +I 1  5",
    )
    .barrier(1)
    .expect("+I 1 15")
    .barrier(2)
    .expect("");
}

#[tokio::test]
async fn a_retracting_aggregate_takes_back_its_old_row_before_the_new_one() {
    let (mut agg, node) = aggregate(Input::Changelog, "SELECT k, COUNT(*) AS n, MAX(v) AS top FROM t GROUP BY k").await;
    assert_eq!(node.kind, AggregateKind::Retracting, "an aggregate over a changelog retracts");
    agg.push(
        " I  I
        +I 1 10
        +I 1 30
        +I 2 20",
    )
    .barrier(1)
    .expect(
        "+I 1 2 30
         +I 2 1 20",
    )
    // The row with the maximum is taken back: MAX falls back to the next one.
    .push(
        " I  I
        -D 1 30",
    )
    .barrier(2)
    .expect(
        "-U 1 2 30
         +U 1 1 10",
    )
    .restart_as(aggregate_operator(&node))
    // The last row of key 2 is taken back: the group's row is deleted.
    .push(
        " I  I
        -D 2 20",
    )
    .barrier(3)
    .expect("-D 2 1 20");
}

/// The join of `sql`'s plan.
async fn join_node(sql: &str) -> eddy_engine::plan::JoinNode {
    let plan = plan(Input::Unbounded, sql).await;
    find(&plan.root, &|n| match n {
        StreamNode::Join(j) => Some(j.clone()),
        _ => None,
    })
    .expect("a join")
}

/// The interval join of `sql`'s plan, as the engine runs it, fed its two sides apart.
async fn join(sql: &str) -> (OperatorHarness, eddy_engine::plan::JoinNode) {
    let node = join_node(sql).await;
    let inputs = vec![node.left.schema(), node.right.schema()];
    (OperatorHarness::with_inputs(Box::new(IntervalJoinOperator::new(node.clone()).unwrap()), inputs), node)
}

/// The regular join of `sql`'s plan, fed its two sides apart, with its state TTL
/// (if any) counted on a clock the test sets.
async fn regular_join(sql: &str, state_ttl_ms: Option<i64>) -> (OperatorHarness, Arc<AtomicI64>, eddy_engine::plan::JoinNode) {
    let mut node = join_node(sql).await;
    assert!(matches!(node.bounded_by, JoinBound::Unbounded { .. }), "{sql}: planned as {:?}", node.bounded_by);
    node.bounded_by = JoinBound::Unbounded { state_ttl_ms };
    let clock = Arc::new(AtomicI64::new(0));
    let inputs = vec![node.left.schema(), node.right.schema()];
    let operator = regular_join_operator(&node, &clock);
    (OperatorHarness::with_inputs(operator, inputs), clock, node)
}

fn regular_join_operator(node: &eddy_engine::plan::JoinNode, clock: &Arc<AtomicI64>) -> Box<dyn eddy_engine::Operator> {
    let clock = Arc::clone(clock);
    Box::new(RegularJoinOperator::with_clock(node.clone(), Box::new(move || clock.load(Ordering::Relaxed))).unwrap())
}

#[tokio::test]
async fn a_left_regular_join_takes_back_a_padded_row_when_its_first_partner_comes_as_flink_does() {
    let (mut join, clock, node) = regular_join("SELECT a.k, a.v, b.v AS w FROM t a LEFT JOIN u b ON a.k = b.k", None).await;
    // No partner yet: padded at once.
    join.push_to(
        0,
        "   I  I
         +I 1 10
         +I 2 20
         +I . 30",
    )
    .expect(
        "+I 1 10 .
         +I 2 20 .
         +I . 30 .",
    )
    // The first partner of key 1: the padded row is taken back before the pair; a
    // right row without a partner waits quietly.
    .push_to(
        1,
        "   I   I
         +I 1 100
         +I 3 300",
    )
    .expect(
        "-D 1 10 .
         +I 1 10 100",
    )
    .restart_as(regular_join_operator(&node, &clock))
    // After a restart the rows are still there, with their partner counts: a second
    // partner of key 1 is a pair only; a left row meets the waiting right row.
    .push_to(
        1,
        "   I   I
         +I 1 101",
    )
    .expect("+I 1 10 101")
    .push_to(
        0,
        "   I  I
         +I 3 31",
    )
    .expect("+I 3 31 300")
    // Watermarks pass through.
    .watermark(5000)
    .expect("watermark 5000");
}

#[tokio::test]
async fn an_inner_regular_join_keeps_rows_until_the_state_ttl_and_forgets_a_side_once_the_other_ends() {
    let (mut join, clock, _) = regular_join("SELECT a.k, a.v, b.v AS w FROM t a JOIN u b ON a.k = b.k", Some(1000)).await;
    join.push_to(
        1,
        "   I   I
         +I 1 100
         +I 2 200",
    )
    .expect("");
    // Key 1's right row is written at 0, so it lives until 1000 ms.
    clock.store(999, Ordering::Relaxed);
    join.push_to(
        0,
        "   I  I
         +I 1 10",
    )
    .expect("+I 1 10 100");
    clock.store(1000, Ordering::Relaxed);
    join.push_to(
        0,
        "   I  I
         +I 2 20",
    )
    .expect("");
    // Left row 2 (written at 1000) meets a right row; then the right side ends: no
    // new right row can come, so left rows are no longer kept.
    join.push_to(
        1,
        "   I   I
         +I 2 201",
    )
    .expect("+I 2 20 201");
    // Left rows 10 and 20 and right row 201 are kept (right row 100 has expired).
    let kept = join.state_bytes();
    assert!(kept > 0);
    join.end_input(1);
    let right_only = join.state_bytes();
    assert!(right_only < kept, "the left rows are dropped when the right side ends: {right_only} bytes of {kept}");
    join.push_to(
        0,
        "   I  I
         +I 2 21",
    )
    .expect("+I 2 21 201");
    assert_eq!(join.state_bytes(), right_only, "a left row is no longer kept once the right side has ended");
}

#[tokio::test]
async fn regular_semi_and_anti_joins_emit_a_row_once_and_take_an_anti_row_back_when_a_partner_comes() {
    let (mut semi, _, _) = regular_join("SELECT k, v FROM t WHERE k IN (SELECT k FROM u)", None).await;
    semi.push_to(
        0,
        "   I  I
         +I 1 10
         +I 2 20",
    )
    .expect("")
    .push_to(
        1,
        "   I
         +I 1
         +I 1",
    )
    .expect("+I 1 10")
    .push_to(
        0,
        "   I  I
         +I 1 11",
    )
    .expect("+I 1 11");
    let (mut anti, _, _) = regular_join("SELECT k, v FROM t a WHERE NOT EXISTS (SELECT * FROM u b WHERE b.k = a.k)", None).await;
    anti.push_to(
        0,
        "   I  I
         +I 1 10
         +I 2 20",
    )
    .expect(
        "+I 1 10
         +I 2 20",
    )
    .push_to(
        1,
        "   I
         +I 1
         +I 1",
    )
    .expect("-D 1 10")
    .push_to(
        0,
        "   I  I
         +I 1 11",
    )
    .expect("");
}

#[tokio::test]
async fn an_interval_join_pairs_rows_within_the_bounds_and_pads_the_lonely_ones_once_the_watermark_passes() {
    let (mut join, node) =
        join("SELECT a.k, a.v, b.v AS w, a.ts, b.ts AS bts FROM t a LEFT JOIN u b ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '2' SECOND").await;
    let bounds = node.time_bounds().expect("an interval join");
    assert_eq!((bounds.lower_ms, bounds.upper_ms), (0, 2000));
    join.push_to(
        0,
        "   I  I  TS
         +I 1 10 1000
         +I 2 20 1000",
    )
    .expect("")
    // 1.5 s after the left row: a match. 2.5 s after: too late for it.
    .push_to(
        1,
        "   I   I  TS
         +I 1 100 2500
         +I 1 101 3500",
    )
    .expect("+I 1 10 100 1000 2500")
    // State survives a restart, with which rows have met a partner.
    .restart_as(Box::new(IntervalJoinOperator::new(node.clone()).unwrap()))
    // The left rows may still meet a right row at 3000: they wait; the output
    // watermark trails by the upper bound.
    .watermark(2999)
    .expect("watermark 999")
    // Now they cannot: key 2 never met one and leaves padded, key 1 did and leaves quietly.
    .watermark(3000)
    .expect(
        "+I 2 20 . 1000 .
         watermark 1000",
    )
    // A right row arriving at a left row still in state matches it; one whose
    // partners are gone does not, and a late left row with no partner left is padded at once.
    .push_to(
        0,
        "   I  I  TS
         +I 1 30 2000
         +I 3 40  500",
    )
    .expect(
        "+I 1 30 101 2000 3500
         +I 3 40 . 500 .",
    );
}

/// The rank of `sql`'s plan (deduplication or Top-N), as the engine runs it.
async fn rank(sql: &str) -> (OperatorHarness, eddy_engine::plan::RankNode) {
    let plan = plan(Input::Unbounded, sql).await;
    let node = find(&plan.root, &|n| match n {
        StreamNode::Rank(r) => Some(r.clone()),
        _ => None,
    })
    .expect("a rank");
    (OperatorHarness::new(rank_operator(&node), node.input.schema()), node)
}

fn rank_operator(node: &eddy_engine::plan::RankNode) -> Box<dyn Operator> {
    Box::new(RankOperator::new(node.clone(), Arc::new(PipelineMetrics::default())).unwrap())
}

const RANKED: &str = "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY {order}) AS rn FROM t) WHERE {bound}";

fn ranked(order: &str, bound: &str) -> String {
    RANKED.replace("{order}", order).replace("{bound}", bound)
}

#[tokio::test]
async fn deduplication_keeps_the_earliest_row_and_emits_it_once_the_watermark_passes_it() {
    let (mut dedup, node) = rank(&ranked("ts", "rn = 1")).await;
    assert!(matches!(node.kind, eddy_engine::plan::RankKind::FirstRow { .. }), "{:?}", node.kind);
    dedup
        .push(
            " I  I   TS
            +I 1 10 2000
            +I 2 20 3000
            +I 1 11 1500",
        )
        .expect("")
        // Rows at or after the watermark may still be beaten by an earlier one.
        .watermark(1500)
        .expect("watermark 1500")
        .watermark(2500)
        .expect(
            "+I 1 11 1500 1
             watermark 2500",
        )
        // Key 1 was emitted: a later row is a duplicate; a row behind the watermark is late.
        .push(
            " I  I   TS
            +I 1 12 2600
            +I 3 30 2400",
        )
        .expect("")
        .restart_as(rank_operator(&node))
        // After a restart key 1 is still done and key 2's row still waits.
        .push(
            " I  I   TS
            +I 1 13 2700
            +I 2 21 2900",
        )
        .watermark(5000)
        .expect(
            "+I 2 21 2900 1
             watermark 5000",
        );
}

/// With `'table.exec.state.ttl'`, a partition not written for the TTL (on the
/// test's clock) is forgotten, as in Flink: a deduplication that emitted a key's
/// first row emits the key's next row again once the key's state expired; a key
/// written within the TTL stays a duplicate, also after a restart (from which the
/// TTL of restored partitions counts).
#[tokio::test]
async fn a_deduplications_state_ttl_forgets_partitions_not_written_for_that_long() {
    let (_, mut node) = rank(&ranked("ts", "rn = 1")).await;
    node.state_ttl_ms = Some(1_000);
    let clock = Arc::new(AtomicI64::new(0));
    let operator = |node: &eddy_engine::plan::RankNode, clock: &Arc<AtomicI64>| -> Box<dyn Operator> {
        let clock = Arc::clone(clock);
        Box::new(RankOperator::with_clock(node.clone(), Arc::new(PipelineMetrics::default()), Box::new(move || clock.load(Ordering::Relaxed))).unwrap())
    };
    let mut dedup = OperatorHarness::new(operator(&node, &clock), node.input.schema());
    dedup
        .push(
            " I  I   TS
            +I 1 10 1000
            +I 2 20 1000",
        )
        .watermark(2000)
        .expect(
            "+I 1 10 1000 1
             +I 2 20 1000 1
             watermark 2000",
        );
    // 600 ms later key 2 is written (a duplicate, dropped); key 1 is not.
    clock.store(600, Ordering::Relaxed);
    dedup.push(
        " I  I   TS
        +I 2 21 2100",
    );
    // At 1,100 ms key 1 has not been written for 1 s: forgotten, so its next row is a first row again.
    clock.store(1_100, Ordering::Relaxed);
    dedup
        .push(
            " I  I   TS
            +I 1 11 2200
            +I 2 22 2200",
        )
        .watermark(3000)
        .expect(
            "+I 1 11 2200 1
             watermark 3000",
        );
    // After a restart (the TTL counting from it) both keys are still done within the TTL.
    clock.store(1_500, Ordering::Relaxed);
    dedup
        .restart_as(operator(&node, &clock))
        .push(
            " I  I   TS
            +I 1 12 3100
            +I 2 23 3100",
        )
        .watermark(4000)
        .expect("watermark 4000");
}

#[tokio::test]
async fn deduplication_keeping_the_last_row_replaces_it_at_once() {
    let (mut dedup, node) = rank(&ranked("ts DESC", "rn = 1")).await;
    assert!(matches!(node.kind, eddy_engine::plan::RankKind::LastRow { .. }), "{:?}", node.kind);
    dedup
        .push(
            " I  I   TS
            +I 1 10 2000
            +I 1 11 1500
            +I 1 12 2000",
        )
        // An older row changes nothing; one as recent replaces, as in Flink.
        .expect(
            "+I 1 10 2000 1
             -U 1 10 2000 1
             +U 1 12 2000 1",
        )
        .restart_as(rank_operator(&node))
        .push(
            " I  I   TS
            +I 1 13 3000",
        )
        .expect(
            "-U 1 12 2000 1
             +U 1 13 3000 1",
        );
}

#[tokio::test]
async fn a_top_n_moves_the_ranks_below_a_new_row_as_flink_does() {
    let (mut top, node) = rank(&ranked("v DESC", "rn <= 2")).await;
    assert_eq!(node.kind, eddy_engine::plan::RankKind::Continuous);
    top.push(
        " I  I   TS
        +I 1  5 1000
        +I 1  9 1000",
    )
    // 9 takes rank 1 from 5, which moves to rank 2.
    .expect(
        "+I 1 5 1000 1
         -U 1 5 1000 1
         +U 1 9 1000 1
         +I 1 5 1000 2",
    )
    // A tie ranks after the row already there; below the first 2, nothing changes.
    .push(
        " I  I   TS
        +I 1  9 2000
        +I 1  1 2000",
    )
    .expect(
        "-U 1 5 1000 2
         +U 1 9 2000 2",
    )
    // After a restart the ranks and their order among ties are still there: a
    // better row moves both kept rows down, and the last one out.
    .restart_as(rank_operator(&node))
    .push(
        " I  I   TS
        +I 1  7 3000
        +I 1 10 3000",
    )
    .expect(
        "-U 1 9 1000 1
         +U 1 10 3000 1
         -U 1 9 2000 2
         +U 1 9 1000 2",
    );
}
#[tokio::test]
async fn a_top_n_over_updating_rows_gives_a_retracted_rank_to_the_next_row() {
    let plan = plan(Input::Changelog, &ranked("v DESC", "rn <= 2")).await;
    let node = find(&plan.root, &|n| match n {
        StreamNode::Rank(r) => Some(r.clone()),
        _ => None,
    })
    .expect("a rank");
    assert_eq!(node.kind, eddy_engine::plan::RankKind::Retracting);
    OperatorHarness::new(rank_operator(&node), node.input.schema())
        .push(
            " I  I   TS
            +I 1  5 1000
            +I 1  9 1000
            +I 1  7 1000",
        )
        .expect(
            "+I 1 5 1000 1
             -U 1 5 1000 1
             +U 1 9 1000 1
             +I 1 5 1000 2
             -U 1 5 1000 2
             +U 1 7 1000 2",
        )
        // 9 is taken back: 7 moves up, and 5, kept below the first 2, ranks again.
        // 3 ranks below both.
        .push(
            " I  I   TS
            -U 1  9 1000
            +U 1  3 1000",
        )
        .expect(
            "-U 1 9 1000 1
             +U 1 7 1000 1
             -U 1 7 1000 2
             +U 1 5 1000 2",
        )
        // With fewer rows than ranks left, the last rank is deleted; a row that
        // was never there takes nothing back.
        .push(
            " I  I   TS
            -D 1  7 1000
            -D 1  5 1000
            -D 1  8 1000",
        )
        .expect(
            "-U 1 7 1000 1
             +U 1 5 1000 1
             -U 1 5 1000 2
             +U 1 3 1000 2
             -U 1 5 1000 1
             +U 1 3 1000 1
             -D 1 3 1000 2",
        )
        .restart_as(rank_operator(&node))
        .push(
            " I  I   TS
            +I 1  4 2000",
        )
        .expect(
            "-U 1 3 1000 1
             +U 1 4 2000 1
             +I 1 3 1000 2",
        );
}

#[tokio::test]
async fn a_deduplication_over_updating_rows_is_refused_saying_what_runs_instead() {
    let Err(refused) = try_plan(Input::Changelog, &ranked("ts", "rn = 1")).await else { panic!("planned a deduplication over a changelog") };
    let message = refused.to_string();
    assert!(message.contains("Deduplicate over updating rows (a GROUP BY without a window, a changelog) is not supported"), "{message}");
    assert!(message.contains("ROW_NUMBER() runs as a Top-N"), "{message}");
}

/// The OVER aggregate node of `sql`'s plan.
async fn over_node(sql: &str) -> eddy_engine::plan::OverAggregateNode {
    let plan = plan(Input::Unbounded, sql).await;
    find(&plan.root, &|n| match n {
        StreamNode::OverAggregate(o) => Some(o.clone()),
        _ => None,
    })
    .expect("an OVER aggregate")
}

fn over_operator(node: &eddy_engine::plan::OverAggregateNode) -> Box<dyn Operator> {
    Box::new(OverAggregateOperator::new(node.clone(), Arc::new(PipelineMetrics::default())).unwrap())
}

#[tokio::test]
async fn an_over_rows_aggregate_emits_each_row_when_the_watermark_reaches_it_over_the_rows_before_it() {
    let node =
        over_node("SELECT k, v, ts, SUM(v) OVER w, COUNT(v) OVER w FROM t WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)")
            .await;
    let mut over = OperatorHarness::new(over_operator(&node), node.input.schema());
    over.push(
        " I  I   TS
        +I 1 10 1000
        +I 2  5 1000
        +I 1 20 2000
        +I 1 30 2000
        +I 1 50 3000",
    )
    .expect("")
    // Rows wait until the watermark reaches their time; the two at 2 s are ordered by arrival.
    .watermark(2000)
    .expect(
        "+I 1 10 1000 10 1
         +I 1 20 2000 30 2
         +I 1 30 2000 50 2
         +I 2  5 1000  5 1
         watermark 2000",
    )
    // State survives a restart: the row at 3 s still waits, and 30 is still in its frame.
    .restart_as(over_operator(&node))
    // A row at or behind the watermark is late: dropped (the source sends it to 'late.sink').
    .push(
        " I  I   TS
        +I 1 99 2000
        +I 2  . 4000",
    )
    .watermark(5000)
    .expect(
        "+I 1 50 3000 80 2
         +I 2  . 4000  5 1
         watermark 5000",
    );
}

#[tokio::test]
async fn an_over_range_aggregate_gives_peers_the_same_values_and_forgets_rows_out_of_range() {
    let node = over_node(
        "SELECT k, v, ts, SUM(v) OVER w, MIN(v) OVER w, COUNT(*) OVER w FROM t
         WINDOW w AS (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW)",
    )
    .await;
    let mut over = OperatorHarness::new(over_operator(&node), node.input.schema());
    over.push(
        " I  I   TS
        +I 1 10 1000
        +I 1 20 2000
        +I 1 30 2000
        +I 1 50 3000
        +I 1 40 4000",
    )
    .watermark(3000)
    .expect(
        "+I 1 10 1000 10 10 1
         +I 1 20 2000 60 10 3
         +I 1 30 2000 60 10 3
         +I 1 50 3000 110 10 4
         watermark 3000",
    );
    let before = over.state_bytes();
    // Once the watermark is at 6 s, rows before 4 s can be in no later frame.
    over.restart_as(over_operator(&node)).watermark(6000).expect(
        "+I 1 40 4000 140 20 4
             watermark 6000",
    );
    assert!(over.state_bytes() < before, "rows out of every later frame are forgotten: {} bytes, {before} before", over.state_bytes());
    over.push(
        " I  I   TS
        +I 1 60 7000",
    )
    .watermark(7000)
    // Its frame, [5 s, 7 s], holds it alone.
    .expect(
        "+I 1 60 7000 60 60 1
         watermark 7000",
    );
}

/// Restoring with another parallelism: each old instance's state is given in turn
/// (cut to the keys the new instance owns), and the rows of both add up.
#[tokio::test]
async fn an_over_aggregate_restores_the_state_of_two_instances_into_one() {
    use eddy_engine::testing::{changes_from_text, changes_text};
    let node = over_node("SELECT k, v, ts, SUM(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM t").await;
    let schema = node.input.schema();
    let mut old = [over_operator(&node), over_operator(&node)];
    let mut out = eddy_engine::Emitter::default();
    old[0].on_rows(changes_from_text(" I I TS\n+I 1 10 1000\n+I 1 20 3000", Some(&schema)), &mut out).unwrap();
    old[1].on_rows(changes_from_text(" I I TS\n+I 2 5 1000\n+I 2 7 3000", Some(&schema)), &mut out).unwrap();
    for o in old.iter_mut() {
        o.on_watermark(eddy_engine::EventTime(2000), &mut out).unwrap();
    }
    let mut fresh = over_operator(&node);
    for o in old.iter_mut() {
        let state = o.snapshot().unwrap().unwrap();
        fresh.restore(eddy_engine::state::OperatorState::from_bytes(&state.to_bytes().unwrap()).unwrap()).unwrap();
    }
    let mut out = eddy_engine::Emitter::default();
    fresh.on_watermark(eddy_engine::EventTime(3000), &mut out).unwrap();
    let mut rows: Vec<String> = out
        .drain()
        .into_iter()
        .filter_map(|m| match m {
            eddy_engine::Message::Rows(changes) => Some(changes_text(&changes)),
            _ => None,
        })
        .flatten()
        .collect();
    rows.sort();
    // The running sums carry on from each key's earlier rows.
    assert_eq!(rows, vec!["+I 1 20 3000 30".to_string(), "+I 2 7 3000 12".to_string()]);
}

// State keys (`Operator::state_keys`, shown as `eddy_operator_state_keys` and in
// `EXPLAIN ANALYZE`): how many keys each stateful operator holds state for now.
// Each test checks that the count rises with distinct keys and falls when the
// state they name is let go.

#[tokio::test]
async fn a_tumble_aggregate_counts_its_open_window_and_key_groups_as_state_keys() {
    let sql = "SELECT window_start, window_end, k, SUM(v) AS total FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, k";
    let (mut agg, node) = aggregate(Input::Bounded, sql).await;
    assert_eq!(agg.state_keys(), 0);
    // Window [0, 10 s): keys 1 and 2 (key 1 twice); window [10 s, 20 s): key 1.
    agg.push(
        " I  I  TS     TS
        +I 1 10   0  10000
        +I 2 20   0  10000
        +I 1 30   0  10000
        +I 1  5 10000 20000",
    );
    assert_eq!(agg.state_keys(), 3, "(window, key) groups: ([0, 10 s), 1), ([0, 10 s), 2), ([10 s, 20 s), 1)");
    // The first window fires: its two groups go.
    agg.watermark(10000);
    assert_eq!(agg.state_keys(), 1);
    // A restart restores the open group.
    agg.restart_as(aggregate_operator(&node));
    assert_eq!(agg.state_keys(), 1);
    agg.watermark(i64::MAX);
    assert_eq!(agg.state_keys(), 0);
}

#[tokio::test]
async fn a_hop_aggregate_counts_the_groups_of_slices_kept_for_windows_yet_to_fire() {
    let sql = "SELECT window_start, window_end, k, SUM(v) AS total
               FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) GROUP BY window_start, window_end, k";
    let (mut agg, node) = aggregate(Input::Bounded, sql).await;
    // Slice [0, 5 s): keys 1 and 2; slice [5 s, 10 s): key 1.
    agg.push(
        " I  I  TS    TS
        +I 1 1     0  5000
        +I 2 2     0  5000
        +I 1 3  5000 10000",
    );
    assert_eq!(agg.state_keys(), 3);
    // Window [-5 s, 5 s) fires; slice [0, 5 s) stops taking rows but is kept
    // (frozen) for window [0, 10 s): its groups still count.
    agg.watermark(5000);
    assert_eq!(agg.state_keys(), 3);
    agg.restart_as(aggregate_operator(&node));
    assert_eq!(agg.state_keys(), 3, "frozen and open slices are restored");
    // Window [0, 10 s) fires: slice [0, 5 s) is in no later window and goes.
    agg.watermark(10000);
    assert_eq!(agg.state_keys(), 1);
    agg.watermark(15000);
    assert_eq!(agg.state_keys(), 0);
}

#[tokio::test]
async fn a_group_by_without_a_window_counts_its_distinct_keys_for_good() {
    let (mut agg, _) = aggregate(Input::Unbounded, "SELECT k, SUM(v) AS total FROM t GROUP BY k").await;
    agg.push(
        " I  I
        +I 1 10
        +I 2 20
        +I 1 30",
    );
    assert_eq!(agg.state_keys(), 2);
    // Emitting at a barrier keeps every group.
    agg.barrier(1).push(
        " I  I
        +I 3 5
        +I 2 5",
    );
    assert_eq!(agg.state_keys(), 3);
    agg.barrier(2);
    assert_eq!(agg.state_keys(), 3);
}

#[tokio::test]
async fn a_retracting_aggregate_counts_its_groups_and_lets_an_emptied_one_go_when_it_emits() {
    let (mut agg, node) = aggregate(Input::Changelog, "SELECT k, COUNT(*) AS n, MAX(v) AS top FROM t GROUP BY k").await;
    agg.push(
        " I  I
        +I 1 10
        +I 1 30
        +I 2 20
        +I 3 40",
    );
    assert_eq!(agg.state_keys(), 3);
    agg.barrier(1).take();
    agg.restart_as(aggregate_operator(&node));
    assert_eq!(agg.state_keys(), 3, "restored");
    // Key 2's only row is taken back: its group is empty, and goes once its row is retracted.
    agg.push(
        " I  I
        -D 2 20
        -D 1 30",
    );
    assert_eq!(agg.state_keys(), 3);
    agg.barrier(2).expect(
        "-U 1 2 30
         -D 2 1 20
         +U 1 1 10",
    );
    assert_eq!(agg.state_keys(), 2);
}

#[tokio::test]
async fn a_session_aggregate_counts_the_keys_with_an_open_session() {
    let sql = "SELECT window_start, window_end, k, SUM(v) AS total
               FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, k";
    let (mut agg, node) = aggregate(Input::Bounded, sql).await;
    // Key 1: sessions [0, 8 s) and [20 s, 25 s); key 2: [1 s, 6 s).
    agg.push(
        " I  I    TS     TS
        +I 1 10     0   5000
        +I 1 20  3000   8000
        +I 2  1  1000   6000
        +I 1 30 20000  25000",
    );
    assert_eq!(agg.state_keys(), 2, "a key with two open sessions counts once");
    // Key 2's session ends; key 1's first one has not.
    agg.watermark(7000);
    assert_eq!(agg.state_keys(), 1);
    // Key 1's first session ends, its second is still open.
    agg.watermark(9000);
    assert_eq!(agg.state_keys(), 1);
    agg.restart_as(aggregate_operator(&node));
    assert_eq!(agg.state_keys(), 1, "restored");
    // A new key opens a session; then every session ends.
    agg.push(
        " I  I    TS     TS
        +I 3  1 10000  15000",
    );
    assert_eq!(agg.state_keys(), 2);
    agg.watermark(30000);
    assert_eq!(agg.state_keys(), 0);
}

#[tokio::test]
async fn a_regular_join_counts_each_sides_stored_keys_until_the_state_ttl_or_the_other_side_ends() {
    let (mut join, clock, node) = regular_join("SELECT a.k, a.v, b.v AS w FROM t a JOIN u b ON a.k = b.k", Some(1000)).await;
    // Left keys 1 and 2 (a NULL key is never stored: it can meet nothing).
    join.push_to(
        0,
        "   I  I
         +I 1 10
         +I 1 11
         +I 2 20
         +I . 30",
    );
    assert_eq!(join.state_keys(), 2);
    join.push_to(
        1,
        "   I   I
         +I 1 100",
    );
    assert_eq!(join.state_keys(), 3, "key 1 is stored on both sides");
    join.restart_as(regular_join_operator(&node, &clock));
    assert_eq!(join.state_keys(), 3, "restored");
    // At 1 s every row written at 0 has expired; right key 3 comes.
    clock.store(1000, Ordering::Relaxed);
    join.push_to(
        1,
        "   I   I
         +I 3 300",
    );
    assert_eq!(join.state_keys(), 1);
    // The left side ends: the right side's rows can meet nothing more.
    join.end_input(0);
    assert_eq!(join.state_keys(), 0);
}

#[tokio::test]
async fn an_interval_join_counts_each_sides_waiting_keys_until_the_watermark_lets_them_go() {
    let (mut join, node) = join("SELECT a.k, a.v, b.v AS w FROM t a JOIN u b ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '2' SECOND").await;
    // Left rows wait until 3 s, right rows until their own time.
    join.push_to(
        0,
        "   I  I  TS
         +I 1 10 1000
         +I 2 20 1000",
    )
    .push_to(
        1,
        "   I   I  TS
         +I 1 100 2500
         +I 3 300 2600",
    );
    assert_eq!(join.state_keys(), 4);
    join.restart_as(Box::new(IntervalJoinOperator::new(node.clone()).unwrap()));
    assert_eq!(join.state_keys(), 4, "restored");
    join.watermark(2600);
    assert_eq!(join.state_keys(), 2, "the right rows can meet no left row any more");
    join.watermark(3000);
    assert_eq!(join.state_keys(), 0);
}

#[tokio::test]
async fn a_deduplication_counts_every_partition_it_has_seen_and_a_top_n_only_those_with_rows() {
    let (mut dedup, node) = rank(&ranked("ts", "rn = 1")).await;
    dedup.push(
        " I  I   TS
        +I 1 10 2000
        +I 2 20 3000
        +I 1 11 1500",
    );
    assert_eq!(dedup.state_keys(), 2);
    // Key 1's row is emitted: the key stays, to drop its later duplicates.
    dedup.watermark(2500).restart_as(rank_operator(&node));
    assert_eq!(dedup.state_keys(), 2, "restored, the emitted partition too");
    dedup.push(
        " I  I   TS
        +I 3 30 4000",
    );
    assert_eq!(dedup.state_keys(), 3);

    let plan = plan(Input::Changelog, &ranked("v DESC", "rn <= 2")).await;
    let node = find(&plan.root, &|n| match n {
        StreamNode::Rank(r) => Some(r.clone()),
        _ => None,
    })
    .expect("a rank");
    let mut top = OperatorHarness::new(rank_operator(&node), node.input.schema());
    top.push(
        " I  I   TS
        +I 1  5 1000
        +I 2  9 1000
        +I 1  7 1000",
    );
    assert_eq!(top.state_keys(), 2);
    // Partition 2's only row is taken back: the partition goes.
    top.push(
        " I  I   TS
        -D 2  9 1000",
    );
    assert_eq!(top.state_keys(), 1);
}

#[tokio::test]
async fn a_window_top_n_counts_window_and_partition_pairs_until_the_window_fires() {
    let sql = "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, k ORDER BY v DESC) AS rn
               FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))) WHERE rn <= 1";
    let (mut top, node) = rank(sql).await;
    assert!(matches!(node.kind, eddy_engine::plan::RankKind::Window { .. }), "{:?}", node.kind);
    // Window [0, 10 s): keys 1 and 2 (key 1 twice); window [10 s, 20 s): key 1.
    top.push(
        " I  I   TS     TS     TS    TS
        +I 1  5 1000      0 10000  9999
        +I 2  9 1000      0 10000  9999
        +I 1  7 2000      0 10000  9999
        +I 1  3 12000 10000 20000 19999",
    );
    assert_eq!(top.state_keys(), 3);
    top.restart_as(rank_operator(&node));
    assert_eq!(top.state_keys(), 3, "restored");
    // The first window fires: its two partitions go.
    top.watermark(10000);
    assert_eq!(top.state_keys(), 1);
    top.watermark(20000);
    assert_eq!(top.state_keys(), 0);
}

#[tokio::test]
async fn an_over_aggregate_counts_the_partitions_with_rows_waiting_or_in_a_later_frame() {
    let node = over_node(
        "SELECT k, v, ts, SUM(v) OVER w FROM t
         WINDOW w AS (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW)",
    )
    .await;
    let mut over = OperatorHarness::new(over_operator(&node), node.input.schema());
    over.push(
        " I  I   TS
        +I 1 10 1000
        +I 2 20 2000
        +I 1 30 5000",
    );
    assert_eq!(over.state_keys(), 2);
    // Key 1's row at 1 s is emitted, and kept: a later row of key 1 may reach it.
    over.watermark(1500);
    assert_eq!(over.state_keys(), 2);
    // Key 2's row at 2 s is emitted when no later row can reach back to it: key 2
    // holds nothing more. Key 1 keeps its row at 5 s.
    over.watermark(6000);
    assert_eq!(over.state_keys(), 1);
}
