//! Kafka benchmark against a real broker (`scripts/kafka/start`): ~200-byte JSON
//! events in 8 partitions read by the Kafka source, in-process.
//!
//! Run: `cargo bench --bench kafka` (release) or `cargo bench --profile dev --bench kafka`.
//! Options after `--`: `--events N` (default 2,000,000; 20,000 under `cargo test`),
//! `--rate R` and `--seconds S` for the latency run (default 100,000/s for 10 s).
//!
//! Reports, for a topic filled beforehand: events per CPU-second of the eddy
//! process (librdkafka's threads included; the broker is another process) for
//! decoding alone (`SELECT *` → blackhole), TUMBLE count by key → blackhole, and
//! TUMBLE count by key → Parquet. Then the latency from produce to window
//! emission at a fixed rate: 100 ms windows, watermark without delay, results
//! written to a Kafka topic; latency = the result record's timestamp (when the
//! sink produced it) minus the window's end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cpu_seconds, flag_value};
use eddy::Session;
use eddy_connectors::kafka::testing::{broker, create_topic, delete_topics, produce, produce_with, producer, read_all, unique_topic, TestRecord};
use eddy_engine::PipelineMetrics;

mod common;

const PARTITIONS: i32 = 8;
const BASE_MS: i64 = 1_700_000_000_000;

