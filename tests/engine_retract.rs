#![allow(clippy::unwrap_used)] // tests: a panic is a failure with a backtrace
//! `GROUP BY` over a changelog: rows and retractions in, an updating result out
//! whose aggregates (MAX, MIN and COUNT(DISTINCT) included) stay right when rows
//! are taken back, through snapshots, and equal to a batch query over the rows
//! that remain.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use eddy_engine::operator::{Emitter, Operator};
use eddy_engine::operators::retract_aggregate::RetractAggregateOperator;
use eddy_engine::state::OperatorState;
use eddy_engine::{ChangeBatch, CheckpointId, Message, RowKind};
use eddy_sql::{Location, Planner, StreamNode, TableDef, WindowAggregateNode};

const QUERY: &str = "SELECT k, COUNT(*) AS n, MAX(v) AS top, MIN(v) AS low, COUNT(DISTINCT v) AS d, SUM(v) FILTER (WHERE v > 1) AS s FROM t GROUP BY k";
const GLOBAL: &str = "SELECT COUNT(*) AS n, MAX(v) AS top, MIN(v) AS low FROM t";

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false), Field::new("id", DataType::Int64, false), Field::new("v", DataType::Int64, false)]))
}

fn rows(rows: &[(i64, i64, i64)]) -> RecordBatch {
    let column = |f: fn(&(i64, i64, i64)) -> i64| Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef;
    RecordBatch::try_new(schema(), vec![column(|r| r.0), column(|r| r.1), column(|r| r.2)]).unwrap()
}

/// `t`'s rows as the aggregate reads them: the planner prunes unused columns below it.
fn input(operator: &Harness, t: &[(i64, i64, i64)]) -> RecordBatch {
    let all = rows(t);
    let columns = operator.1.fields().iter().map(|f| all.schema().index_of(f.name()).unwrap()).collect::<Vec<_>>();
    all.project(&columns).unwrap()
}

/// The operator and the schema of its input.
struct Harness(RetractAggregateOperator, SchemaRef);

impl Harness {
    fn new(sql: &str) -> Self {
        let node = node(sql);
        let schema = node.input.schema();
        Harness(RetractAggregateOperator::new(node).unwrap(), schema)
    }

    fn add(&mut self, t: &[(i64, i64, i64)], out: &mut Emitter) {
        let batch = input(self, t);
        self.0.on_rows(ChangeBatch::inserts(batch), out).unwrap();
    }

    fn retract(&mut self, t: &[(i64, i64, i64)], out: &mut Emitter) {
        let batch = input(self, t);
        self.0.on_rows(ChangeBatch::all(RowKind::Delete, batch), out).unwrap();
    }
}

/// The plan of `sql` over `t`, a changelog keyed by `id`.
fn plan(sql: &str) -> Result<eddy_sql::StreamPlan, eddy_sql::SqlError> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut planner = Planner::new();
    let mut def = TableDef::from_fields("t", &schema().fields().iter().map(|f| f.as_ref().clone()).collect::<Vec<_>>(), &[("connector", "materialized-view")]);
    def.primary_key = vec!["id".to_string()];
    planner.register_changelog(def, Location { line: 1, column: 1 }).unwrap();
    let statement = eddy_sql::parse_script(sql).unwrap().remove(0);
    let eddy_sql::Statement::Select { query } = statement.statement else { panic!("a SELECT") };
    runtime.block_on(planner.plan_query(&query, Location { line: 1, column: 1 }))
}

/// The aggregate node of `sql` over `t`, a changelog keyed by `id`.
fn node(sql: &str) -> WindowAggregateNode {
    let plan = plan(sql).unwrap();
    assert!(plan.emits_retractions(), "an aggregate over a changelog retracts its old rows");
    fn find(node: &StreamNode) -> Option<WindowAggregateNode> {
        match node {
            StreamNode::WindowAggregate(a) => Some(a.clone()),
            other => other.inputs().into_iter().find_map(find),
        }
    }
    let node = find(&plan.root).expect("an aggregate");
    assert_eq!(node.kind, eddy_sql::AggregateKind::Retracting);
    node
}

fn text(batch: &RecordBatch) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<_> = batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap()).collect();
    (0..batch.num_rows()).map(|i| formatters.iter().map(|f| f.value(i).to_string()).collect::<Vec<_>>().join(",")).collect()
}

