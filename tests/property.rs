//! Property: for random events that stay within the watermark bound, every window
//! query's streaming result equals the same aggregation computed in batch by
//! DataFusion over the same data, whatever the batch size, the number of source
//! partitions (files) and the parallelism; and every join's and every rank's
//! (the rows its changelog leaves) equals DataFusion's batch join or ROW_NUMBER()
//! (for a temporal join, the batch query that defines it).

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use eddy::Session;
use eddy_engine::metrics::PipelineGroup;
use eddy_engine::runtime::CollectSink;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Row = Vec<i64>;

const DELAY_MS: i64 = 3_000;

/// One partition's events (key, value, ts_ms), each at most `DELAY_MS` behind the partition's latest.
fn partition_events(rng: &mut StdRng, rows: usize) -> Vec<(i64, i64, i64)> {
    let mut latest = rng.gen_range(0..10_000i64);
    (0..rows)
        .map(|_| {
            latest += rng.gen_range(0..400);
            let ts = latest - rng.gen_range(0..=DELAY_MS);
            (rng.gen_range(0..7), rng.gen_range(-50..1000), ts.max(0))
        })
        .collect()
}

fn rows_of(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<Int64Array> =
            batch.columns().iter().map(|c| cast(c, &DataType::Int64).expect("int64").as_any().downcast_ref::<Int64Array>().expect("int64").clone()).collect();
        for i in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c.value(i)).collect());
        }
    }
    rows.sort();
    rows
}

async fn streaming(files: &[std::path::PathBuf], window: &str, batch_rows: usize, parallelism: usize) -> Vec<Row> {
    let mut session = Session::new();
    let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let dir = files[0].parent().expect("dir").display().to_string();
    let sql = format!(
        "SET 'parallelism' = '{parallelism}';
         CREATE TABLE t (k BIGINT, v BIGINT, ts_ms BIGINT, ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
           WATERMARK FOR ts AS ts - INTERVAL '{delay}' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{dir}', 'format' = 'json', 'scan.batch-rows' = '{batch_rows}');
         SELECT CAST(window_start AS BIGINT), CAST(window_end AS BIGINT), k, COUNT(*), SUM(v), MIN(v), MAX(v)
         FROM TABLE({window}) GROUP BY window_start, window_end, k;",
        delay = DELAY_MS / 1000
    );
    assert!(paths.len() == files.len());
    let collect = CollectSink::default();
    run_into(&mut session, &sql, &collect).await;
    rows_of(&collect.batches())
}

/// Runs `sql`'s query to the end of its bounded tables, into `collect`.
async fn run_into(session: &mut Session, sql: &str, collect: &CollectSink) {
    let pipelines = session.execute_script(sql).await.expect("plans");
    let (_tx, stop) = tokio::sync::watch::channel(false);
    session.run(&pipelines, &PipelineGroup::new(pipelines.iter().map(|p| p.name.as_str())), stop, &mut |_| Box::new(collect.clone())).await.expect("runs");
}

async fn batch(events: &[(i64, i64, i64)], sql: &str) -> Vec<Row> {
    let schema =
        Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false), Field::new("v", DataType::Int64, false), Field::new("ts", DataType::Int64, false)]));
    let columns = vec![
        Arc::new(Int64Array::from(events.iter().map(|e| e.0).collect::<Vec<_>>())) as _,
        Arc::new(Int64Array::from(events.iter().map(|e| e.1).collect::<Vec<_>>())) as _,
        Arc::new(Int64Array::from(events.iter().map(|e| e.2).collect::<Vec<_>>())) as _,
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch");
    let ctx = SessionContext::new();
    ctx.register_table("t", Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("table"))).expect("register");
    rows_of(&ctx.sql(sql).await.expect("plan").collect().await.expect("run"))
}

/// The seed of this run (`EDDY_PROPERTY_SEED`, else random), printed so a failure can be replayed, and its generator.
fn seeded() -> (u64, StdRng) {
    let seed: u64 = std::env::var("EDDY_PROPERTY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed} (set EDDY_PROPERTY_SEED to replay)");
    (seed, StdRng::seed_from_u64(seed))
}

