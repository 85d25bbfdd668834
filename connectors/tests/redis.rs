//! The Redis sink against a real Redis server (scripts/redis/start): every mode,
//! read back with the redis crate and compared with values worked out by hand.
#![allow(clippy::unwrap_used)] // a panic in a test is a failure with a backtrace

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use eddy_connectors::create_sink;
use eddy_connectors::testing::{redis_connection, redis_delete_prefix, unique_name, REDIS};
use eddy_engine::table::TableDef;
use eddy_engine::{ChangeBatch, Sink};
use redis::AsyncCommands;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("window_start", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
    ]))
}

/// Rows (window start ms, auction, bidder, price).
fn batch(rows: &[(i64, i64, Option<&str>, Option<f64>)]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
        Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

fn sink(url: &str, opts: &[(&str, &str)]) -> Box<dyn Sink> {
    let mut all = vec![("connector", "redis"), ("url", url)];
    all.extend_from_slice(opts);
    let fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let def = TableDef::from_fields("dash", &fields, &all);
    create_sink(&def, schema()).unwrap()
}

const MINUTE: i64 = 60_000;

#[tokio::test(flavor = "multi_thread")]
async fn hash_mode_writes_a_hash_per_key_and_deletes_null_fields() {
    let url = REDIS.shared();
    let p = unique_name("hash");
    let key = format!("{p}:{{auction}}");
    let mut s = sink(&url, &[("key", &key), ("value.fields", "bidder,price")]);
    s.write(ChangeBatch::inserts(batch(&[(0, 1, Some("ann"), Some(10.5)), (0, 2, Some("bob"), Some(3.0))]))).await.unwrap();
    // Auction 1 again: price overwritten, bidder null → the field is removed.
    s.write(ChangeBatch::inserts(batch(&[(MINUTE, 1, None, Some(12.0))]))).await.unwrap();
    s.commit().await.unwrap();

    let mut c = redis_connection(&url).await;
    let one: BTreeMap<String, String> = c.hgetall(format!("{p}:1")).await.unwrap();
    assert_eq!(one, BTreeMap::from([("price".to_string(), "12.0".to_string())]));
    let two: BTreeMap<String, String> = c.hgetall(format!("{p}:2")).await.unwrap();
    assert_eq!(two, BTreeMap::from([("bidder".to_string(), "bob".to_string()), ("price".to_string(), "3.0".to_string())]));
    redis_delete_prefix(&url, &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn string_mode_sets_counters_with_a_ttl() {
    let url = REDIS.shared();
    let p = unique_name("count");
    let key = format!("{p}:{{auction}}");
    let mut s = sink(&url, &[("mode", "string"), ("key", &key), ("value.field", "price"), ("ttl", "1 h")]);
    s.write(ChangeBatch::inserts(batch(&[(0, 7, Some("x"), Some(42.0)), (0, 8, Some("y"), None)]))).await.unwrap();
    let mut c = redis_connection(&url).await;
    let v: Option<String> = c.get(format!("{p}:7")).await.unwrap();
    assert_eq!(v.as_deref(), Some("42.0"));
    let ttl: i64 = c.pttl(format!("{p}:7")).await.unwrap();
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "ttl {ttl} ms");
    let gone: Option<String> = c.get(format!("{p}:8")).await.unwrap();
    assert_eq!(gone, None, "a null value deletes the key");
    redis_delete_prefix(&url, &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zset_mode_keeps_a_leaderboard_per_window_and_a_replay_changes_nothing() {
    let url = REDIS.shared();
    let p = unique_name("top");
    let key = format!("{p}:{{window_start}}");
    let rows = batch(&[(0, 1, Some("ann"), Some(5.0)), (0, 1, Some("bob"), Some(9.0)), (0, 1, Some("cy"), Some(7.0)), (MINUTE, 1, Some("ann"), Some(1.0))]);
    let mut s = sink(&url, &[("mode", "zset"), ("key", &key), ("zset.score", "price"), ("zset.member", "{bidder}")]);
    s.write(ChangeBatch::inserts(rows.clone())).await.unwrap();
    let mut c = redis_connection(&url).await;
    let first = format!("{p}:1970-01-01 00:00:00.000");
    let read = |c: &mut redis::aio::MultiplexedConnection, k: String| {
        let mut c = c.clone();
        async move { c.zrevrange_withscores::<_, Vec<(String, f64)>>(k, 0, -1).await.unwrap() }
    };
    let expected = vec![("bob".to_string(), 9.0), ("cy".to_string(), 7.0), ("ann".to_string(), 5.0)];
    assert_eq!(read(&mut c, first.clone()).await, expected);
    assert_eq!(read(&mut c, format!("{p}:1970-01-01 00:01:00.000")).await, vec![("ann".to_string(), 1.0)]);
    // A replay of the same window (after a restart) leaves the same state.
    let mut again = sink(&url, &[("mode", "zset"), ("key", &key), ("zset.score", "price"), ("zset.member", "{bidder}")]);
    again.write(ChangeBatch::inserts(rows)).await.unwrap();
    assert_eq!(read(&mut c, first).await, expected);
    redis_delete_prefix(&url, &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_and_list_modes_append() {
    let url = REDIS.shared();
    let p = unique_name("feed");
    let mut stream = sink(&url, &[("mode", "stream"), ("key", &format!("{p}:s")), ("value.fields", "auction,bidder")]);
    stream.write(ChangeBatch::inserts(batch(&[(0, 1, Some("ann"), None), (0, 2, None, None)]))).await.unwrap();
    let mut list = sink(&url, &[("mode", "list"), ("key", &format!("{p}:l:{{auction}}"))]);
    list.write(ChangeBatch::inserts(batch(&[(0, 1, Some("ann"), Some(2.5)), (MINUTE, 1, None, None)]))).await.unwrap();

    let mut c = redis_connection(&url).await;
    let entries: redis::streams::StreamRangeReply = c.xrange_all(format!("{p}:s")).await.unwrap();
    let fields: Vec<BTreeMap<String, String>> =
        entries.ids.iter().map(|e| e.map.iter().map(|(k, v)| (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap())).collect()).collect();
    assert_eq!(
        fields,
        vec![
            BTreeMap::from([("auction".to_string(), "1".to_string()), ("bidder".to_string(), "ann".to_string())]),
            BTreeMap::from([("auction".to_string(), "2".to_string())]),
        ]
    );
    let items: Vec<String> = c.lrange(format!("{p}:l:1"), 0, -1).await.unwrap();
    assert_eq!(
        items,
        vec![
            r#"{"window_start":"1970-01-01 00:00:00.000","auction":1,"bidder":"ann","price":2.5}"#,
            r#"{"window_start":"1970-01-01 00:01:00.000","auction":1,"bidder":null,"price":null}"#,
        ]
    );
    redis_delete_prefix(&url, &p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_fail_at_once_with_the_servers_message() {
    let url = REDIS.shared();
    let p = unique_name("wrongtype");
    let mut c = redis_connection(&url).await;
    let _: () = c.set(format!("{p}:1"), "a string").await.unwrap();
    let mut s = sink(&url, &[("key", &format!("{p}:{{auction}}"))]);
    let started = std::time::Instant::now();
    let e = s.write(ChangeBatch::inserts(batch(&[(0, 1, Some("ann"), Some(1.0))]))).await.unwrap_err().to_string();
    assert!(e.contains("WRONGTYPE") && e.contains("writing 1 rows to Redis at 127.0.0.1:"), "{e}");
    assert!(!e.contains("retries"), "a wrong type is not retried: {e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    redis_delete_prefix(&url, &p).await;

    let with_password = url.replace("redis://", "redis://eddy:wrong@");
    let mut s = sink(&with_password, &[("key", &format!("{p}:{{auction}}"))]);
    let e = s.write(ChangeBatch::inserts(batch(&[(0, 1, Some("ann"), Some(1.0))]))).await.unwrap_err().to_string();
    assert!(e.to_ascii_lowercase().contains("auth") || e.contains("WRONGPASS"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_restart_mid_run_loses_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let url = REDIS.start(Some(dir.path()));
    let p = unique_name("restart");
    let key = format!("{p}:{{auction}}");
    let mut s = sink(&url, &[("key", &key), ("value.fields", "price")]);
    s.write(ChangeBatch::inserts(batch(&[(0, 1, None, Some(1.0))]))).await.unwrap();

    REDIS.stop(dir.path());
    let restart_dir = dir.path().to_path_buf();
    let restarted = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(2));
        REDIS.start(Some(&restart_dir))
    });
    // Written while the server is down: retried until it is back.
    let rows: Vec<(i64, i64, Option<&str>, Option<f64>)> = (2..=100).map(|a| (0, a, None, Some(a as f64))).collect();
    s.write(ChangeBatch::inserts(batch(&rows))).await.unwrap();
    assert_eq!(restarted.await.unwrap(), url, "the server came back on its port");

    let mut c = redis_connection(&url).await;
    for a in 1..=100i64 {
        let price: Option<String> = c.hget(format!("{p}:{a}"), "price").await.unwrap();
        assert_eq!(price, Some(format!("{:.1}", a as f64)), "auction {a}");
    }
    REDIS.stop(dir.path());
}

/// Exactly-once appends: rows wait for their checkpoint, go out in one
/// transaction with the epoch marker, and a restart that replays the checkpoint's
/// held rows (the crash came before or after that transaction) writes each once.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_appends_survive_a_crash_on_either_side_of_the_commit() {
    let url = REDIS.shared();
    let p = unique_name("exact");
    let options =
        [("mode", "list"), ("key", &format!("{p}:l")[..]), ("sink.delivery-guarantee", "exactly-once"), ("sink.epoch-key", &format!("{p}:epoch")[..])];
    let mut c = redis_connection(&url).await;
    let list = |c: &mut redis::aio::MultiplexedConnection| {
        let key = format!("{p}:l");
        let mut c = c.clone();
        async move {
            let items: Vec<String> = c.lrange(key, 0, -1).await.unwrap();
            items.iter().map(|i| serde_json::from_str::<serde_json::Value>(i).unwrap()["auction"].as_i64().unwrap()).collect::<Vec<_>>()
        }
    };

    let mut first = sink(&url, &options);
    first.write(ChangeBatch::inserts(batch(&[(0, 1, None, None), (0, 2, None, None)]))).await.unwrap();
    assert!(list(&mut c).await.is_empty(), "held until the checkpoint is saved");
    let saved_1 = first.prepare(1).await.unwrap();
    first.commit_checkpoint(1).await.unwrap();
    assert_eq!(list(&mut c).await, vec![1, 2]);
    first.write(ChangeBatch::inserts(batch(&[(0, 3, None, None)]))).await.unwrap();
    let saved_2 = first.prepare(2).await.unwrap();
    // Crash before checkpoint 2's transaction: the restart restores checkpoint 2 and writes its rows.
    drop(first);
    let mut second = sink(&url, &options);
    second.recover(&saved_2).await.unwrap();
    assert_eq!(list(&mut c).await, vec![1, 2, 3]);
    // Crash after it: restoring checkpoint 2 again writes nothing twice; nor does an older one.
    let mut third = sink(&url, &options);
    third.recover(&saved_2).await.unwrap();
    third.recover(&saved_1).await.unwrap();
    assert_eq!(list(&mut c).await, vec![1, 2, 3]);
    // The run goes on: checkpoint 3 is written once.
    third.write(ChangeBatch::inserts(batch(&[(0, 4, None, None)]))).await.unwrap();
    third.prepare(3).await.unwrap();
    third.commit_checkpoint(3).await.unwrap();
    assert_eq!(list(&mut c).await, vec![1, 2, 3, 4]);
    // A fresh run of the pipeline (checkpoint ids from 1 again) is not taken for a replay.
    let mut fresh = sink(&url, &options);
    fresh.write(ChangeBatch::inserts(batch(&[(0, 5, None, None)]))).await.unwrap();
    fresh.prepare(1).await.unwrap();
    fresh.commit_checkpoint(1).await.unwrap();
    assert_eq!(list(&mut c).await, vec![1, 2, 3, 4, 5]);
    redis_delete_prefix(&url, &p).await;
}
