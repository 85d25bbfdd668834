//! Avro values alone, as the Kafka source and sink handle `'format' = 'avro'`:
//! N records of the Kafka benchmark's event shape (`benches/kafka.rs`) encoded
//! from Arrow rows, then decoded back into Arrow columns in polled chunks, through
//! the functions the connector uses (`eddy_connectors::kafka::testing::AvroCodec`).
//! Issue 19 asked for Avro decoded without a detour through JSON; this measures it.
//!
//! Run: `cargo bench --profile dev --bench avro_decode -- --bench` (options after
//! `--`: `--records N`, default 1,000,000; 20,000 under `cargo test`). One thread;
//! best of 5 rounds.

use std::sync::Arc;
use std::time::Instant;

use common::flag_value;
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use eddy_connectors::kafka::testing::AvroCodec;

mod common;

/// Records per polled chunk: the source's default `'scan.batch-rows'`.
const CHUNK_RECORDS: usize = eddy_connectors::DEFAULT_BATCH_ROWS;

/// `user_id BIGINT, item_id BIGINT, action STRING, price DOUBLE, url STRING, session STRING, ts TIMESTAMP(3)`.
fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, true),
        Field::new("item_id", DataType::Int64, true),
        Field::new("action", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("url", DataType::Utf8, true),
        Field::new("session", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

/// Rows `from..to` of the Kafka benchmark's events.
fn events(schema: &SchemaRef, from: u64, to: u64) -> RecordBatch {
    let range = from..to;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(range.clone().map(|i| (i % 10_000) as i64))),
        Arc::new(Int64Array::from_iter_values(range.clone().map(|i| ((i * 7919) % 1_000_000) as i64))),
        Arc::new(StringArray::from_iter_values(range.clone().map(|i| ["view", "click", "cart", "buy"][(i % 4) as usize]))),
        Arc::new(Float64Array::from_iter_values(range.clone().map(|i| (i % 500) as f64 + (i % 100) as f64 / 100.0))),
        Arc::new(StringArray::from_iter_values(range.clone().map(|i| format!("https://shop.example.com/items/{}?ref=feed&utm=spring", (i * 31) % 100_000)))),
        Arc::new(StringArray::from_iter_values(range.clone().map(|i| format!("s-{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))))),
        Arc::new(TimestampMillisecondArray::from_iter_values(range.map(|i| 1_700_000_000_000 + i as i64))),
    ];
    RecordBatch::try_new(SchemaRef::clone(schema), columns).expect("events")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default_records = if args.iter().any(|a| a == "--bench") { 1_000_000 } else { 20_000 };
    let n = flag_value(&args, "--records", default_records);
    let schema = schema();
    let batches: Vec<RecordBatch> = (0..n).step_by(CHUNK_RECORDS).map(|from| events(&schema, from, (from + CHUNK_RECORDS as u64).min(n))).collect();
    let mut codec = AvroCodec::new(SchemaRef::clone(&schema)).expect("an Avro schema");

    let mut best_encode = f64::MAX;
    let mut values = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        values = batches.iter().map(|b| codec.encode(b).expect("encode")).collect::<Vec<_>>();
        best_encode = best_encode.min(started.elapsed().as_secs_f64());
    }
    let bytes: usize = values.iter().flatten().map(Vec::len).sum();
    println!("avro_decode: {n} records, {:.1} MB of Avro, chunks of {CHUNK_RECORDS}, one thread, best of 5", bytes as f64 / 1e6);

    let mut best_decode = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let mut rows = 0;
        for (chunk, batch) in values.iter().zip(&batches) {
            let (decoded, errors) = codec.decode(chunk).expect("decode");
            assert!(errors.is_empty(), "{errors:?}");
            rows += decoded.num_rows();
            if rows == decoded.num_rows() {
                assert_eq!(&decoded, batch, "the first chunk reads back as written");
            }
        }
        assert_eq!(rows as u64, n, "every record decodes");
        best_decode = best_decode.min(started.elapsed().as_secs_f64());
    }
    for (what, best) in [("encode", best_encode), ("decode", best_decode)] {
        println!("{what}  {:>6.2} M records/s  {:>7.0} MB/s", n as f64 / best / 1e6, bytes as f64 / best / 1e6);
    }
}