const AGGREGATES: &str = "k, COUNT(*), SUM(v), MIN(v), MAX(v)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_equals_batch_for_every_window_kind() {
    let (seed, mut rng) = seeded();
    for case in 0..24 {
        let dir = tempfile::tempdir().expect("temp dir");
        let partitions = rng.gen_range(1..=3);
        let mut all = Vec::new();
        let mut files = Vec::new();
        for p in 0..partitions {
            let rows = rng.gen_range(200..1500);
            let events = partition_events(&mut rng, rows);
            let path = dir.path().join(format!("part-{p}.json"));
            let text: String = events.iter().map(|(k, v, ts)| format!("{{\"k\": {k}, \"v\": {v}, \"ts_ms\": {ts}}}\n")).collect();
            std::fs::write(&path, text).expect("write");
            files.push(path);
            all.extend(events);
        }
        let batch_rows = rng.gen_range(1..300);
        let parallelism = rng.gen_range(1..=4);
        let (window, expected_sql) = match case % 4 {
            0 => {
                let size = 1000 * rng.gen_range(1..8i64);
                (
                    format!("TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '{}' SECOND)", size / 1000),
                    format!("SELECT ts / {size} * {size}, ts / {size} * {size} + {size}, {AGGREGATES} FROM t GROUP BY 1, 2, k"),
                )
            }
            1 => {
                let slide = 1000 * rng.gen_range(1..4i64);
                let size = slide * rng.gen_range(1..5i64);
                let offsets: Vec<String> = (0..size / slide).map(|o| format!("({o})")).collect();
                (
                    format!("HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '{}' SECOND, INTERVAL '{}' SECOND)", slide / 1000, size / 1000),
                    format!(
                        "SELECT ws, ws + {size}, {AGGREGATES} FROM (
                           SELECT (ts / {slide} - o.column1) * {slide} AS ws, k, v, ts FROM t CROSS JOIN (VALUES {}) AS o)
                         WHERE ts >= ws AND ts < ws + {size} GROUP BY ws, k",
                        offsets.join(", ")
                    ),
                )
            }
            2 => {
                let step = 1000 * rng.gen_range(1..4i64);
                let max = step * rng.gen_range(1..5i64);
                let steps: Vec<String> = (1..=max / step).map(|n| format!("({n})")).collect();
                (
                    format!("CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '{}' SECOND, INTERVAL '{}' SECOND)", step / 1000, max / 1000),
                    format!(
                        "SELECT ws, we, {AGGREGATES} FROM (
                           SELECT ts / {max} * {max} AS ws, ts / {max} * {max} + n.column1 * {step} AS we, k, v, ts
                           FROM t CROSS JOIN (VALUES {}) AS n)
                         WHERE ts < we GROUP BY ws, we, k",
                        steps.join(", ")
                    ),
                )
            }
            _ => {
                let gap = 1000 * rng.gen_range(1..4i64);
                (
                    format!("SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '{}' SECOND)", gap / 1000),
                    format!(
                        "WITH breaks AS (
                           SELECT k, v, ts, CASE WHEN ts - LAG(ts) OVER (PARTITION BY k ORDER BY ts) < {gap} THEN 0 ELSE 1 END AS brk FROM t),
                         sessions AS (
                           SELECT k, v, ts, SUM(brk) OVER (PARTITION BY k ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid FROM breaks)
                         SELECT MIN(ts), MAX(ts) + {gap}, {AGGREGATES} FROM sessions GROUP BY k, sid"
                    ),
                )
            }
        };
        let expected = batch(&all, &expected_sql).await;
        let actual = streaming(&files, &window, batch_rows, parallelism).await;
        assert!(!expected.is_empty());
        assert_eq!(
            actual,
            expected,
            "seed {seed}, case {case}: {window} over {partitions} file(s) of {} events, batch rows {batch_rows}, parallelism {parallelism}",
            all.len()
        );
    }
}

