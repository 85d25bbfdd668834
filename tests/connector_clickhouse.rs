//! The ClickHouse sink against a real ClickHouse server (started by
//! `scripts/clickhouse/start`, see `eddy_connectors::testing::CLICKHOUSE`).
//!
//! Every test makes a database of its own and drops it at the end; rows are read
//! back with `SELECT ... FORMAT TabSeparated` over HTTP.

// Tests may unwrap: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, Int8Array, LargeStringArray,
    RecordBatch, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use eddy_connectors::create_sink;
use eddy_connectors::testing::{clickhouse_query, replay_after_a_final_commit, unique_name, CLICKHOUSE};
use eddy_engine::{ChangeBatch, Sink};
use eddy_sql::{parse_script, Statement, TableDef};

/// Runs `sql` on the server at `url` and returns the answer; panics with the
/// server's message when it fails.
async fn query(url: &str, sql: &str) -> String {
    clickhouse_query(url, sql, &[]).await
}

/// The server's (major, minor) version.
async fn version(url: &str) -> (u32, u32) {
    let text = query(url, "SELECT version()").await;
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// A new database on the shared server: its URL and name.
async fn new_database(prefix: &str) -> (String, String) {
    let url = CLICKHOUSE.shared();
    let db = unique_name(prefix);
    query(&url, &format!("CREATE DATABASE {db}")).await;
    (url, db)
}

async fn drop_database(url: &str, db: &str) {
    query(url, &format!("DROP DATABASE IF EXISTS {db}")).await;
}

/// A table from a `CREATE TABLE` statement.
fn table(sql: &str) -> TableDef {
    match parse_script(sql).unwrap().remove(0).statement {
        Statement::CreateTable(def) => def,
        other => panic!("not a table: {other:?}"),
    }
}

/// A clickhouse table `t (columns)` writing to `db`.`name`, with `options` added.
fn sink_table(columns: &str, url: &str, db: &str, name: &str, options: &str) -> TableDef {
    table(&format!(
        "CREATE TABLE t ({columns}) WITH ('connector' = 'clickhouse', 'url' = '{url}', 'database' = '{db}',
           'table' = '{name}' {options})"
    ))
}

fn open_sink(def: &TableDef) -> Box<dyn Sink> {
    create_sink(def, def.sink_schema()).unwrap_or_else(|e| panic!("{e}"))
}

/// A batch of `def`'s sink schema.
fn batch(def: &TableDef, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(def.sink_schema(), columns).unwrap()
}

/// A batch of one BIGINT column `id` holding `ids`.
fn ids(def: &TableDef, ids: std::ops::Range<i64>) -> RecordBatch {
    batch(def, vec![Arc::new(Int64Array::from_iter_values(ids))])
}

