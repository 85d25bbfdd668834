//! End-to-end through Kafka: the real `eddy` binary reads a topic of a real broker,
//! aggregates event-time windows and writes another topic.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{committed_ids, eddy, kafka_table, newest_checkpoint, read_parquet_dir};
use eddy_connectors::kafka::testing::{broker, create_topic, produce, read_all, unique_topic, ReadRecord, TestRecord};

/// 2024-01-01 00:00:00 UTC.
const BASE_MS: i64 = 1_704_067_200_000;

/// `(window_start as written by the sink, user) -> clicks` from the output topic's JSON values.
fn counts(records: &[ReadRecord]) -> BTreeMap<(String, i64), i64> {
    records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r.value.as_deref().expect("value")).expect("JSON value");
            let start = v["window_start"].as_str().expect("window_start").to_string();
            let user = v["user_id"].as_i64().expect("user_id");
            let key: serde_json::Value = serde_json::from_str(r.key.as_deref().expect("key")).expect("JSON key");
            assert_eq!(key["user_id"].as_i64(), Some(user), "the key is the user");
            ((start, user), v["clicks"].as_i64().expect("clicks"))
        })
        .collect()
}

fn window_name(start_ms: i64) -> String {
    let secs = (start_ms - BASE_MS) / 1000;
    format!("2024-01-01 00:{:02}:{:02}.000", secs / 60, secs % 60)
}