/// A result row with NULLs told apart from values (as `i64::MIN`).
fn nullable_rows(batch: &RecordBatch) -> Vec<Row> {
    let columns: Vec<Int64Array> =
        batch.columns().iter().map(|c| cast(c, &DataType::Int64).expect("int64").as_any().downcast_ref::<Int64Array>().expect("int64").clone()).collect();
    (0..batch.num_rows()).map(|i| columns.iter().map(|c| if c.is_null(i) { i64::MIN } else { c.value(i) }).collect()).collect()
}

/// Writes `events` as `partitions` JSON files under `dir` (rows dealt round-robin, each file in order).
fn write_partitions(dir: &std::path::Path, events: &[(i64, i64, i64)], partitions: usize) {
    std::fs::create_dir_all(dir).expect("dir");
    for p in 0..partitions {
        let text: String = events.iter().skip(p).step_by(partitions).map(|(k, v, ts)| format!("{{\"k\": {k}, \"v\": {v}, \"ts_ms\": {ts}}}\n")).collect();
        std::fs::write(dir.join(format!("part-{p}.json")), text).expect("write");
    }
}

/// The rows a streaming query over tables `t` (and `u`) of the JSON files in
/// `dirs` leaves once its changelog is applied (a `-D` or `-U` must take back a
/// row emitted before).
async fn streaming_changelog(dirs: &[&std::path::Path], query: &str, batch_rows: usize, parallelism: usize) -> Vec<Row> {
    let mut session = Session::new();
    let mut sql = format!("SET 'parallelism' = '{parallelism}';");
    for (name, dir) in ["t", "u"].iter().zip(dirs) {
        sql.push_str(&format!(
            "CREATE TABLE {name} (k BIGINT, v BIGINT, ts_ms BIGINT, ts AS TO_TIMESTAMP_LTZ(ts_ms, 3), WATERMARK FOR ts AS ts - INTERVAL '{delay}' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json', 'scan.batch-rows' = '{batch_rows}');",
            dir.display(),
            delay = DELAY_MS / 1000
        ));
    }
    sql.push_str(query);
    let collect = CollectSink::changelog();
    run_into(&mut session, &sql, &collect).await;
    let mut rows: Vec<Row> = Vec::new();
    for changes in collect.changes() {
        for (i, row) in nullable_rows(changes.rows()).into_iter().enumerate() {
            if changes.kind(i).is_retraction() {
                let at = rows.iter().position(|r| *r == row).unwrap_or_else(|| panic!("{query}: a retraction of a row never emitted: {row:?}"));
                rows.swap_remove(at);
            } else {
                rows.push(row);
            }
        }
    }
    rows.sort();
    rows
}

/// DataFusion's batch answer to `sql` over tables `t` (and `u`) of the events (`ts` in ms).
async fn batch_changelog(events: &[&[(i64, i64, i64)]], sql: &str) -> Vec<Row> {
    let schema =
        Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false), Field::new("v", DataType::Int64, false), Field::new("ts", DataType::Int64, false)]));
    let ctx = SessionContext::new();
    for (name, events) in ["t", "u"].iter().zip(events) {
        let columns = vec![
            Arc::new(Int64Array::from(events.iter().map(|e| e.0).collect::<Vec<_>>())) as _,
            Arc::new(Int64Array::from(events.iter().map(|e| e.1).collect::<Vec<_>>())) as _,
            Arc::new(Int64Array::from(events.iter().map(|e| e.2).collect::<Vec<_>>())) as _,
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch");
        ctx.register_table(*name, Arc::new(MemTable::try_new(Arc::clone(&schema), vec![vec![batch]]).expect("table"))).expect("register");
    }
    let mut rows: Vec<Row> = ctx.sql(sql).await.expect("plan").collect().await.expect("run").iter().flat_map(nullable_rows).collect();
    rows.sort();
    rows
}

