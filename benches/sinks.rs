//! Sink benchmark: rows of 6 columns (per-minute aggregates, as the dashboards of
//! `../shared/seeds` write them) into the Redis, ClickHouse and Parquet sinks, in
//! process, against the real servers (`scripts/redis/start`, `scripts/clickhouse/start`).
//!
//! Run: `cargo bench --bench sinks` (release) or `cargo bench --profile dev --bench sinks`.
//! Options after `--`: `--rows N` (default 1,000,000; 20,000 under `cargo test`),
//! `--rate R` and `--seconds S` for the latency run (default 100,000 rows/s for 5 s).
//!
//! Reports, per sink: rows per CPU-second of this process (the sink's own cost; the
//! server is another process) and rows per wall second, for `--rows` rows in batches
//! of 8192 followed by a commit; for Parquet also MB/s of file written per CPU-second.
//! Then the added latency at a fixed rate: every 100 ms a batch of rate/10 rows is
//! written and committed; latency = time until the sink has acknowledged it (p50, p99).

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cpu_seconds, flag_value};
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use eddy_connectors::create_sink;
use eddy_connectors::testing::{clickhouse_query, redis_connection, unique_name, CLICKHOUSE, REDIS};
use eddy_engine::table::TableDef;
use eddy_engine::{ChangeBatch, Sink};

mod common;

const BATCH: usize = 8192;
const BASE_MS: i64 = 1_700_000_000_000;

fn fields() -> Vec<Field> {
    vec![
        Field::new("window_start", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Utf8, false),
        Field::new("bids", DataType::Int64, false),
        Field::new("price", DataType::Float64, false),
        Field::new("channel", DataType::Utf8, false),
    ]
}

/// Rows `from..from + n`: every row a distinct auction (a distinct Redis key).
fn batch(schema: &SchemaRef, from: usize, n: usize) -> RecordBatch {
    let ids = from as i64..(from + n) as i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from_iter_values(ids.clone().map(|i| BASE_MS + (i / 1000) * 60_000))),
        Arc::new(Int64Array::from_iter_values(ids.clone())),
        Arc::new(StringArray::from_iter_values(ids.clone().map(|i| format!("bidder-{}", i % 5000)))),
        Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| i % 97))),
        Arc::new(Float64Array::from_iter_values(ids.clone().map(|i| (i % 10_000) as f64 / 7.0))),
        Arc::new(StringArray::from_iter_values(ids.map(|i| ["web", "ios", "android", "partner"][(i % 4) as usize]))),
    ];
    RecordBatch::try_new(SchemaRef::clone(schema), columns).expect("batch")
}

fn sink(options: &[(&str, &str)]) -> Box<dyn Sink> {
    let def = TableDef::from_fields("bench", &fields(), options);
    create_sink(&def, def.sink_schema()).expect("sink")
}

/// Writes `rows` rows and commits; returns (CPU seconds, wall seconds).
async fn throughput(sink: &mut dyn Sink, schema: &SchemaRef, rows: usize) -> (f64, f64) {
    let batches: Vec<RecordBatch> = (0..rows).step_by(BATCH).map(|from| batch(schema, from, BATCH.min(rows - from))).collect();
    let (cpu, started) = (cpu_seconds(), Instant::now());
    for b in batches {
        sink.write(ChangeBatch::inserts(b)).await.expect("write");
    }
    sink.commit().await.expect("commit");
    (cpu_seconds() - cpu, started.elapsed().as_secs_f64())
}