/// `count(), sum(id), uniqExact(id)` of `db`.`table`.
async fn count_sum_unique(url: &str, db: &str, table: &str) -> String {
    query(url, &format!("SELECT count(), sum(id), uniqExact(id) FROM {db}.{table} FORMAT TabSeparated")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips_into_a_created_table() {
    let (url, db) = new_database("ch_types").await;
    let datetime64 = version(&url).await >= (20, 1);
    let fields = [
        Field::new("i8", DataType::Int8, false),
        Field::new("i16", DataType::Int16, false),
        Field::new("i32", DataType::Int32, false),
        Field::new("i64", DataType::Int64, true),
        Field::new("u8", DataType::UInt8, false),
        Field::new("u16", DataType::UInt16, false),
        Field::new("u32", DataType::UInt32, false),
        Field::new("u64", DataType::UInt64, false),
        Field::new("f32", DataType::Float32, false),
        Field::new("f64", DataType::Float64, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("ls", DataType::LargeUtf8, false),
        Field::new("d", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("dec", DataType::Decimal128(9, 2), true),
        Field::new("dec18", DataType::Decimal128(18, 4), false),
        Field::new("dec38", DataType::Decimal128(38, 10), false),
    ];
    let def = TableDef::from_fields(
        "t",
        &fields,
        &[("connector", "clickhouse"), ("url", &url), ("database", &db), ("table", "all_types"), ("sink.create-table", "true")],
    );
    let decimal = |values: Vec<Option<i128>>, p: u8, s: i8| -> ArrayRef { Arc::new(Decimal128Array::from(values).with_precision_and_scale(p, s).unwrap()) };
    let rows = batch(
        &def,
        vec![
            Arc::new(Int8Array::from(vec![-128, 127, 0])),
            Arc::new(Int16Array::from(vec![i16::MIN, i16::MAX, 0])),
            Arc::new(Int32Array::from(vec![i32::MIN, i32::MAX, 0])),
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(i64::MAX), None])),
            Arc::new(UInt8Array::from(vec![0, u8::MAX, 1])),
            Arc::new(UInt16Array::from(vec![0, u16::MAX, 1])),
            Arc::new(UInt32Array::from(vec![0, u32::MAX, 1])),
            Arc::new(UInt64Array::from(vec![0, u64::MAX, 1])),
            Arc::new(Float32Array::from(vec![1.5, -0.25, 0.0])),
            Arc::new(Float64Array::from(vec![Some(-0.125), Some(1e300), None])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            Arc::new(StringArray::from(vec![Some("tab\there\nnew line"), Some("ünïcødé 🦀 'q' \\"), None])),
            Arc::new(LargeStringArray::from(vec!["", "x", "large"])),
            Arc::new(Date32Array::from(vec![Some(19_782), Some(1), None])),
            Arc::new(TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), Some(0), None])),
            decimal(vec![Some(1234), Some(-1), None], 9, 2),
            decimal(vec![Some(-999_999_999_999_999_999), Some(12_345), Some(1)], 18, 4),
            decimal(vec![Some(123_456_789_012_345_678_901_234_567_891), Some(-1), Some(1)], 38, 10),
        ],
    );
    let mut sink = open_sink(&def);
    sink.write(ChangeBatch::inserts(rows)).await.unwrap();
    sink.commit().await.unwrap();

    let types = query(&url, &format!("SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'all_types' FORMAT TabSeparated")).await;
    let ts_type = if datetime64 { "DateTime64(3)" } else { "DateTime" };
    assert_eq!(
        types,
        format!(
            "i8\tInt8\ni16\tInt16\ni32\tInt32\ni64\tNullable(Int64)\nu8\tUInt8\nu16\tUInt16\nu32\tUInt32\nu64\tUInt64\n\
             f32\tFloat32\nf64\tNullable(Float64)\nb\tNullable(UInt8)\ns\tNullable(String)\nls\tString\nd\tNullable(Date)\n\
             ts\tNullable({ts_type})\ndec\tNullable(Decimal(9, 2))\ndec18\tDecimal(18, 4)\ndec38\tDecimal(38, 10)\n"
        )
    );
    // DateTime keeps whole seconds; DateTime64(3) the milliseconds.
    let ts = if datetime64 { "toUnixTimestamp64Milli(ts)" } else { "toUnixTimestamp(ts)" };
    let rows = query(
        &url,
        &format!(
            "SELECT i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, b, s, ls, d, {ts}, dec, dec18, dec38
             FROM {db}.all_types ORDER BY i8 FORMAT TabSeparated"
        ),
    )
    .await;
    let (ts0, ts1) = if datetime64 { ("1700000000123", "0") } else { ("1700000000", "0") };
    let expected = [
        format!(
            "-128\t-32768\t-2147483648\t-9223372036854775808\t0\t0\t0\t0\t1.5\t-0.125\t1\ttab\\there\\nnew line\t\t2024-02-29\t{ts0}\t12.34\t-99999999999999.9999\t12345678901234567890.1234567891"
        ),
        "0\t0\t0\t\\N\t1\t1\t1\t1\t0\t\\N\t\\N\t\\N\tlarge\t\\N\t\\N\t\\N\t0.0001\t0.0000000001".to_string(),
        format!(
            "127\t32767\t2147483647\t9223372036854775807\t255\t65535\t4294967295\t18446744073709551615\t-0.25\t1e300\t0\tünïcødé 🦀 \\'q\\' \\\\\tx\t1970-01-02\t{ts1}\t-0.01\t1.2345\t-0.0000000001"
        ),
    ];
    assert_eq!(rows.lines().collect::<Vec<_>>(), expected);
    drop_database(&url, &db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn values_are_encoded_to_the_types_an_existing_table_has() {
    let (url, db) = new_database("ch_existing").await;
    // LowCardinality is experimental before 19.x and needs a setting to create.
    let settings: &[(&str, &str)] = if version(&url).await < (19, 0) { &[("allow_experimental_low_cardinality_type", "1")] } else { &[] };
    clickhouse_query(
        &url,
        &format!(
            "CREATE TABLE {db}.wide (id Int64, small Int64, f Float64, name LowCardinality(String), code FixedString(3),
               maybe Nullable(String), ts DateTime, amount Decimal(18, 4), extra String DEFAULT 'dflt')
             ENGINE = MergeTree ORDER BY id"
        ),
        settings,
    )
    .await;
    let def =
        sink_table("id BIGINT, small INT, f FLOAT, name STRING, code STRING, maybe STRING, ts TIMESTAMP(3), amount DECIMAL(10, 2)", &url, &db, "wide", "");
    // The sink's TIMESTAMP(3) is milliseconds; feed microseconds with a zone too.
    let fields: Vec<Field> = def
        .sink_schema()
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "ts" => Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            _ => f.as_ref().clone(),
        })
        .collect();
    let def = TableDef::from_fields("t", &fields, &def.options.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
    let mut sink = open_sink(&def);
    let rows = batch(
        &def,
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(Int32Array::from(vec![-7, i32::MAX])),
            Arc::new(Float32Array::from(vec![0.5, -2.0])),
            Arc::new(StringArray::from(vec!["red", "blue"])),
            Arc::new(StringArray::from(vec!["ab", "xyz"])),
            Arc::new(StringArray::from(vec![None, Some("here")])),
            Arc::new(TimestampMicrosecondArray::from(vec![1_700_000_000_999_999, 86_400_000_000]).with_timezone("UTC")),
            Arc::new(Decimal128Array::from(vec![1234, -5]).with_precision_and_scale(10, 2).unwrap()),
        ],
    );
    sink.write(ChangeBatch::inserts(rows)).await.unwrap();
    sink.commit().await.unwrap();
    let rows = query(
        &url,
        &format!(
            "SELECT id, small, f, name, code, maybe, toUnixTimestamp(ts), toInt64(amount * 10000), extra
             FROM {db}.wide ORDER BY id FORMAT TabSeparated"
        ),
    )
    .await;
    assert_eq!(rows, "1\t-7\t0.5\tred\tab\\0\t\\N\t1700000000\t123400\tdflt\n2\t2147483647\t-2\tblue\txyz\there\t86400\t-500\tdflt\n");

    // A NULL cannot go into a column that is not Nullable: nothing of the batch is written.
    let nulls = batch(
        &def,
        vec![
            Arc::new(Int64Array::from(vec![3, 4])),
            Arc::new(Int32Array::from(vec![0, 0])),
            Arc::new(Float32Array::from(vec![0.0, 0.0])),
            Arc::new(StringArray::from(vec![Some("ok"), None])),
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(StringArray::from(vec![None::<&str>, None])),
            Arc::new(TimestampMicrosecondArray::from(vec![0, 0]).with_timezone("UTC")),
            Arc::new(Decimal128Array::from(vec![0, 0]).with_precision_and_scale(10, 2).unwrap()),
        ],
    );
    let e = sink.write(ChangeBatch::inserts(nulls)).await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "cannot write rows to ClickHouse table `{db}`.`wide`: column 'name' is NULL in a row, but its ClickHouse type \
             LowCardinality(String) is not Nullable; declare it Nullable(...) in ClickHouse, or filter out or replace the NULLs"
        )
    );
    sink.commit().await.unwrap();
    assert_eq!(query(&url, &format!("SELECT count() FROM {db}.wide")).await, "2\n");
    drop_database(&url, &db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_are_inserted_in_batches_of_batch_rows_and_after_the_flush_interval() {
    let (url, db) = new_database("ch_batches").await;
    query(&url, &format!("CREATE TABLE {db}.ids (id Int64) ENGINE = MergeTree ORDER BY id")).await;
    let def = sink_table("id BIGINT", &url, &db, "ids", ", 'sink.batch-rows' = '7', 'sink.flush-interval' = '1 h'");
    let mut sink = open_sink(&def);
    // 20 rows in batches of 3: two full INSERTs of 7, 6 rows left in the buffer.
    for start in (0..20).step_by(3) {
        sink.write(ChangeBatch::inserts(ids(&def, start..(start + 3).min(20)))).await.unwrap();
    }
    assert_eq!(count_sum_unique(&url, &db, "ids").await, "14\t91\t14\n");
    sink.commit().await.unwrap();
    assert_eq!(count_sum_unique(&url, &db, "ids").await, "20\t190\t20\n");
    // One batch larger than 'sink.batch-rows' is split: 142 INSERTs of 7, 6 rows kept.
    sink.write(ChangeBatch::inserts(ids(&def, 20..1020))).await.unwrap();
    assert_eq!(count_sum_unique(&url, &db, "ids").await, "1014\t513591\t1014\n");
    sink.commit().await.unwrap();
    assert_eq!(count_sum_unique(&url, &db, "ids").await, "1020\t519690\t1020\n");
    // A commit with nothing buffered inserts nothing.
    sink.commit().await.unwrap();
    assert_eq!(count_sum_unique(&url, &db, "ids").await, "1020\t519690\t1020\n");

    // With a short flush interval, a write after it has passed inserts the buffer.
    let def = sink_table("id BIGINT", &url, &db, "ids", ", 'sink.flush-interval' = '300ms'");
    let mut sink = open_sink(&def);
    sink.write(ChangeBatch::inserts(ids(&def, 2000..2005))).await.unwrap();
    assert_eq!(query(&url, &format!("SELECT count() FROM {db}.ids WHERE id >= 2000")).await, "0\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    sink.write(ChangeBatch::inserts(ids(&def, 2005..2006))).await.unwrap();
    assert_eq!(query(&url, &format!("SELECT count() FROM {db}.ids WHERE id >= 2000")).await, "6\n");
    drop_database(&url, &db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replacing_merge_tree_keeps_the_newest_version_of_each_key() {
    let (url, db) = new_database("ch_upsert").await;
    let def = sink_table(
        "id BIGINT, name STRING, version BIGINT, PRIMARY KEY (id) NOT ENFORCED",
        &url,
        &db,
        "latest",
        ", 'sink.create-table' = 'true', 'sink.table-engine' = 'ReplacingMergeTree(version)',
           'sink.low-cardinality' = 'name'",
    );
    let rows = |id: Vec<i64>, name: Vec<&str>, version: Vec<i64>| {
        batch(&def, vec![Arc::new(Int64Array::from(id)), Arc::new(StringArray::from(name)), Arc::new(Int64Array::from(version))])
    };
    let mut sink = open_sink(&def);
    sink.write(ChangeBatch::inserts(rows(vec![1, 2], vec!["one", "two"], vec![1, 1]))).await.unwrap();
    sink.commit().await.unwrap();
    sink.write(ChangeBatch::inserts(rows(vec![1], vec!["uno"], vec![2]))).await.unwrap();
    sink.commit().await.unwrap();
    // An older version inserted later loses too.
    sink.write(ChangeBatch::inserts(rows(vec![2], vec!["stale"], vec![0]))).await.unwrap();
    sink.commit().await.unwrap();
    let latest = query(&url, &format!("SELECT id, name, version FROM {db}.latest FINAL ORDER BY id FORMAT TabSeparated")).await;
    assert_eq!(latest, "1\tuno\t2\n2\ttwo\t1\n");
    // The key and version columns are not Nullable (ClickHouse refuses that), the rest are.
    let types = query(&url, &format!("SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'latest' FORMAT TabSeparated")).await;
    assert_eq!(types, "id\tInt64\nname\tLowCardinality(Nullable(String))\nversion\tInt64\n");
    let engine =
        query(&url, &format!("SELECT engine_full, sorting_key FROM system.tables WHERE database = '{db}' AND name = 'latest' FORMAT TabSeparated")).await;
    assert!(engine.starts_with("ReplacingMergeTree(version) ORDER BY id") && engine.ends_with("\tid\n"), "{engine}");
    drop_database(&url, &db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_mistakes_fail_at_once_with_clear_messages() {
    let (url, db) = new_database("ch_errors").await;
    query(&url, &format!("CREATE TABLE {db}.narrow (id Int32) ENGINE = MergeTree ORDER BY id")).await;
    let first_error = |def: TableDef| async move {
        let started = Instant::now();
        let mut sink = open_sink(&def);
        let e = sink.write(ChangeBatch::inserts(ids(&def, 0..1))).await.unwrap_err().to_string();
        // Nothing here is retried (that would take about 40 s).
        assert!(started.elapsed() < Duration::from_secs(5), "{e} took {:?}", started.elapsed());
        e
    };
    let at = format!("cannot write to ClickHouse table `{db}`.`missing` at {url}");
    assert_eq!(
        first_error(sink_table("id BIGINT", &url, &db, "missing", "")).await,
        format!("{at}: the table does not exist; create it, or set 'sink.create-table' = 'true'")
    );
    query(&url, &format!("CREATE TABLE {db}.two (id Int64, other String) ENGINE = MergeTree ORDER BY id")).await;
    let def = sink_table("id BIGINT, name STRING", &url, &db, "two", "");
    let e = open_sink(&def)
        .write(ChangeBatch::inserts(batch(&def, vec![Arc::new(Int64Array::from(vec![1])), Arc::new(StringArray::from(vec!["a"]))])))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("cannot write to ClickHouse table `{db}`.`two` at {url}: column 'name' does not exist in the ClickHouse table, which has: id, other")
    );
    let at = format!("cannot write to ClickHouse table `{db}`.`narrow` at {url}");
    assert_eq!(
        first_error(sink_table("id BIGINT", &url, &db, "narrow", "")).await,
        format!("{at}: column 'id': cannot write Int64 into ClickHouse type Int32 (expected Int64)")
    );
    // The server's own messages come through: a wrong password (401)...
    let e = first_error(sink_table("id BIGINT", &url, &db, "narrow", ", 'username' = 'default', 'password' = 'wrong'")).await;
    assert!(e.starts_with(&format!("cannot read the ClickHouse server version at {url}: Code: ")), "{e}");
    assert!(e.contains("DB::Exception") && !e.contains("e.what()"), "{e}");
    // ...an unknown engine (a 500 on old servers, but its code says it is permanent)...
    let e = first_error(sink_table("id BIGINT", &url, &db, "made", ", 'sink.create-table' = 'true', 'sink.table-engine' = 'NoSuchMergeTree'")).await;
    assert!(e.starts_with(&format!("cannot create ClickHouse table `{db}`.`made` at {url}: Code: 56")), "{e}");
    assert!(e.contains("NoSuchMergeTree"), "{e}");
    // ...and a table dropped while the sink runs.
    query(&url, &format!("CREATE TABLE {db}.dropped (id Int64) ENGINE = MergeTree ORDER BY id")).await;
    let def = sink_table("id BIGINT", &url, &db, "dropped", "");
    let mut sink = open_sink(&def);
    sink.write(ChangeBatch::inserts(ids(&def, 0..1))).await.unwrap();
    sink.commit().await.unwrap();
    query(&url, &format!("DROP TABLE {db}.dropped")).await;
    sink.write(ChangeBatch::inserts(ids(&def, 1..2))).await.unwrap();
    let started = Instant::now();
    let e = sink.commit().await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5), "{e} took {:?}", started.elapsed());
    assert!(e.starts_with(&format!("cannot insert 1 rows into ClickHouse table `{db}`.`dropped` at {url}: Code: 60")), "{e}");
    assert!(e.contains(&format!("{db}.dropped")), "{e}");
    drop_database(&url, &db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_is_retried_and_every_row_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().to_path_buf();
    let url = {
        let run_dir = run_dir.clone();
        tokio::task::spawn_blocking(move || CLICKHOUSE.start(Some(&run_dir))).await.unwrap()
    };
    let db = unique_name("ch_outage");
    query(&url, &format!("CREATE DATABASE {db}")).await;
    let def = sink_table("id BIGINT", &url, &db, "ids", ", 'sink.create-table' = 'true'");
    let mut sink = open_sink(&def);
    sink.write(ChangeBatch::inserts(ids(&def, 0..500))).await.unwrap();
    sink.commit().await.unwrap();

    {
        let run_dir = run_dir.clone();
        tokio::task::spawn_blocking(move || CLICKHOUSE.stop(&run_dir)).await.unwrap();
    }
    let restart = {
        let run_dir = run_dir.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            tokio::task::spawn_blocking(move || CLICKHOUSE.start(Some(&run_dir))).await.unwrap()
        })
    };
    let started = Instant::now();
    sink.write(ChangeBatch::inserts(ids(&def, 500..1000))).await.unwrap();
    sink.commit().await.unwrap();
    // The commit waited for the server to come back.
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(restart.await.unwrap(), url);
    sink.write(ChangeBatch::inserts(ids(&def, 1000..1500))).await.unwrap();
    sink.commit().await.unwrap();
    assert_eq!(count_sum_unique(&url, &db, "ids").await, "1500\t1124250\t1500\n");

    drop_database(&url, &db).await;
    tokio::task::spawn_blocking(move || CLICKHOUSE.stop(&run_dir)).await.unwrap();
}

/// `exactly-once`: each checkpoint's rows go in one INSERT tagged with the run and
/// checkpoint; a restarted sink inserts a restored checkpoint only if no row has its
/// tag, and a table without the tag column is refused with what to do.
#[tokio::test]
async fn exactly_once_inserts_each_checkpoint_once_across_crashes() {
    let (url, db) = new_database("exactly_once").await;
    let def = sink_table("n BIGINT", &url, &db, "counts", ", 'sink.create-table' = 'true', 'sink.delivery-guarantee' = 'exactly-once'");
    let rows = |ns: &[i64]| batch(&def, vec![Arc::new(Int64Array::from(ns.to_vec())) as ArrayRef]);
    let committed = || async {
        let text = query(&url, &format!("SELECT n FROM {db}.counts ORDER BY n FORMAT TabSeparated")).await;
        text.lines().map(|l| l.parse::<i64>().unwrap()).collect::<Vec<_>>()
    };

    let mut first = open_sink(&def);
    first.write(ChangeBatch::inserts(rows(&[1, 2]))).await.unwrap();
    let saved_1 = first.prepare(1).await.unwrap();
    first.commit_checkpoint(1).await.unwrap();
    assert_eq!(committed().await, vec![1, 2]);
    first.write(ChangeBatch::inserts(rows(&[3]))).await.unwrap();
    let saved_2 = first.prepare(2).await.unwrap();
    assert_eq!(committed().await, vec![1, 2], "held until checkpoint 2 is saved");
    drop(first);
    // Crash before checkpoint 2's INSERT: the restart inserts it.
    let mut second = open_sink(&def);
    second.recover(&saved_2).await.unwrap();
    assert_eq!(committed().await, vec![1, 2, 3]);
    // Crash after it: restoring checkpoint 2 again, or checkpoint 1, inserts nothing twice.
    let mut third = open_sink(&def);
    third.recover(&saved_2).await.unwrap();
    third.recover(&saved_1).await.unwrap();
    assert_eq!(committed().await, vec![1, 2, 3]);
    // A fresh run (checkpoint ids from 1 again) is its own.
    let mut fresh = open_sink(&def);
    fresh.write(ChangeBatch::inserts(rows(&[4]))).await.unwrap();
    fresh.prepare(1).await.unwrap();
    fresh.commit_checkpoint(1).await.unwrap();
    fresh.write(ChangeBatch::inserts(rows(&[5]))).await.unwrap();
    fresh.commit().await.unwrap();
    assert_eq!(committed().await, vec![1, 2, 3, 4, 5]);
    let tags = query(&url, &format!("SELECT uniqExact(_eddy_epoch) FROM {db}.counts")).await;
    assert_eq!(tags.trim(), "4", "one tag per checkpoint or commit");
    drop(fresh);
    // The last commit of a run that keeps checkpoints is final: killed after it, the
    // run restarts from its last checkpoint and replays the tail, which inserts nothing.
    replay_after_a_final_commit(|| open_sink(&def), rows(&[6]), rows(&[7])).await;
    assert_eq!(committed().await, vec![1, 2, 3, 4, 5, 6, 7]);

    // A table made without the tag column cannot take exactly-once rows.
    query(&url, &format!("CREATE TABLE {db}.plain (n Int64) ENGINE = MergeTree ORDER BY n")).await;
    let plain = sink_table("n BIGINT", &url, &db, "plain", ", 'sink.delivery-guarantee' = 'exactly-once'");
    let mut sink = open_sink(&plain);
    sink.write(ChangeBatch::inserts(batch(&plain, vec![Arc::new(Int64Array::from(vec![1])) as ArrayRef]))).await.unwrap();
    let error = sink.commit().await.unwrap_err().to_string();
    assert!(error.contains("exactly-once needs a String column '_eddy_epoch'") && error.contains("ADD COLUMN"), "{error}");
    drop_database(&url, &db).await;
}