/// Property: for random events within the watermark bound, random batch sizes,
/// source partitions and parallelism 1..4, every join type (regular and interval)
/// leaves the rows DataFusion's batch join of the whole input gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_joins_equal_batch_joins() {
    let (seed, mut rng) = seeded();
    // (join, extra condition in streaming SQL, the same in batch SQL over ms)
    let interval = ("b.ts BETWEEN a.ts - INTERVAL '2' SECOND AND a.ts + INTERVAL '1' SECOND", "b.ts BETWEEN a.ts - 2000 AND a.ts + 1000");
    let cases = [
        ("JOIN", None),
        ("LEFT JOIN", None),
        ("RIGHT JOIN", None),
        ("FULL JOIN", None),
        ("JOIN", Some(interval)),
        ("LEFT JOIN", Some(interval)),
        ("FULL JOIN", Some(interval)),
        ("SEMI", None),
        ("ANTI", None),
    ];
    for (case, (join, bounds)) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sides: Vec<Vec<(i64, i64, i64)>> = (0..2)
            .map(|_| {
                let rows = rng.gen_range(100..800);
                partition_events(&mut rng, rows)
            })
            .collect();
        let partitions = [rng.gen_range(1..=3), rng.gen_range(1..=3)];
        let dirs = [dir.path().join("t"), dir.path().join("u")];
        for ((events, dir), partitions) in sides.iter().zip(&dirs).zip(partitions) {
            write_partitions(dir, events, partitions);
        }
        let batch_rows = rng.gen_range(1..200);
        let parallelism = rng.gen_range(1..=4);
        // Keys pair about one row in 50 of the other side's with the same k.
        let on = "a.k = b.k AND a.v % 50 = b.v % 50";
        let (streaming_sql, batch_sql) = match *join {
            "SEMI" | "ANTI" => {
                let not = if *join == "ANTI" { "NOT " } else { "" };
                let query = format!("SELECT a.k, a.v FROM t a WHERE {not}EXISTS (SELECT * FROM u b WHERE {on})");
                (query.clone(), query)
            }
            _ => {
                let (stream_bounds, batch_bounds) = bounds.map_or((String::new(), String::new()), |(s, b)| (format!(" AND {s}"), format!(" AND {b}")));
                let select = format!("SELECT a.k, a.v, b.k, b.v FROM t a {join} u b ON {on}");
                (format!("{select}{stream_bounds}"), format!("{select}{batch_bounds}"))
            }
        };
        let expected = batch_changelog(&[&sides[0], &sides[1]], &batch_sql).await;
        let actual = streaming_changelog(&[&dirs[0], &dirs[1]], &format!("{streaming_sql};"), batch_rows, parallelism).await;
        assert!(!expected.is_empty(), "case {case}: no rows to compare");
        println!("case {case}: {streaming_sql}: {} rows, parallelism {parallelism}, batch rows {batch_rows}", expected.len());
        assert!(
            actual == expected,
            "seed {seed}, case {case}: {streaming_sql} over {partitions:?} file(s) of {} and {} events, batch rows {batch_rows}, parallelism {parallelism}: {} rows, batch {}; first difference {:?}",
            sides[0].len(),
            sides[1].len(),
            actual.len(),
            expected.len(),
            actual.iter().zip(&expected).find(|(a, b)| a != b)
        );
    }
}