fn pipeline(source: &str, sink: &str, bootstrap: &str, source_options: &str) -> String {
    format!(
        "{};
         CREATE TABLE per_user (window_start TIMESTAMP(3), window_end TIMESTAMP(3), user_id BIGINT, clicks BIGINT)
         WITH ('connector' = 'kafka', 'topic' = '{sink}', 'properties.bootstrap.servers' = '{bootstrap}',
               'key.fields' = 'user_id');
         INSERT INTO per_user
         SELECT window_start, window_end, user_id, COUNT(*)
         FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, user_id;",
        kafka_table("clicks", "user_id BIGINT, url STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND", source, bootstrap, source_options)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_aggregates_a_kafka_topic_into_another() {
    let bootstrap = broker();
    let (source, sink) = (unique_topic("clicks"), unique_topic("per-user"));
    create_topic(&bootstrap, &source, 3).await;
    create_topic(&bootstrap, &sink, 2).await;
    // 3000 clicks 12 ms apart (36 s of event time) spread over 3 partitions, in
    // time order within each partition, plus one malformed record.
    let mut records = Vec::new();
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for i in 0..3000i64 {
        let ts = BASE_MS + i * 12;
        let user = (i * 7) % 11;
        records.push(TestRecord::value((i % 3) as i32, format!(r#"{{"user_id": {user}, "url": "/p/{i}", "ts": {ts}}}"#)));
        *expected.entry((window_name(ts - ts.rem_euclid(10_000)), user)).or_default() += 1;
    }
    records.push(TestRecord::value(1, "not json"));
    produce(&bootstrap, &source, &records).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("pipeline.sql");
    std::fs::write(&script, pipeline(&source, &sink, &bootstrap, ", 'scan.bounded.mode' = 'latest-offset'")).expect("script");
    let output = eddy().arg("run").arg(&script).output().expect("run eddy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "eddy run failed:\n{stderr}");
    assert!(stderr.contains(&format!("{source} partition 1 offset 1000")), "the malformed record is reported:\n{stderr}");
    let got = counts(&read_all(&bootstrap, &sink));
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_does_not_hold_windows_back() {
    let bootstrap = broker();
    let (source, sink) = (unique_topic("idle-clicks"), unique_topic("idle-out"));
    create_topic(&bootstrap, &source, 2).await;
    create_topic(&bootstrap, &sink, 1).await;
    // Only partition 0 gets clicks: 25 s of event time, one click a second.
    let records: Vec<TestRecord> = (0..25).map(|s| TestRecord::value(0, format!(r#"{{"user_id": 1, "url": "/", "ts": {}}}"#, BASE_MS + s * 1000))).collect();
    produce(&bootstrap, &source, &records).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("pipeline.sql");
    std::fs::write(&script, pipeline(&source, &sink, &bootstrap, ", 'scan.watermark.idle-timeout' = '1s'")).expect("script");
    let mut child = eddy().arg("run").arg(&script).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start eddy");
    // Unbounded: wait for the two windows the watermark (24 s - 1 s) has closed, then stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = BTreeMap::new();
    while got.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        got = counts(&read_all(&bootstrap, &sink));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("eddy exits");
    let expected = BTreeMap::from([((window_name(BASE_MS), 1), 10), ((window_name(BASE_MS + 10_000), 1), 10)]);
    assert_eq!(got, expected, "eddy stderr:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// `(window_start ms, user) -> clicks` of a Parquet output.
fn parquet_counts(dir: &std::path::Path) -> BTreeMap<(i64, i64), i64> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};
    let mut out = BTreeMap::new();
    for b in read_parquet_dir(dir) {
        let start = b.column(0).as_primitive::<TimestampMillisecondType>();
        let user = b.column(1).as_primitive::<Int64Type>();
        let clicks = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert!(out.insert((start.value(i), user.value(i)), clicks.value(i)).is_none(), "a window emitted twice");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_out_of_order_events_round_trip_to_parquet_like_the_batch_run() {
    const EVENTS: i64 = 1_000_000;
    let bootstrap = broker();
    let source = unique_topic("round-trip");
    create_topic(&bootstrap, &source, 8).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Event time advances 1 ms per event; each event is up to 2 s early (out of
    // order), within the watermark's 3 s bound, so no event is late.
    let mut records = Vec::with_capacity(EVENTS as usize);
    let mut lines = String::new();
    let mut expected: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..EVENTS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let ts = BASE_MS + i - (state % 2000) as i64;
        let user = (state >> 20) as i64 % 100;
        let line = format!(r#"{{"user_id": {user}, "url": "/page/{}", "ts": {ts}}}"#, state % 997);
        lines.push_str(&line);
        lines.push('\n');
        records.push(TestRecord::value((i % 8) as i32, line));
        *expected.entry((ts - ts.rem_euclid(60_000), user)).or_default() += 1;
    }
    produce(&bootstrap, &source, &records).await;
    drop(records);
    let events_file = dir.path().join("events.json");
    std::fs::write(&events_file, lines).expect("events file");

    let run = |from: &str, out: &std::path::Path| {
        let sql = format!(
            "CREATE TABLE clicks (user_id BIGINT, url STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '3' SECOND)
             WITH ({from});
             CREATE TABLE per_user (window_start TIMESTAMP(3), user_id BIGINT, clicks BIGINT)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
             INSERT INTO per_user
             SELECT window_start, user_id, COUNT(*) FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
             GROUP BY window_start, window_end, user_id;",
            out.display()
        );
        let script = out.with_extension("sql");
        std::fs::write(&script, sql).expect("script");
        let output = eddy().arg("run").arg(&script).output().expect("run eddy");
        assert!(output.status.success(), "eddy run failed:\n{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
    };
    let streamed = dir.path().join("streamed");
    let summary = run(
        &format!(
            "'connector' = 'kafka', 'topic' = '{source}', 'properties.bootstrap.servers' = '{bootstrap}',
             'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'"
        ),
        &streamed,
    );
    let batch = dir.path().join("batch");
    run(&format!("'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'", events_file.display()), &batch);
    let from_kafka = parquet_counts(&streamed);
    assert_eq!(from_kafka.values().sum::<i64>(), EVENTS, "every event counted once; eddy said:\n{summary}");
    assert_eq!(from_kafka, expected);
    assert_eq!(parquet_counts(&batch), from_kafka, "the batch replay of the same events agrees");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_resumed_again_and_again_the_file_sink_has_every_row_once() {
    let bootstrap = broker();
    let topic = unique_topic("chaos");
    create_topic(&bootstrap, &topic, 4).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, checkpoints) = (dir.path().join("out"), dir.path().join("checkpoints"));
    let script = dir.path().join("copy.sql");
    std::fs::write(
        &script,
        format!(
            "SET 'execution.checkpointing.interval' = '150 ms';
             {};
             CREATE TABLE copy (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO copy SELECT id FROM events;",
            kafka_table("events", "id BIGINT", &topic, &bootstrap, ""),
            out.display()
        ),
    )
    .expect("script");
    let start = || common::Running::start(eddy().arg("run").arg(&script).arg("--checkpoint-dir").arg(&checkpoints).stdout(Stdio::null()).stderr(Stdio::null()));
    let wave = |from: i64| (from..from + 5000).map(|i| TestRecord::value((i % 4) as i32, format!(r#"{{"id": {i}}}"#))).collect::<Vec<_>>();
    let wait_for_checkpoint = |after: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while newest_checkpoint(&checkpoints) <= after {
            assert!(Instant::now() < deadline, "no checkpoint after {after}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Five times: more events arrive, a checkpoint completes, more events arrive, and
    // the engine is killed with SIGKILL while it copies them.
    let mut kills = 0;
    for round in 0..5 {
        produce(&bootstrap, &topic, &wave(round * 10_000)).await;
        let mut running = start();
        wait_for_checkpoint(newest_checkpoint(&checkpoints));
        produce(&bootstrap, &topic, &wave(round * 10_000 + 5000)).await;
        std::thread::sleep(Duration::from_millis(30 * (round as u64 + 1)));
        running.kill();
        kills += 1;
    }
    // The last run catches up; every event must be in the files exactly once.
    let mut running = start();
    let want: Vec<i64> = (0..50_000).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = committed_ids(&out);
    while got.len() < want.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = committed_ids(&out);
    }
    running.kill();
    println!("{kills} kills, {} rows compared", want.len());
    assert_eq!(got.len(), want.len(), "rows lost or written twice");
    assert_eq!(got, want);
}

/// The newest value per key in an upsert topic, checking that every version of a
/// key is in one partition and that its counts only grow, in offset order.
fn latest_per_key(records: &[ReadRecord]) -> BTreeMap<i64, i64> {
    let mut latest: BTreeMap<i64, (i32, i64)> = BTreeMap::new();
    for r in records {
        let key: serde_json::Value = serde_json::from_str(r.key.as_deref().expect("an upsert record has a key")).expect("JSON key");
        let user = key["user_id"].as_i64().expect("the key is the primary key");
        let value: serde_json::Value = serde_json::from_str(r.value.as_deref().expect("no deletes, so no tombstones")).expect("JSON value");
        assert_eq!(value["user_id"].as_i64(), Some(user));
        let clicks = value["clicks"].as_i64().expect("clicks");
        if let Some((partition, previous)) = latest.insert(user, (r.partition, clicks)) {
            assert_eq!(partition, r.partition, "every version of user {user} is in one partition");
            assert!(clicks > previous, "user {user}: version {clicks} after {previous}");
        }
    }
    latest.into_iter().map(|(user, (_, clicks))| (user, clicks)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_group_by_keeps_an_upsert_kafka_topic_up_to_date() {
    let bootstrap = broker();
    let (source, sink) = (unique_topic("clicks"), unique_topic("user-counts"));
    create_topic(&bootstrap, &source, 2).await;
    create_topic(&bootstrap, &sink, 3).await;
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    let mut produce_clicks = |range: std::ops::Range<i64>| {
        let records: Vec<TestRecord> = range
            .map(|i| {
                let user = (i * 5) % 7;
                *expected.entry(user).or_default() += 1;
                TestRecord::value((i % 2) as i32, format!(r#"{{"user_id": {user}, "url": "/p/{i}", "ts": {}}}"#, BASE_MS + i))
            })
            .collect();
        (records, expected.clone())
    };
    let (first, after_first) = produce_clicks(0..700);
    produce(&bootstrap, &source, &first).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("pipeline.sql");
    std::fs::write(
        &script,
        format!(
            "SET 'execution.checkpointing.interval' = '300 ms';
             {};
             CREATE TABLE user_counts (user_id BIGINT, clicks BIGINT, PRIMARY KEY (user_id) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = '{sink}', 'properties.bootstrap.servers' = '{bootstrap}');
             INSERT INTO user_counts SELECT user_id, COUNT(*) AS clicks FROM clicks GROUP BY user_id;",
            kafka_table("clicks", "user_id BIGINT, url STRING, ts TIMESTAMP(3)", &source, &bootstrap, "")
        ),
    )
    .expect("script");
    let _running = common::Running::start(eddy().arg("run").arg(&script).stderr(Stdio::null()));
    wait_for_topic(&bootstrap, &sink, latest_per_key, after_first).await;
    let (second, after_second) = produce_clicks(700..1500);
    produce(&bootstrap, &source, &second).await;
    wait_for_topic(&bootstrap, &sink, latest_per_key, after_second).await;
}

/// Reads `topic` until `summary` of its records is `want`; fails after 30 s.
async fn wait_for_topic<T: PartialEq + std::fmt::Debug>(bootstrap: &str, topic: &str, summary: fn(&[ReadRecord]) -> T, want: T) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = summary(&read_all(bootstrap, topic));
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} has {got:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Each key's newest record in an upsert topic: `Some(value)` or `None` for a tombstone.
fn newest_per_key(records: &[ReadRecord]) -> BTreeMap<String, Option<serde_json::Value>> {
    let mut newest = BTreeMap::new();
    for r in records {
        let key: serde_json::Value = serde_json::from_str(r.key.as_deref().expect("an upsert record has a key")).expect("JSON key");
        newest.insert(key.to_string(), r.value.as_deref().map(|v| serde_json::from_str(v).expect("JSON value")));
    }
    newest
}

/// A server view over Kafka, and a pipeline reading the view's changelog into
/// upsert-kafka through a filter: a user whose count grows past the filter is
/// retracted and not written again, so its key gets a tombstone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_leaving_a_filter_over_a_view_becomes_an_upsert_kafka_tombstone() {
    let bootstrap = broker();
    let (source, sink) = (unique_topic("clicks"), unique_topic("quiet-users"));
    create_topic(&bootstrap, &source, 2).await;
    create_topic(&bootstrap, &sink, 2).await;
    let clicks = |users: &[(i64, usize)]| -> Vec<TestRecord> {
        users
            .iter()
            .flat_map(|&(user, n)| (0..n).map(move |i| TestRecord::value((user % 2) as i32, format!(r#"{{"user_id": {user}, "url": "/p/{i}"}}"#))))
            .collect()
    };
    produce(&bootstrap, &source, &clicks(&[(1, 2), (2, 3), (3, 1)])).await;

    let data = tempfile::tempdir().expect("temp dir");
    let server = common::Server::start(data.path(), &[]);
    server.ok(&format!(
        "SET 'execution.checkpointing.interval' = '300 ms';
         {};
         CREATE TABLE quiet_users (user_id BIGINT, clicks BIGINT, PRIMARY KEY (user_id) NOT ENFORCED)
         WITH ('connector' = 'upsert-kafka', 'topic' = '{sink}', 'properties.bootstrap.servers' = '{bootstrap}');
         CREATE MATERIALIZED VIEW per_user AS SELECT user_id, COUNT(*) AS clicks FROM clicks GROUP BY user_id;
         INSERT INTO quiet_users SELECT user_id, clicks FROM per_user WHERE clicks < 5;",
        kafka_table("clicks", "user_id BIGINT, url STRING", &source, &bootstrap, "")
    ));
    let key = |user: i64| serde_json::json!({"user_id": user}).to_string();
    let row = |user: i64, clicks: i64| Some(serde_json::json!({"user_id": user, "clicks": clicks}));
    let wait_for = |want| wait_for_topic(&bootstrap, &sink, newest_per_key, want);
    wait_for(BTreeMap::from([(key(1), row(1, 2)), (key(2), row(2, 3)), (key(3), row(3, 1))])).await;
    // User 2 passes the filter's bound: a tombstone. User 1 still counts up, user 3 stays.
    produce(&bootstrap, &source, &clicks(&[(2, 4), (1, 1)])).await;
    wait_for(BTreeMap::from([(key(1), row(1, 3)), (key(2), None), (key(3), row(3, 1))])).await;
    server.terminate();
}

/// A pipeline checkpointed at parallelism 2 resumes at parallelism 3: its keyed
/// state (open TUMBLE windows, open SESSIONs, their rows or their accumulators) is cut by the exchange's hash and
/// spread over the new instances. Events after the restart land in windows and
/// sessions opened before it, so a group restored into the wrong instance would
/// come out twice; the output must equal the counts computed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_taken_at_parallelism_2_resumes_at_parallelism_3() {
    let bootstrap = broker();
    // User i % 40; 10 ms apart, with a 10 s pause every 2,000 events (sessions end
    // there), but none at event 10,000, where the restart is: both halves share windows.
    let ts = |i: i64| BASE_MS + i * 10 + ((i + 1000) / 2000) * 10_000;
    let wave = |range: std::ops::Range<i64>| {
        range.map(|i| TestRecord::value((i % 4) as i32, format!(r#"{{"user_id": {}, "ts": {}}}"#, i % 40, ts(i)))).collect::<Vec<_>>()
    };
    let mut tumbles: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for i in 0..20_000 {
        let (user, t) = (i % 40, ts(i));
        *tumbles.entry((eddy_engine::EventTime(t - t.rem_euclid(10_000)).to_string(), user)).or_default() += 1;
    }
    // Per (session start, key), the events in the session: keys from `key_of`, a new
    // session after a pause of `gap` ms or more.
    let sessions = |key_of: &dyn Fn(i64) -> i64, gap: i64| {
        let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
        let mut open: BTreeMap<i64, (i64, i64)> = BTreeMap::new(); // key -> (session start, last ts)
        for i in 0..20_000 {
            let (key, t) = (key_of(i), ts(i));
            let start = match open.get(&key) {
                Some(&(start, last)) if t - last < gap => start,
                _ => t,
            };
            open.insert(key, (start, t));
            *counts.entry((eddy_engine::EventTime(start).to_string(), key)).or_default() += 1;
        }
        counts
    };
    let queries = [
        ("tumble", "SELECT window_start, user_id, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, user_id", tumbles),
        ("session", "SELECT window_start, user_id, COUNT(*) AS n FROM TABLE(SESSION(TABLE events PARTITION BY user_id, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, user_id", sessions(&|i| i % 40, 5_000)),
        // Two sessions of 10,000 events that outlast the 10 s pauses: each folds its
        // rows into accumulators every 1,024, so the checkpoint holds accumulators,
        // which the restore must cut by key like rows.
        (
            "long-session",
            "SELECT window_start, grp AS user_id, COUNT(*) AS n FROM TABLE(SESSION(TABLE events PARTITION BY grp, DESCRIPTOR(ts), INTERVAL '15' SECOND)) GROUP BY window_start, window_end, grp",
            sessions(&|i| i % 40 % 2, 15_000),
        ),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, query, want) in queries {
        let topic = unique_topic(&format!("rescale-{name}"));
        create_topic(&bootstrap, &topic, 4).await;
        produce(&bootstrap, &topic, &wave(0..10_000)).await;
        let (out, checkpoints) = (dir.path().join(format!("{name}-out")), dir.path().join(format!("{name}-checkpoints")));
        let script = |parallelism: usize, bounded: &str| {
            let path = dir.path().join(format!("{name}-{parallelism}.sql"));
            std::fs::write(
                &path,
                format!(
                    "SET 'parallelism' = '{parallelism}';
                     SET 'execution.checkpointing.interval' = '100 ms';
                     {};
                     CREATE TABLE counts (window_start TIMESTAMP(3), user_id BIGINT, n BIGINT)
                     WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
                     INSERT INTO counts {query};",
                    kafka_table(
                        "events",
                        "user_id BIGINT, ts TIMESTAMP(3), grp AS user_id % 2, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND",
                        &topic,
                        &bootstrap,
                        bounded
                    ),
                    out.display()
                ),
            )
            .expect("script");
            path
        };
        // Parallelism 2 reads the first half and is killed after checkpoints that hold it.
        let mut first =
            common::Running::start(eddy().arg("run").arg(script(2, "")).arg("--checkpoint-dir").arg(&checkpoints).stdout(Stdio::null()).stderr(Stdio::null()));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(newest_checkpoint(&checkpoints) > 0, "{name}: no checkpoint at parallelism 2");
        first.kill();
        // The second half continues the windows and sessions the first left open;
        // parallelism 3 restores, reads it to the end and closes everything.
        produce(&bootstrap, &topic, &wave(10_000..20_000)).await;
        let output = eddy()
            .arg("run")
            .arg(script(3, ", 'scan.bounded.mode' = 'latest-offset'"))
            .arg("--checkpoint-dir")
            .arg(&checkpoints)
            .stdout(Stdio::null())
            .output()
            .expect("eddy run");
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let mut got: BTreeMap<(String, i64), i64> = BTreeMap::new();
        for row in common::committed_rows(&out) {
            let key = (row["window_start"].as_str().expect("window_start").to_string(), row["user_id"].as_i64().expect("user_id"));
            assert!(got.insert(key.clone(), row["n"].as_i64().expect("n")).is_none(), "{name}: {key:?} came out twice");
        }
        assert_eq!(got.len(), want.len(), "{name}: groups");
        assert_eq!(got, want, "{name}");
    }
}

/// `k,n,ids` rows of the `per_k` view, by key.
fn per_k(server: &common::Server) -> BTreeMap<i64, (i64, i64)> {
    server
        .ok_csv("SELECT k, n, ids FROM per_k")
        .lines()
        .skip(1)
        .map(|line| {
            let v: Vec<i64> = line.split(',').map(|x| x.parse().expect("number")).collect();
            (v[0], (v[1], v[2]))
        })
        .collect()
}

/// What `per_k` must hold after events `0..n`: per key, the count and the sum of ids.
fn per_k_of(n: i64) -> BTreeMap<i64, (i64, i64)> {
    let mut want = BTreeMap::new();
    for i in 0..n {
        let (count, ids) = want.entry(i % 10).or_insert((0, 0));
        *count += 1;
        *ids += i;
    }
    want
}

fn wait_for_view(server: &common::Server, want: &BTreeMap<i64, (i64, i64)>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = per_k(server);
    while &got != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = per_k(server);
    }
    assert_eq!(&got, want, "the view's rows after {} events", want.values().map(|v| v.0).sum::<i64>());
}

/// A server pipeline stopped with a savepoint restarts from it with another
/// parallelism (`RESTART PIPELINE ... WITH PARALLELISM`): every group's state is
/// split again by key, no event is lost or counted twice, and the new parallelism
/// is kept when the server itself is killed and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_restarts_with_another_parallelism_and_keeps_it() {
    let bootstrap = broker();
    let topic = unique_topic("savepoint");
    create_topic(&bootstrap, &topic, 4).await;
    let wave =
        |from: i64, n: i64| (from..from + n).map(|i| TestRecord::value((i % 4) as i32, format!(r#"{{"k": {}, "id": {i}}}"#, i % 10))).collect::<Vec<_>>();
    produce(&bootstrap, &topic, &wave(0, 4000)).await;
    let data = tempfile::tempdir().expect("temp dir");
    let server = common::Server::start(data.path(), &[]);
    server.ok(&format!(
        "SET 'parallelism' = '2';
         SET 'execution.checkpointing.interval' = '200 ms';
         {};
         CREATE MATERIALIZED VIEW per_k AS SELECT k, COUNT(*) AS n, SUM(id) AS ids FROM events GROUP BY k;",
        kafka_table("events", "k BIGINT, id BIGINT", &topic, &bootstrap, "")
    ));
    wait_for_view(&server, &per_k_of(4000));
    assert!(server.ok("STOP PIPELINE per_k WITH SAVEPOINT").starts_with("STOP PIPELINE WITH SAVEPOINT"));
    assert!(server.ok("RESTART PIPELINE per_k WITH PARALLELISM 3").contains("RESTART PIPELINE (parallelism 3)"));
    produce(&bootstrap, &topic, &wave(4000, 4000)).await;
    wait_for_view(&server, &per_k_of(8000));

    // Killed: the server starts the pipeline again from its last checkpoint, at parallelism 3.
    let mut server = server;
    server.process.kill();
    let server = common::Server::start(data.path(), &[]);
    produce(&bootstrap, &topic, &wave(8000, 2000)).await;
    wait_for_view(&server, &per_k_of(10_000));
    let mut client = eddy::client::connect(&server.address, None).await.expect("connect");
    let status = client.get_pipeline(eddy_proto::PipelineRef { id: "per_k".into() }).await.expect("GetPipeline").into_inner();
    assert_eq!((status.status.as_str(), status.parallelism), ("RUNNING", 3));
    server.terminate();
}
