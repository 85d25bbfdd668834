//! JSON decoding alone, on the lines of the file benchmark (`benches/files.rs`):
//! arrow-json's tape decoder, which the JSON format uses, against a decoder built on
//! `sonic-rs`, a SIMD JSON parser, filling the same Arrow columns. Issue 19 asked
//! whether a SIMD parser would decode our rows faster; this is the measurement.
//!
//! The sonic-rs side is the best case for it: a hand-written decoder for exactly
//! these six columns (no schema-driven dispatch, no error reporting per record,
//! no timestamp forms), so a full decoder could only be slower.
//!
//! Run: `cargo bench --bench json_decode` (options after `--`: `--lines N`,
//! default 1,000,000; 20,000 under `cargo test`). One thread; best of 5 rounds.

use std::sync::Arc;
use std::time::Instant;

use common::flag_value;
use datafusion::arrow::array::{Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

mod common;

/// Rows per decoded batch, as the file source reads them.
const BATCH_ROWS: usize = 8192;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, true),
        Field::new("page", DataType::Utf8, true),
        Field::new("action", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("duration_ms", DataType::Int64, true),
        Field::new("ts", DataType::Int64, true),
    ]))
}

/// Lines shaped like the file benchmark's events (about 115 bytes each).
fn lines(n: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(19);
    let mut out = Vec::with_capacity(n as usize * 120);
    for i in 0..n {
        let user = (100_000.0 * rng.gen::<f64>().powi(4)) as u64;
        let action = ["view", "view", "click", "buy"][rng.gen_range(0..4)];
        out.extend_from_slice(
            format!(
                r#"{{"user_id":{user},"page":"/products/item-{}","action":"{action}","amount":{},"duration_ms":{},"ts":{}}}"#,
                rng.gen_range(0..500),
                rng.gen_range(0..10_000) as f64 / 100.0,
                rng.gen_range(10..60_000),
                1_700_000_000_000i64 + i as i64
            )
            .as_bytes(),
        );
        out.push(b'\n');
    }
    out
}

/// arrow-json's decoder over the whole text, batch by batch: rows decoded.
fn arrow_json(text: &[u8], schema: &SchemaRef) -> usize {
    let mut decoder = ReaderBuilder::new(SchemaRef::clone(schema)).with_batch_size(BATCH_ROWS).build_decoder().expect("decoder");
    let mut rows = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let used = decoder.decode(rest).expect("decode");
        rest = &rest[used..];
        if let Some(batch) = decoder.flush().expect("flush") {
            rows += batch.num_rows();
        }
    }
    rows + decoder.flush().expect("flush").map_or(0, |b| b.num_rows())
}

/// The six columns' builders, filled from sonic-rs' parse of each line.
struct SonicColumns {
    user_id: Int64Builder,
    page: StringBuilder,
    action: StringBuilder,
    amount: Float64Builder,
    duration_ms: Int64Builder,
    ts: Int64Builder,
}

impl SonicColumns {
    fn new() -> Self {
        SonicColumns {
            user_id: Int64Builder::with_capacity(BATCH_ROWS),
            page: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 24),
            action: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 6),
            amount: Float64Builder::with_capacity(BATCH_ROWS),
            duration_ms: Int64Builder::with_capacity(BATCH_ROWS),
            ts: Int64Builder::with_capacity(BATCH_ROWS),
        }
    }

    fn push(&mut self, line: &[u8]) {
        use sonic_rs::JsonValueTrait;
        let (mut user_id, mut page, mut action, mut amount, mut duration_ms, mut ts) = (None, None, None, None, None, None);
        for field in sonic_rs::to_object_iter(line) {
            let (key, value) = field.expect("object field");
            match key.as_ref() {
                "user_id" => user_id = value.as_i64(),
                "page" => page = value.as_str().map(str::to_string),
                "action" => action = value.as_str().map(str::to_string),
                "amount" => amount = value.as_f64(),
                "duration_ms" => duration_ms = value.as_i64(),
                "ts" => ts = value.as_i64(),
                _ => {}
            }
        }
        self.user_id.append_option(user_id);
        self.page.append_option(page);
        self.action.append_option(action);
        self.amount.append_option(amount);
        self.duration_ms.append_option(duration_ms);
        self.ts.append_option(ts);
    }

    fn finish(&mut self, schema: &SchemaRef) -> RecordBatch {
        RecordBatch::try_new(
            SchemaRef::clone(schema),
            vec![
                Arc::new(self.user_id.finish()),
                Arc::new(self.page.finish()),
                Arc::new(self.action.finish()),
                Arc::new(self.amount.finish()),
                Arc::new(self.duration_ms.finish()),
                Arc::new(self.ts.finish()),
            ],
        )
        .expect("batch")
    }
}

/// sonic-rs over each line into the same columns, batch by batch: rows decoded.
fn sonic(text: &[u8], schema: &SchemaRef) -> usize {
    let mut columns = SonicColumns::new();
    let (mut rows, mut in_batch) = (0, 0);
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        columns.push(line);
        in_batch += 1;
        if in_batch == BATCH_ROWS {
            rows += columns.finish(schema).num_rows();
            in_batch = 0;
        }
    }
    rows + columns.finish(schema).num_rows()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default_lines = if args.iter().any(|a| a == "--bench") { 1_000_000 } else { 20_000 };
    let n = flag_value(&args, "--lines", default_lines);
    let text = lines(n);
    let schema = schema();
    println!("json_decode: {n} lines, {:.1} MB, one thread, best of 5", text.len() as f64 / 1e6);
    for (name, decode) in [("arrow-json (tape)", arrow_json as fn(&[u8], &SchemaRef) -> usize), ("sonic-rs", sonic)] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let rows = decode(&text, &schema);
            assert_eq!(rows as u64, n, "{name} decodes every line");
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!("{name:<18} {:>6.2} M lines/s  {:>7.0} MB/s", n as f64 / best / 1e6, text.len() as f64 / best / 1e6);
    }
}