/// Property: for random events within the watermark bound, random batch sizes,
/// source partitions and parallelism 1..4, an event-time temporal join (INNER
/// and LEFT, with and without a condition on the version) gives what the
/// definition gives in batch: each row of `t` meets the row of `u` with its key
/// and the latest time at or before its own (the versioned table is `u` with
/// `k` as its primary key: every row is the key's next version), and the
/// condition is applied to that version only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_temporal_joins_equal_the_batch_definition() {
    let (seed, mut rng) = seeded();
    // The latest version of each row of a: a row number over the versions at or before it.
    let versions = "WITH a AS (SELECT k, v, ts, ROW_NUMBER() OVER () AS id FROM t),
        m AS (SELECT a.id, b.v AS bv, ROW_NUMBER() OVER (PARTITION BY a.id ORDER BY b.ts DESC) AS rn FROM a JOIN u b ON a.k = b.k AND b.ts <= a.ts)";
    // (join, condition on the version in streaming SQL and in batch SQL)
    let cases = [("JOIN", None), ("LEFT JOIN", None), ("JOIN", Some(("b.v % 3 = 0", "m.bv % 3 = 0"))), ("LEFT JOIN", Some(("b.v % 3 = 0", "m.bv % 3 = 0")))];
    for (case, (join, condition)) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let probes = {
            let rows = rng.gen_range(100..800);
            partition_events(&mut rng, rows)
        };
        // One version per key and time: two would tie, and the later arrival wins.
        let mut seen = std::collections::HashSet::new();
        let versions_rows: Vec<(i64, i64, i64)> = {
            let rows = rng.gen_range(50..300);
            partition_events(&mut rng, rows).into_iter().filter(|(k, _, ts)| seen.insert((*k, *ts))).collect()
        };
        let partitions = [rng.gen_range(1..=3), rng.gen_range(1..=3)];
        let dirs = [dir.path().join("t"), dir.path().join("u")];
        write_partitions(&dirs[0], &probes, partitions[0]);
        write_partitions(&dirs[1], &versions_rows, partitions[1]);
        let batch_rows = rng.gen_range(1..200);
        let parallelism = rng.gen_range(1..=4);
        let (stream_condition, batch_condition) = condition.map_or((String::new(), String::new()), |(s, b)| (format!(" AND {s}"), format!(" AND {b}")));
        let streaming_sql = format!(
            "CREATE TABLE w (k BIGINT, v BIGINT, ts_ms BIGINT, ts AS TO_TIMESTAMP_LTZ(ts_ms, 3), PRIMARY KEY (k) NOT ENFORCED,
               WATERMARK FOR ts AS ts - INTERVAL '{delay}' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json', 'scan.batch-rows' = '{batch_rows}');
             SELECT a.k, a.v, b.v FROM t a {join} w FOR SYSTEM_TIME AS OF a.ts AS b ON a.k = b.k{stream_condition};",
            dirs[1].display(),
            delay = DELAY_MS / 1000
        );
        let batch_sql = if *join == "JOIN" {
            format!("{versions} SELECT a.k, a.v, m.bv FROM a JOIN m ON a.id = m.id AND m.rn = 1{batch_condition}")
        } else {
            format!("{versions} SELECT a.k, a.v, m.bv FROM a LEFT JOIN m ON a.id = m.id AND m.rn = 1{batch_condition}")
        };
        let expected = batch_changelog(&[&probes, &versions_rows], &batch_sql).await;
        let actual = streaming_changelog(&[&dirs[0], &dirs[1]], &streaming_sql, batch_rows, parallelism).await;
        assert!(!expected.is_empty(), "case {case}: no rows to compare");
        println!("case {case}: {join}{stream_condition}: {} rows, parallelism {parallelism}, batch rows {batch_rows}", expected.len());
        assert!(
            actual == expected,
            "seed {seed}, case {case}: {join}{stream_condition} over {partitions:?} file(s) of {} and {} events, batch rows {batch_rows}, parallelism {parallelism}: {} rows, batch {}; first difference {:?}",
            probes.len(),
            versions_rows.len(),
            actual.len(),
            expected.len(),
            actual.iter().zip(&expected).find(|(a, b)| a != b)
        );
    }
}

