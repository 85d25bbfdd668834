//! End-to-end into the serving layers: the real `eddy` binary aggregates bids per
//! auction and minute and writes them to a real Redis (a hash per auction and
//! minute, a leaderboard per minute) and a real ClickHouse table it creates;
//! the test reads both back and compares with counts worked out here. A second
//! run over the same input (a replay) must leave exactly the same final state.

mod common;

use std::collections::BTreeMap;

use common::{eddy, kafka_table, newest_checkpoint, Running};
use eddy_connectors::kafka::testing::{broker, create_topic, produce, unique_topic, TestRecord};
use eddy_connectors::testing::{clickhouse_query, redis_connection, redis_delete_prefix, unique_name, CLICKHOUSE, REDIS};
use redis::AsyncCommands;

/// 2024-01-01 00:00:00 UTC.
const BASE_MS: i64 = 1_704_067_200_000;

/// `(minute start ms, auction) -> (bids, max price)` for the bids written to `path`.
fn write_bids(path: &std::path::Path) -> BTreeMap<(i64, i64), (i64, i64)> {
    let mut lines = String::new();
    let mut expected: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for i in 0..3000i64 {
        let ts = BASE_MS + i * 97; // about 4.8 minutes of bids
        let auction = (i * 7) % 13;
        let price = (i * 31) % 1000;
        lines.push_str(&format!("{{\"auction\": {auction}, \"bidder\": \"b{}\", \"price\": {price}, \"ts\": {ts}}}\n", i % 17));
        let entry = expected.entry((ts - ts.rem_euclid(60_000), auction)).or_insert((0, i64::MIN));
        entry.0 += 1;
        entry.1 = entry.1.max(price);
    }
    std::fs::write(path, lines).expect("write bids");
    expected
}

fn minute_name(start_ms: i64) -> String {
    format!("2024-01-01 00:{:02}:00.000", (start_ms - BASE_MS) / 60_000)
}

fn pipeline(input: &str, redis: &str, prefix: &str, clickhouse: &str, database: &str) -> String {
    let per_minute = "SELECT window_start, auction, COUNT(*) AS bids, MAX(price) AS max_price
         FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY window_start, window_end, auction";
    format!(
        "CREATE TABLE bids (auction BIGINT, bidder STRING, price BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{input}', 'format' = 'json');
         CREATE TABLE auction_minute (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, max_price BIGINT)
         WITH ('connector' = 'redis', 'url' = '{redis}', 'key' = '{prefix}:bids:{{auction}}:{{window_start}}',
               'value.fields' = 'bids, max_price', 'ttl' = '1 h');
         CREATE TABLE top_auctions (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, max_price BIGINT)
         WITH ('connector' = 'redis', 'url' = '{redis}', 'mode' = 'zset', 'key' = '{prefix}:top:{{window_start}}',
               'zset.score' = 'bids', 'zset.member' = 'auction-{{auction}}');
         CREATE TABLE history (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, max_price BIGINT,
           PRIMARY KEY (window_start, auction) NOT ENFORCED)
         WITH ('connector' = 'clickhouse', 'url' = '{clickhouse}', 'database' = '{database}', 'table' = 'per_minute',
               'sink.create-table' = 'true', 'sink.table-engine' = 'ReplacingMergeTree');
         INSERT INTO auction_minute {per_minute};
         INSERT INTO top_auctions {per_minute};
         INSERT INTO history {per_minute};"
    )
}

