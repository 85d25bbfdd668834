//! The Kafka source and sink against a real Apache Kafka broker (started by
//! `scripts/kafka/start`, see `eddy_connectors::kafka::testing`).
#![allow(clippy::unwrap_used)] // a panic in a test is a failure with a backtrace

use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array, MapArray, RecordBatch, StringArray, StructArray, TimestampMillisecondArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampMillisecondType};
use datafusion::arrow::util::pretty::pretty_format_batches;
use eddy_connectors::kafka::testing::{broker, create_topic, produce, read_all, start_broker, stop_broker, unique_topic, TestRecord};
use eddy_connectors::testing::replay_after_a_final_commit;
use eddy_connectors::{create_sink, create_source, source_schema};
use eddy_engine::{ChangeBatch, MalformedRecord, Source, SourcePosition, SourceReader};
use eddy_sql::{parse_script, Statement, TableDef};
use std::sync::Arc;

fn table(sql: &str) -> TableDef {
    match parse_script(sql).unwrap().remove(0).statement {
        Statement::CreateTable(def) => def,
        other => panic!("not a table: {other:?}"),
    }
}

fn open(def: &TableDef) -> Arc<dyn Source> {
    create_source(def, source_schema(def).unwrap()).unwrap_or_else(|e| panic!("{e}"))
}

/// Reads every reader to its end (bounded sources only).
async fn read_to_end(readers: Vec<Box<dyn SourceReader>>) -> (Vec<RecordBatch>, Vec<MalformedRecord>) {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for mut r in readers {
        while let Some(b) = r.next_batch().await.unwrap() {
            rows.push(b.rows.into_rows());
            bad.extend(b.malformed);
        }
    }
    (rows, bad)
}

/// Writes rows `(id, name, ts)` through a sink of `def` (columns `id, name, ts`) and commits them.
async fn write_users(def: &TableDef, ids: Vec<i64>, names: Vec<Option<&str>>, ts: Vec<Option<i64>>) {
    let schema = def.sink_schema();
    let mut sink = create_sink(def, Arc::clone(&schema)).unwrap_or_else(|e| panic!("{e}"));
    let columns: Vec<datafusion::arrow::array::ArrayRef> =
        vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names)), Arc::new(TimestampMillisecondArray::from(ts))];
    sink.write(ChangeBatch::inserts(RecordBatch::try_new(schema, columns).unwrap())).await.unwrap();
    sink.commit().await.unwrap();
}

/// Every row of a bounded table as a printed table, and the records set aside.
async fn read_table(def: &TableDef) -> (String, Vec<MalformedRecord>) {
    let (rows, bad) = read_to_end(open(def).open(1).unwrap()).await;
    let all = concat_batches(&rows[0].schema(), &rows).unwrap();
    (pretty_format_batches(&[all]).unwrap().to_string(), bad)
}