/// Writes a batch of `rate / 10` rows every 100 ms for `seconds`; returns (p50, p99) in ms.
async fn latency(sink: &mut dyn Sink, schema: &SchemaRef, rate: usize, seconds: u64) -> (f64, f64) {
    let per_tick = (rate / 10).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut samples = Vec::new();
    for i in 0..seconds as usize * 10 {
        tick.tick().await;
        let b = batch(schema, 10_000_000 + i * per_tick, per_tick);
        let started = Instant::now();
        sink.write(ChangeBatch::inserts(b)).await.expect("write");
        sink.commit().await.expect("commit");
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// `amount` per CPU-second in `unit`, or a note when the run was too short: CPU time
/// is counted in 10 ms ticks, so runs under `cargo test` cannot be measured.
fn per_cpu(amount: f64, cpu: f64, unit: &str) -> String {
    if cpu >= 0.1 {
        format!("{:.0} {unit}/CPU-s", amount / cpu)
    } else {
        "too short to measure CPU".to_string()
    }
}

fn report(name: &str, rows: usize, (cpu, wall): (f64, f64)) {
    let per_cpu = per_cpu(rows as f64, cpu, "rows");
    println!("{name}: {rows} rows in {wall:.2}s wall, {cpu:.2} CPU-s: {per_cpu}, {:.0} rows/s", rows as f64 / wall.max(1e-9));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let rows = flag_value(&args, "--rows", if full { 1_000_000 } else { 20_000 }) as usize;
    let rate = flag_value(&args, "--rate", if full { 100_000 } else { 10_000 }) as usize;
    let seconds = flag_value(&args, "--seconds", if full { 5 } else { 1 });
    let schema: SchemaRef = Arc::new(Schema::new(fields()));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        // Redis: a hash per row (distinct keys), pipelined, in database 9 (emptied before and after).
        let redis_url = format!("{}/9", REDIS.shared());
        let mut client = redis_connection(&redis_url).await;
        let _: () = redis::cmd("FLUSHDB").arg("ASYNC").query_async(&mut client).await.expect("flushdb");
        let prefix = unique_name("bench");
        let key = format!("{prefix}:{{auction}}");
        let mut redis = sink(&[("connector", "redis"), ("url", &redis_url), ("key", &key)]);
        report("redis hash", rows, throughput(redis.as_mut(), &schema, rows).await);
        let (p50, p99) = latency(redis.as_mut(), &schema, rate, seconds).await;
        println!("redis hash: latency at {rate} rows/s: p50 {p50:.1} ms, p99 {p99:.1} ms");
        let _: () = redis::cmd("FLUSHDB").arg("ASYNC").query_async(&mut client).await.expect("flushdb");

        // ClickHouse: RowBinary inserts into a MergeTree table the sink creates.
        let ch_url = CLICKHOUSE.shared();
        let database = unique_name("eddy_bench");
        clickhouse_query(&ch_url, &format!("CREATE DATABASE {database}"), &[]).await;
        let mut ch = sink(&[
            ("connector", "clickhouse"),
            ("url", &ch_url),
            ("database", &database),
            ("table", "aggregates"),
            ("sink.create-table", "true"),
            ("sink.order-by", "window_start, auction"),
        ]);
        report("clickhouse", rows, throughput(ch.as_mut(), &schema, rows).await);
        let (p50, p99) = latency(ch.as_mut(), &schema, rate, seconds).await;
        println!("clickhouse: latency at {rate} rows/s: p50 {p50:.1} ms, p99 {p99:.1} ms");
        clickhouse_query(&ch_url, &format!("DROP DATABASE {database}"), &[]).await;

        // Parquet on the local disk.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_string_lossy().into_owned();
        let mut parquet = sink(&[("connector", "filesystem"), ("path", &path), ("format", "parquet")]);
        let (cpu, wall) = throughput(parquet.as_mut(), &schema, rows).await;
        report("parquet", rows, (cpu, wall));
        let bytes: u64 = std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").metadata().expect("meta").len()).sum();
        let in_memory: usize = (0..rows).step_by(BATCH).map(|from| batch(&schema, from, BATCH.min(rows - from)).get_array_memory_size()).sum();
        println!(
            "parquet: {:.1} MB of files from {:.1} MB of Arrow data: {} of Arrow data",
            bytes as f64 / 1e6,
            in_memory as f64 / 1e6,
            per_cpu(in_memory as f64 / 1e6, cpu, "MB")
        );
    });
}