async fn clickhouse(url: &str, sql: &str) -> String {
    clickhouse_query(url, sql, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_aggregates_land_in_redis_and_clickhouse_and_a_replay_changes_nothing() {
    let (redis_url, clickhouse_url) = (REDIS.shared(), CLICKHOUSE.shared());
    let prefix = unique_name("e2e");
    let database = unique_name("eddy_e2e");
    clickhouse(&clickhouse_url, &format!("CREATE DATABASE {database}")).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("bids.json");
    let expected = write_bids(&input);
    let script = dir.path().join("pipeline.sql");
    std::fs::write(&script, pipeline(&input.to_string_lossy(), &redis_url, &prefix, &clickhouse_url, &database)).expect("script");

    let mut redis = redis_connection(&redis_url).await;
    for run in 1..=2 {
        let output = eddy().arg("run").arg(&script).output().expect("run eddy");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "run {run}: eddy run failed:\n{stderr}");

        // Redis hashes: one per auction and minute.
        let keys: Vec<String> = redis.keys(format!("{prefix}:bids:*")).await.expect("keys");
        assert_eq!(keys.len(), expected.len(), "run {run}: one hash per auction and minute");
        for ((minute, auction), (bids, max_price)) in &expected {
            let key = format!("{prefix}:bids:{auction}:{}", minute_name(*minute));
            let hash: BTreeMap<String, String> = redis.hgetall(&key).await.expect("hgetall");
            let want = BTreeMap::from([("bids".to_string(), bids.to_string()), ("max_price".to_string(), max_price.to_string())]);
            assert_eq!(hash, want, "run {run}: {key}");
        }
        let ttl: i64 = redis.ttl(format!("{prefix}:bids:0:{}", minute_name(BASE_MS))).await.expect("ttl");
        assert!(ttl > 3000 && ttl <= 3600, "run {run}: ttl {ttl}");

        // Redis leaderboards: one sorted set per minute, every auction of that minute once.
        for minute in expected.keys().map(|k| k.0).collect::<std::collections::BTreeSet<_>>() {
            let key = format!("{prefix}:top:{}", minute_name(minute));
            let board: Vec<(String, f64)> = redis.zrange_withscores(&key, 0, -1).await.expect("zrange");
            let mut got: Vec<(String, i64)> = board.into_iter().map(|(m, s)| (m, s as i64)).collect();
            got.sort();
            let mut want: Vec<(String, i64)> =
                expected.iter().filter(|((m, _), _)| *m == minute).map(|((_, a), (bids, _))| (format!("auction-{a}"), *bids)).collect();
            want.sort();
            assert_eq!(got, want, "run {run}: {key}");
        }

        // ClickHouse: the table the sink created, deduplicated by its key (FINAL).
        let text = clickhouse(
            &clickhouse_url,
            &format!("SELECT toUnixTimestamp(window_start), auction, bids, max_price FROM {database}.per_minute FINAL ORDER BY window_start, auction FORMAT TabSeparated"),
        )
        .await;
        let got: Vec<String> = text.lines().map(str::to_string).collect();
        let want: Vec<String> =
            expected.iter().map(|((minute, auction), (bids, max_price))| format!("{}\t{auction}\t{bids}\t{max_price}", minute / 1000)).collect();
        assert_eq!(got, want, "run {run}: ClickHouse rows");
    }

    redis_delete_prefix(&redis_url, &format!("{prefix}:")).await;
    clickhouse(&clickhouse_url, &format!("DROP DATABASE {database}")).await;
}

/// Page views `i` for `i` in `range`: page `/p{i % 7}`.
fn views(range: std::ops::Range<i64>) -> Vec<TestRecord> {
    range.map(|i| TestRecord::value((i % 3) as i32, format!(r#"{{"page": "/p{}", "n": {i}}}"#, i % 7))).collect()
}

fn expected_views(total: i64) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for i in 0..total {
        *out.entry(format!("/p{}", i % 7)).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_group_by_keeps_redis_counters_and_a_replacing_merge_tree_current() {
    let (bootstrap, redis_url, clickhouse_url) = (broker(), REDIS.shared(), CLICKHOUSE.shared());
    let topic = unique_topic("views");
    create_topic(&bootstrap, &topic, 3).await;
    produce(&bootstrap, &topic, &views(0..2000)).await;
    let prefix = unique_name("live");
    let database = unique_name("eddy_live");
    clickhouse(&clickhouse_url, &format!("CREATE DATABASE {database}")).await;
    let page_views = kafka_table("page_views", "page STRING, n BIGINT", &topic, &bootstrap, "");
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '300 ms';
         {page_views};
         CREATE TABLE counters (page STRING, views BIGINT)
           WITH ('connector' = 'redis', 'url' = '{redis_url}', 'mode' = 'string', 'key' = '{prefix}:views:{{page}}');
         CREATE TABLE current_views (page STRING, views BIGINT, PRIMARY KEY (page) NOT ENFORCED)
           WITH ('connector' = 'clickhouse', 'url' = '{clickhouse_url}', 'database' = '{database}', 'table' = 'views',
                 'sink.create-table' = 'true', 'sink.table-engine' = 'ReplacingMergeTree');
         INSERT INTO counters SELECT page, COUNT(*) FROM page_views GROUP BY page;
         INSERT INTO current_views SELECT page, COUNT(*) FROM page_views GROUP BY page;"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("live.sql");
    std::fs::write(&script, sql).expect("script");
    let mut running = Running::start(eddy().arg("run").arg(&script).stdout(std::process::Stdio::null()));

    let redis = redis_connection(&redis_url).await;
    let read_redis = || {
        let mut redis = redis.clone();
        let prefix = prefix.clone();
        async move {
            let mut out = BTreeMap::new();
            for p in 0..7 {
                let v: Option<i64> = redis.get(format!("{prefix}:views:/p{p}")).await.expect("get");
                if let Some(v) = v {
                    out.insert(format!("/p{p}"), v);
                }
            }
            out
        }
    };
    let read_clickhouse = || {
        let (url, database) = (clickhouse_url.clone(), database.clone());
        async move {
            // The sink creates its table when it first connects, which may be after Redis has caught up.
            if clickhouse(&url, &format!("EXISTS TABLE {database}.views")).await.trim() != "1" {
                return BTreeMap::new();
            }
            let text = clickhouse(&url, &format!("SELECT page, views FROM {database}.views FINAL ORDER BY page FORMAT TabSeparated")).await;
            text.lines().filter_map(|l| l.split_once('\t')).map(|(p, v)| (p.to_string(), v.parse().expect("a count"))).collect::<BTreeMap<String, i64>>()
        }
    };
    // The counters reach the counts of the first 2000 views, then follow 700 more.
    for total in [2000, 2700] {
        if total == 2700 {
            produce(&bootstrap, &topic, &views(2000..2700)).await;
        }
        let want = expected_views(total);
        let in_redis = eventually_equal(&want, read_redis).await;
        let in_clickhouse = eventually_equal(&want, read_clickhouse).await;
        assert_eq!(in_redis, want, "Redis counters after {total} views");
        assert_eq!(in_clickhouse, want, "ClickHouse rows after {total} views");
    }
    running.kill();

    redis_delete_prefix(&redis_url, &format!("{prefix}:")).await;
    clickhouse(&clickhouse_url, &format!("DROP DATABASE {database}")).await;
}

/// The window kinds whose state a resumed pipeline must get back.
#[derive(Clone, Copy)]
enum Windows {
    Tumble,
    Hop,
    Cumulate,
    Session,
}

impl Windows {
    fn sql(self) -> &'static str {
        match self {
            Windows::Tumble => "TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)",
            Windows::Hop => "HOP(TABLE clicks, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)",
            Windows::Cumulate => "CUMULATE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)",
            Windows::Session => "SESSION(TABLE clicks PARTITION BY user_id, DESCRIPTOR(ts), INTERVAL '1' SECOND)",
        }
    }

    /// The windows (start, end), in ms after BASE_MS, that contain a click at `ts`.
    fn of(self, ts: i64) -> Vec<(i64, i64)> {
        match self {
            Windows::Tumble => vec![(ts - ts % 10_000, ts - ts % 10_000 + 10_000)],
            Windows::Hop => (ts / 5000 - 1..=ts / 5000).map(|k| (k * 5000, k * 5000 + 10_000)).collect(),
            Windows::Cumulate => {
                let start = ts - ts % 10_000;
                [start + 5000, start + 10_000].into_iter().filter(|end| *end > ts).map(|end| (start, end)).collect()
            }
            Windows::Session => unreachable!("sessions depend on the neighbours"),
        }
    }
}

/// `HH:MM:SS.fff` after 2024-01-01 00:00 of `ms` after BASE_MS, as the sink writes timestamps.
fn at(ms: i64) -> String {
    format!("2024-01-01 00:{:02}:{:02}.{:03}", ms / 60_000, (ms / 1000) % 60, ms % 1000)
}

/// Kafka (starting at the latest offsets) → windowed count per user → Redis, run
/// with a checkpoint directory, SIGKILLed mid-stream, fed while it is down, and
/// started again: the counts must be exactly those of a run that never failed.
async fn resume_after_kill(windows: Windows, parallelism: usize) {
    let (bootstrap, redis_url) = (broker(), REDIS.shared());
    let topic = unique_topic("resume");
    create_topic(&bootstrap, &topic, 4).await;
    let prefix = unique_name("resume");
    let dir = tempfile::tempdir().expect("temp dir");
    let checkpoints = dir.path().join("checkpoints");
    let script = dir.path().join("resume.sql");
    // Starting at the latest offsets: a restart that did not resume would miss what
    // was produced while it was down.
    std::fs::write(
        &script,
        format!(
            "SET 'execution.checkpointing.interval' = '200 ms';
             SET 'parallelism' = '{parallelism}';
             CREATE TABLE clicks (user_id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
                     'scan.startup.mode' = 'latest-offset', 'format' = 'json');
             CREATE TABLE per_user (window_start TIMESTAMP(3), window_end TIMESTAMP(3), user_id BIGINT, clicks BIGINT)
               WITH ('connector' = 'redis', 'url' = '{redis_url}', 'key' = '{prefix}:{{user_id}}:{{window_start}}:{{window_end}}', 'value.fields' = 'clicks');
             INSERT INTO per_user SELECT window_start, window_end, user_id, COUNT(*)
               FROM TABLE({}) GROUP BY window_start, window_end, user_id;",
            windows.sql()
        ),
    )
    .expect("script");
    let start = || Running::start(eddy().arg("run").arg(&script).arg("--checkpoint-dir").arg(&checkpoints).stdout(std::process::Stdio::null()));
    // 6000 clicks 10 ms apart from 10 s on (60 s of event time), 5 users, 4 partitions.
    let ts = |i: i64| 10_000 + i * 10;
    let clicks = |range: std::ops::Range<i64>| -> Vec<TestRecord> {
        range.map(|i| TestRecord::value((i % 4) as i32, format!(r#"{{"user_id": {}, "ts": {}}}"#, i % 5, BASE_MS + ts(i)))).collect()
    };
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..6000 {
        let windows_of_click = match windows {
            // Each user clicks every 50 ms: one session per user, closed 1 s after its last click.
            Windows::Session => vec![(ts(i % 5), ts(5995 + i % 5) + 1000)],
            other => other.of(ts(i)),
        };
        for (start, end) in windows_of_click {
            *expected.entry(format!("{prefix}:{}:{}:{}", i % 5, at(start), at(end))).or_default() += 1;
        }
    }
    let redis = redis_connection(&redis_url).await;
    let read = || {
        let (mut redis, prefix) = (redis.clone(), prefix.clone());
        async move {
            let keys: Vec<String> = redis.keys(format!("{prefix}:*")).await.expect("keys");
            let mut out = BTreeMap::new();
            for key in keys {
                let clicks: Option<i64> = redis.hget(&key, "clicks").await.expect("hget");
                out.insert(key, clicks.unwrap_or(-1));
            }
            out
        }
    };
    let wait_until = |what: &'static str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };

    // Run 1 reads the first half and is killed after a checkpoint that holds open windows.
    let mut first = start();
    wait_until("the first checkpoint is complete", &|| newest_checkpoint(&checkpoints) > 0);
    produce(&bootstrap, &topic, &clicks(0..3000)).await;
    let seen = newest_checkpoint(&checkpoints);
    wait_until("a checkpoint after the first clicks is complete", &|| newest_checkpoint(&checkpoints) > seen + 1);
    first.kill();

    // While it is down: the rest, and one late click per partition that closes every window.
    let mut rest = clicks(3000..6000);
    rest.extend((0..4).map(|p| TestRecord::value(p, format!(r#"{{"user_id": 99, "ts": {}}}"#, BASE_MS + 200_000))));
    produce(&bootstrap, &topic, &rest).await;

    // Run 2 resumes: offsets from the checkpoint, and the open windows' partial counts.
    let mut second = start();
    let got = eventually_equal(&expected, read).await;
    second.kill();
    assert_eq!(got, expected);

    redis_delete_prefix(&redis_url, &format!("{prefix}:")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumble_state_and_offsets_survive_a_kill() {
    resume_after_kill(Windows::Tumble, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_state_survives_a_kill_at_parallelism_4() {
    resume_after_kill(Windows::Hop, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulate_state_survives_a_kill_at_parallelism_4() {
    resume_after_kill(Windows::Cumulate, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_survives_a_kill_at_parallelism_4() {
    resume_after_kill(Windows::Session, 4).await;
}

/// Polls `read` until it returns `want` (or 60 s pass) and returns what it read last.
async fn eventually_equal<K: Ord + Clone, V: PartialEq + Clone, F, Fut>(want: &BTreeMap<K, V>, mut read: F) -> BTreeMap<K, V>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = BTreeMap<K, V>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got = read().await;
        if &got == want || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Orders 1..=300 of users `order % 60` (ids 50 to 59 and 0 unknown to the
/// stores, and user 7 left out), each with a processing-time attribute, as a file.
fn write_orders(path: &std::path::Path) {
    let lines: String = (1..=300).map(|i| format!("{{\"order_id\": {i}, \"user_id\": {}}}\n", i % 60)).collect();
    std::fs::write(path, lines).expect("write orders");
}

/// The user a lookup must find for `user_id`, if any.
fn known_user(user_id: i64) -> Option<String> {
    ((1..50).contains(&user_id) && user_id != 7).then(|| format!("user-{user_id}"))
}

/// `(order_id, user name)` rows a filesystem JSON sink wrote under `dir`.
fn named_orders(dir: &std::path::Path) -> BTreeMap<i64, Option<String>> {
    let mut out = BTreeMap::new();
    for row in common::committed_rows(dir) {
        let id = row["order_id"].as_i64().expect("order_id");
        assert!(out.insert(id, row["name"].as_str().map(str::to_string)).is_none(), "order {id} written twice");
    }
    out
}

/// A lookup join enriches each order with its user's name, read by key as the
/// order comes: from a real Redis (a hash per user, under the table's key
/// template) and a real ClickHouse table (`WHERE id IN (...)`), with and without
/// a partial cache. Unknown users give NULL in a LEFT join. Every order is
/// compared with the user the test wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_joins_read_users_from_redis_and_clickhouse_by_key() {
    users_named_from_redis_and_clickhouse("'lookup.cache' = 'PARTIAL', 'lookup.partial-cache.max-rows' = '20'", "'lookup.cache' = 'NONE'").await;
}

/// The same with `'lookup.cache' = 'FULL'`: each store's whole table is read
/// when the join starts (Redis by `SCAN`ning the key template, the user's id read
/// back from the key, as the hashes hold only name and tier; ClickHouse by one
/// `SELECT`), and every order is answered from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_joins_with_a_full_cache_read_the_whole_redis_and_clickhouse_tables() {
    users_named_from_redis_and_clickhouse("'lookup.cache' = 'FULL'", "'lookup.cache' = 'FULL'").await;
}

/// 300 orders named from users written to a real Redis and a real ClickHouse,
/// the tables declared with `redis_cache` and `clickhouse_cache` options.
async fn users_named_from_redis_and_clickhouse(redis_cache: &str, clickhouse_cache: &str) {
    let (redis_url, clickhouse_url) = (REDIS.shared(), CLICKHOUSE.shared());
    let prefix = unique_name("lookup");
    let database = unique_name("eddy_lookup");
    let mut redis = redis_connection(&redis_url).await;
    let known: Vec<i64> = (1..50).filter(|&id| known_user(id).is_some()).collect();
    for &id in &known {
        let _: () = redis.hset_multiple(format!("{prefix}:user:{id}"), &[("name", format!("user-{id}")), ("tier", (id % 3).to_string())]).await.expect("hset");
    }
    clickhouse(&clickhouse_url, &format!("CREATE DATABASE {database}")).await;
    clickhouse(&clickhouse_url, &format!("CREATE TABLE {database}.users (id Int64, name String, tier Int64) ENGINE = MergeTree ORDER BY id")).await;
    let values = known.iter().map(|id| format!("({id}, 'user-{id}', {})", id % 3)).collect::<Vec<_>>().join(", ");
    clickhouse(&clickhouse_url, &format!("INSERT INTO {database}.users VALUES {values}")).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let orders = dir.path().join("orders.json");
    write_orders(&orders);
    let (from_redis, from_clickhouse) = (dir.path().join("from_redis"), dir.path().join("from_clickhouse"));
    let script = dir.path().join("lookup.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE orders (order_id BIGINT, user_id BIGINT, proc_time AS PROCTIME())
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json', 'scan.batch-rows' = '40');
             CREATE TABLE redis_users (id BIGINT, name STRING, tier BIGINT)
               WITH ('connector' = 'redis', 'url' = '{redis_url}', 'key' = '{prefix}:user:{{id}}', {redis_cache});
             CREATE TABLE clickhouse_users (id BIGINT, name STRING, tier BIGINT)
               WITH ('connector' = 'clickhouse', 'url' = '{clickhouse_url}', 'database' = '{database}', 'table' = 'users', {clickhouse_cache});
             CREATE TABLE named_by_redis (order_id BIGINT, name STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE named_by_clickhouse (order_id BIGINT, name STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO named_by_redis SELECT o.order_id, u.name FROM orders AS o
               LEFT JOIN redis_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id;
             INSERT INTO named_by_clickhouse SELECT o.order_id, u.name FROM orders AS o
               LEFT JOIN clickhouse_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id WHERE u.tier IS NULL OR u.tier >= 0;",
            orders.display(),
            from_redis.display(),
            from_clickhouse.display()
        ),
    )
    .expect("script");
    let output = eddy().arg("run").arg(&script).output().expect("run eddy");
    assert!(output.status.success(), "eddy run failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let want: BTreeMap<i64, Option<String>> = (1..=300).map(|i| (i, known_user(i % 60))).collect();
    assert_eq!(named_orders(&from_redis), want, "orders named from Redis");
    assert_eq!(named_orders(&from_clickhouse), want, "orders named from ClickHouse");
    redis_delete_prefix(&redis_url, &prefix).await;
    clickhouse(&clickhouse_url, &format!("DROP DATABASE {database}")).await;
}

/// A full cache is read again every `'lookup.full-cache.periodic-reload.interval'`:
/// users renamed in Redis while 1000 clicks come (200 a second) are seen by the
/// clicks after the next reload, and never the other way round: once a click
/// sees a new name, no later click sees an old one. With an interval of an hour
/// no click sees the new names: the table is read once, not asked per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_lookup_cache_reloads_the_table_every_interval() {
    let rows = clicks_named_while_users_are_renamed("500 ms").await;
    let last_old = rows.iter().filter(|(_, n)| n.starts_with("old-")).map(|(id, _)| *id).max().expect("clicks before the rename see old names");
    let first_new = rows.iter().filter(|(_, n)| n.starts_with("new-")).map(|(id, _)| *id).min().expect("clicks after a reload see new names");
    assert!(last_old < first_new, "click {first_new} saw a new name before click {last_old} saw an old one");
    let rows = clicks_named_while_users_are_renamed("1 h").await;
    assert!(rows.iter().all(|(_, name)| name.starts_with("old-")), "a click saw a name written after the only load");
}

/// Runs 1000 clicks (ids 1 to 1000, of users `id % 10`, 200 a second) through a
/// lookup join with a full cache reloaded every `interval`, renaming every user
/// in Redis from `old-<id>` to `new-<id>` 2 s in; each click's `(id, name)`.
async fn clicks_named_while_users_are_renamed(interval: &str) -> Vec<(i64, String)> {
    let redis_url = REDIS.shared();
    let prefix = unique_name("reload");
    let mut redis = redis_connection(&redis_url).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = format!("'lookup.cache' = 'FULL', 'lookup.full-cache.periodic-reload.interval' = '{interval}'");
    let (script, out) = clicks_of_redis_users(&mut redis, &redis_url, &prefix, "old", dir.path(), 1000, &options).await;
    let child = eddy().arg("run").arg(&script).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("run eddy");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for id in 0..10 {
        let _: () = redis.hset(format!("{prefix}:user:{id}"), "name", format!("new-{id}")).await.expect("hset");
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait");
    assert!(output.status.success(), "eddy run failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let mut rows: Vec<(i64, String)> =
        common::committed_rows(&out).iter().map(|r| (r["id"].as_i64().expect("id"), r["name"].as_str().expect("name").to_string())).collect();
    rows.sort();
    assert_eq!(rows.len(), 1000, "every click once");
    assert!(rows.iter().all(|(id, name)| name.ends_with(&format!("-{}", id % 10))), "each click met its own user");
    redis_delete_prefix(&redis_url, &prefix).await;
    rows
}

/// Writes 10 users to Redis (hashes `{prefix}:user:<id>`, name `{name}-<id>`),
/// and in `dir` a script that joins `clicks` clicks (ids from 1, of users `id %
/// 10`, 200 a second) with them in a lookup join of table `users` (`options`
/// added to its `WITH`) into JSON files; the script's path and the files' directory.
async fn clicks_of_redis_users(
    redis: &mut redis::aio::MultiplexedConnection,
    redis_url: &str,
    prefix: &str,
    name: &str,
    dir: &std::path::Path,
    clicks: u64,
    options: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    for id in 0..10 {
        let _: () = redis.hset(format!("{prefix}:user:{id}"), "name", format!("{name}-{id}")).await.expect("hset");
    }
    let out = dir.join("out");
    let script = dir.join("lookup.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE clicks (id BIGINT, user_id AS id % 10, proc_time AS PROCTIME())
               WITH ('connector' = 'datagen', 'rows-per-second' = '200', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '{clicks}');
             CREATE TABLE users (id BIGINT, name STRING) WITH ('connector' = 'redis', 'url' = '{redis_url}', 'key' = '{prefix}:user:{{id}}', {options});
             CREATE TABLE out (id BIGINT, name STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO out SELECT c.id, u.name FROM clicks AS c JOIN users FOR SYSTEM_TIME AS OF c.proc_time AS u ON c.user_id = u.id;",
            out.display()
        ),
    )
    .expect("script");
    (script, out)
}

/// A Redis that goes away while a lookup join runs: each failed lookup is
/// retried with backoff ('lookup.max-retries'), then the pipeline fails with
/// Redis's own error, naming the table; it does not hang or write rows without
/// their lookup. A ClickHouse that never answers fails the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_store_that_goes_away_fails_the_pipeline_after_retries_with_its_message() {
    let run_dir = tempfile::tempdir().expect("temp dir");
    let redis_url = REDIS.start(Some(run_dir.path()));
    let mut redis = redis_connection(&redis_url).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (script, _) = clicks_of_redis_users(&mut redis, &redis_url, "gone", "user", dir.path(), 100_000, "'lookup.max-retries' = '2'").await;
    let mut child = eddy().arg("run").arg(&script).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("run eddy");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(child.try_wait().expect("wait").is_none(), "the pipeline ended while Redis was up");
    REDIS.stop(run_dir.path());
    let started = std::time::Instant::now();
    let output = child.wait_with_output().expect("eddy run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the pipeline went on without Redis:\n{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "it took {:?} to give up", started.elapsed());
    assert!(stderr.contains("lookup in `users` failed"), "{stderr}");
    assert!(stderr.contains("(after 3 attempts)") && stderr.contains("Redis at"), "the store's error, after the retries: {stderr}");

    // A ClickHouse that is not there at all.
    let script = dir.path().join("unreachable.sql");
    std::fs::write(
        &script,
        "CREATE TABLE clicks (id BIGINT, proc_time AS PROCTIME())
           WITH ('connector' = 'datagen', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '10');
         CREATE TABLE users (id BIGINT, name STRING)
           WITH ('connector' = 'clickhouse', 'url' = 'http://127.0.0.1:9', 'table' = 'users', 'lookup.max-retries' = '1');
         CREATE TABLE named (id BIGINT, name STRING) WITH ('connector' = 'blackhole');
         INSERT INTO named SELECT c.id, u.name FROM clicks AS c JOIN users FOR SYSTEM_TIME AS OF c.proc_time AS u ON c.id = u.id;",
    )
    .expect("script");
    let output = eddy().arg("run").arg(&script).output().expect("run eddy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("lookup in `users` failed") && stderr.contains("(after 2 attempts)") && stderr.contains("127.0.0.1:9"), "{stderr}");
}