/// A new one-partition topic holding `{"id": 0}` .. `{"id": n-1}`, and a table
/// `t (id BIGINT)` over it with `options` added to its `WITH` clause.
async fn ids_topic(prefix: &str, n: i64, options: &str) -> (String, String, TableDef) {
    let bootstrap = broker();
    let topic = unique_topic(prefix);
    create_topic(&bootstrap, &topic, 1).await;
    let records: Vec<TestRecord> = (0..n).map(|i| TestRecord::value(0, format!(r#"{{"id": {i}}}"#))).collect();
    produce(&bootstrap, &topic, &records).await;
    let def = table(&format!(
        "CREATE TABLE t (id BIGINT) WITH ('connector' = 'kafka', 'topic' = '{topic}',
           'properties.bootstrap.servers' = '{bootstrap}', {options})"
    ));
    (bootstrap, topic, def)
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut out: Vec<i64> = batches.iter().flat_map(|b| b.column_by_name("id").unwrap().as_primitive::<Int64Type>().values().to_vec()).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_reads_every_partition_with_metadata_and_sets_bad_records_aside() {
    let bootstrap = broker();
    let topic = unique_topic("meta");
    create_topic(&bootstrap, &topic, 2).await;
    let rec = |p: i32, key: &str, value: Option<&str>, ts: i64| TestRecord {
        partition: Some(p),
        key: Some(key.into()),
        value: value.map(str::to_string),
        timestamp: Some(ts),
        headers: vec![("origin".into(), format!("p{p}"))],
    };
    produce(
        &bootstrap,
        &topic,
        &[
            rec(0, "a", Some(r#"{"id": 1, "name": "one"}"#), 1_700_000_000_000),
            rec(1, "b", Some(r#"{"id": 2, "name": "two"}"#), 1_700_000_001_000),
            rec(1, "c", Some(r#"{"id": "x", "name": "bad"}"#), 1_700_000_002_000),
            // A tombstone: skipped, not malformed.
            rec(1, "d", None, 1_700_000_003_000),
            rec(1, "e", Some(r#"{"id": 3, "name": "three"}"#), 1_700_000_004_000),
        ],
    )
    .await;
    let def = table(&format!(
        "CREATE TABLE t (id BIGINT, name STRING,
            part INT METADATA FROM 'partition' VIRTUAL, off BIGINT METADATA FROM 'offset' VIRTUAL,
            ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp', k STRING METADATA FROM 'key' VIRTUAL,
            headers STRING METADATA VIRTUAL, topic STRING METADATA VIRTUAL)
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"
    ));
    let source = open(&def);
    assert!(source.is_bounded());
    let readers = source.open(1).unwrap();
    assert_eq!(readers.iter().map(|r| r.describe()).collect::<Vec<_>>(), vec![format!("{topic}/0"), format!("{topic}/1")]);
    let (rows, bad) = read_to_end(readers).await;
    let all = concat_batches(&rows[0].schema(), &rows).unwrap();
    let text = pretty_format_batches(std::slice::from_ref(&all)).unwrap().to_string();
    assert_eq!(all.num_rows(), 3, "{text}");
    let expected_ts = TimestampMillisecondArray::from(vec![1_700_000_000_000, 1_700_000_001_000, 1_700_000_004_000]);
    let ts = all.column_by_name("ts").unwrap().as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.values(), expected_ts.values());
    assert_eq!(all.column_by_name("part").unwrap().as_primitive::<Int32Type>().values().to_vec(), vec![0, 1, 1]);
    assert_eq!(all.column_by_name("off").unwrap().as_primitive::<Int64Type>().values().to_vec(), vec![0, 0, 3]);
    let strings = |c: &str| -> Vec<String> { all.column_by_name(c).unwrap().as_string::<i32>().iter().map(|v| v.unwrap().to_string()).collect() };
    assert_eq!(strings("k"), vec!["a", "b", "e"]);
    assert_eq!(strings("name"), vec!["one", "two", "three"]);
    assert_eq!(strings("headers"), vec![r#"{"origin":"p0"}"#, r#"{"origin":"p1"}"#, r#"{"origin":"p1"}"#]);
    assert!(strings("topic").iter().all(|t| *t == topic));
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].position, format!("{topic} partition 1 offset 1"));
    assert_eq!(bad[0].raw, r#"{"id": "x", "name": "bad"}"#);
    assert!(bad[0].error.contains("id") || bad[0].error.contains("x"), "{}", bad[0].error);
}

/// A map's entries: (key, value) pairs in order, values as lossy UTF-8.
type Entries = Vec<(String, Option<String>)>;

/// Each row's map (None for a NULL map).
fn map_rows(column: &dyn Array) -> Vec<Option<Entries>> {
    let map = column.as_map();
    (0..map.len())
        .map(|row| {
            map.is_valid(row).then(|| {
                let entries = map.value(row);
                let keys = entries.column(0).as_string::<i32>();
                let values = entries.column(1);
                (0..entries.len())
                    .map(|i| {
                        let value = match values.as_binary_opt::<i32>() {
                            Some(b) => b.is_valid(i).then(|| String::from_utf8_lossy(b.value(i)).into_owned()),
                            None => values.as_string::<i32>().is_valid(i).then(|| values.as_string::<i32>().value(i).to_string()),
                        };
                        (keys.value(i).to_string(), value)
                    })
                    .collect()
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_a_map_of_bytes_written_and_read_as_in_flink() {
    let bootstrap = broker();
    let topic = unique_topic("headers");
    create_topic(&bootstrap, &topic, 1).await;
    // Written by Eddy's sink from a MAP<STRING, BYTES> column: a header with a
    // NULL value, an empty map and a NULL map (neither writes a header).
    let out = table(&format!(
        "CREATE TABLE out (id BIGINT, hs MAP<STRING, BYTES> METADATA FROM 'headers')
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}')"
    ));
    let schema = out.sink_schema();
    let DataType::Map(entries, _) = schema.field(1).data_type().clone() else { panic!("hs is no map: {schema:?}") };
    let DataType::Struct(fields) = entries.data_type().clone() else { panic!("map entries are no struct") };
    let keys: ArrayRef = Arc::new(StringArray::from(vec!["trace", "empty"]));
    let values: ArrayRef = Arc::new(BinaryArray::from(vec![Some(&b"t-1"[..]), None]));
    let maps = MapArray::try_new(
        entries,
        OffsetBuffer::new(vec![0, 2, 2, 2].into()),
        StructArray::try_new(fields, vec![keys, values], None).unwrap(),
        Some(NullBuffer::from(vec![true, true, false])),
        false,
    )
    .unwrap();
    let mut sink = create_sink(&out, Arc::clone(&schema)).unwrap_or_else(|e| panic!("{e}"));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(maps)]).unwrap();
    sink.write(ChangeBatch::inserts(batch)).await.unwrap();
    sink.commit().await.unwrap();
    let written: Vec<_> = read_all(&bootstrap, &topic).into_iter().map(|r| (r.value.unwrap(), r.headers)).collect();
    assert_eq!(
        written,
        vec![
            (r#"{"id":1}"#.to_string(), vec![("trace".to_string(), Some("t-1".to_string())), ("empty".to_string(), None)]),
            (r#"{"id":2}"#.to_string(), vec![]),
            (r#"{"id":3}"#.to_string(), vec![]),
        ],
        "the map column is written as headers, not into the value"
    );
    // Written by another producer: a repeated name, whose last value wins in the map.
    let repeated =
        TestRecord { headers: vec![("x".into(), "1".into()), ("y".into(), "2".into()), ("x".into(), "3".into())], ..TestRecord::value(0, r#"{"id": 4}"#) };
    produce(&bootstrap, &topic, &[repeated]).await;
    let source = table(&format!(
        "CREATE TABLE t (id BIGINT, hs MAP<STRING, BYTES> METADATA FROM 'headers' VIRTUAL,
            ht MAP<STRING, STRING> METADATA FROM 'headers' VIRTUAL, hj STRING METADATA FROM 'headers' VIRTUAL)
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"
    ));
    let (rows, bad) = read_to_end(open(&source).open(1).unwrap()).await;
    assert!(bad.is_empty(), "{bad:?}");
    let all = concat_batches(&rows[0].schema(), &rows).unwrap();
    let pair = |k: &str, v: Option<&str>| (k.to_string(), v.map(str::to_string));
    let expected =
        vec![Some(vec![pair("trace", Some("t-1")), pair("empty", None)]), Some(vec![]), Some(vec![]), Some(vec![pair("x", Some("3")), pair("y", Some("2"))])];
    assert_eq!(map_rows(all.column_by_name("hs").unwrap()), expected, "MAP<STRING, BYTES>: a record without headers has an empty map");
    assert_eq!(map_rows(all.column_by_name("ht").unwrap()), expected, "MAP<STRING, STRING>");
    let json: Vec<Option<&str>> = all.column_by_name("hj").unwrap().as_string::<i32>().iter().collect();
    assert_eq!(json, vec![Some(r#"{"empty":null,"trace":"t-1"}"#), None, None, Some(r#"{"x":"3","y":"2"}"#)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_modes_pick_the_first_record() {
    let bootstrap = broker();
    let topic = unique_topic("startup");
    create_topic(&bootstrap, &topic, 2).await;
    let records: Vec<TestRecord> = (0..10)
        .map(|i| TestRecord {
            partition: Some(i % 2),
            value: Some(format!(r#"{{"id": {i}}}"#)),
            timestamp: Some(1_000_000 + i64::from(i) * 1000),
            ..Default::default()
        })
        .collect();
    produce(&bootstrap, &topic, &records).await;
    let read = |mode: &str| {
        let def = table(&format!(
            "CREATE TABLE t (id BIGINT) WITH ('connector' = 'kafka', 'topic' = '{topic}',
               'properties.bootstrap.servers' = '{bootstrap}', 'scan.bounded.mode' = 'latest-offset', {mode})"
        ));
        let source = open(&def);
        async move { ids(&read_to_end(source.open(1).unwrap()).await.0) }
    };
    assert_eq!(read("'scan.startup.mode' = 'earliest-offset'").await, (0..10).collect::<Vec<_>>());
    assert_eq!(read("'scan.startup.mode' = 'latest-offset'").await, Vec::<i64>::new());
    // Records at or after timestamp 1_006_000: ids 6..9.
    assert_eq!(read("'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '1006000'").await, vec![6, 7, 8, 9]);
    // Partition 0 holds ids 0,2,4,6,8 at offsets 0..4; partition 1 holds 1,3,5,7,9.
    assert_eq!(
        read("'scan.startup.mode' = 'specific-offsets', 'scan.startup.specific-offsets' = 'partition:0,offset:3;partition:1,offset:4'").await,
        vec![6, 8, 9]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_resumes_from_its_position_without_loss_or_duplicates() {
    let (_, topic, def) =
        ids_topic("resume", 100, "'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset', 'scan.batch-rows' = '16'").await;
    let source = open(&def);
    let mut reader = source.open(1).unwrap().pop().unwrap();
    let mut first = Vec::new();
    while first.iter().map(RecordBatch::num_rows).sum::<usize>() < 40 {
        first.push(reader.next_batch().await.unwrap().unwrap().rows.into_rows());
    }
    let position = reader.position().unwrap();
    let read_so_far = ids(&first);
    assert_eq!(position, SourcePosition { partition: format!("{topic}/0"), offset: read_so_far.len() as i64 });
    drop(reader);
    let (rest, _) = read_to_end(source.open_at(1, &[position]).unwrap()).await;
    let mut all = read_so_far;
    all.extend(ids(&rest));
    assert_eq!(all, (0..100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_and_idleness_are_reported() {
    let (_, _, def) = ids_topic("lag", 50, "'scan.startup.mode' = 'earliest-offset', 'scan.batch-rows' = '10', 'scan.watermark.idle-timeout' = '500ms'").await;
    let source = open(&def);
    assert!(!source.is_bounded());
    let mut reader = source.open(1).unwrap().pop().unwrap();
    let mut got = 0;
    while got == 0 {
        got = reader.next_batch().await.unwrap().unwrap().rows.num_rows();
    }
    assert!(!reader.is_idle());
    // librdkafka reports the partition's end offset in its statistics, once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.status().lag.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reader.status().lag, Some(50 - got as u64));
    let mut total = got;
    while total < 50 {
        total += reader.next_batch().await.unwrap().unwrap().rows.num_rows();
    }
    assert_eq!(total, 50);
    // Nothing more arrives: after the idle timeout the reader says it is idle.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_idle() && Instant::now() < deadline {
        assert_eq!(reader.next_batch().await.unwrap().unwrap().rows.num_rows(), 0);
    }
    assert!(reader.is_idle());
    assert_eq!(reader.status().lag, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_reported_and_reading_resumes_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("kafka");
    let bootstrap = start_broker(Some(&run));
    let topic = unique_topic("outage");
    create_topic(&bootstrap, &topic, 1).await;
    let batch = |from: i64| -> Vec<TestRecord> { (from..from + 10).map(|i| TestRecord::value(0, format!(r#"{{"id": {i}}}"#))).collect() };
    produce(&bootstrap, &topic, &batch(0)).await;
    let def = table(&format!(
        "CREATE TABLE t (id BIGINT) WITH ('connector' = 'kafka', 'topic' = '{topic}',
           'properties.bootstrap.servers' = '{bootstrap}', 'scan.startup.mode' = 'earliest-offset',
           'properties.reconnect.backoff.max.ms' = '1000')"
    ));
    let mut reader = open(&def).open(1).unwrap().pop().unwrap();
    let mut seen = Vec::new();
    while seen.len() < 10 {
        seen.extend(ids(&[reader.next_batch().await.unwrap().unwrap().rows.into_rows()]));
    }
    stop_broker(&run);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reader.status().problem.is_none() && Instant::now() < deadline {
        assert_eq!(reader.next_batch().await.unwrap().unwrap().rows.num_rows(), 0);
    }
    let problem = reader.status().problem.expect("the outage is reported");
    assert!(problem.contains("retrying"), "{problem}");
    assert_eq!(start_broker(Some(&run)), bootstrap, "the broker comes back on its port");
    produce(&bootstrap, &topic, &batch(10)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 20 && Instant::now() < deadline {
        seen.extend(ids(&[reader.next_batch().await.unwrap().unwrap().rows.into_rows()]));
    }
    seen.sort();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    assert_eq!(reader.status().problem, None);
    stop_broker(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_writes_keys_values_and_timestamps() {
    let bootstrap = broker();
    let topic = unique_topic("sink");
    create_topic(&bootstrap, &topic, 3).await;
    let def = table(&format!(
        "CREATE TABLE out (user_id BIGINT, clicks BIGINT, ts TIMESTAMP(3) METADATA FROM 'timestamp', off BIGINT METADATA FROM 'offset' VIRTUAL)
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
               'key.fields' = 'user_id')"
    ));
    let schema = def.sink_schema();
    assert_eq!(schema.fields().len(), 3, "VIRTUAL columns are not written");
    let mut sink = create_sink(&def, Arc::clone(&schema)).unwrap_or_else(|e| panic!("{e}"));
    let users: Vec<i64> = (0..30).map(|i| i % 5).collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(users.clone())),
            Arc::new(Int64Array::from((0..30).collect::<Vec<i64>>())),
            Arc::new(TimestampMillisecondArray::from((0..30).map(|i| 1_700_000_000_000 + i).collect::<Vec<i64>>())),
        ],
    )
    .unwrap();
    sink.write(ChangeBatch::inserts(batch)).await.unwrap();
    sink.commit().await.unwrap();
    let records = read_all(&bootstrap, &topic);
    assert_eq!(records.len(), 30);
    let mut by_clicks = records.clone();
    by_clicks.sort_by_key(|r| r.timestamp);
    for (i, r) in by_clicks.iter().enumerate() {
        assert_eq!(r.timestamp, Some(1_700_000_000_000 + i as i64));
        assert_eq!(r.value.as_deref(), Some(format!(r#"{{"user_id":{},"clicks":{i}}}"#, users[i]).as_str()));
        assert_eq!(r.key.as_deref(), Some(format!(r#"{{"user_id":{}}}"#, users[i]).as_str()));
    }
    // Records of one key share one partition.
    for user in 0..5 {
        let key = format!(r#"{{"user_id":{user}}}"#);
        let parts: std::collections::BTreeSet<i32> = records.iter().filter(|r| r.key.as_deref() == Some(key.as_str())).map(|r| r.partition).collect();
        assert_eq!(parts.len(), 1, "key {key} went to {parts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_round_robin_spreads_rows_and_raw_values_pass_through() {
    let bootstrap = broker();
    let topic = unique_topic("rr");
    create_topic(&bootstrap, &topic, 3).await;
    let def = table(&format!(
        "CREATE TABLE out (line STRING) WITH ('connector' = 'kafka', 'topic' = '{topic}',
           'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'raw', 'sink.partitioner' = 'round-robin')"
    ));
    let schema = def.sink_schema();
    let mut sink = create_sink(&def, Arc::clone(&schema)).unwrap();
    let lines: Vec<String> = (0..9).map(|i| format!("line {i}, with \"quotes\"")).collect();
    sink.write(ChangeBatch::inserts(RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(lines.clone()))]).unwrap())).await.unwrap();
    sink.commit().await.unwrap();
    let records = read_all(&bootstrap, &topic);
    let mut values: Vec<String> = records.iter().map(|r| r.value.clone().unwrap()).collect();
    values.sort();
    assert_eq!(values, lines);
    for p in 0..3 {
        assert_eq!(records.iter().filter(|r| r.partition == p).count(), 3);
    }
}

#[test]
fn a_missing_topic_is_a_clear_error() {
    let bootstrap = broker();
    let def = table(&format!(
        "CREATE TABLE t (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'no-such-topic-here',
           'properties.bootstrap.servers' = '{bootstrap}')"
    ));
    let err = open(&def).open(1).err().unwrap().to_string();
    assert!(err.contains("no-such-topic-here") && err.contains("create it first"), "{err}");
    let bad = table(
        "CREATE TABLE t (id BIGINT, o BIGINT METADATA FROM 'ofset') WITH ('connector' = 'kafka', 'topic' = 'x',
           'properties.bootstrap.servers' = 'localhost:1')",
    );
    let err = create_source(&bad, source_schema(&bad).unwrap()).err().unwrap().to_string();
    assert!(err.contains("kafka has no metadata 'ofset'") && err.contains("offset BIGINT"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_resume_where_the_group_stopped() {
    let group = unique_topic("group-id");
    let (_, _, def) = ids_topic(
        "group",
        100,
        &format!(
            "'properties.group.id' = '{group}', 'properties.auto.commit.interval.ms' = '100',
             'scan.startup.mode' = 'group-offsets', 'scan.bounded.mode' = 'latest-offset', 'scan.batch-rows' = '10'"
        ),
    )
    .await;
    // The group has no offsets yet: it starts from the beginning.
    let mut reader = open(&def).open(1).unwrap().pop().unwrap();
    let mut first = Vec::new();
    while first.iter().map(RecordBatch::num_rows).sum::<usize>() < 30 {
        first.push(reader.next_batch().await.unwrap().unwrap().rows.into_rows());
    }
    let first = ids(&first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Closing the consumer commits what was handed over.
    tokio::task::spawn_blocking(move || drop(reader)).await.unwrap();
    let (rest, _) = read_to_end(open(&def).open(1).unwrap()).await;
    let mut all = first;
    all.extend(ids(&rest));
    assert_eq!(all, (0..100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_rows_round_trip_and_a_bad_datum_is_set_aside() {
    let bootstrap = broker();
    let topic = unique_topic("avro");
    create_topic(&bootstrap, &topic, 1).await;
    let ddl = |name: &str, extra: &str| {
        table(&format!(
            "CREATE TABLE {name} (id BIGINT NOT NULL, name STRING, ts TIMESTAMP(3))
             WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
                   'format' = 'avro' {extra})"
        ))
    };
    write_users(&ddl("out", ""), vec![1, 2, 3], vec![Some("a"), None, Some("c")], vec![Some(1_704_067_200_000), Some(1_704_067_201_000), None]).await;
    // A datum that is not an Avro record of this schema (a truncated string).
    produce(&bootstrap, &topic, &[TestRecord::value(0, "\u{2}\u{8}ab")]).await;
    let (printed, bad) = read_table(&ddl("t", ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'")).await;
    assert_eq!(
        printed,
        [
            "+----+------+---------------------+",
            "| id | name | ts                  |",
            "+----+------+---------------------+",
            "| 1  | a    | 2024-01-01T00:00:00 |",
            "| 2  |      | 2024-01-01T00:00:01 |",
            "| 3  | c    |                     |",
            "+----+------+---------------------+",
        ]
        .join("\n")
    );
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].position, format!("{topic} partition 0 offset 3"));
    assert!(bad[0].error.contains("not an Avro record"), "{}", bad[0].error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_carries_nested_rows_arrays_and_maps() {
    let bootstrap = broker();
    let topic = unique_topic("avro-nested");
    create_topic(&bootstrap, &topic, 1).await;
    let columns = "id BIGINT, tags ARRAY<STRING>, attrs MAP<STRING, STRING>, pos ROW<lat DOUBLE, lon DOUBLE>";
    let events =
        table(&format!("CREATE TABLE ev ({columns}) WITH ('connector' = 'filesystem', 'path' = 'tests/data/collections/events.json', 'format' = 'json')"));
    let (rows, bad) = read_to_end(open(&events).open(1).unwrap()).await;
    assert!(bad.is_empty(), "{bad:?}");
    let kafka = |name: &str, extra: &str| {
        table(&format!(
            "CREATE TABLE {name} ({columns}) WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'avro' {extra})"
        ))
    };
    let out = kafka("out", "");
    let mut sink = create_sink(&out, out.sink_schema()).unwrap_or_else(|e| panic!("{e}"));
    for batch in &rows {
        let batch = RecordBatch::try_new(out.sink_schema(), batch.columns().to_vec()).unwrap();
        sink.write(ChangeBatch::inserts(batch)).await.unwrap();
    }
    sink.commit().await.unwrap();
    let (printed, bad) = read_table(&kafka("t", ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'")).await;
    assert!(bad.is_empty(), "{bad:?}");
    let json = pretty_format_batches(&[concat_batches(&rows[0].schema(), &rows).unwrap()]).unwrap().to_string();
    assert_eq!(printed, json, "the events read back from Avro are the JSON file's");
    assert!(printed.contains("{lat: -3.25, lon: }") && printed.contains("{k: v, x: y}") && printed.contains("[a, b]"), "{printed}");
}

/// A stand-in for a Confluent schema registry: the two calls Eddy makes
/// (`POST /subjects/{subject}/versions`, `GET /schemas/ids/{id}`), ids from 1,
/// one id per distinct schema. No real registry runs here: Confluent's is not on
/// Maven Central and Karapace is not on PyPI.
struct RegistryStub {
    url: String,
    schemas: Arc<std::sync::Mutex<Vec<String>>>,
}

impl RegistryStub {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let schemas: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let registered = Arc::clone(&schemas);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let schemas = Arc::clone(&registered);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    // The head, then as much body as Content-Length says.
                    let (head, body) = loop {
                        let n = socket.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request).into_owned();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let length = head
                                .lines()
                                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                                .unwrap_or(0);
                            if body.len() >= length {
                                break (head.to_string(), body.to_string());
                            }
                        }
                    };
                    let line = head.lines().next().unwrap_or_default().to_string();
                    let (status, answer) = if line.starts_with("POST /subjects/") {
                        let schema = serde_json::from_str::<serde_json::Value>(&body).unwrap()["schema"].as_str().unwrap().to_string();
                        let mut schemas = schemas.lock().unwrap();
                        let id = match schemas.iter().position(|s| *s == schema) {
                            Some(i) => i + 1,
                            None => {
                                schemas.push(schema);
                                schemas.len()
                            }
                        };
                        ("200 OK", serde_json::json!({ "id": id }))
                    } else if let Some(id) =
                        line.strip_prefix("GET /schemas/ids/").and_then(|rest| rest.split(' ').next()).and_then(|id| id.parse::<usize>().ok())
                    {
                        match schemas.lock().unwrap().get(id.wrapping_sub(1)) {
                            Some(schema) => ("200 OK", serde_json::json!({ "schema": schema })),
                            None => ("404 Not Found", serde_json::json!({ "error_code": 40403, "message": "Schema not found" })),
                        }
                    } else {
                        ("404 Not Found", serde_json::json!({ "error_code": 404, "message": "HTTP 404 Not Found" }))
                    };
                    let answer = answer.to_string();
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        RegistryStub { url, schemas }
    }

    /// Registers a schema directly, as another producer would; its id.
    fn register(&self, schema: &str) -> u8 {
        let mut schemas = self.schemas.lock().unwrap();
        schemas.push(schema.to_string());
        schemas.len() as u8
    }
}

/// `avro-confluent`: the sink registers its schema and frames each record with
/// the id; the source reads every record with its writer's schema, including one
/// written by another producer with other fields in another order, and sets
/// aside records it cannot read (an unknown id, a value not in the wire format).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_confluent_records_are_read_with_their_writers_schema_from_the_registry() {
    let registry = RegistryStub::start().await;
    let bootstrap = broker();
    let topic = unique_topic("avro-confluent");
    create_topic(&bootstrap, &topic, 1).await;
    let ddl = |name: &str, extra: &str| {
        table(&format!(
            "CREATE TABLE {name} (id BIGINT NOT NULL, name STRING, ts TIMESTAMP(3))
             WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
                   'value.format' = 'avro-confluent', 'value.avro-confluent.url' = '{}' {extra})",
            registry.url
        ))
    };
    write_users(&ddl("out", ""), vec![1, 2], vec![Some("a"), None], vec![Some(1_704_067_200_000), None]).await;
    let written = read_all(&bootstrap, &topic);
    assert_eq!(written.len(), 2);
    // The subject got the table's schema; each record starts with 0 and its id (1).
    let subject_schema: serde_json::Value = serde_json::from_str(&registry.schemas.lock().unwrap()[0]).unwrap();
    assert_eq!(subject_schema["fields"][0]["name"], "id");
    assert!(written.iter().all(|r| r.value.as_deref().unwrap().as_bytes()[..5] == [0, 0, 0, 0, 1]));

    // Another producer's schema: name first, then id, an extra field, no ts.
    let other = registry.register(r#"{"type": "record", "name": "user", "fields": [{"name": "name", "type": "string"}, {"name": "id", "type": "long"}, {"name": "extra", "type": ["null", "int"]}]}"#);
    // "zed" (length 3 = zig-zag 6), id 9 (zig-zag 18), extra null (branch 0).
    let datum = format!("\u{0}\u{0}\u{0}\u{0}{}\u{6}zed\u{12}\u{0}", char::from(other));
    produce(&bootstrap, &topic, &[TestRecord::value(0, datum), TestRecord::value(0, "\u{0}\u{0}\u{0}\u{0}\u{63}\u{2}"), TestRecord::value(0, r#"{"id": 5}"#)])
        .await;
    let (printed, bad) = read_table(&ddl("t", ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'")).await;
    assert_eq!(
        printed,
        [
            "+----+------+---------------------+",
            "| id | name | ts                  |",
            "+----+------+---------------------+",
            "| 1  | a    | 2024-01-01T00:00:00 |",
            "| 2  |      |                     |",
            "| 9  | zed  |                     |",
            "+----+------+---------------------+",
        ]
        .join("\n")
    );
    let errors: Vec<&str> = bad.iter().map(|b| b.error.as_str()).collect();
    assert_eq!(bad.len(), 2, "{errors:?}");
    assert!(errors[0].contains("writer schema id 99 was not found"), "{errors:?}");
    assert!(errors[1].contains("not in Confluent's wire format"), "{errors:?}");

    // Without the registry URL the table is refused with the option's name.
    let missing = table(&format!(
        "CREATE TABLE m (id BIGINT) WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'avro-confluent')"
    ));
    let error = create_source(&missing, source_schema(&missing).unwrap()).err().unwrap().to_string();
    assert!(error.contains("avro-confluent.url"), "{error}");
}

/// `exactly-once`: rows appear when their checkpoint's transaction commits; a
/// restarted sink fences the old producer (aborting what it left open) and writes a
/// restored checkpoint again only if its transaction had not committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_rows_commit_with_their_checkpoint_and_survive_a_crash_on_either_side() {
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    let bootstrap = broker();
    let topic = unique_topic("exactly-once");
    create_topic(&bootstrap, &topic, 2).await;
    let id = format!("eddy-test-{topic}");
    let def = table(&format!(
        "CREATE TABLE out (n BIGINT) WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
           'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = '{id}')"
    ));
    let schema = def.sink_schema();
    let rows = |ns: &[i64]| RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(ns.to_vec()))]).unwrap();
    let committed = || {
        let mut ns: Vec<i64> = read_all(&bootstrap, &topic)
            .iter()
            .map(|r| serde_json::from_str::<serde_json::Value>(r.value.as_deref().unwrap()).unwrap()["n"].as_i64().unwrap())
            .collect();
        ns.sort_unstable();
        ns
    };
    // A commit returns once the transaction coordinator has it; the markers that let
    // read_committed readers see its rows reach the partitions just after. So rows
    // a commit wrote are read until they are all there (or 10 s have passed).
    let committed_rows = |want: &[i64]| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = committed();
            if got == want || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let new_sink = || create_sink(&def, Arc::clone(&schema)).unwrap_or_else(|e| panic!("{e}"));

    let mut first = new_sink();
    first.write(ChangeBatch::inserts(rows(&[1, 2]))).await.unwrap();
    let saved_1 = first.prepare(1).await.unwrap();
    assert!(committed().is_empty(), "held until checkpoint 1 is saved");
    first.commit_checkpoint(1).await.unwrap();
    assert_eq!(committed_rows(&[1, 2]), vec![1, 2]);
    first.write(ChangeBatch::inserts(rows(&[3]))).await.unwrap();
    let saved_2 = first.prepare(2).await.unwrap();
    drop(first);
    // A zombie with the same transactional id left a transaction open: the next
    // sink's start must abort it, so its row is never read.
    let zombie: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).set("transactional.id", &id).create().unwrap();
    zombie.init_transactions(Duration::from_secs(30)).unwrap();
    zombie.begin_transaction().unwrap();
    zombie.send(FutureRecord::<str, str>::to(&topic).payload(r#"{"n":-1}"#), Duration::from_secs(10)).await.unwrap();
    zombie.flush(Duration::from_secs(10)).unwrap();
    std::mem::forget(zombie);

    // Crash before checkpoint 2's transaction: the restart writes its rows.
    let mut second = new_sink();
    second.recover(&saved_2).await.unwrap();
    assert_eq!(committed_rows(&[1, 2, 3]), vec![1, 2, 3], "the zombie's open transaction is aborted, checkpoint 2 written once");
    // Crash after it: restoring checkpoint 2 again, or an older one, writes nothing twice.
    let mut third = new_sink();
    third.recover(&saved_2).await.unwrap();
    third.recover(&saved_1).await.unwrap();
    assert_eq!(committed_rows(&[1, 2, 3]), vec![1, 2, 3]);
    // The run goes on; then a fresh run (checkpoint ids from 1 again) is not taken for a replay.
    third.write(ChangeBatch::inserts(rows(&[4]))).await.unwrap();
    third.prepare(3).await.unwrap();
    third.commit_checkpoint(3).await.unwrap();
    drop(third);
    let mut fresh = new_sink();
    fresh.write(ChangeBatch::inserts(rows(&[5]))).await.unwrap();
    fresh.prepare(1).await.unwrap();
    fresh.commit_checkpoint(1).await.unwrap();
    // Without checkpoints, a commit writes what is held in one transaction.
    fresh.write(ChangeBatch::inserts(rows(&[6]))).await.unwrap();
    fresh.commit().await.unwrap();
    assert_eq!(committed_rows(&[1, 2, 3, 4, 5, 6]), vec![1, 2, 3, 4, 5, 6]);
    drop(fresh);
    // The last commit of a run that keeps checkpoints is final: killed after it, the
    // run restarts from its last checkpoint and replays the tail, which writes nothing.
    replay_after_a_final_commit(new_sink, rows(&[7]), rows(&[8])).await;
    assert_eq!(committed_rows(&[1, 2, 3, 4, 5, 6, 7, 8]), vec![1, 2, 3, 4, 5, 6, 7, 8]);
}
