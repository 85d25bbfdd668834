//! Flink's scalar functions against DataFusion's nearest built-ins, in rows per
//! CPU-second: each expression is planned once into a DataFusion physical
//! expression and evaluated over the same 8,192-row batch until about a CPU
//! second has passed, as the engine's projections evaluate them.
//!
//! `cargo bench --bench functions` (or `--profile dev` for a quick look); pass
//! `--seconds N` to measure each expression for N CPU-seconds instead of 1.

mod common;

use std::sync::Arc;

use common::{cpu_seconds, flag_value};
use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::prelude::SessionContext;

const ROWS: usize = 8192;

fn batch() -> RecordBatch {
    // A day of event times, a millisecond and a few seconds apart, and Nexmark-like URLs.
    let start = 1_709_211_909_123i64;
    let ts: TimestampMillisecondArray = (0..ROWS as i64).map(|i| Some(start + i * 7_919)).collect();
    let urls: StringArray = (0..ROWS).map(|i| Some(format!("https://www.nexmark.com/item/{}/bid?channel={}", i * 37 % 100_000, i % 4))).collect();
    // Events as JSON text, about 110 bytes each, the field wanted nested and not first.
    let events: StringArray = (0..ROWS)
        .map(|i| {
            Some(format!(
                r#"{{"page": "/item/{}", "ms": {}, "user": {{"name": "user{}", "id": {}}}, "tags": ["a", "b"]}}"#,
                i % 500,
                i * 13,
                i % 1000,
                i % 1000
            ))
        })
        .collect();
    let schema = Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("url", DataType::Utf8, true),
        Field::new("event", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ts) as ArrayRef, Arc::new(urls), Arc::new(events)]).expect("bench batch")
}

/// Rows per CPU-second of `expr` over `batch`, for at least `seconds` CPU-seconds.
fn measure(ctx: &SessionContext, batch: &RecordBatch, expr: &str, seconds: f64) -> f64 {
    let schema = DFSchema::try_from(batch.schema().as_ref().clone()).expect("schema");
    let state = ctx.state();
    let logical = state.create_logical_expr(expr, &schema).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let physical = state.create_physical_expr(logical, &schema).unwrap_or_else(|e| panic!("{expr}: {e}"));
    // Once to warm up (and to check it runs).
    physical.evaluate(batch).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let (started, mut rows) = (cpu_seconds(), 0usize);
    while cpu_seconds() - started < seconds {
        for _ in 0..16 {
            std::hint::black_box(physical.evaluate(batch).expect("evaluate"));
            rows += batch.num_rows();
        }
    }
    rows as f64 / (cpu_seconds() - started)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = flag_value(&args, "--seconds", 1) as f64;
    let ctx = SessionContext::new();
    eddy_sql::functions::register(&ctx);
    let batch = batch();
    let pairs = [
        ("DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss')", "to_char(ts, '%Y-%m-%d %H:%M:%S')"),
        ("DATE_FORMAT(ts, 'HH:mm')", "to_char(ts, '%H:%M')"),
        ("REGEXP_EXTRACT(url, '/item/([0-9]+)', 1)", "regexp_match(url, '/item/([0-9]+)')"),
        ("SPLIT_INDEX(url, '/', 4)", "split_part(url, '/', 5)"),
        ("HOUR(ts)", "date_part('hour', ts)"),
        // DataFusion has no JSON functions: without them a field is cut out with a regex.
        ("JSON_VALUE(event, '$.user.id')", "regexp_match(event, '\"id\": ([0-9]+)')"),
    ];
    println!("{:<44} {:>14}   {:<40} {:>14}", "Eddy (Flink's function)", "M rows/CPU-s", "DataFusion's nearest", "M rows/CPU-s");
    for (flink, datafusion) in pairs {
        let ours = measure(&ctx, &batch, flink, seconds) / 1e6;
        let theirs = measure(&ctx, &batch, datafusion, seconds) / 1e6;
        println!("{flink:<44} {ours:>14.2}   {datafusion:<40} {theirs:>14.2}");
    }
}