/// Property: for random events within the watermark bound, random batch sizes,
/// source partitions and parallelism 1..4, every kind of ROW_NUMBER() rank
/// (deduplication keeping the first or last row, Top-N, window Top-N, Top-N
/// over updating rows) leaves
/// the rows DataFusion's batch ROW_NUMBER() over the whole input gives. Each
/// query's ORDER BY ranks rows that tie only if they are equal in every output
/// column, so the answer does not depend on arrival order.
/// `t`'s rows with the values of their partners in `u` (`bv`), or NULL: a changelog when streamed.
const LEFT_JOINED: &str = "SELECT a.k, a.v, a.ts, b.v AS bv FROM t a LEFT JOIN u b ON a.k = b.k AND a.v % 50 = b.v % 50";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_ranks_equal_batch_ranks() {
    let (seed, mut rng) = seeded();
    let ranked = |cols: &str, partition: &str, order: &str, input: &str, bound: &str| {
        let partition = if partition.is_empty() { String::new() } else { format!("PARTITION BY {partition} ") };
        format!("SELECT {cols} FROM (SELECT *, ROW_NUMBER() OVER ({partition}ORDER BY {order}) AS rn FROM {input}) WHERE {bound}")
    };
    // (what it is, streaming SQL, batch SQL with `ts` in ms)
    let size = 1000 * rng.gen_range(1..4i64);
    let cases = [
        // About 70 partitions, whose first and last rows tie only if equal in the output.
        ("first row", ranked("k, v % 10, ts_ms, rn", "k, v % 10", "ts", "t", "rn = 1"), ranked("k, v % 10, ts, rn", "k, v % 10", "ts", "t", "rn = 1")),
        ("last row", ranked("k, v % 10, ts_ms, rn", "k, v % 10", "ts DESC", "t", "rn = 1"), ranked("k, v % 10, ts, rn", "k, v % 10", "ts DESC", "t", "rn = 1")),
        ("top 3", ranked("k, v, ts_ms, rn", "k", "v DESC, ts", "t", "rn <= 3"), ranked("k, v, ts, rn", "k", "v DESC, ts", "t", "rn <= 3")),
        ("top 4 overall", ranked("k, v, ts_ms, rn", "", "v, ts DESC, k", "t", "rn < 5"), ranked("k, v, ts, rn", "", "v, ts DESC, k", "t", "rn < 5")),
        (
            "window top 2",
            ranked(
                "CAST(window_start AS BIGINT), k, v, ts_ms, rn",
                "window_start, window_end",
                "v DESC, k, ts",
                &format!("TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '{}' SECOND))", size / 1000),
                "rn <= 2",
            ),
            ranked("ws, k, v, ts, rn", "ws", "v DESC, k, ts", &format!("(SELECT *, ts / {size} * {size} AS ws FROM t)"), "rn <= 2"),
        ),
        // Updating rows: a LEFT join takes back a padded row once a partner comes,
        // and an aggregate over it changes its counts.
        (
            "top 2 over a left join",
            ranked("k, v, bv, rn", "k", "v DESC, ts, bv", &format!("({LEFT_JOINED})"), "rn <= 2"),
            ranked("k, v, bv, rn", "k", "v DESC, ts, bv", &format!("({LEFT_JOINED})"), "rn <= 2"),
        ),
        (
            "top 3 over an aggregate of a left join",
            ranked("k, n, rn", "", "n DESC, k", &format!("(SELECT k, COUNT(bv) AS n FROM ({LEFT_JOINED}) GROUP BY k)"), "rn <= 3"),
            ranked("k, n, rn", "", "n DESC, k", &format!("(SELECT k, COUNT(bv) AS n FROM ({LEFT_JOINED}) GROUP BY k)"), "rn <= 3"),
        ),
    ];
    for (what, streaming_sql, batch_sql) in cases {
        let (dir, other_dir) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
        let rows = rng.gen_range(200..1200);
        let events = partition_events(&mut rng, rows);
        let other_events = partition_events(&mut rng, rows);
        let partitions = rng.gen_range(1..=3);
        write_partitions(dir.path(), &events, partitions);
        write_partitions(other_dir.path(), &other_events, partitions);
        let batch_rows = rng.gen_range(1..200);
        let parallelism = rng.gen_range(1..=4);
        let expected = batch_changelog(&[&events, &other_events], &batch_sql).await;
        let actual = streaming_changelog(&[dir.path(), other_dir.path()], &format!("{streaming_sql};"), batch_rows, parallelism).await;
        assert!(!expected.is_empty(), "{what}: no rows to compare");
        println!("{what}: {streaming_sql}: {} rows, parallelism {parallelism}, batch rows {batch_rows}", expected.len());
        assert!(
            actual == expected,
            "seed {seed}, {what}: {streaming_sql} over {partitions} file(s) of {} events, batch rows {batch_rows}, parallelism {parallelism}: {} rows, batch {}; first difference {:?}",
            events.len(),
            actual.len(),
            expected.len(),
            actual.iter().zip(&expected).find(|(a, b)| a != b)
        );
    }
}

