//! Comparing `eddy run` with Apache Flink: the orders and payments of
//! `tests/data/interval_join/` (rows out of order, pairs on and just past join
//! bounds) as tables, and the rows Flink 2.3 returned for the same SQL
//! (`scripts/flink/*.py` write them under `tests/data/*/expected/`), row for row.

use std::path::{Path, PathBuf};

use super::eddy;

/// The orders and payments files.
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/interval_join");

/// `CREATE TABLE` of the orders and payments.
pub fn orders_and_payments() -> String {
    format!(
        "CREATE TABLE orders (order_id BIGINT, user_id BIGINT, amount BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'filesystem', 'path' = '{DATA}/orders.json', 'format' = 'json');
         CREATE TABLE payments (payment_id BIGINT, order_id BIGINT, paid BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'filesystem', 'path' = '{DATA}/payments.json', 'format' = 'json');"
    )
}

/// The orders and payments, and beside them the users' loyalty levels of
/// `tests/data/temporal_join/levels.json` as a versioned view `user_levels`
/// (the last level per user), as `scripts/flink/temporal_join.py` declares them.
pub fn with_user_levels() -> String {
    let levels = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/temporal_join/levels.json");
    format!(
        "{}
         CREATE TABLE levels (user_id BIGINT, level STRING, discount BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'filesystem', 'path' = '{levels}', 'format' = 'json');
         CREATE VIEW user_levels AS SELECT user_id, level, discount, ts
           FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts DESC) AS rn FROM levels) WHERE rn = 1;",
        orders_and_payments()
    )
}

/// The two inputs, and a `print` table `out` of `columns` the query's rows go to.
pub fn tables(columns: &str) -> String {
    with_output(&orders_and_payments(), columns)
}

/// The `inputs` (their `CREATE TABLE`s), and a `print` table `out` of `columns`.
fn with_output(inputs: &str, columns: &str) -> String {
    format!("{inputs}\nCREATE TABLE out ({columns}) WITH ('connector' = 'print');")
}

/// Writes `sql` to a script file in `dir`, for `eddy run`.
pub fn script(dir: &Path, sql: &str) -> PathBuf {
    let path = dir.join("query.sql");
    std::fs::write(&path, sql).expect("write script");
    path
}

/// The rows `eddy run` prints for `INSERT INTO out query` over the orders and
/// payments (see [`eddy_rows_over`]).
pub fn eddy_rows(columns: &str, query: &str, parallelism: usize) -> Vec<String> {
    eddy_rows_over(&orders_and_payments(), columns, query, parallelism)
}

/// The rows `eddy run` prints for `INSERT INTO out query` over the tables `inputs`
/// creates (`out` of `columns`), as Flink's expected files write them: `+I[a, b,
/// NULL]` becomes `a,b,null`, sorted. A changelog (a regular outer join's, a
/// Top-N's) is applied: `-D`/`-U` take an equal row back, which must be there.
pub fn eddy_rows_over(inputs: &str, columns: &str, query: &str, parallelism: usize) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sql = format!("{}\nINSERT INTO out {query};", with_output(inputs, columns));
    let output = eddy().arg("run").arg("--parallelism").arg(parallelism.to_string()).arg(script(dir.path(), &sql)).output().expect("run eddy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "eddy run failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut rows: Vec<String> = Vec::new();
    for line in stdout.lines() {
        let (kind, row) = line.split_once('[').unwrap_or_else(|| panic!("not a change: {line}"));
        let row = row.strip_suffix(']').unwrap_or_else(|| panic!("not a change: {line}"));
        let row = row.split(", ").map(|v| if v == "NULL" { "null" } else { v }).collect::<Vec<_>>().join(",");
        match kind {
            "+I" | "+U" => rows.push(row),
            "-D" | "-U" => {
                let at = rows.iter().position(|r| *r == row).unwrap_or_else(|| panic!("{line} takes back a row that was not emitted"));
                rows.swap_remove(at);
            }
            other => panic!("unknown row kind {other} in {line}"),
        }
    }
    rows.sort();
    rows
}

/// The rows of a Flink result file, sorted.
pub fn flink_rows(expected: &str) -> Vec<String> {
    let text = std::fs::read_to_string(expected).unwrap_or_else(|e| panic!("{expected}: {e}"));
    let mut rows: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    rows.sort();
    rows
}

/// `select` over the orders and payments gives, at parallelism 1 and 3, the rows
/// Flink gave (`expected_file`).
#[track_caller]
pub fn same_rows_as_flink(expected_file: &str, columns: &str, select: &str) {
    same_rows_as_flink_over(&orders_and_payments(), expected_file, columns, select);
}

/// `select` over the tables `inputs` creates gives, at parallelism 1 and 3, the
/// rows Flink gave (`expected_file`).
#[track_caller]
pub fn same_rows_as_flink_over(inputs: &str, expected_file: &str, columns: &str, select: &str) {
    let expected = flink_rows(expected_file);
    let query = expected_file.rsplit('/').next().unwrap_or_default();
    assert!(!expected.is_empty(), "{query}: no expected rows");
    for parallelism in [1, 3] {
        let got = eddy_rows_over(inputs, columns, select, parallelism);
        if got != expected {
            let missing: Vec<&String> = expected.iter().filter(|r| !got.contains(r)).take(5).collect();
            let extra: Vec<&String> = got.iter().filter(|r| !expected.contains(r)).take(5).collect();
            panic!(
                "{query} at parallelism {parallelism}: {} rows, Flink {}; missing (first 5): {missing:?}; not in Flink's (first 5): {extra:?}",
                got.len(),
                expected.len()
            );
        }
    }
}
