//! Kafka benchmark against a real broker (`scripts/kafka/start`): ~200-byte JSON
//! events in 8 partitions read by the Kafka source, in-process.
//!
//! Run: `cargo bench --bench kafka` (release) or `cargo bench --profile dev --bench kafka`.
//! Options after `--`: `--events N` (default 2,000,000; 20,000 under `cargo test`),
//! `--runs K` (each throughput case runs K times, default 3),
//! `--rate R` and `--seconds S` for the latency run (default 100,000/s for 10 s).
//!
//! First the latency from produce to window emission at a fixed rate, on a
//! broker with nothing else to do: 100 ms windows, watermark without delay,
//! results written to a Kafka topic; latency = the result record's timestamp
//! (when the sink produced it) minus the window's end. Then, for a topic filled
//! beforehand: events per CPU-second of the eddy process (librdkafka's threads
//! included; the broker is another process) for decoding alone (`SELECT *` →
//! blackhole), TUMBLE count by key → blackhole, and TUMBLE count by key →
//! Parquet, as the median of the runs with their range (on a 2-vCPU machine the
//! broker shares the cores, so single runs vary by ±20 %).

use std::time::{Duration, Instant};

use common::{cpu_seconds, flag_value, minor_faults};
use eddy::Session;
use eddy_connectors::kafka::testing::{broker, create_topic, delete_topics, produce, produce_with, producer, read_all, unique_topic, TestRecord};

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

/// What one run measured.
struct Run {
    rows: u64,
    wall: f64,
    cpu: f64,
    faults: u64,
}

async fn run_pipeline(sql: &str, stop_after: Option<Duration>) -> Result<Run, eddy::EddyError> {
    let mut session = Session::new();
    let pipelines = session.execute_script(sql).await?;
    let metrics = eddy_engine::metrics::PipelineGroup::new(pipelines.iter().map(|p| p.name.as_str()));
    let (tx, stop) = tokio::sync::watch::channel(false);
    if let Some(after) = stop_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(true);
        });
    }
    let (cpu, faults) = (cpu_seconds(), minor_faults());
    let started = Instant::now();
    let summary = session.run(&pipelines, &metrics, stop, &mut |_| unreachable!("INSERT only")).await?;
    Ok(Run { rows: summary.metrics.rows_in, wall: started.elapsed().as_secs_f64(), cpu: cpu_seconds() - cpu, faults: minor_faults() - faults })
}

fn main() {
    // As the `eddy` binary does.
    eddy::allocator::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let events = flag_value(&args, "--events", if full { 2_000_000 } else { 20_000 });
    let rate = flag_value(&args, "--rate", if full { 100_000 } else { 2_000 });
    let seconds = flag_value(&args, "--seconds", if full { 10 } else { 2 });
    let runs = flag_value(&args, "--runs", if full { 3 } else { 1 }).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let bootstrap = broker();
    runtime.block_on(async {
        latency(&bootstrap, rate, seconds).await;
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
        // Let the broker flush what it was just sent before anything is timed.
        tokio::time::sleep(Duration::from_secs(if full { 3 } else { 0 })).await;
        for (name, sink) in cases {
            let mut measured = Vec::new();
            for _ in 0..runs {
                match run_pipeline(&format!("{source}{sink}"), None).await {
                    Ok(run) => measured.push(run),
                    Err(e) => {
                        println!("{name:<34} failed: {e}");
                        break;
                    }
                }
            }
            if measured.is_empty() {
                continue;
            }
            let per_cpu = |r: &Run| r.rows as f64 / r.cpu.max(1e-9) / 1e6;
            measured.sort_by(|a, b| per_cpu(a).total_cmp(&per_cpu(b)));
            let median = &measured[measured.len() / 2];
            println!(
                "{name:<34} {:>6.2} M events/CPU-s (runs {:.2}-{:.2})  {:>6.2} M events/s wall  ({} events, {:.2}s wall, {:.2}s CPU, {} page faults)",
                per_cpu(median),
                per_cpu(&measured[0]),
                per_cpu(&measured[measured.len() - 1]),
                median.rows as f64 / median.wall / 1e6,
                median.rows,
                median.wall,
                median.cpu,
                median.faults
            );
        }
        delete_topics(&bootstrap, &[&topic]).await;
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
    if std::env::var_os("EDDY_BENCH_SHOW").is_some() {
        println!("{latencies:?}");
    }
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
    let ts =
        datafusion::arrow::compute::cast(&array, &datafusion::arrow::datatypes::DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None))
            .ok()?;
    use datafusion::arrow::array::AsArray;
    Some(ts.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>().value(0))
}