/// What the operator emitted, as `-row` and `+row` lines in order.
fn changes(messages: Vec<Message>) -> Vec<String> {
    let mut out = Vec::new();
    for message in messages {
        match message {
            Message::Rows(changes) => {
                for (kind, rows) in changes.runs() {
                    let sign = if kind.is_retraction() { "-" } else { "+" };
                    out.extend(text(&rows).into_iter().map(|r| format!("{sign}{r}")));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

fn step(operator: &mut Harness, add: &[(i64, i64, i64)], retract: &[(i64, i64, i64)]) -> Vec<String> {
    let mut out = Emitter::default();
    if !add.is_empty() {
        operator.add(add, &mut out);
    }
    if !retract.is_empty() {
        operator.retract(retract, &mut out);
    }
    operator.0.on_barrier(CheckpointId(1), &mut out).unwrap();
    changes(out.drain())
}

fn through_bytes(operator: &mut Harness, sql: &str) -> Harness {
    let bytes = operator.0.snapshot().unwrap().unwrap().to_bytes().unwrap();
    let mut restored = Harness::new(sql);
    restored.0.restore(OperatorState::from_bytes(&bytes).unwrap()).unwrap();
    restored
}

#[test]
fn retracted_rows_leave_max_min_and_distinct_counts() {
    let mut op = Harness::new(QUERY);
    // Expected rows worked out by hand: k, n, top, low, d, s (SUM of v > 1).
    assert_eq!(step(&mut op, &[(1, 1, 5), (1, 2, 1), (2, 3, 7), (1, 4, 5)], &[]), vec!["+1,3,5,1,2,10", "+2,1,7,7,1,7"]);
    // One of the two 5s goes: MAX stays 5, the distinct count stays 2.
    assert_eq!(step(&mut op, &[], &[(1, 1, 5)]), vec!["-1,3,5,1,2,10", "+1,2,5,1,2,5"]);
    // The snapshot carries the multiset and what was emitted.
    let mut op = through_bytes(&mut op, QUERY);
    // The other 5 goes: MAX falls back to 1; 2's only row goes: its row is deleted.
    // Retractions leave first, then the new rows.
    assert_eq!(step(&mut op, &[], &[(1, 4, 5), (2, 3, 7)]), vec!["-1,2,5,1,2,5", "-2,1,7,7,1,7", "+1,1,1,1,1,NULL"]);
    // An update (retract the old row, add the new) that leaves the result as it was emits nothing.
    assert_eq!(step(&mut op, &[(1, 2, 1)], &[(1, 2, 1)]), Vec::<String>::new());
    // A retraction of a row never added is ignored (and logged), not fatal.
    assert_eq!(step(&mut op, &[], &[(9, 9, 9)]), Vec::<String>::new());
}

#[test]
fn an_aggregate_without_group_by_retracts_its_single_row() {
    let mut op = Harness::new(GLOBAL);
    assert_eq!(step(&mut op, &[(1, 1, 4), (2, 2, 9)], &[]), vec!["+2,9,4"]);
    assert_eq!(step(&mut op, &[], &[(2, 2, 9)]), vec!["-2,9,4", "+1,4,4"]);
    let mut op = through_bytes(&mut op, GLOBAL);
    assert_eq!(step(&mut op, &[], &[(1, 1, 4)]), vec!["-1,4,4"]);
}

/// A tiny deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Random inserts, updates (retract + insert) and deletes of keyed rows, with
/// barriers at random points and snapshots in between: applying what the
/// operator emits gives exactly the batch query's answer over the rows left.
#[test]
fn applied_changes_equal_the_batch_query_over_the_remaining_rows() {
    applied_changes_equal_the_batch_query(QUERY, QUERY);
}

/// Flink's aggregates that Eddy implements itself (as the batch query answers
/// them, which tests/slt/functions/aggregate.slt checks against Flink) stay right
/// when rows are taken back. (The harness feeds the aggregate directly, so its
/// arguments are columns.)
#[test]
fn flink_aggregates_follow_retractions() {
    let query = "SELECT k, PERCENTILE(v, 0.5) AS p, PERCENTILE(v, ARRAY[0.1, 0.9], k) AS q, COLLECT(v) AS c, AVG(v) AS a FROM t GROUP BY k";
    applied_changes_equal_the_batch_query(query, query);
}

/// An aggregate whose result depends on arrival order is refused over a changelog.
#[test]
fn arrival_ordered_aggregates_are_refused_over_a_changelog() {
    for aggregate in ["JSON_ARRAYAGG(v)", "LISTAGG(CAST(v AS STRING))", "FIRST_VALUE(v)"] {
        let error = plan(&format!("SELECT k, {aggregate} FROM t GROUP BY k")).expect_err(aggregate).to_string();
        assert!(error.contains("depends on the order rows arrived in"), "{error}");
    }
}

fn applied_changes_equal_the_batch_query(query: &str, batch_query: &str) {
    for seed in 0..8 {
        let mut random = Lcg(seed);
        let mut op = Harness::new(query);
        let mut live: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
        let mut result: BTreeSet<String> = BTreeSet::new();
        let mut next_id = 0;
        for round in 0..40 {
            let mut out = Emitter::default();
            for _ in 0..random.next(20) {
                let choice = random.next(3);
                let existing = (!live.is_empty()).then(|| *live.keys().nth(random.next(live.len() as u64) as usize).unwrap());
                match (choice, existing) {
                    (0, Some(id)) => {
                        let old = live.remove(&id).unwrap();
                        op.retract(&[old], &mut out);
                    }
                    (1, Some(id)) => {
                        let old = live[&id];
                        let new = (random.next(4) as i64, id, random.next(6) as i64);
                        op.retract(&[old], &mut out);
                        op.add(&[new], &mut out);
                        live.insert(id, new);
                    }
                    _ => {
                        next_id += 1;
                        let new = (random.next(4) as i64, next_id, random.next(6) as i64);
                        op.add(&[new], &mut out);
                        live.insert(next_id, new);
                    }
                }
            }
            op.0.on_barrier(CheckpointId(round), &mut out).unwrap();
            for change in changes(out.drain()) {
                let (sign, row) = change.split_at(1);
                if sign == "-" {
                    assert!(result.remove(row), "seed {seed}: retracted {row}, which was not in the result {result:?}");
                } else {
                    assert!(result.insert(row.to_string()), "seed {seed}: {row} added twice");
                }
            }
            if round % 7 == 3 {
                op = through_bytes(&mut op, query);
            }
        }
        let expected = batch_answer(batch_query, &live.values().copied().collect::<Vec<_>>());
        assert_eq!(result, expected, "seed {seed}");
    }
}

fn batch_answer(query: &str, remaining: &[(i64, i64, i64)]) -> BTreeSet<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        eddy_sql::functions::register(&ctx);
        ctx.register_table("t", Arc::new(MemTable::try_new(schema(), vec![vec![rows(remaining)]]).unwrap())).unwrap();
        let batches = ctx.sql(query).await.unwrap().collect().await.unwrap();
        batches.iter().flat_map(text).collect()
    })
}
