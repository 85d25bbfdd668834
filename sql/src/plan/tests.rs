use super::*;
use crate::parse::{parse_script, Statement};

/// The physical columns each source of `query`'s plan reads, by name
/// (`None`: all), after `tables` are created.
async fn reads(tables: &str, query: &str) -> Vec<Option<Vec<String>>> {
    plan_of(tables, query)
        .await
        .sources()
        .iter()
        .map(|s| s.read_columns.as_ref().map(|read| read.iter().map(|&i| s.physical_schema.field(i).name().clone()).collect()))
        .collect()
}

/// `query`'s streaming plan, after `tables` are created (as unbounded tables).
async fn plan_of(tables: &str, query: &str) -> StreamPlan {
    let mut planner = Planner::new();
    for parsed in parse_script(tables).expect("tables parse") {
        let Statement::CreateTable(def) = parsed.statement else { panic!("not a table") };
        planner.register_table(def, false, parsed.location).expect("registers");
    }
    let parsed = parse_script(query).expect("query parses").remove(0);
    let Statement::Select { query } = parsed.statement else { panic!("not a query") };
    planner.plan_query(&query, parsed.location).await.expect("plans")
}

/// The `| tasks: … | watermark: … | state: …` line under the first operator line starting with `operator`.
fn traits_of<'a>(explain: &'a str, operator: &str) -> &'a str {
    let mut lines = explain.lines().skip_while(|l| !l.trim_start().starts_with(operator));
    assert!(lines.next().is_some(), "no {operator} in:\n{explain}");
    lines.next().filter(|l| l.trim_start().starts_with("| tasks: ")).unwrap_or_else(|| panic!("{operator} has no traits line:\n{explain}"))
}

#[tokio::test]
async fn explain_gives_every_operator_its_tasks_watermark_and_state() {
    let idle = BIDS.replace("'format' = 'json'", "'format' = 'json', 'scan.watermark.idle-timeout' = '30s'");
    let plan = plan_of(
        &idle,
        "SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) WHERE price > 5 GROUP BY auction, window_start, window_end",
    )
    .await;
    let explain = plan.explain(4);
    let source = traits_of(&explain, "Source: bids");
    assert!(source.contains("tasks: one per source partition"), "{source}");
    assert!(source.contains("watermark: ts - INTERVAL '1' SECOND per partition, the lowest over partitions; a partition idle for 30s"), "{source}");
    assert!(source.contains("state: read position (offset) per partition"), "{source}");
    let filter = traits_of(&explain, "Filter: ");
    assert!(filter.contains("chained into its input's task(s) | watermark: passed through | state: none"), "{filter}");
    let aggregate = traits_of(&explain, "WindowAggregate: ");
    assert!(aggregate.contains("tasks: 4, behind a hash exchange on [auction@"), "{aggregate}");
    assert!(aggregate.contains("a window is emitted once the watermark passes its end"), "{aggregate}");
    assert!(aggregate.contains("state: partial aggregates per key and slice"), "{aggregate}");

    // No group keys: one task whatever the parallelism. Sessions keep sessions.
    let global =
        plan_of(BIDS, "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end")
            .await;
    assert!(traits_of(&global.explain(4), "WindowAggregate: ").contains("tasks: 1 (no group keys"), "{}", global.explain(4));
    let sessions =
        plan_of(BIDS, "SELECT bidder, COUNT(*) FROM TABLE(SESSION(TABLE bids PARTITION BY bidder, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY bidder, window_start, window_end").await;
    assert!(traits_of(&sessions.explain(3), "WindowAggregate: ").contains("state: open sessions per key"), "{}", sessions.explain(3));
    // Without a window over an unbounded input, groups live as long as the pipeline.
    let running = plan_of(BIDS, "SELECT bidder, MAX(price) FROM bids GROUP BY bidder").await;
    let running = running.explain(2);
    let aggregate = traits_of(&running, "WindowAggregate: ");
    assert!(aggregate.contains("tasks: 2, behind a hash exchange on [bidder@"), "{aggregate}");
    assert!(aggregate.contains("emitted at checkpoints") && aggregate.contains("kept for the life of the pipeline"), "{aggregate}");
}

const BIDS: &str = "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, url STRING, event_ms BIGINT, extra STRING,
    ts AS TO_TIMESTAMP_LTZ(event_ms, 3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
    WITH ('connector' = 'filesystem', 'path' = 'x.json', 'format' = 'json')";

fn names(list: &[&str]) -> Vec<Option<Vec<String>>> {
    vec![Some(list.iter().map(|s| s.to_string()).collect())]
}

#[tokio::test]
async fn sources_read_only_the_columns_the_query_and_the_watermark_need() {
    // Selected and filtered columns, plus the computed event time's input.
    let read = reads(BIDS, "SELECT auction, price * 2 FROM bids WHERE bidder > 3").await;
    assert_eq!(read, names(&["auction", "bidder", "price", "event_ms"]));
    // A window reads its time column; keys and aggregate inputs come along.
    let read = reads(
        BIDS,
        "SELECT auction, MAX(price) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY auction, window_start, window_end",
    )
    .await;
    assert_eq!(read, names(&["auction", "price", "event_ms"]));
    let read = reads(BIDS, "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start").await;
    assert_eq!(read, names(&["event_ms"]));
    // Every column read: nothing to skip.
    assert_eq!(reads(BIDS, "SELECT * FROM bids").await, vec![None]);
    assert_eq!(reads(BIDS, "SELECT auction, bidder, price, url, extra, ts FROM bids").await, vec![None]);
}

#[tokio::test]
async fn a_window_with_many_windows_per_row_is_warned_about() {
    let hop = |slide: &str, size: &str| {
        format!("SELECT COUNT(*) FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL {slide}, INTERVAL {size})) GROUP BY window_start, window_end")
    };
    let wide = plan_of(BIDS, &hop("'1' SECOND", "'101' SECOND")).await.warnings();
    assert_eq!(wide.len(), 1, "{wide:?}");
    assert!(wide[0].starts_with("HOP with a size of 101 s sliding every 1 s puts every row into 101 windows (more than 100)"), "{wide:?}");
    assert!(plan_of(BIDS, &hop("'1' SECOND", "'100' SECOND")).await.warnings().is_empty());
    // A window aggregated again is warned about once.
    let twice = plan_of(
        BIDS,
        "SELECT window_start, SUM(n) FROM (SELECT window_start, window_end, COUNT(*) AS n FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '1' HOUR)) GROUP BY window_start, window_end, auction) GROUP BY window_start, window_end",
    )
    .await
    .warnings();
    assert_eq!(twice.len(), 1, "{twice:?}");
}

#[tokio::test]
async fn late_rows_routed_to_a_table_keep_every_column() {
    let with_late_sink = BIDS.replace("'format' = 'json'", "'format' = 'json', 'late.sink' = 'late'");
    let read = reads(&with_late_sink, "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start").await;
    assert_eq!(read, vec![None]);
}