/// One partition's events (key, value, ts_ms), each strictly after the watermark
/// (the partition's latest time so far - `DELAY_MS`) when it comes: an OVER
/// aggregate drops a row at the watermark as late. With `distinct_times`, no two
/// events of a key share a time, so a ROWS frame does not depend on arrival order.
fn over_events(rng: &mut StdRng, rows: usize, distinct_times: bool, seen: &mut std::collections::HashSet<(i64, i64)>) -> Vec<(i64, i64, i64)> {
    let mut latest = rng.gen_range(0..10_000i64);
    let mut out = Vec::new();
    for _ in 0..rows {
        latest += rng.gen_range(0..400);
        let ts = latest - rng.gen_range(0..DELAY_MS);
        let key = rng.gen_range(0..7);
        if distinct_times && !seen.insert((key, ts)) {
            continue;
        }
        out.push((key, rng.gen_range(-50..1000), ts));
    }
    out
}

/// Property: an OVER aggregate's streaming rows equal DataFusion's batch OVER over
/// the same events, whatever the batch size, files and parallelism.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_over_aggregates_equal_batch_over_aggregates() {
    let (seed, mut rng) = seeded();
    for case in 0..12 {
        let (frame, distinct_times) = match case % 4 {
            0 => (format!("RANGE BETWEEN INTERVAL '{}' SECOND PRECEDING AND CURRENT ROW", rng.gen_range(1..6)), false),
            1 => ("RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".to_string(), false),
            2 => (format!("ROWS BETWEEN {} PRECEDING AND CURRENT ROW", rng.gen_range(0..6)), true),
            _ => ("ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".to_string(), true),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let partitions = rng.gen_range(1..=3);
        let mut all = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for p in 0..partitions {
            let rows = rng.gen_range(200..1000);
            let events = over_events(&mut rng, rows, distinct_times, &mut seen);
            let text: String = events.iter().map(|(k, v, ts)| format!("{{\"k\": {k}, \"v\": {v}, \"ts_ms\": {ts}}}\n")).collect();
            std::fs::write(dir.path().join(format!("part-{p}.json")), text).expect("write");
            all.extend(events);
        }
        let batch_rows = rng.gen_range(1..300);
        let parallelism = rng.gen_range(1..=4);
        let aggregates = "SUM(v) OVER w, COUNT(*) OVER w, MIN(v) OVER w, MAX(v) OVER w";
        let mut session = Session::new();
        let sql = format!(
            "SET 'parallelism' = '{parallelism}';
             CREATE TABLE t (k BIGINT, v BIGINT, ts_ms BIGINT, ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
               WATERMARK FOR ts AS ts - INTERVAL '{delay}' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{dir}', 'format' = 'json', 'scan.batch-rows' = '{batch_rows}');
             SELECT k, v, ts_ms, {aggregates} FROM t WINDOW w AS (PARTITION BY k ORDER BY ts {frame});",
            delay = DELAY_MS / 1000,
            dir = dir.path().display()
        );
        let collect = CollectSink::default();
        run_into(&mut session, &sql, &collect).await;
        let actual = rows_of(&collect.batches());
        // DataFusion's batch frame over the integer times: an interval is its milliseconds.
        let batch_frame = frame.replace("INTERVAL '", "").replace("' SECOND", "000");
        let expected = batch(&all, &format!("SELECT k, v, ts, {aggregates} FROM t WINDOW w AS (PARTITION BY k ORDER BY ts {batch_frame})")).await;
        assert_eq!(actual.len(), all.len(), "seed {seed}, case {case}: every row once");
        assert_eq!(
            actual,
            expected,
            "seed {seed}, case {case}: {frame} over {partitions} file(s) of {} events, batch rows {batch_rows}, parallelism {parallelism}",
            all.len()
        );
    }
}