/// One event of about 200 bytes.
fn event(i: u64, ts: i64) -> String {
    format!(
        r#"{{"user_id": {}, "item_id": {}, "action": "{}", "price": {}.{:02}, "url": "https://shop.example.com/items/{}?ref=feed&utm=spring", "session": "s-{:016x}", "ts": {ts}}}"#,
        i % 10_000,
        (i * 7919) % 1_000_000,
        ["view", "click", "cart", "buy"][(i % 4) as usize],
        i % 500,
        i % 100,
        (i * 31) % 100_000,
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

const EVENT_COLUMNS: &str = "user_id BIGINT, item_id BIGINT, action STRING, price DOUBLE, url STRING, session STRING, ts TIMESTAMP(3)";

async fn run_pipeline(sql: &str, stop_after: Option<Duration>) -> Result<(u64, f64, f64), eddy::EddyError> {
    let mut session = Session::new();
    let pipelines = session.execute_script(sql).await?;
    let metrics = Arc::new(PipelineMetrics::default());
    let (tx, stop) = tokio::sync::watch::channel(false);
    if let Some(after) = stop_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(true);
        });
    }
    let cpu = cpu_seconds();
    let started = Instant::now();
    let summary = session.run(&pipelines, metrics, stop, &mut |_| unreachable!("INSERT only")).await?;
    Ok((summary.metrics.rows_in, started.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

fn main() {
    // As the `eddy` binary does.
    eddy::allocator::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let events = flag_value(&args, "--events", if full { 2_000_000 } else { 20_000 });
    let rate = flag_value(&args, "--rate", if full { 100_000 } else { 2_000 });
    let seconds = flag_value(&args, "--seconds", if full { 10 } else { 2 });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let bootstrap = broker();
    runtime.block_on(async {
        let topic = unique_topic("bench-events");
        create_topic(&bootstrap, &topic, PARTITIONS).await;
        let records: Vec<TestRecord> =
            (0..events).map(|i| TestRecord::value((i % PARTITIONS as u64) as i32, event(i, BASE_MS + i as i64))).collect();
        let bytes: usize = records.iter().map(|r| r.value.as_ref().map_or(0, String::len)).sum();
        let started = Instant::now();
        produce(&bootstrap, &topic, &records).await;
        drop(records);
        println!(
            "kafka: {events} events of {} bytes on average in {PARTITIONS} partitions (produced in {:.1}s)",
            bytes as u64 / events.max(1),
            started.elapsed().as_secs_f64()
        );
        let source = format!(
            "CREATE TABLE events ({EVENT_COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
                   'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');"
        );
        let out = tempfile::tempdir().expect("temp dir");
        let tumble = "SELECT window_start, user_id, COUNT(*) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, user_id";
        let cases = [
            ("decode (SELECT *) -> blackhole", format!("CREATE TABLE sink ({EVENT_COLUMNS}) WITH ('connector' = 'blackhole'); INSERT INTO sink SELECT * FROM events;")),
            (
                "TUMBLE count by key -> blackhole",
                format!("CREATE TABLE sink (window_start TIMESTAMP(3), user_id BIGINT, n BIGINT) WITH ('connector' = 'blackhole'); INSERT INTO sink {tumble};"),
            ),
            (
                "TUMBLE count by key -> Parquet",
                format!(
                    "CREATE TABLE sink (window_start TIMESTAMP(3), user_id BIGINT, n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet'); INSERT INTO sink {tumble};",
                    out.path().display()
                ),
            ),
        ];
        for (name, sink) in cases {
            match run_pipeline(&format!("{source}{sink}"), None).await {
                Ok((rows, wall, cpu)) => println!(
                    "{name:<34} {:>6.2} M events/CPU-s  {:>6.2} M events/s wall  ({rows} events, {wall:.2}s wall, {cpu:.2}s CPU)",
                    rows as f64 / cpu.max(1e-9) / 1e6,
                    rows as f64 / wall / 1e6
                ),
                Err(e) => println!("{name:<34} failed: {e}"),
            }
        }
        delete_topics(&bootstrap, &[&topic]).await;
        latency(&bootstrap, rate, seconds).await;
    });
}

/// Produce at `rate` events/s for `seconds` while a TUMBLE pipeline runs; report
/// window emission latency percentiles.
async fn latency(bootstrap: &str, rate: u64, seconds: u64) {
    let (input, output) = (unique_topic("bench-live"), unique_topic("bench-windows"));
    create_topic(bootstrap, &input, PARTITIONS).await;
    create_topic(bootstrap, &output, 1).await;
    let sql = format!(
        "CREATE TABLE events ({EVENT_COLUMNS}, WATERMARK FOR ts AS ts)
         WITH ('connector' = 'kafka', 'topic' = '{input}', 'properties.bootstrap.servers' = '{bootstrap}',
               'scan.startup.mode' = 'earliest-offset');
         CREATE TABLE windows (window_end TIMESTAMP(3), n BIGINT)
         WITH ('connector' = 'kafka', 'topic' = '{output}', 'properties.bootstrap.servers' = '{bootstrap}');
         INSERT INTO windows SELECT window_end, COUNT(*) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '100' MILLISECOND))
         GROUP BY window_start, window_end;"
    );
    let pipeline = tokio::spawn(async move { run_pipeline(&sql, Some(Duration::from_secs(seconds + 3))).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Produce in 10 ms ticks, each event stamped with the wall clock.
    let producer = producer(bootstrap);
    let started = Instant::now();
    let per_tick = (rate / 100).max(1);
    let mut i = 0u64;
    let mut sends = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let tick: Vec<TestRecord> = (0..per_tick)
            .map(|_| {
                i += 1;
                TestRecord::value((i % PARTITIONS as u64) as i32, event(i, now))
            })
            .collect();
        // Not awaited here: acknowledgements must not slow the producing clock down.
        let (producer, topic) = (producer.clone(), input.clone());
        sends.push(tokio::spawn(async move { produce_with(&producer, &topic, &tick).await }));
        let next = Duration::from_millis(10 * (started.elapsed().as_millis() as u64 / 10 + 1));
        tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
    }
    let produced_rate = i as f64 / started.elapsed().as_secs_f64();
    for send in sends {
        let _ = send.await;
    }
    let _ = pipeline.await;
    let mut latencies: Vec<i64> = read_all(bootstrap, &output)
        .iter()
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_str(r.value.as_deref()?).ok()?;
            let end = v["window_end"].as_str()?;
            let end = parse_timestamp_ms(end)?;
            Some(r.timestamp? - end)
        })
        .collect();
    delete_topics(bootstrap, &[&input, &output]).await;
    latencies.sort_unstable();
    if latencies.is_empty() {
        println!("latency: no windows were emitted");
        return;
    }
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "latency produce -> window emitted at {:.0} events/s: p50 {} ms, p99 {} ms, max {} ms over {} windows (100 ms windows; includes up to 10 ms of producer batching)",
        produced_rate,
        pct(0.5),
        pct(0.99),
        latencies[latencies.len() - 1],
        latencies.len()
    );
}

/// `YYYY-MM-DD HH:MM:SS.fff` (UTC) to epoch milliseconds.
fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let array = datafusion::arrow::array::StringArray::from(vec![s]);
    let ts = datafusion::arrow::compute::cast(&array, &datafusion::arrow::datatypes::DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None)).ok()?;
    use datafusion::arrow::array::AsArray;
    Some(ts.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>().value(0))
}
